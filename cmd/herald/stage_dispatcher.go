package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dispatcher"
	"github.com/herald-dispatch/herald/internal/gokax"
	"github.com/herald-dispatch/herald/internal/metrics"
	"github.com/herald-dispatch/herald/internal/schedule"
	"github.com/herald-dispatch/herald/internal/topology"
)

type dispatcherOptions struct {
	defaultTZ   string
	blackout    cli.List
	blackoutTZ  string
	sendTimeout time.Duration
	parkFor     time.Duration
	margin      time.Duration
	sweepEvery  time.Duration
	// retireEvery and retireBatch: see dispatcher.Sweeper.
	retireEvery time.Duration
	retireBatch int
	// stateRetention and dedupRetention: see DispatchConfig.
	stateRetention retention
	dedupRetention retention
}

// retention is a flag of days or a Go duration: "35d", "395d", "840h".
type retention time.Duration

func (r *retention) String() string {
	d := time.Duration(*r)
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

func (r *retention) Set(s string) error {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseInt(n, 10, 32)
		if err != nil {
			return fmt.Errorf("%q: want whole days (35d) or a duration (840h)", s)
		}
		*r = retention(time.Duration(days) * 24 * time.Hour)
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q: want whole days (35d) or a duration (840h)", s)
	}
	*r = retention(d)
	return nil
}

// register registers the dispatcher stage's flags on fs.
func (f *dispatcherOptions) register(fs *flag.FlagSet) {
	cli.String(fs, &f.defaultTZ, "default-tz", "UTC", "time zone of recipients without recipient.tz")
	cli.ListVar(fs, &f.blackout, "blackout", "system-wide blackout window HH:MM-HH:MM, on top of each message's own")
	cli.String(fs, &f.blackoutTZ, "blackout-tz", "UTC", "time zone of the --blackout windows")
	cli.Duration(fs, &f.sendTimeout, "send-timeout", dispatcher.DefaultSendTimeout, "the deadline of a send command, from when it is issued: no provider call for it starts or runs past it (nor past a blackout window's start or expires_at); must be longer than --provider-timeout")
	cli.Duration(fs, &f.margin, "send-timeout-margin", dispatcher.DefaultTimeoutMargin, "the send timeout fires this long after a command's cut-off plus --provider-timeout, when no call for it can still run")
	cli.Duration(fs, &f.sweepEvery, "sweep-interval", dispatcher.DefaultSweepInterval, "how often the dispatcher reads its partitions' states in flight for those whose wake-up is overdue, and wakes them")
	cli.Duration(fs, &f.retireEvery, "retire-interval", dispatcher.DefaultRetireInterval, "how often the sweep also reads every state of its partitions for those past --state-retention or --dedup-retention (a pass over the whole table: seconds of CPU per million states)")
	cli.Int(fs, &f.retireBatch, "retire-batch", dispatcher.DefaultRetireBatch, "the most states one retention pass retires (the rest wait for the next pass)")
	cli.Duration(fs, &f.parkFor, "park-for", dispatcher.DefaultParkFor, "how long a result, wake-up or cancel for an id with no state yet is kept coming back before it goes to the DLQ (reason unknown_id)")
	f.stateRetention, f.dedupRetention = retention(dispatcher.DefaultStateRetention), retention(dispatcher.DefaultDedupRetention)
	fs.Var(&f.stateRetention, "state-retention", cli.UsageWithEnv("state-retention", "how long a final state is kept whole after its last change (days, 35d, or a duration); then only its id, status and version are remembered, for duplicate protection"))
	fs.Var(&f.dedupRetention, "dedup-retention", cli.UsageWithEnv("dedup-retention", "how long an id stays a duplicate after its final state's last change (days, 395d, or a duration; at least --state-retention); then it is deleted, and a request with the id is a new notification"))
}

// config builds the dispatcher's configuration from its flags and the
// sender's provider timeout, which its send timeout must exceed.
func (f *dispatcherOptions) config(providerTimeout time.Duration) (dispatcher.DispatchConfig, error) {
	loc, err := contract.LoadLocation(f.defaultTZ)
	if err != nil {
		return dispatcher.DispatchConfig{}, fmt.Errorf("--default-tz: %w", err)
	}
	bloc, err := contract.LoadLocation(f.blackoutTZ)
	if err != nil {
		return dispatcher.DispatchConfig{}, fmt.Errorf("--blackout-tz: %w", err)
	}
	global := schedule.Rule{Loc: bloc}
	for _, s := range f.blackout.Vals {
		w, err := contract.ParseWindow(s)
		if err != nil {
			return dispatcher.DispatchConfig{}, fmt.Errorf("--blackout: %w", err)
		}
		global.Windows = append(global.Windows, w)
	}
	if f.sendTimeout <= 0 || f.margin <= 0 || f.parkFor <= 0 {
		return dispatcher.DispatchConfig{}, fmt.Errorf("--send-timeout, --send-timeout-margin and --park-for must be positive")
	}
	if f.stateRetention <= 0 || f.dedupRetention <= 0 {
		return dispatcher.DispatchConfig{}, fmt.Errorf("--state-retention and --dedup-retention must be positive")
	}
	cfg := dispatcher.DispatchConfig{DefaultLoc: loc, Global: global, SendTimeout: f.sendTimeout,
		ProviderTimeout: providerTimeout, TimeoutMargin: f.margin,
		StateRetention: time.Duration(f.stateRetention), DedupRetention: time.Duration(f.dedupRetention)}
	if err := cfg.Validate(); err != nil {
		return dispatcher.DispatchConfig{}, err
	}
	return cfg, nil
}

// startDispatcher runs the dispatcher's processor (under its supervisor)
// and its sweep.
func startDispatcher(env *runEnv, f *dispatcherOptions, shared sharedFlags) (stageLoop, error) {
	cfg, err := f.config(shared.providerTimeout)
	if err != nil {
		return nil, err
	}
	obs := metrics.NewDispatch(env.Registry)
	if err := f.checkSweep(shared.sweepGrace); err != nil {
		return nil, err
	}
	view, err := env.TableView()
	if err != nil {
		return nil, err
	}
	d := &dispatcher.Dispatcher{Config: cfg, Observer: obs, Log: env.Log.With("stage", "dispatcher"),
		Fence: new(gokax.Fence), ParkFor: f.parkFor, Changelog: view.Version,
		ChangelogReady: view.Recovered}
	sup := d.Supervisor(env.Topology, filepath.Join(env.DataDir, "goka"), env.Log)
	env.AddReady("dispatcher", sup.Ready)
	env.AddProcessor(sup.Processor)
	cl, err := kgo.NewClient(append(append(env.Topology.KgoOpts(), kgo.ClientID(env.Topology.ClientID+"-sweep")),
		topology.KgoProducerOpts()...)...)
	if err != nil {
		return nil, fmt.Errorf("dispatcher sweep: client: %w", err)
	}
	env.OnClose(cl.Close)
	sw := &dispatcher.Sweeper{View: view.Goka(), InFlight: view.InFlight, Fence: d.Fence, Partitions: env.Topology.Partitions,
		Publish: dispatcher.PublishWakeups(cl), Interval: f.sweepEvery, Grace: shared.sweepGrace,
		Log: env.Log.With("stage", "dispatcher-sweep"), Observe: obs.Swept,
		StateRetention: cfg.StateRetention, DedupRetention: cfg.DedupRetention,
		RetireInterval: f.retireEvery, RetireBatch: f.retireBatch}
	return func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return sup.Run(gctx) })
		g.Go(func() error { return sw.Run(gctx) })
		return g.Wait()
	}, nil
}

// checkSweep refuses sweep settings that are not positive.
func (f *dispatcherOptions) checkSweep(grace time.Duration) error {
	if f.sweepEvery <= 0 || grace <= 0 || f.retireEvery <= 0 || f.retireBatch <= 0 {
		return fmt.Errorf("--sweep-interval, --sweep-grace, --retire-interval and --retire-batch must be positive")
	}
	return nil
}

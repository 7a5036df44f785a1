package chaos

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/loadtest"
	"github.com/herald-dispatch/herald/internal/pglocal"
	"github.com/herald-dispatch/herald/internal/topology"
)

// FaultKind is a kind of injected fault.
type FaultKind string

// The faults.
const (
	// KillInstance: kill -9 of a `herald run`, started again after For.
	KillInstance FaultKind = "kill -9 instance"
	// KillBroker: kill -9 of the broker, started again on the same data
	// dir and port after For.
	KillBroker FaultKind = "kill -9 broker"
	// StopPostgres: PostgreSQL stopped for For.
	StopPostgres FaultKind = "postgres stopped"
	// ProviderOutage: the provider answers 503 to everything for For.
	ProviderOutage FaultKind = "provider 5xx"
	// PauseInstance: SIGSTOP of a `herald run` for For (default: past its
	// session timeout), then SIGCONT: a zombie.
	PauseInstance FaultKind = "SIGSTOP instance (zombie)"
)

// Fault is one scheduled fault.
type Fault struct {
	Kind FaultKind `json:"kind"`
	// At is the time after the first publication.
	At time.Duration `json:"at"`
	// Instance is the target of instance faults (0-based).
	Instance int `json:"instance"`
	// For is the down time, the outage or the pause; 0 takes the kind's
	// default (Config.DownFor, the session timeout plus 5 s for a pause).
	For time.Duration `json:"for"`
	// WhenBusy delays the fault past At until the provider has this many
	// calls open from its target (from any instance for a broker kill),
	// for at most busyWait: a kill during a send burst. 0: at At.
	WhenBusy int `json:"when_busy,omitempty"`
}

// busyWait bounds how long a fault waits for Fault.WhenBusy open calls.
const busyWait = 10 * time.Second

// FaultEvent is a fault as it happened.
type FaultEvent struct {
	Fault
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// OpenCalls is the provider calls open at Start, TargetOpen those of
	// the fault's target instance.
	OpenCalls  int    `json:"open_calls"`
	TargetOpen int    `json:"target_open_calls"`
	Err        string `json:"error,omitempty"`
}

// Target is the process an instance fault hits ("herald-2"), or "".
func (f Fault) Target() string {
	if f.Kind == KillInstance || f.Kind == PauseInstance {
		return fmt.Sprintf("herald-%d", f.Instance+1)
	}
	return ""
}

// String is a one-line description with times relative to t0.
func (f FaultEvent) String(t0 time.Time) string {
	what := string(f.Kind)
	if f.Kind == KillInstance || f.Kind == PauseInstance {
		what += " " + strconv.Itoa(f.Instance+1)
	}
	s := fmt.Sprintf("%s at t+%.1fs until t+%.1fs", what, f.Start.Sub(t0).Seconds(), f.End.Sub(t0).Seconds())
	if f.Err != "" {
		s += " (error: " + f.Err + ")"
	}
	return s
}

// Config is one chaos run.
type Config struct {
	Name string
	// Binary is the herald binary; Dir holds everything the run writes
	// (data dirs, logs, its report).
	Binary, Dir string
	Instances   int
	Partitions  int
	// N notifications are published evenly over PublishFor, plus a
	// re-published block (Duplicates share) right after.
	N          int
	PublishFor time.Duration
	Duplicates float64
	// Honour makes the provider honour Idempotency-Key.
	Honour bool
	Faults []Fault
	// DownFor is how long a killed process stays down (default 2 s).
	DownFor time.Duration
	// SendTimeout is the dispatcher's --send-timeout (default 20 s): the
	// safety net for commands lost at a kill, short enough for a run.
	SendTimeout time.Duration
	// SessionTimeout is passed as --session-timeout when `herald run` has
	// the flag (default 10 s); without it consumers keep franz-go's 45 s.
	SessionTimeout time.Duration
	// FinalTimeout bounds the wait for all-final after the last fault
	// ended (default 2 min), and a run whose notifications took longer
	// fails; Stall ends the wait earlier when neither PostgreSQL nor the
	// provider moved for that long (default 2 × SendTimeout + session
	// timeout). FinalWait, when longer than FinalTimeout, is how long
	// the run waits all the same, to tell a late notification from a
	// stuck one in the report.
	FinalTimeout, Stall, FinalWait time.Duration
	// Quiet is how long the provider is watched for late calls after
	// all-final (default 5 s).
	Quiet time.Duration
	// AttemptsPerChannel is the requests' policy (default 8: a provider
	// outage of 20 s does not exhaust a channel).
	AttemptsPerChannel int
	// InFlightWindow, see Evidence (default 2 s).
	InFlightWindow time.Duration
	// Strict: see Evidence.Strict.
	Strict bool
	// Seed varies the ids' order.
	Seed uint64
	// CPUHog is how many cores a CPU hog spins on beside the run, from the
	// first publication to the verdict: a loaded machine.
	CPUHog int
	// Accept makes the provider slow to take connections.
	Accept Accept
	// ProviderTimeout is passed as --provider-timeout when set.
	ProviderTimeout time.Duration
	// SendConcurrency, when set, is passed as --send-concurrency and
	// --send-concurrency-min (a fixed limit), and bounds the notifications a
	// provider that ignores the key may get twice: at most this many per
	// instance killed (see Evidence.SendConcurrency).
	SendConcurrency int
	Log             *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Instances <= 0 {
		c.Instances = 2
	}
	if c.Partitions <= 0 {
		c.Partitions = 6
	}
	if c.N <= 0 {
		c.N = 2000
	}
	if c.PublishFor <= 0 {
		c.PublishFor = time.Minute
	}
	if c.DownFor <= 0 {
		c.DownFor = 2 * time.Second
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 20 * time.Second
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.FinalTimeout <= 0 {
		c.FinalTimeout = 2 * time.Minute
	}
	if c.Quiet <= 0 {
		c.Quiet = 5 * time.Second
	}
	if c.AttemptsPerChannel <= 0 {
		c.AttemptsPerChannel = 8
	}
	if c.InFlightWindow <= 0 {
		c.InFlightWindow = 2 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Name == "" {
		mode := "honour"
		if !c.Honour {
			mode = "ignore"
		}
		c.Name = fmt.Sprintf("i%d-%s", c.Instances, mode)
	}
	return c
}

// load describes the CPU hog and the provider's shaping ("" for none).
func (c Config) load() string {
	var parts []string
	if c.CPUHog > 0 {
		parts = append(parts, fmt.Sprintf("a CPU hog spinning on %d cores", c.CPUHog))
	}
	if a := c.Accept; a != (Accept{}) {
		parts = append(parts, fmt.Sprintf("a provider slow to accept (listen backlog %d, %s before each accept, every %dth answer closes its connection)",
			a.Backlog, a.Delay, a.CloseEvery))
	}
	if c.ProviderTimeout > 0 {
		parts = append(parts, "--provider-timeout "+c.ProviderTimeout.String())
	}
	if c.SendConcurrency > 0 {
		parts = append(parts, fmt.Sprintf("--send-concurrency %d", c.SendConcurrency))
	}
	return strings.Join(parts, ", ")
}

// channels is what every generated request lists (loadtest.Plan).
const channels = 2

// Result is one run's report.
type Result struct {
	Name      string       `json:"name"`
	Instances int          `json:"instances"`
	Honour    bool         `json:"honour_idempotency"`
	Started   time.Time    `json:"started"`
	Faults    []FaultEvent `json:"faults"`
	Verdict   *Verdict     `json:"verdict"`
	// AllFinal: every valid notification reached a final status in
	// PostgreSQL; ToAllFinal is the time from the end of the last fault
	// (0 if they were final before it ended).
	AllFinal   bool          `json:"all_final"`
	ToAllFinal time.Duration `json:"to_all_final"`
	// Waited is how long the run waited after the last fault.
	Waited time.Duration `json:"waited"`
	// SessionTimeout is the consumers' session timeout in the run and
	// Pause the zombie's pause.
	SessionTimeout time.Duration `json:"session_timeout"`
	Calls          int           `json:"provider_calls"`
	// Outcomes counts the provider calls by outcome (Outcome*): abandoned
	// ones are calls the caller gave up on (a provider timeout).
	Outcomes map[string]int `json:"outcomes"`
	// Replays counts calls the honouring provider answered from an earlier
	// delivery with the same key: duplicates it prevented.
	Replays int64         `json:"replays"`
	Elapsed time.Duration `json:"elapsed"`
	// Unexpected lists process exits nobody asked for.
	Unexpected []string `json:"unexpected_exits,omitempty"`
	// LogSignals counts the instances' log lines that name a known
	// producer fault (see logSignals), by the text matched.
	LogSignals map[string]int `json:"log_signals,omitempty"`
	// Load is the machine load and provider shaping of the run, for the
	// report ("" for none).
	Load string `json:"load,omitempty"`
	// EndState is what the run saw of the pipeline when it stopped
	// waiting: each consumer group's lag and each instance's /readyz.
	EndState []string `json:"end_state"`
	Dir      string   `json:"dir"`
}

// Passed reports whether the run passed.
func (r *Result) Passed() bool { return r.Verdict != nil && r.Verdict.Passed() }

// run is a run in progress.
type run struct {
	cfg      Config
	log      *slog.Logger
	pg       *pglocal.Server
	prov     *Provider
	broker   *proc
	heralds  []*proc
	brokers  []string
	pool     *pgxpool.Pool
	campaign string
	pause    time.Duration
	hog      *hog

	stopSupervisors context.CancelFunc
	readyz          []string

	// tail are the ids not final when half of FinalTimeout had passed
	// after the last fault (nil: all were), reported on a passing run
	// too, so that a run shows what bounds its time to all-final.
	tail []string
	// late are the ids not final when FinalTimeout had passed after the
	// last fault (nil before).
	late []string

	mu     sync.Mutex
	events []FaultEvent
}

// Run carries out one chaos run and takes its verdict. The error is for a
// run that could not be carried out; a run whose assertions failed returns
// a Result that did not pass.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	r := &run{cfg: cfg, log: cfg.Log.With("run", cfg.Name), campaign: "chaos-" + cfg.Name}
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	defer r.cleanup()
	res := &Result{Name: cfg.Name, Instances: cfg.Instances, Honour: cfg.Honour, Dir: cfg.Dir}
	if err := r.startAll(ctx); err != nil {
		return nil, err
	}
	res.SessionTimeout = r.sessionTimeout()
	r.pause = res.SessionTimeout + 5*time.Second

	plan, err := loadtest.NewPlan(loadtest.Workload{N: cfg.N, Duplicates: cfg.Duplicates, Campaign: r.campaign,
		Seed: cfg.Seed, AttemptsPerChannel: cfg.AttemptsPerChannel})
	if err != nil {
		return nil, err
	}
	pub := &loadtest.Publisher{Plan: plan, Brokers: r.brokers, Rate: float64(cfg.N) / cfg.PublishFor.Seconds(),
		RerunDelay: time.Second}
	if r.hog, err = startHog(cfg.CPUHog); err != nil {
		return nil, err
	}
	res.Load = cfg.load()
	res.Started = time.Now()
	t0 := res.Started
	r.log.Info("publishing", "n", cfg.N, "over", cfg.PublishFor, "faults", len(cfg.Faults))
	pubErr := make(chan error, 1)
	go func() { pubErr <- pub.Run(ctx) }()
	lastFault := r.inject(ctx, t0)
	if err := <-pubErr; err != nil {
		return nil, err
	}
	r.log.Info("published; waiting for all-final", "acked", pub.Acked(), "last_fault_end", lastFault.Sub(t0).Round(time.Millisecond))

	allFinalAt, waited := r.waitAllFinal(ctx, plan.Valid(), lastFault)
	res.Waited = waited
	if !allFinalAt.IsZero() {
		res.AllFinal = true
		res.ToAllFinal = max(0, allFinalAt.Sub(lastFault))
		time.Sleep(cfg.Quiet) // late calls show up as duplicates
	}
	r.hog.stop()
	res.EndState = r.endState(ctx)
	rows, err := r.rows(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	res.Faults = append([]FaultEvent(nil), r.events...)
	r.mu.Unlock()
	sort.Slice(res.Faults, func(i, j int) bool { return res.Faults[i].Start.Before(res.Faults[j].Start) })
	ev := &Evidence{Plan: plan, Partitions: cfg.Partitions, Deliveries: r.prov.Mock.Deliveries(), Calls: r.prov.Calls(),
		Open: r.prov.InFlight(), Rows: rows, Faults: res.Faults, Honour: cfg.Honour, Channels: channels,
		AttemptsPerChannel: cfg.AttemptsPerChannel, InFlightWindow: cfg.InFlightWindow, T0: t0, Strict: cfg.Strict,
		SendConcurrency: cfg.SendConcurrency, Instances: cfg.Instances, Late: r.late, Tail: r.tail}
	res.Verdict = Check(ev)
	if f := finalFailure(res, cfg.FinalTimeout); f != "" {
		res.Verdict.Failures = append(res.Verdict.Failures, f)
	}
	res.Verdict.Failures = append(res.Verdict.Failures, busyFailures(res.Faults, t0)...)
	res.Calls = len(ev.Calls)
	res.Outcomes = map[string]int{}
	for _, c := range ev.Calls {
		res.Outcomes[c.Outcome]++
	}
	res.Replays = r.prov.Mock.Stats().Replays
	for _, p := range append([]*proc{r.broker}, r.heralds...) {
		res.Unexpected = append(res.Unexpected, p.unexpectedExits()...)
	}
	res.LogSignals = map[string]int{}
	for _, p := range r.heralds {
		if err := countSignals(p.logPath, res.LogSignals); err != nil {
			r.log.Warn("read log", "err", err)
		}
	}
	res.Elapsed = time.Since(t0)
	return res, nil
}

// startAll starts PostgreSQL, the provider, the broker and the instances,
// and waits until every instance is ready.
func (r *run) startAll(ctx context.Context) error {
	cfg := r.cfg
	flags, err := loadtest.FlagDefaults(cfg.Binary, "run")
	if err != nil {
		return err
	}
	r.pg, err = pglocal.Start(ctx, pglocal.Config{Dir: filepath.Join(cfg.Dir, "postgres"), Ephemeral: true, Log: r.log})
	if err != nil {
		return err
	}
	r.pool, err = pgxpool.New(ctx, r.pg.URL())
	if err != nil {
		return fmt.Errorf("postgres pool: %w", err)
	}
	r.prov = NewProvider(cfg.Honour)
	r.prov.Accept = cfg.Accept
	if err := r.prov.Start(); err != nil {
		return err
	}
	brokerAddr, err := loadtest.FreeAddr()
	if err != nil {
		return err
	}
	r.brokers = []string{brokerAddr}
	r.broker = newProc("broker", cfg.Binary, []string{"broker", "--broker-addr", brokerAddr,
		"--data-dir", filepath.Join(cfg.Dir, "broker"), "--partitions", strconv.Itoa(cfg.Partitions), "--log-level", "warn"},
		filepath.Join(cfg.Dir, "broker.log"), r.log)
	if err := r.broker.start(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = topology.WaitForBrokers(wctx, r.brokers)
	cancel()
	if err != nil {
		return err
	}
	var extra []string
	if _, ok := flags["session-timeout"]; ok {
		extra = append(extra, "--session-timeout", cfg.SessionTimeout.String())
	}
	if _, ok := flags["heartbeat-interval"]; ok {
		extra = append(extra, "--heartbeat-interval", max(cfg.SessionTimeout/10, 100*time.Millisecond).String())
	}
	if cfg.ProviderTimeout > 0 {
		extra = append(extra, "--provider-timeout", cfg.ProviderTimeout.String())
	}
	if n := cfg.SendConcurrency; n > 0 {
		extra = append(extra, "--send-concurrency", strconv.Itoa(n))
		if _, ok := flags["send-concurrency-min"]; ok {
			extra = append(extra, "--send-concurrency-min", strconv.Itoa(n))
		}
	}
	readyz := make([]string, cfg.Instances)
	r.readyz = readyz
	for i := range cfg.Instances {
		httpAddr, err := loadtest.FreeAddr()
		if err != nil {
			return err
		}
		readyz[i] = "http://" + httpAddr + "/readyz"
		args := append([]string{"run",
			"--brokers", brokerAddr,
			"--data-dir", filepath.Join(cfg.Dir, fmt.Sprintf("herald-%d", i+1)),
			"--database-url", r.pg.URL(),
			"--http-addr", httpAddr,
			"--partitions", strconv.Itoa(cfg.Partitions),
			"--provider", fmt.Sprintf("email=%s/herald-%d/email?latency=100ms&jitter=50ms", r.prov.URL, i+1),
			"--provider", fmt.Sprintf("sms=%s/herald-%d/sms?latency=30ms", r.prov.URL, i+1),
			"--send-timeout", cfg.SendTimeout.String(),
		}, extra...)
		p := newProc(fmt.Sprintf("herald-%d", i+1), cfg.Binary, args, filepath.Join(cfg.Dir, fmt.Sprintf("herald-%d.log", i+1)), r.log)
		if err := p.start(); err != nil {
			return err
		}
		r.heralds = append(r.heralds, p)
	}
	sctx, stopSupervisors := context.WithCancel(context.Background())
	r.stopSupervisors = stopSupervisors
	for _, p := range append([]*proc{r.broker}, r.heralds...) {
		go p.supervise(sctx)
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for i, u := range readyz {
		if err := loadtest.WaitOK(rctx, u, func() error { return nil }); err != nil {
			return fmt.Errorf("herald-%d: %w (log %s)", i+1, err, r.heralds[i].logPath)
		}
	}
	// Let the consumer groups settle before the first record.
	time.Sleep(5 * time.Second)
	return nil
}

// sessionTimeout is the consumers' session timeout in this run: the flag's
// value when `herald run` has it, franz-go's default (45 s) otherwise.
func (r *run) sessionTimeout() time.Duration {
	flags, err := loadtest.FlagDefaults(r.cfg.Binary, "run")
	if err == nil {
		if _, ok := flags["session-timeout"]; ok {
			return r.cfg.SessionTimeout
		}
	}
	return 45 * time.Second
}

// inject applies the faults on schedule (overlapping ones concurrently)
// and returns when the last has ended.
func (r *run) inject(ctx context.Context, t0 time.Time) time.Time {
	var wg sync.WaitGroup
	for _, f := range r.cfg.Faults {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(t0.Add(f.At))):
			}
			if f.WhenBusy > 0 {
				waitBusy(ctx, r.prov, f.Target(), f.WhenBusy, busyWait)
			}
			ev := r.apply(ctx, f)
			r.log.Info("fault", "what", ev.String(t0), "open_calls", ev.OpenCalls)
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
		}()
	}
	wg.Wait()
	last := t0
	r.mu.Lock()
	for _, e := range r.events {
		if e.End.After(last) {
			last = e.End
		}
	}
	r.mu.Unlock()
	return last
}

// apply carries out one fault and returns when it is over.
func (r *run) apply(ctx context.Context, f Fault) FaultEvent {
	open := r.prov.InFlight()
	ev := FaultEvent{Fault: f, Start: time.Now(), OpenCalls: len(open), TargetOpen: countFrom(open, f.Target())}
	wait := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	down := f.For
	if down <= 0 {
		down = r.cfg.DownFor
	}
	var err error
	switch f.Kind {
	case KillInstance, KillBroker:
		p := r.broker
		if f.Kind == KillInstance {
			if p, err = r.instance(f); err != nil {
				break
			}
		}
		if err = p.kill(); err == nil {
			wait(down)
			err = p.restart()
		}
	case PauseInstance:
		if f.For <= 0 {
			down = r.pause
		}
		var p *proc
		if p, err = r.instance(f); err != nil {
			break
		}
		if err = p.signal(syscall.SIGSTOP); err == nil {
			wait(down)
			err = p.signal(syscall.SIGCONT)
		}
	case StopPostgres:
		if f.For <= 0 {
			down = 30 * time.Second
		}
		if err = r.pg.Stop(); err == nil {
			wait(down)
			err = r.pg.Restart(context.WithoutCancel(ctx))
		}
	case ProviderOutage:
		if f.For <= 0 {
			down = 20 * time.Second
		}
		r.prov.Outage(down)
		wait(down)
	default:
		err = fmt.Errorf("unknown fault %q", f.Kind)
	}
	ev.For = down
	ev.End = time.Now()
	if err != nil {
		ev.Err = err.Error()
	}
	return ev
}

// countFrom counts the calls made by caller ("": all of them).
func countFrom(cs []Call, caller string) int {
	n := 0
	for _, c := range cs {
		if caller == "" || c.Caller == caller {
			n++
		}
	}
	return n
}

// waitBusy waits until p has at least n calls open from caller ("": from
// anyone), at most limit; it reports whether they were.
func waitBusy(ctx context.Context, p *Provider, caller string, n int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for countFrom(p.InFlight(), caller) < n {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// instance is the target of an instance fault.
func (r *run) instance(f Fault) (*proc, error) {
	if f.Instance < 0 || f.Instance >= len(r.heralds) {
		return nil, fmt.Errorf("%s: no instance %d (have %d)", f.Kind, f.Instance+1, len(r.heralds))
	}
	return r.heralds[f.Instance], nil
}

// waitAllFinal polls PostgreSQL until every valid notification is final,
// FinalTimeout after the last fault, or a stall. It returns when they
// became final (zero if they did not) and how long it waited after the
// last fault.
func (r *run) waitAllFinal(ctx context.Context, valid int, lastFault time.Time) (time.Time, time.Duration) {
	stall := r.cfg.Stall
	if stall <= 0 {
		stall = 2*r.cfg.SendTimeout + r.sessionTimeout()
	}
	deadline := lastFault.Add(max(r.cfg.FinalTimeout, r.cfg.FinalWait))
	bound := lastFault.Add(r.cfg.FinalTimeout)
	var lastFinal, lastCalls int
	lastMove := time.Now()
	for {
		final, err := r.finalCount(ctx)
		if err == nil && final >= valid {
			return time.Now(), time.Since(lastFault)
		}
		if r.tail == nil && time.Now().After(lastFault.Add(r.cfg.FinalTimeout/2)) {
			if r.tail, err = r.notFinal(ctx); err != nil {
				r.tail = []string{}
			}
		}
		if r.late == nil && time.Now().After(bound) {
			if r.late, err = r.notFinal(ctx); err != nil {
				r.log.Warn("ids not final at the bound", "err", err)
				r.late = []string{}
			}
		}
		calls := r.prov.CallCount()
		if final != lastFinal || calls != lastCalls {
			lastFinal, lastCalls, lastMove = final, calls, time.Now()
		}
		now := time.Now()
		if now.After(deadline) || (now.After(lastFault) && now.Sub(lastMove) > stall) || ctx.Err() != nil {
			r.log.Warn("not all final", "final", final, "valid", valid, "since_last_move", now.Sub(lastMove).Round(time.Second))
			return time.Time{}, now.Sub(lastFault)
		}
		time.Sleep(finalPoll)
	}
}

// finalPoll is how often waitAllFinal counts the final rows: the error of
// the time to all-final it measures.
const finalPoll = 250 * time.Millisecond

// finalFailure is the failed assertion about the time to all-final, or "":
// every notification must be final within bound of the end of the last
// fault.
func finalFailure(res *Result, bound time.Duration) string {
	switch {
	case !res.AllFinal:
		return fmt.Sprintf("not all final %s after the last fault", res.Waited.Round(time.Second))
	case res.ToAllFinal > bound:
		return fmt.Sprintf("all final %s after the last fault, more than the %s bound", res.ToAllFinal.Round(100*time.Millisecond), bound)
	}
	return ""
}

// busyFailures are the faults that waited for a send burst (WhenBusy) and
// struck without it: a kill with fewer calls open from its target than
// asked for tested nothing the run is for (burst-kill's kill with no call
// in flight passes whatever the sender does), so the run fails and says
// the fault missed, rather than pass untested.
func busyFailures(events []FaultEvent, t0 time.Time) []string {
	var out []string
	for _, e := range events {
		if e.WhenBusy > 0 && e.TargetOpen < e.WhenBusy {
			out = append(out, fmt.Sprintf("%s struck with %d provider calls open from its target, not the %d it waited for (up to %s): the send burst was over or had not begun, so the fault tested nothing",
				e.String(t0), e.TargetOpen, e.WhenBusy, busyWait))
		}
	}
	return out
}

// endState describes each consumer group (state, members, lag by
// partition) and each instance's /readyz, for the report: a run that did
// not finish says where work was waiting.
func (r *run) endState(ctx context.Context) []string {
	out := r.groupStates(ctx)
	client := &http.Client{Timeout: 3 * time.Second}
	for i, u := range r.readyz {
		var status string
		if resp, err := client.Get(u); err != nil {
			status = err.Error()
		} else {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			status = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		}
		out = append(out, fmt.Sprintf("herald-%d /readyz: %s", i+1, status))
	}
	return out
}

func (r *run) groupStates(ctx context.Context) []string {
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.ClientID("herald-chaos-admin"))
	if err != nil {
		return []string{"groups: " + err.Error()}
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	listed, err := adm.ListGroups(qctx)
	if err != nil {
		return []string{"groups: " + err.Error()}
	}
	lags, err := adm.Lag(qctx, listed.Groups()...)
	if err != nil {
		return []string{"groups: " + err.Error()}
	}
	var out []string
	for _, g := range lags.Sorted() {
		if err := g.Error(); err != nil {
			out = append(out, fmt.Sprintf("group %s: %v", g.Group, err))
			continue
		}
		var total int64
		var parts []string
		for _, l := range g.Lag.Sorted() {
			if l.Lag > 0 {
				total += l.Lag
				parts = append(parts, fmt.Sprintf("%s/%d=%d", l.Topic, l.Partition, l.Lag))
			}
		}
		if len(parts) > 8 {
			parts = append(parts[:8], "...")
		}
		out = append(out, fmt.Sprintf("group %s: %s, %d members, lag %d %v", g.Group, g.State, len(g.Members), total, parts))
	}
	return out
}

func (r *run) finalCount(ctx context.Context) (int, error) {
	var finals []string
	for _, s := range contract.Statuses() {
		if s.Final() {
			finals = append(finals, string(s))
		}
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var n int
	err := r.pool.QueryRow(qctx, `SELECT count(*) FROM dispatch_status WHERE campaign = $1 AND status = ANY($2)`,
		r.campaign, finals).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count final rows: %w", err)
	}
	return n, nil
}

// notFinal lists the campaign's ids whose status is not final.
func (r *run) notFinal(ctx context.Context) ([]string, error) {
	var finals []string
	for _, s := range contract.Statuses() {
		if s.Final() {
			finals = append(finals, string(s))
		}
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rs, err := r.pool.Query(qctx, `SELECT id FROM dispatch_status WHERE campaign = $1 AND NOT (status = ANY($2)) ORDER BY id`,
		r.campaign, finals)
	if err != nil {
		return nil, fmt.Errorf("read ids not final: %w", err)
	}
	defer rs.Close()
	out := []string{}
	for rs.Next() {
		var id string
		if err := rs.Scan(&id); err != nil {
			return nil, fmt.Errorf("read ids not final: %w", err)
		}
		out = append(out, id)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("read ids not final: %w", err)
	}
	return out, nil
}

// rows reads the campaign's dispatch_status rows.
func (r *run) rows(ctx context.Context) (map[string]Row, error) {
	qctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rs, err := r.pool.Query(qctx, `SELECT id, status, channel, attempts, version, updated_at, last_error
		FROM dispatch_status WHERE campaign = $1`, r.campaign)
	if err != nil {
		return nil, fmt.Errorf("read dispatch_status: %w", err)
	}
	defer rs.Close()
	out := map[string]Row{}
	for rs.Next() {
		var id string
		var row Row
		if err := rs.Scan(&id, &row.Status, &row.Channel, &row.Attempts, &row.Version, &row.UpdatedAt, &row.LastError); err != nil {
			return nil, fmt.Errorf("read dispatch_status: %w", err)
		}
		out[id] = row
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("read dispatch_status: %w", err)
	}
	return out, nil
}

// cleanup stops everything the run started.
func (r *run) cleanup() {
	if r.hog != nil {
		r.hog.stop()
	}
	if r.stopSupervisors != nil {
		r.stopSupervisors()
	}
	var wg sync.WaitGroup
	for _, p := range r.heralds {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(15 * time.Second) }()
	}
	wg.Wait()
	if r.broker != nil {
		r.broker.stop(10 * time.Second)
	}
	if r.pool != nil {
		r.pool.Close()
	}
	if r.prov != nil {
		if err := r.prov.Close(); err != nil {
			r.log.Warn("provider close", "err", err)
		}
	}
	if r.pg != nil {
		if err := r.pg.Stop(); err != nil {
			r.log.Warn("postgres stop", "err", err)
		}
	}
}

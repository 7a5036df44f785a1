package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/herald-dispatch/herald/internal/cli"

	"golang.org/x/sync/errgroup"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/metrics"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/herald-dispatch/herald/internal/sender"
	"github.com/herald-dispatch/herald/internal/tableview"
)

// defaultProviders are the providers when no --provider is given: the
// simulations `make run` demonstrates with. Naming any provider replaces
// all of them, so a production config never sends one channel to a mock
// by accident.
func defaultProviders() []string {
	return []string{
		"email=mock://?latency=1s&fail=0.01",
		"sms=mock://?latency=50ms",
	}
}

// senderOptions are the sender stage's flags; --provider and
// --provider-timeout, which other stages read too, are sharedFlags.
type senderOptions struct {
	rates          cli.List
	concurrency    int
	limit          sender.LimitConfig
	drainTimeout   time.Duration
	recallTimeout  time.Duration
	answeredMemory int
	minBudget      time.Duration
	commitInterval time.Duration
	staleCheck     bool
	chain          provider.ChainOptions
	webhooks       webhookFlags
}

var (
	_ sender.Observer         = (*metrics.Sender)(nil)
	_ sender.ProviderObserver = (*metrics.Sender)(nil)
)

// register registers the sender stage's flags on fs.
func (f *senderOptions) register(fs *flag.FlagSet) {
	// Lists append: start each parse empty (a value registered again).
	f.rates = cli.List{}
	cli.Int(fs, &f.chain.FailureThreshold, "provider-circuit-failures", provider.DefaultCircuitFailures, "consecutive failures that open a provider's circuit in a failover chain (its attempts then go to the next provider without a call); -1 for never")
	cli.Duration(fs, &f.chain.CoolDown, "provider-circuit-cooldown", provider.DefaultCircuitCoolDown, "how long an open circuit skips its provider before one probe attempt")
	cli.Int(fs, &f.chain.UnknownMemory, "provider-unknown-memory", provider.DefaultUnknownMemory, "ids a failover chain keeps with the provider that left their outcome unknown (it may still deliver); -1 for none")
	cli.ListVar(fs, &f.rates, "rate", "attempts per second of a channel for the whole deployment, CHANNEL=N/s, or of one provider of a channel's failover chain, CHANNEL/PROVIDER=N/s (PROVIDER its name: a template's name, or its URL's host): each process takes the rate divided by the sender group's members, divided again on every rebalance (default unlimited)")
	cli.Int(fs, &f.concurrency, "send-concurrency", sender.DefaultConcurrency, "the most send commands in flight per process (fewer while the channels' limits are low: four a call slot, at least 256), and the ceiling of each channel's adaptive concurrency limit")
	cli.Int(fs, &f.limit.Min, "send-concurrency-min", sender.DefaultLimitMin, "floor of each channel's adaptive concurrency limit (provider calls in flight per process); equal to --send-concurrency for a fixed limit; when not set, a lower --send-concurrency lowers it too")
	cli.Int(fs, &f.limit.Start, "send-concurrency-start", sender.DefaultLimitStart, "where each channel's adaptive concurrency limit starts, between --send-concurrency-min and --send-concurrency; when not set, it is moved between them")
	cli.Float(fs, &f.limit.Tolerance, "send-latency-tolerance", sender.DefaultLatencyTolerance, "a channel's concurrency limit grows while its provider answers within this multiple of its base latency and shrinks above it (more than 1)")
	cli.Duration(fs, &f.limit.Floor, "send-latency-floor", sender.DefaultLatencyFloor, "the least base latency: a faster provider's latency is noise, not queueing, to the concurrency limit")
	cli.Duration(fs, &f.limit.Memory, "send-latency-memory", sender.DefaultLatencyMemory, "how long a provider's least latency is remembered as its base latency")
	cli.Duration(fs, &f.drainTimeout, "send-drain-timeout", sender.DefaultDrainTimeout, "how long in-flight attempts may finish on a rebalance or at shutdown")
	cli.Duration(fs, &f.recallTimeout, "send-recall-timeout", sender.DefaultRecallTimeout, "how long the sender may read back the answers of partitions it is assigned before it handles their commands (it holds the rebalance; keep it well under the group's rebalance timeout)")
	cli.Duration(fs, &f.minBudget, "send-min-budget", sender.DefaultMinBudget, "a provider call is not started with less than this left before the command's cut-off (answered not_attempted instead of likely cut off with an unknown outcome); -1ns for none")
	cli.Int(fs, &f.answeredMemory, "send-answered-memory", sender.DefaultAnsweredMemory, "answered commands the sender remembers and never calls a provider for again (a command consumed again after a lost commit or a replay); -1 for none")
	cli.Duration(fs, &f.commitInterval, "send-commit-interval", sender.DefaultCommitInterval, "how often the sender commits completed offsets")
	cli.Bool(fs, &f.staleCheck, "send-stale-check", true, "skip commands whose attempt the dispatcher table has moved past (keeps a view of the table)")
	f.webhooks.register(fs)
}

// limitConfig is the adaptive limit's configuration: its floor follows a
// ceiling (--send-concurrency) set below it, unless --send-concurrency-min
// was set too (then a floor above the ceiling is the sender's error), and
// its start is moved between the two unless --send-concurrency-start was
// set.
func (f *senderOptions) limitConfig(env *runEnv) sender.LimitConfig {
	l := f.limit
	if !env.Given("send-concurrency-min") && l.Min > f.concurrency {
		l.Min = f.concurrency
	}
	if !env.Given("send-concurrency-start") {
		l.Start = min(max(l.Start, l.Min), f.concurrency)
	}
	return l
}

// channelsWithout returns the channels set has no provider for.
func channelsWithout(set provider.Set) []contract.Channel {
	var out []contract.Channel
	for _, ch := range contract.Channels() {
		if _, ok := set[ch]; !ok {
			out = append(out, ch)
		}
	}
	return out
}

// providerChannels returns the channels with a provider, when this
// process knows them: --provider was given (specs), or the sender runs
// here (with the default providers). nil when it does not know (an API
// alone, with no --provider): then the API checks no channel.
func providerChannels(specs []string, runsSender bool) ([]contract.Channel, error) {
	if len(specs) == 0 {
		if !runsSender {
			return nil, nil
		}
		specs = defaultProviders()
	}
	out := []contract.Channel{}
	for _, s := range specs {
		ch, _, err := provider.ParseSpec(s)
		if err != nil {
			return nil, fmt.Errorf("--provider: %w", err)
		}
		if !slices.Contains(out, ch) {
			out = append(out, ch)
		}
	}
	return out, nil
}

// parseRates reads the --rate values: a channel's (CHANNEL=N/s) and a
// provider's of a failover chain (CHANNEL/PROVIDER=N/s).
func parseRates(specs []string) (map[contract.Channel]float64, map[sender.RateTarget]float64, error) {
	rates, providerRates := map[contract.Channel]float64{}, map[sender.RateTarget]float64{}
	for _, s := range specs {
		t, r, err := sender.ParseRateTarget(s)
		if err != nil {
			return nil, nil, fmt.Errorf("--rate: %w", err)
		}
		if t.Provider == "" {
			rates[t.Channel] = r
		} else {
			providerRates[t] = r
		}
	}
	return rates, providerRates, nil
}

// startSender opens the providers and runs the sender.
func startSender(env *runEnv, f *senderOptions, shared sharedFlags) (stageLoop, error) {
	log := env.Log.With("stage", "sender")
	set, err := f.openProviders(env, log, shared)
	if err != nil {
		return nil, err
	}
	rates, providerRates, err := parseRates(f.rates.Vals)
	if err != nil {
		return nil, err
	}
	observer := metrics.NewSender(env.Registry)
	cfg := sender.Config{
		Topology:         env.Topology,
		Providers:        set,
		Rates:            rates,
		ProviderRates:    providerRates,
		Concurrency:      f.concurrency,
		Limit:            f.limitConfig(env),
		DrainTimeout:     f.drainTimeout,
		RecallTimeout:    f.recallTimeout,
		CommitInterval:   f.commitInterval,
		AnsweredMemory:   f.answeredMemory,
		MinBudget:        f.minBudget,
		Observer:         observer,
		ProviderObserver: observer,
		Log:              log,
	}
	if f.staleCheck {
		view, err := env.TableView()
		if err != nil {
			return nil, err
		}
		cfg.State = tableview.ProgressReader{View: view}
	}
	sd, err := sender.New(cfg)
	if err != nil {
		return nil, err
	}
	env.AddReady("sender", sd.Ready)
	return func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return sd.Run(gctx) })
		return g.Wait()
	}, nil
}

// openProviders opens the providers of --provider (or the default mocks),
// with their webhook settings and failover chains, closed when herald
// stops; it warns of unsigned webhooks and of channels with no provider.
func (f *senderOptions) openProviders(env *runEnv, log *slog.Logger, shared sharedFlags) (provider.Set, error) {
	specs := shared.providers.Vals
	if len(specs) == 0 {
		specs = defaultProviders()
		log.Warn("no --provider given: using simulated providers", "providers", specs)
	}
	wh, err := f.webhooks.resolve()
	if err != nil {
		return nil, err
	}
	if ch := unsignedWebhooks(specs, wh); len(ch) > 0 {
		log.Warn("webhook bodies are not signed: receivers cannot tell Herald from anyone else (set --webhook-secret)", "channels", ch)
	}
	if f.chain.CoolDown <= 0 || f.chain.FailureThreshold == 0 || f.chain.UnknownMemory == 0 {
		return nil, fmt.Errorf("--provider-circuit-cooldown must be positive, --provider-circuit-failures and --provider-unknown-memory non-zero (-1 for none)")
	}
	chain := f.chain
	chain.Observer, chain.Log, chain.MinBudget = metrics.NewCircuits(env.Registry), log, f.minBudget
	set, err := provider.OpenSet(specs, provider.Options{Concurrency: f.concurrency, Timeout: shared.providerTimeout, Log: log, Webhooks: wh, Chain: chain})
	if err != nil {
		return nil, err
	}
	env.OnClose(func() { set.Close() })
	if missing := channelsWithout(set); len(missing) > 0 {
		log.Warn("no provider for these channels: a request naming one fails over to its next channel, or ends failed (\"no provider configured for channel\"); the API in a process that knows the providers refuses it (422 no_provider)",
			"channels", missing)
	}
	for _, s := range specs {
		log.Info("provider", "spec", provider.Redact(s))
	}
	return set, nil
}

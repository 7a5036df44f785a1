package sender

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/provider"
)

// ProviderObserver is told what the sender does with each provider of a
// failover chain (a channel given more than one provider), for metrics.
// Methods must be cheap and safe for concurrent use.
type ProviderObserver interface {
	// ProviderAdded is called once for each provider of a chain when the
	// sender is built, before any other call for it.
	ProviderAdded(ch contract.Channel, provider string)
	// ProviderLimit is called with a provider's concurrency limit when it
	// changes (and once at the start).
	ProviderLimit(ch contract.Channel, provider string, limit int)
	// ProviderCalls moves the count of a provider's calls holding a slot
	// under its limit by delta.
	ProviderCalls(ch contract.Channel, provider string, delta int)
	// ProviderRateShare is called with a provider's rate in this process
	// (0: unlimited) whenever it changes (and once at the start).
	ProviderRateShare(ch contract.Channel, provider string, perSecond float64)
	// ProviderPaused is called when a provider's 429 pauses it.
	ProviderPaused(ch contract.Channel, provider string, d time.Duration)
}

type nopProviderObserver struct{}

func (nopProviderObserver) ProviderAdded(contract.Channel, string)                 {}
func (nopProviderObserver) ProviderLimit(contract.Channel, string, int)            {}
func (nopProviderObserver) ProviderCalls(contract.Channel, string, int)            {}
func (nopProviderObserver) ProviderRateShare(contract.Channel, string, float64)    {}
func (nopProviderObserver) ProviderPaused(contract.Channel, string, time.Duration) {}

// providerPacer paces one provider of a failover chain on its own, since
// each vendor has its own limits: its 429 pause and this process's share
// of its rate (a gate, --rate CHANNEL/PROVIDER=N/s), and its adaptive
// concurrency limit (a channelLimit), so that a slow vendor does not cap
// a fast one and a throttled vendor does not pause the others. The chain
// chooses its providers by them (provider/pace.go). A provider's answer
// moves its own limit, and its 429 pauses it alone for the Retry-After
// (DefaultThrottlePause if none).
type providerPacer struct {
	ch   contract.Channel
	name string
	g    *gate
	lim  *channelLimit
	obs  ProviderObserver
	log  *slog.Logger
}

var _ provider.Pacer = (*providerPacer)(nil)

func newProviderPacer(ch contract.Channel, name string, perSecond float64, cfg LimitConfig, now func() time.Time, obs ProviderObserver, log *slog.Logger) *providerPacer {
	obs.ProviderAdded(ch, name)
	p := &providerPacer{ch: ch, name: name, g: newGate(perSecond, now), obs: obs, log: log}
	p.lim = newLimit(cfg, now, func(n int) { obs.ProviderLimit(ch, name, n) }, func(d int) { obs.ProviderCalls(ch, name, d) })
	obs.ProviderRateShare(ch, name, perSecond)
	return p
}

// TryTake takes a slot under the provider's limit and a pass of its gate
// if both are free now.
func (p *providerPacer) TryTake() (provider.Permit, bool) {
	sl, ok := p.lim.tryAcquire()
	if !ok {
		return nil, false
	}
	if !p.g.tryPass() {
		p.lim.release(sl, callOutcome{})
		return nil, false
	}
	return &pacerPermit{p: p, sl: sl}, true
}

// Take waits for a slot, then for the gate holding it, as session.await
// does for a channel.
func (p *providerPacer) Take(ctx context.Context) (provider.Permit, error) {
	sl, err := p.lim.acquire(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.g.wait(ctx); err != nil {
		p.lim.release(sl, callOutcome{})
		return nil, fmt.Errorf("provider %s of %s: %w", p.name, p.ch, err)
	}
	return &pacerPermit{p: p, sl: sl}, nil
}

// Delay is the gate's delay, or about one base latency when every slot
// is taken (the time for one call to end).
func (p *providerPacer) Delay() time.Duration {
	d := p.g.delay()
	if p.lim.full() {
		d = max(d, p.lim.base())
	}
	return d
}

type pacerPermit struct {
	p  *providerPacer
	sl slot
}

// Done gives the slot back with the answer, which moves the provider's
// limit; a throttled answer pauses the provider.
func (pm *pacerPermit) Done(r *provider.Result, latency time.Duration) {
	p := pm.p
	if r == nil {
		p.lim.release(pm.sl, callOutcome{})
		return
	}
	o := outcomeOf(r.Outcome, r.Code, latency)
	p.lim.release(pm.sl, o)
	if !o.throttled {
		return
	}
	d := r.RetryAfter
	if d <= 0 {
		d = DefaultThrottlePause
	}
	if p.g.pause(d) {
		p.obs.ProviderPaused(p.ch, p.name, d)
		p.log.Info("provider throttled; pausing it (the chain's other providers take its calls meanwhile)",
			"channel", p.ch, "provider", p.name, "for", d)
	}
}

// pacers builds the pacers of every failover chain in providers and
// hands each chain its own. A rate naming a provider must name one of its
// channel's chain.
func pacers(providers provider.Set, rates map[RateTarget]float64, cfg LimitConfig, now func() time.Time, obs ProviderObserver, log *slog.Logger) (map[contract.Channel]*provider.Chain, []*providerPacer, error) {
	chains := map[contract.Channel]*provider.Chain{}
	for ch, p := range providers {
		if c, ok := p.(*provider.Chain); ok {
			chains[ch] = c
		}
	}
	for t := range rates {
		if t.Provider == "" {
			return nil, nil, fmt.Errorf("sender: provider rate %s names no provider (a channel's rate goes in Config.Rates)", t)
		}
		c := chains[t.Channel]
		if c == nil {
			return nil, nil, fmt.Errorf("sender: rate %s: channel %s has no failover chain (a rate per provider is for a channel given more than one --provider; use --rate %s=N/s)", t, t.Channel, t.Channel)
		}
		if names := c.Providers(); !slices.Contains(names, t.Provider) {
			return nil, nil, fmt.Errorf("sender: rate %s: channel %s has no provider named %q (its providers: %v)", t, t.Channel, t.Provider, names)
		}
	}
	var all []*providerPacer
	for _, ch := range contract.Channels() {
		c := chains[ch]
		if c == nil {
			continue
		}
		byName := map[string]*providerPacer{}
		for _, name := range c.Providers() {
			p := newProviderPacer(ch, name, rates[RateTarget{ch, name}], cfg, now, obs, log)
			byName[name] = p
			all = append(all, p)
		}
		c.Pace(func(name string) provider.Pacer { return byName[name] })
	}
	return chains, all, nil
}

package provider

import (
	"context"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// Pacing the providers of a chain. Each provider of a failover chain is
// paced on its own, by a Pacer the sender gives it (Chain.Pace; the
// sender's per-provider rate, 429 pause and adaptive concurrency limit,
// internal/sender/pacer.go), since each vendor has its own limits. The
// rules, enforced in Chain.Reserve and Chain.SendReserved:
//
//   - A call goes to the first provider, in chain order, whose circuit
//     lets it through and whose pacer has a place at once (its 429 pause
//     is over, a rate token and a slot under its limit are free). A
//     provider that is paused, past its rate or at its limit is skipped
//     for that call when another provider can take it.
//   - When none can take it at once, the call waits for the provider
//     whose pacer expects a place soonest, until ctx ends (the sender
//     bounds the wait by the command's cut-off less the min budget, so no
//     provider is called after it): then nothing is called.
//   - An id pinned to a provider (an unknown outcome there) waits for that
//     provider's place only: it never moves to another provider.
//   - After a definite failure (chain.go), the next provider is chosen the
//     same way among those not yet called for the attempt, its wait
//     bounded by the cut-off less the min budget.
//
// A chain without pacers (Pace not called) calls its providers at once.

// Pacer paces the calls to one provider of a chain. Its methods are safe
// for concurrent use.
type Pacer interface {
	// TryTake takes a place for one call if the provider can take one
	// now, without waiting.
	TryTake() (Permit, bool)
	// Take waits for a place until ctx ends.
	Take(ctx context.Context) (Permit, error)
	// Delay estimates how long Take would wait now.
	Delay() time.Duration
}

// Permit is a place taken for one call to a provider.
type Permit interface {
	// Done gives the place back, with the provider's answer and how long
	// it took; r is nil when no call was made or the call was cut (a
	// shutdown), which tells nothing of the provider.
	Done(r *Result, latency time.Duration)
}

// free is the permit of an unpaced provider.
type free struct{}

func (free) Done(*Result, time.Duration) {}

// Pace gives each provider of the chain, by name, its pacer (nil: none).
// It must be called before the chain's first Send.
func (c *Chain) Pace(pacer func(provider string) Pacer) {
	for _, l := range c.links {
		l.pacer = pacer(l.name)
	}
}

// Providers returns the names of the chain's providers, in order.
func (c *Chain) Providers() []string {
	out := make([]string, len(c.links))
	for i, l := range c.links {
		out[i] = l.name
	}
	return out
}

func (l *link) tryTake() (Permit, bool) {
	if l.pacer == nil {
		return free{}, true
	}
	return l.pacer.TryTake()
}

func (l *link) take(ctx context.Context) (Permit, error) {
	if l.pacer == nil {
		return free{}, ctx.Err()
	}
	return l.pacer.Take(ctx)
}

func (l *link) delay() time.Duration {
	if l.pacer == nil {
		return 0
	}
	return l.pacer.Delay()
}

// Reservation is a place taken for one attempt at one provider of a chain
// (Chain.Reserve): the attempt's call is made with SendReserved, or the
// place given back with Release.
type Reservation struct {
	c      *Chain
	link   int // -1: no provider's circuit let the attempt through
	permit Permit
	probe  bool // the call is its circuit's half-open probe
	pinned bool
}

// Provider names the provider the reservation is for ("" if none).
func (r *Reservation) Provider() string {
	if r == nil || r.link < 0 {
		return ""
	}
	return r.c.links[r.link].name
}

// Release gives back a reservation whose call was not made; it does
// nothing once SendReserved has used it.
func (r *Reservation) Release() {
	if r == nil || r.permit == nil {
		return
	}
	r.permit.Done(nil, 0)
	r.permit = nil
	if r.probe {
		r.c.links[r.link].br.record(healthUnknown, true)
	}
}

// Reserve takes a place for cmd's attempt at a provider of the chain
// (the rules above), waiting until ctx ends at most. The error is ctx's:
// no provider had a place in time, and nothing was taken.
func (c *Chain) Reserve(ctx context.Context, cmd *contract.SendCommand) (*Reservation, error) {
	if i, ok := c.pinned.get(cmd.ID); ok {
		// A provider that may still deliver an earlier attempt keeps the
		// id: wait for it, whatever the others.
		l := c.links[i]
		p, err := l.take(ctx)
		if err != nil {
			return nil, err
		}
		_, probe := l.br.allow()
		return &Reservation{c: c, link: i, permit: p, probe: probe, pinned: true}, nil
	}
	return c.reserve(ctx, nil)
}

// reserve takes a place at the first provider not in called that can
// take the call at once, or waits for the one expected soonest.
func (c *Chain) reserve(ctx context.Context, called []bool) (*Reservation, error) {
	for {
		best, least := -1, time.Duration(0)
		for i, l := range c.links {
			if called != nil && called[i] {
				continue
			}
			ok, probe := l.br.allow()
			if !ok {
				continue
			}
			if p, ok := l.tryTake(); ok {
				return &Reservation{c: c, link: i, permit: p, probe: probe}, nil
			}
			if probe {
				l.br.record(healthUnknown, true) // the probe goes when a place does
			}
			if d := l.delay(); best < 0 || d < least {
				best, least = i, d
			}
		}
		if best < 0 {
			return &Reservation{c: c, link: -1}, nil // every circuit is open
		}
		l := c.links[best]
		p, err := l.take(ctx)
		if err != nil {
			return nil, err
		}
		if ok, probe := l.br.allow(); ok {
			return &Reservation{c: c, link: best, permit: p, probe: probe}, nil
		}
		p.Done(nil, 0) // its circuit opened meanwhile: choose again
	}
}

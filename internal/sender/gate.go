package sender

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/herald-dispatch/herald/contract"
)

// gate paces the attempts of one channel in this process: a token bucket
// for this process's share of the configured rate (none: unlimited), and
// a pause that a provider's 429 sets for its Retry-After, during which no
// attempt on the channel starts. Waiting attempts hold their in-flight
// slot.
type gate struct {
	perSecond   float64 // the rate of the whole sender group
	limiter     *rate.Limiter
	pausedUntil atomic.Int64 // Unix nanoseconds
	now         func() time.Time
}

func newGate(perSecond float64, now func() time.Time) *gate {
	g := &gate{perSecond: perSecond, now: now}
	if perSecond > 0 {
		g.limiter = rate.NewLimiter(rate.Limit(perSecond), burstFor(perSecond))
	}
	return g
}

// share sets this process's share of the rate: the rate divided by the
// members of the sender group (at least 1). It returns the share (0:
// unlimited).
func (g *gate) share(members int) float64 {
	if g.limiter == nil {
		return 0
	}
	r := g.perSecond / float64(max(members, 1))
	g.limiter.SetBurst(burstFor(r))
	g.limiter.SetLimit(rate.Limit(r))
	return r
}

// burstFor is the bucket size for a rate: 10 ms worth of tokens, at least
// one, so that any one second sees at most about 1.01 times the rate.
func burstFor(perSecond float64) int {
	return max(1, int(math.Ceil(perSecond/100)))
}

// wait blocks until an attempt may start or ctx ends.
func (g *gate) wait(ctx context.Context) error {
	for {
		until := g.pausedUntil.Load()
		d := time.Duration(until - g.now().UnixNano())
		if until == 0 || d <= 0 {
			break
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if g.limiter == nil {
		return ctx.Err()
	}
	return g.limiter.Wait(ctx)
}

// pause stops new attempts for d from now, unless a longer pause is on.
// It reports whether the pause was extended.
func (g *gate) pause(d time.Duration) bool {
	until := g.now().Add(d).UnixNano()
	for {
		cur := g.pausedUntil.Load()
		if cur >= until {
			return false
		}
		if g.pausedUntil.CompareAndSwap(cur, until) {
			return true
		}
	}
}

// tryPass lets an attempt start now, without waiting: the gate is not
// paused and a token is free (it is taken).
func (g *gate) tryPass() bool {
	if until := g.pausedUntil.Load(); until > g.now().UnixNano() {
		return false
	}
	return g.limiter == nil || g.limiter.Allow()
}

// delay is about how long until an attempt could pass: what is left of
// the pause, or the time to the next token.
func (g *gate) delay() time.Duration {
	d := time.Duration(g.pausedUntil.Load() - g.now().UnixNano())
	if g.limiter != nil {
		if t := g.limiter.Tokens(); t < 1 {
			d = max(d, time.Duration((1-t)/float64(g.limiter.Limit())*float64(time.Second)))
		}
	}
	return max(d, 0)
}

// RateTarget is what a --rate value limits: a channel, or one provider
// of a channel's failover chain (Provider, its name).
type RateTarget struct {
	Channel  contract.Channel
	Provider string
}

func (t RateTarget) String() string {
	if t.Provider == "" {
		return string(t.Channel)
	}
	return string(t.Channel) + "/" + t.Provider
}

// ParseRate reads a --rate value for a channel, CHANNEL=N/s (also N/m,
// N/h, or a bare N meaning per second). It returns the rate per second.
func ParseRate(spec string) (contract.Channel, float64, error) {
	t, n, err := ParseRateTarget(spec)
	if err == nil && t.Provider != "" {
		return "", 0, fmt.Errorf("rate %q: want CHANNEL=N/s", spec)
	}
	return t.Channel, n, err
}

// ParseRateTarget reads a --rate value, CHANNEL=N/s for a channel or
// CHANNEL/PROVIDER=N/s for one provider of its failover chain, by the
// provider's name (a template's name, or its URL's host). It returns the
// rate per second.
func ParseRateTarget(spec string) (RateTarget, float64, error) {
	key, r, ok := strings.Cut(spec, "=")
	ch, name, named := strings.Cut(key, "/")
	t := RateTarget{Channel: contract.Channel(strings.TrimSpace(ch)), Provider: strings.TrimSpace(name)}
	if !ok || !t.Channel.Valid() || (named && t.Provider == "") {
		return RateTarget{}, 0, fmt.Errorf("rate %q: want CHANNEL=N/s or CHANNEL/PROVIDER=N/s with CHANNEL one of %v", spec, contract.Channels())
	}
	num, unit, _ := strings.Cut(strings.TrimSpace(r), "/")
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return RateTarget{}, 0, fmt.Errorf("rate %q: want a positive number per second, such as %s=100/s", spec, t)
	}
	switch strings.TrimSpace(unit) {
	case "", "s":
	case "m":
		n /= 60
	case "h":
		n /= 3600
	default:
		return RateTarget{}, 0, fmt.Errorf("rate %q: unit %q: want s, m or h", spec, unit)
	}
	return t, n, nil
}

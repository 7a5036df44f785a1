package sender

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// Defaults of LimitConfig.
const (
	// DefaultLimitMin is the floor of a channel's concurrency limit: low
	// enough that a provider which loses calls (timeouts at the accept
	// queue of a provider slow to take connections) is held to a
	// concurrency it can take.
	DefaultLimitMin = 10
	// DefaultLimitStart is where a channel's concurrency limit starts,
	// within [Min, Max]: the base latency is learnt before the provider
	// is loaded, and the limit doubles from here each window while the
	// provider keeps up.
	DefaultLimitStart = 50
	// DefaultLatencyTolerance is how many times its base latency a
	// provider may take before its limit stops growing and shrinks.
	DefaultLatencyTolerance = 1.5
	// DefaultLatencyFloor is the least base latency: below it, a
	// provider's latency is noise, not queueing. On a busy machine a
	// fast provider's answers wait tens of milliseconds for the CPU
	// whatever the concurrency (the load test's zero-latency provider);
	// reading that as queueing would hold the limit at its floor.
	DefaultLatencyFloor = 100 * time.Millisecond
	// DefaultLatencyMemory is how long a provider's base latency is
	// remembered.
	DefaultLatencyMemory = 30 * time.Second
)

// throttleBackoff is what a window with a 429 multiplies the limit by,
// and maxShrink the most one window of high latency takes off it.
// lossBackoff is what a window in which at least lossShare of the calls,
// and at least lossMin calls, were lost (no answer: the call timed out or
// its connection broke) multiplies it by, as TCP halves its window on a
// lost packet.
const (
	throttleBackoff = 0.9
	maxShrink       = 0.5
	lossBackoff     = 0.5
	lossShare       = 0.1
	lossMin         = 2
)

// LimitConfig tunes the adaptive concurrency limit of each channel
// (adaptiveLimit).
type LimitConfig struct {
	// Min is the limit's floor (0: DefaultLimitMin, or Max if lower);
	// Max its ceiling (Config.Concurrency). Min = Max fixes the limit.
	Min, Max int
	// Start is where the limit starts (0: DefaultLimitStart, moved into
	// [Min, Max]); one given must be within [Min, Max].
	Start int
	// Tolerance is the latency, as a multiple of the base latency, at
	// which the limit stops growing; above it the limit shrinks (0:
	// DefaultLatencyTolerance; else more than 1).
	Tolerance float64
	// Floor is the least base latency (0: DefaultLatencyFloor).
	Floor time.Duration
	// Memory is how long a window's latency can serve as the base (0:
	// DefaultLatencyMemory).
	Memory time.Duration
}

func (c LimitConfig) withDefaults() LimitConfig {
	if c.Min == 0 {
		c.Min = min(DefaultLimitMin, c.Max)
	}
	if c.Start == 0 {
		c.Start = min(max(DefaultLimitStart, c.Min), c.Max)
	}
	if c.Tolerance == 0 {
		c.Tolerance = DefaultLatencyTolerance
	}
	if c.Floor == 0 {
		c.Floor = DefaultLatencyFloor
	}
	if c.Memory == 0 {
		c.Memory = DefaultLatencyMemory
	}
	return c
}

func (c LimitConfig) validate() error {
	switch {
	case c.Min < 1:
		return fmt.Errorf("sender: the concurrency floor must be positive, got %d", c.Min)
	case c.Min > c.Max:
		return fmt.Errorf("sender: the concurrency floor (%d) is above the ceiling, the concurrency (%d)", c.Min, c.Max)
	case c.Start < c.Min || c.Start > c.Max:
		return fmt.Errorf("sender: the concurrency limit's start (%d) is outside [%d, %d], its floor and ceiling", c.Start, c.Min, c.Max)
	case !(c.Tolerance > 1):
		return fmt.Errorf("sender: the latency tolerance must be more than 1, got %v", c.Tolerance)
	case c.Floor < 0:
		return fmt.Errorf("sender: the latency floor must not be negative, got %s", c.Floor)
	case c.Memory <= 0:
		return fmt.Errorf("sender: the latency memory must be positive, got %s", c.Memory)
	}
	return nil
}

// adaptiveLimit is the concurrency limit of one channel, adapted to the
// latency its provider shows, in the manner of TCP Vegas and Netflix's
// concurrency-limits (gradient): while the provider answers about as fast
// as it does unloaded, more calls at once cost nothing and the limit
// grows; once its answers slow down, calls queue at the provider and the
// limit shrinks.
//
// Answers are taken in windows of one base latency (at least Floor):
//   - the window's latency is the median of its answers, so a few
//     outliers (the odd timeout) do not move the limit, and a majority of
//     slow answers (a provider timing out) does;
//   - the base latency is the least window latency of the last Memory, at
//     least Floor: the provider's unloaded latency, forgotten after Memory
//     so that a provider that is slower for good is not held to its old
//     speed;
//   - a window in which a tenth of the calls or more were lost halves
//     the limit (TCP's loss response), whatever the latency of the other
//     answers: a provider that gives no answer to that many calls is past
//     what it can take, however fast it answers the rest (a full accept
//     queue stalls only the connections behind it). Fewer lost calls are
//     the provider's own slow answers to a few requests, not queueing
//     (the load test sends 0.2% of its notifications to a provider that
//     answers after the timeout; halving on each of those held a 1 s
//     provider's limit at a few dozen). One lost call never halves it,
//     however few calls its window holds: a 100 ms window of a fast
//     provider holds a handful when the limit is low, and one slow answer
//     in it was a tenth (the zero-latency load test's limit sank to its
//     floor of 10 that way). Only a call started after the
//     last halving counts, so that one stall, whose timeouts come over
//     several windows, halves the limit once (TCP's one reduction per
//     round trip). Until Memory
//     has passed without a loss, the limit then grows by one a window at
//     most above the value it was halved to (TCP's congestion avoidance),
//     so that it does not double straight back into the stall;
//   - else, with r = window latency / base: a window with a 429 multiplies
//     the limit by 0.9; r above Tolerance multiplies it by Tolerance/r (at
//     least 0.5); r at or below Tolerance adds limit × (Tolerance-r) /
//     (Tolerance-1), at most doubling it (r near 1, TCP's slow start) and
//     at least 1, unless fewer than half the limit were in flight during
//     the window (the limit was not what held the calls back).
//
// The limit stays within [Min, Max] and starts at Start. It is not safe for
// concurrent use (channelLimit serialises it) and reads time only from
// now, so tests drive it with a fake clock.
//
// It is written here rather than taken from the Go port of Netflix's
// library (github.com/platinummonkey/go-concurrency-limits): that port
// moves its limit on every answer and probes with a global random
// source, so it cannot be tested deterministically, and the part Herald
// needs is the sixty lines below.
type adaptiveLimit struct {
	cfg   LimitConfig
	now   func() time.Time
	limit float64

	// The current window: its start, its answers' latencies, whether one
	// was a 429, how many were lost calls that started after the last
	// loss, and the most calls in flight when one of them started.
	start     time.Time
	window    []time.Duration
	throttled bool
	lost      int
	peak      int

	// lastLoss is when a loss last halved the limit, and threshold the
	// limit it was halved to (0: no loss in the last Memory).
	lastLoss  time.Time
	threshold float64

	// bases are the window latencies of the last Memory that may still
	// become the base: increasing in latency and time, so bases[0] is the
	// least (a monotonic queue).
	bases []timedLatency
}

type timedLatency struct {
	at      time.Time
	latency time.Duration
}

func newAdaptiveLimit(cfg LimitConfig, now func() time.Time) *adaptiveLimit {
	return &adaptiveLimit{cfg: cfg, now: now, limit: float64(cmp.Or(cfg.Start, cfg.Min))}
}

// Limit is the number of calls that may be in flight.
func (a *adaptiveLimit) Limit() int { return int(a.limit) }

// Base is the provider's base latency (0 before the first window ends).
func (a *adaptiveLimit) Base() time.Duration {
	if len(a.bases) == 0 {
		return 0
	}
	return max(a.bases[0].latency, a.cfg.Floor)
}

// Sample records one provider call: its latency, whether it was a 429,
// whether it was lost (no answer), and the calls in flight when it
// started (itself included). It reports whether the limit changed.
func (a *adaptiveLimit) Sample(latency time.Duration, throttled, lost bool, inFlight int) bool {
	now := a.now()
	if len(a.window) == 0 {
		a.start = now
	}
	a.window = append(a.window, latency)
	a.throttled = a.throttled || throttled
	if lost && now.Add(-latency).After(a.lastLoss) {
		a.lost++
	}
	a.peak = max(a.peak, inFlight)
	if now.Sub(a.start) < max(a.Base(), a.cfg.Floor) {
		return false
	}
	return a.update(now)
}

// update ends the window at now and moves the limit.
func (a *adaptiveLimit) update(now time.Time) bool {
	slices.Sort(a.window)
	latency := a.window[len(a.window)/2]
	for len(a.bases) > 0 && a.bases[len(a.bases)-1].latency >= latency {
		a.bases = a.bases[:len(a.bases)-1]
	}
	a.bases = append(a.bases, timedLatency{now, latency})
	for now.Sub(a.bases[0].at) > a.cfg.Memory {
		a.bases = a.bases[1:]
	}
	r := float64(latency) / float64(max(a.Base(), 1))
	old, tol := a.Limit(), a.cfg.Tolerance
	if a.threshold > 0 && now.Sub(a.lastLoss) > a.cfg.Memory {
		a.threshold = 0
	}
	switch {
	case a.lost >= lossMin && float64(a.lost) >= lossShare*float64(len(a.window)):
		a.limit = max(a.limit*lossBackoff, float64(a.cfg.Min))
		a.lastLoss, a.threshold = now, a.limit
	case a.throttled:
		a.limit *= throttleBackoff
	case r > tol:
		a.limit *= max(maxShrink, tol/r)
	case float64(a.peak) < a.limit/2:
		// Too few calls to tell whether more would queue.
	case a.threshold > 0 && a.limit >= a.threshold:
		a.limit++ // after a loss: one more call a window
	default:
		a.limit += max(1, a.limit*min(1, (tol-r)/(tol-1)))
	}
	a.limit = min(max(a.limit, float64(a.cfg.Min)), float64(a.cfg.Max))
	a.window, a.throttled, a.lost, a.peak = a.window[:0], false, 0, 0
	return a.Limit() != old
}

// channelLimit holds a channel's provider calls to its adaptiveLimit:
// a call takes a slot before it waits for the channel's gate and gives it
// back with its answer. Calls waiting for a slot get one first come,
// first served, so that commands start about in the order they were
// polled, as the partition trackers prefer.
//
// The same type holds each provider of a failover chain to its own limit
// (providerPacer), so that a slow vendor does not cap a fast one.
type channelLimit struct {
	// onLimit is told the limit when it changes (and at the start),
	// onInFlight every move of the calls holding a slot.
	onLimit    func(limit int)
	onInFlight func(delta int)

	mu       sync.Mutex
	limit    *adaptiveLimit
	inFlight int
	waiting  list.List // of *slotWaiter, oldest first
}

// slot is one call's place under the limit.
type slot struct {
	// inFlight is the calls in flight when it was given, itself included.
	inFlight int
}

type slotWaiter struct {
	ready   chan struct{}
	granted slot
	ok      bool
}

var errNoSlot = errors.New("sender: no slot")

func newChannelLimit(ch contract.Channel, cfg LimitConfig, now func() time.Time, obs Observer) *channelLimit {
	return newLimit(cfg, now, func(n int) { obs.ConcurrencyLimit(ch, n) }, func(d int) { obs.ProviderInFlight(ch, d) })
}

// newLimit is a limit that tells onLimit and onInFlight its moves.
func newLimit(cfg LimitConfig, now func() time.Time, onLimit, onInFlight func(int)) *channelLimit {
	c := &channelLimit{onLimit: onLimit, onInFlight: onInFlight, limit: newAdaptiveLimit(cfg, now)}
	onLimit(c.limit.Limit())
	return c
}

// tryAcquire takes a slot if one is free now and nobody waits for one.
func (c *channelLimit) tryAcquire() (slot, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inFlight < c.limit.Limit() && c.waiting.Len() == 0 {
		return c.give(), true
	}
	return slot{}, false
}

// acquire waits for a slot until ctx ends.
func (c *channelLimit) acquire(ctx context.Context) (slot, error) {
	c.mu.Lock()
	if c.inFlight < c.limit.Limit() && c.waiting.Len() == 0 {
		s := c.give()
		c.mu.Unlock()
		return s, nil
	}
	w := &slotWaiter{ready: make(chan struct{})}
	e := c.waiting.PushBack(w)
	c.mu.Unlock()
	select {
	case <-w.ready:
		return w.granted, nil
	case <-ctx.Done():
	}
	c.mu.Lock()
	if w.ok { // given as ctx ended: hand it on
		c.mu.Unlock()
		c.release(w.granted, callOutcome{})
	} else {
		c.waiting.Remove(e)
		c.mu.Unlock()
	}
	return slot{}, fmt.Errorf("%w: %w", errNoSlot, ctx.Err())
}

// give takes a slot; c.mu is held.
func (c *channelLimit) give() slot {
	c.inFlight++
	c.onInFlight(1)
	return slot{inFlight: c.inFlight}
}

// release gives s back with the call's outcome: a call made moves the
// limit (a call the provider answered, or one lost without an answer).
func (c *channelLimit) release(s slot, o callOutcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight--
	c.onInFlight(-1)
	if o.made && c.limit.Sample(o.latency, o.throttled, o.lost, s.inFlight) {
		c.onLimit(c.limit.Limit())
	}
	for c.inFlight < c.limit.Limit() && c.waiting.Len() > 0 {
		w := c.waiting.Remove(c.waiting.Front()).(*slotWaiter)
		w.granted, w.ok = c.give(), true
		close(w.ready)
	}
}

// callOutcome is what a provider call tells a limit: whether it was made
// (the request may have reached the provider), how long it took, and
// whether it was answered with a 429 or lost (no answer: timed out, or
// the connection broke after the request was sent). The zero value is a
// call not made, which does not move the limit.
type callOutcome struct {
	made, throttled, lost bool
	latency               time.Duration
}

// outcomeOf is what a provider call that ended in o (with the provider's
// code, 0 for none) after latency tells a limit. A call is lost when it
// got no answer: its outcome is unknown (sent, not answered), or it is a
// transient failure with no code from the provider (its connection could
// not be made or broke before the request was written: a connect that
// timed out at a full accept queue, a provider down).
func outcomeOf(o contract.Outcome, code int, latency time.Duration) callOutcome {
	return callOutcome{made: o != contract.OutcomeNotAttempted, throttled: o == contract.OutcomeThrottled,
		lost: o == contract.OutcomeUnknown || o == contract.OutcomeTransient && code == 0, latency: latency}
}

// full reports whether every slot is taken or waited for.
func (c *channelLimit) full() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inFlight >= c.limit.Limit() || c.waiting.Len() > 0
}

// base is the provider's base latency, at least the latency floor.
func (c *channelLimit) base() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.limit.Base(), c.limit.cfg.Floor)
}

// state returns the limit and the calls in flight.
func (c *channelLimit) state() (limit, inFlight int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limit.Limit(), c.inFlight
}

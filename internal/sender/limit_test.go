package sender

import (
	"cmp"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// phase is a run of windows in which a provider answers in latency: the
// calls in flight are inFlight(limit) (nil: the whole limit), and every
// sample of a window is a 429 if throttled. A window of outliers ends
// with that many answers of 20 s among its eleven; its answers
// after the first are that many calls lost without an answer after
// lostAfter (0: latency). A window holds calls answers (0: eleven).
type phase struct {
	calls     int
	windows   int
	latency   time.Duration
	inFlight  func(limit int) int
	throttle  bool
	outliers  int
	lost      int
	lostAfter time.Duration
}

// feedWindow gives a one window of answers: p.calls (eleven by default),
// evenly apart, the last of which ends it. It returns the limit after.
func feedWindow(t *testing.T, a *adaptiveLimit, clk *fakeClock, p phase) int {
	t.Helper()
	n := cmp.Or(p.calls, 11)
	w := max(a.Base(), a.cfg.Floor)
	step := (w + time.Duration(n-2)) / time.Duration(n-1) // rounded up: the last answer ends it
	inFlight := a.Limit()
	if p.inFlight != nil {
		inFlight = p.inFlight(a.Limit())
	}
	for i := range n {
		lat, lost := p.latency, i >= 1 && i <= p.lost
		if i >= n-p.outliers {
			lat = 20 * time.Second
		}
		if lost && p.lostAfter > 0 {
			lat = p.lostAfter
		}
		a.Sample(lat, p.throttle, lost, inFlight)
		if len(a.window) == 0 {
			if i != n-1 {
				t.Fatalf("the window ended after %d answers, want %d", i+1, n)
			}
			return a.Limit()
		}
		clk.advance(step)
	}
	t.Fatalf("the window did not end after %d answers", n)
	return 0
}

func TestAdaptiveLimit(t *testing.T) {
	t.Parallel()
	const ms = time.Millisecond
	base := LimitConfig{Min: 10, Max: 1000, Tolerance: 1.5, Floor: 10 * ms, Memory: 30 * time.Second}
	grown := phase{windows: 8, latency: 100 * ms} // 10 doubled 7 times passes 1000
	quarter := func(l int) int { return l / 4 }
	cases := []struct {
		name   string
		cfg    LimitConfig
		phases []phase
		// want checks the limit after each window of the last phase;
		// prev is the limit before it.
		want func(t *testing.T, prev int, limits []int)
	}{
		{
			name:   "at its base latency the limit doubles each window up to the ceiling",
			cfg:    base,
			phases: []phase{grown},
			want: func(t *testing.T, prev int, limits []int) {
				for i, l := range limits {
					if w := min(2*prev, 1000); l != w {
						t.Errorf("window %d: limit %d, want %d", i, l, w)
					}
					prev = l
				}
			},
		},
		{
			name:   "latency far above the base halves the limit each window down to the floor",
			cfg:    base,
			phases: []phase{grown, {windows: 8, latency: 400 * ms}},
			want: func(t *testing.T, prev int, limits []int) {
				for i, l := range limits {
					if w := max(prev/2, 10); l != w {
						t.Errorf("window %d: limit %d, want %d", i, l, w)
					}
					prev = l
				}
			},
		},
		{
			name:   "latency just above the tolerance shrinks the limit in proportion",
			cfg:    base,
			phases: []phase{grown, {windows: 1, latency: 180 * ms}}, // r 1.8: × 1.5/1.8
			want:   wantLimits(833),
		},
		{
			name:   "latency within the tolerance grows the limit less the nearer it is",
			cfg:    base,
			phases: []phase{{windows: 3, latency: 100 * ms}, {windows: 1, latency: 140 * ms}}, // 80, r 1.4: + 80 × 0.2
			want:   wantLimits(96),
		},
		{
			name:   "at the tolerance the limit creeps up by one",
			cfg:    base,
			phases: []phase{{windows: 3, latency: 100 * ms}, {windows: 2, latency: 150 * ms}},
			want:   wantLimits(81, 82),
		},
		{
			name:   "a 429 takes a tenth off even at the base latency",
			cfg:    base,
			phases: []phase{grown, {windows: 3, latency: 100 * ms, throttle: true}},
			want:   wantLimits(900, 810, 729),
		},
		{
			name:   "with fewer than half the limit in flight the limit does not grow",
			cfg:    base,
			phases: []phase{{windows: 3, latency: 100 * ms}, {windows: 3, latency: 100 * ms, inFlight: quarter}},
			want:   wantLimits(80, 80, 80),
		},
		{
			name:   "with fewer than half the limit in flight queueing still shrinks it",
			cfg:    base,
			phases: []phase{{windows: 3, latency: 100 * ms}, {windows: 1, latency: 300 * ms, inFlight: quarter}},
			want:   wantLimits(40),
		},
		{
			name:   "a few timeouts among the answers do not shrink it",
			cfg:    base,
			phases: []phase{{windows: 3, latency: 100 * ms}, {windows: 1, latency: 100 * ms, outliers: 5}},
			want:   wantLimits(160),
		},
		{
			name:   "lost calls halve the limit, however fast the other answers",
			cfg:    base,
			phases: []phase{grown, {windows: 1, latency: 100 * ms, lost: 2}}, // 2 of 11
			want:   wantLimits(500),
		},
		{
			// A provider's slow answer to the odd request is not queueing.
			name:   "fewer than a tenth of the calls lost do not halve it",
			cfg:    base,
			phases: []phase{{windows: 3, latency: 100 * ms}, {windows: 2, latency: 100 * ms, lost: 1}}, // 1 of 11
			want:   wantLimits(160, 320),
		},
		{
			// A fast provider's window holds few calls when the limit is
			// low: one slow answer among them is not a stall.
			name:   "one lost call does not halve it, however small its window",
			cfg:    base,
			phases: []phase{grown, {windows: 2, latency: 100 * ms, lost: 1, calls: 3}}, // 1 of 3
			want:   wantLimits(1000, 1000),
		},
		{
			name:   "two lost calls in a small window halve it",
			cfg:    base,
			phases: []phase{grown, {windows: 1, latency: 100 * ms, lost: 2, calls: 4}}, // 2 of 4
			want:   wantLimits(500),
		},
		{
			name:   "after a loss the limit grows by one a window, not by doubling",
			cfg:    base,
			phases: []phase{grown, {windows: 1, latency: 100 * ms, lost: 2}, {windows: 3, latency: 100 * ms}},
			want:   wantLimits(501, 502, 503),
		},
		{
			// A stall's calls time out over several windows: those that
			// started before the halving do not halve it again.
			name:   "the losses of one stall halve the limit once",
			cfg:    base,
			phases: []phase{grown, {windows: 3, latency: 100 * ms, lost: 3, lostAfter: 3 * time.Second}},
			want:   wantLimits(500, 501, 502),
		},
		{
			name:   "a call lost after the halving halves it again, down to the floor",
			cfg:    base,
			phases: []phase{grown, {windows: 8, latency: 100 * ms, lost: 2, lostAfter: 5 * ms}},
			want:   wantLimits(500, 250, 125, 62, 31, 15, 10, 10),
		},
		{
			name: "once Memory passes without a loss, the limit doubles again",
			cfg:  LimitConfig{Min: 10, Max: 1000, Tolerance: 1.5, Floor: 10 * ms, Memory: time.Second},
			// 100 ms windows: ten of them after the loss are the Memory.
			phases: []phase{grown, {windows: 1, latency: 100 * ms, lost: 2}, {windows: 12, latency: 100 * ms}},
			want:   wantLimits(501, 502, 503, 504, 505, 506, 507, 508, 509, 510, 1000, 1000),
		},
		{
			name:   "most answers timing out shrink it",
			cfg:    base,
			phases: []phase{{windows: 3, latency: 100 * ms}, {windows: 1, latency: 100 * ms, outliers: 6}},
			want:   wantLimits(40),
		},
		{
			name: "latencies below the floor are noise, not queueing",
			cfg:  LimitConfig{Min: 10, Max: 1000, Tolerance: 1.5, Floor: 50 * ms, Memory: 30 * time.Second},
			// 1 ms unloaded, then 40 ms: 40 times the least latency but under the floor.
			phases: []phase{{windows: 2, latency: ms}, {windows: 2, latency: 40 * ms}},
			want:   wantLimits(80, 160),
		},
		{
			name: "a provider slower for good gets its limit back once its old speed is forgotten",
			cfg:  LimitConfig{Min: 10, Max: 1000, Tolerance: 1.5, Floor: 10 * ms, Memory: time.Second},
			// 80 at 100 ms; then 400 ms halves it to the floor until the
			// 100 ms windows are a second old, and the limit doubles again.
			phases: []phase{{windows: 3, latency: 100 * ms}, {windows: 25, latency: 400 * ms}},
			want: func(t *testing.T, prev int, limits []int) {
				if limits[2] != 10 {
					t.Errorf("limit %v: not down to the floor after three slow windows", limits)
				}
				if last := limits[len(limits)-1]; last != 1000 {
					t.Errorf("limit %v: not back at the ceiling once 400 ms became the base", limits)
				}
			},
		},
		{
			name:   "min equal to max fixes the limit",
			cfg:    LimitConfig{Min: 64, Max: 64, Tolerance: 1.5, Floor: 10 * ms, Memory: 30 * time.Second},
			phases: []phase{{windows: 2, latency: 100 * ms}, {windows: 2, latency: 900 * ms, throttle: true}},
			want:   wantLimits(64, 64),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
			a := newAdaptiveLimit(c.cfg, clk.now)
			if a.Limit() != c.cfg.Min {
				t.Fatalf("starts at %d, want the floor %d (no Start given)", a.Limit(), c.cfg.Min)
			}
			var prev int
			var limits []int
			for i, p := range c.phases {
				prev, limits = a.Limit(), nil
				for range p.windows {
					l := feedWindow(t, a, clk, p)
					if l < c.cfg.Min || l > c.cfg.Max {
						t.Fatalf("phase %d: limit %d outside [%d, %d]", i, l, c.cfg.Min, c.cfg.Max)
					}
					limits = append(limits, l)
				}
			}
			c.want(t, prev, limits)
		})
	}
}

func wantLimits(want ...int) func(t *testing.T, prev int, limits []int) {
	return func(t *testing.T, _ int, limits []int) {
		t.Helper()
		if len(limits) != len(want) {
			t.Fatalf("limits %v, want %v", limits, want)
		}
		for i := range want {
			if limits[i] != want[i] {
				t.Fatalf("limits %v, want %v", limits, want)
			}
		}
	}
}

// A provider that serves 200 calls at once in 100 ms and queues the rest
// (latency grows with the calls beyond 200): the limit settles where the
// latency is the tolerance times the base, 300 calls, and stays there.
func TestAdaptiveLimitSettlesAtAQueueingProvider(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	a := newAdaptiveLimit(LimitConfig{Min: 50, Max: 5000, Tolerance: 1.5, Floor: 10 * time.Millisecond, Memory: time.Minute}, clk.now)
	var limits []int
	for range 40 {
		lat := 100 * time.Millisecond * time.Duration(max(a.Limit(), 200)) / 200
		limits = append(limits, feedWindow(t, a, clk, phase{latency: lat}))
	}
	t.Logf("limits: %v", limits)
	for i, l := range limits[10:] {
		if l < 280 || l > 320 {
			t.Fatalf("window %d: limit %d, want it settled at about 300; all: %v", i+10, l, limits)
		}
	}
}

// TestAdaptiveLimitWindow: answers within one base latency of the
// window's first do not move the limit; the first one after does.
func TestAdaptiveLimitWindow(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	a := newAdaptiveLimit(LimitConfig{Min: 10, Max: 100, Tolerance: 1.5, Floor: 200 * time.Millisecond, Memory: time.Minute}, clk.now)
	for range 50 {
		if a.Sample(time.Millisecond, false, false, 10) {
			t.Fatal("the limit moved within the window")
		}
		clk.advance(3 * time.Millisecond)
	}
	clk.advance(50 * time.Millisecond)
	if !a.Sample(time.Millisecond, false, false, 10) || a.Limit() != 20 {
		t.Fatalf("limit %d after the window, want 20", a.Limit())
	}
}

func TestLimitConfigValidate(t *testing.T) {
	t.Parallel()
	ok := LimitConfig{Max: 100}.withDefaults()
	if err := ok.validate(); err != nil || ok.Min != DefaultLimitMin || ok.Tolerance != DefaultLatencyTolerance {
		t.Fatalf("defaults %+v: %v", ok, err)
	}
	if ok.Start != DefaultLimitStart {
		t.Errorf("default start %d, want %d", ok.Start, DefaultLimitStart)
	}
	if c := (LimitConfig{Max: 8}).withDefaults(); c.Min != 8 || c.Start != 8 || c.validate() != nil {
		t.Errorf("the default floor and start above the ceiling are not lowered to it: %+v", c)
	}
	if c := (LimitConfig{Min: 100, Max: 100}).withDefaults(); c.Start != 100 || c.validate() != nil {
		t.Errorf("a fixed limit above the default start does not start at it: %+v", c)
	}
	if a := newAdaptiveLimit(LimitConfig{Max: 1000}.withDefaults(), time.Now); a.Limit() != DefaultLimitStart {
		t.Errorf("starts at %d, want %d", a.Limit(), DefaultLimitStart)
	}
	for _, bad := range []LimitConfig{
		{Min: -1, Max: 10},
		{Min: 11, Max: 10},
		{Min: 10, Max: 100, Start: 5},
		{Min: 10, Max: 100, Start: 101},
		{Max: 10, Tolerance: 1},
		{Max: 10, Tolerance: 0.5},
		{Max: 10, Floor: -time.Millisecond},
		{Max: 10, Memory: -time.Second},
	} {
		if err := bad.withDefaults().validate(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

// countingObserver keeps the last limit and the calls in flight of the
// email channel.
type countingObserver struct {
	nopObserver
	limit, calls int
}

func (o *countingObserver) ConcurrencyLimit(_ contract.Channel, n int) { o.limit = n }
func (o *countingObserver) ProviderInFlight(_ contract.Channel, d int) { o.calls += d }

// TestChannelLimitSlots: slots are given up to the limit, then first come
// first served as calls end; a waiter whose context ends leaves the
// queue; answers move the limit and the observer sees it.
func TestChannelLimitSlots(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	obs := &countingObserver{}
	c := newChannelLimit(contract.ChannelEmail, LimitConfig{Min: 2, Max: 4, Tolerance: 1.5, Floor: 10 * time.Millisecond, Memory: time.Minute}, clk.now, obs)
	ctx := context.Background()
	a, _ := c.acquire(ctx)
	b, _ := c.acquire(ctx)
	if obs.limit != 2 || obs.calls != 2 || a.inFlight != 1 || b.inFlight != 2 {
		t.Fatalf("observer %+v, slots %+v %+v", obs, a, b)
	}
	type given struct {
		i int
		s slot
	}
	gave := make(chan given, 3)
	for i := range 3 {
		go func() {
			s, err := c.acquire(ctx)
			if err != nil {
				t.Error(err)
			}
			gave <- given{i, s}
		}()
		heraldtest.WaitFor(t, 5*time.Second, "a waiter in the queue", func() bool { return queued(c) == i+1 })
	}
	gone, cancel := context.WithCancel(ctx)
	errc := make(chan error)
	go func() { _, err := c.acquire(gone); errc <- err }()
	heraldtest.WaitFor(t, 5*time.Second, "the fourth waiter", func() bool { return queued(c) == 4 })
	cancel()
	if err := <-errc; !errors.Is(err, errNoSlot) || !errors.Is(err, context.Canceled) {
		t.Fatalf("a canceled wait: %v", err)
	}
	if _, calls := c.state(); calls != 2 || queued(c) != 3 {
		t.Fatalf("%d in flight, %d waiting after a canceled wait, want 2, 3", calls, queued(c))
	}
	// One answer at the base ends no window: the first waiter moves up.
	c.release(a, callOutcome{made: true, latency: 5 * time.Millisecond})
	if g := <-gave; g.i != 0 || g.s.inFlight != 2 {
		t.Fatalf("first served: %+v, want waiter 0 as the second in flight", g)
	}
	// One more, after the window: the limit doubles to its ceiling of 4
	// and the two other waiters move up, in order.
	clk.advance(20 * time.Millisecond)
	c.release(b, callOutcome{made: true, latency: 5 * time.Millisecond})
	got := map[int]int{}
	for range 2 {
		g := <-gave
		got[g.i] = g.s.inFlight
	}
	if got[1] != 2 || got[2] != 3 {
		t.Fatalf("waiters 1 and 2 were given slots %d and %d in flight, want 2 and 3", got[1], got[2])
	}
	if l, calls := c.state(); l != 4 || calls != 3 {
		t.Fatalf("limit %d, in flight %d, want 4, 3", l, calls)
	}
	c.mu.Lock()
	if obs.limit != 4 || obs.calls != 3 {
		t.Errorf("observer %+v, want limit 4, 3 in flight", obs)
	}
	c.mu.Unlock()
	c.release(slot{}, callOutcome{})
	c.release(slot{}, callOutcome{})
	c.release(slot{}, callOutcome{})
	if l, calls := c.state(); l != 4 || calls != 0 {
		t.Fatalf("limit %d, in flight %d after unanswered releases", l, calls)
	}
	// Two calls lost without an answer halve it, once their window ends.
	clk.advance(20 * time.Millisecond)
	for range 2 {
		lost, _ := c.acquire(ctx)
		c.release(lost, callOutcome{made: true, lost: true, latency: 5 * time.Millisecond})
	}
	clk.advance(20 * time.Millisecond)
	next, _ := c.acquire(ctx)
	c.release(next, callOutcome{made: true, latency: 5 * time.Millisecond})
	if l, _ := c.state(); l != 2 || obs.limit != 2 {
		t.Fatalf("limit %d (observer %d) after two lost calls, want 2", l, obs.limit)
	}
}

// TestOutcomeOf: what a call's outcome tells the limit.
func TestOutcomeOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		o    contract.Outcome
		code int
		want callOutcome
	}{
		{contract.OutcomeSuccess, 202, callOutcome{made: true}},
		{contract.OutcomeThrottled, 429, callOutcome{made: true, throttled: true}},
		{contract.OutcomeTransient, 503, callOutcome{made: true}},
		{contract.OutcomePermanent, 400, callOutcome{made: true}},
		{contract.OutcomeUnknown, 0, callOutcome{made: true, lost: true}},
		{contract.OutcomeTransient, 0, callOutcome{made: true, lost: true}},
		{contract.OutcomeNotAttempted, 0, callOutcome{}},
	} {
		tc.want.latency = time.Second
		if got := outcomeOf(tc.o, tc.code, time.Second); got != tc.want {
			t.Errorf("%s %d: %+v, want %+v", tc.o, tc.code, got, tc.want)
		}
	}
}

func queued(c *channelLimit) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waiting.Len()
}

package sender_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/herald-dispatch/herald/internal/sender"
)

// latencyProvider answers success after its current latency (± 10 %), and counts
// the calls it has in flight (their peak since the last reset) and when
// each call arrived.
type latencyProvider struct {
	latency  atomic.Int64 // nanoseconds
	inFlight atomic.Int64
	peak     atomic.Int64

	mu  sync.Mutex
	arr []time.Time
}

func newLatencyProvider(d time.Duration) *latencyProvider {
	p := &latencyProvider{}
	p.latency.Store(int64(d))
	return p
}

func (p *latencyProvider) Send(ctx context.Context, _ *contract.SendCommand) provider.Result {
	n := p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	for old := p.peak.Load(); n > old && !p.peak.CompareAndSwap(old, n); old = p.peak.Load() {
	}
	p.mu.Lock()
	p.arr = append(p.arr, time.Now())
	p.mu.Unlock()
	d := time.Duration(p.latency.Load())
	d += time.Duration(rand.Int64N(int64(d)/5+1)) - d/10 // ± 10 %
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return provider.Success(200)
	case <-ctx.Done():
		return provider.Unknown(ctx.Err())
	}
}

func (p *latencyProvider) Close() error { return nil }

// resetPeak starts a new peak from the calls in flight now and returns
// the old one.
func (p *latencyProvider) resetPeak() int64 { return p.peak.Swap(p.inFlight.Load()) }

// arrivals counts the calls that arrived in [from, to).
func (p *latencyProvider) arrivals(from, to time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, at := range p.arr {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

func produceEmails(t *testing.T, c *heraldtest.Cluster, prefix string, n int) {
	t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = command(fmt.Sprintf("%s-%05d", prefix, i), contract.ChannelEmail, 1)
	}
	c.Produce(t, c.Client(t), recs...)
}

// A provider that is slow but healthy, one second an answer however many
// calls it has, gets as many calls at once as the ceiling allows: the
// limit starts at its floor and doubles each second.
func TestSenderConcurrencyGrowsToTheCeilingForASlowProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	const floor, ceiling = 50, 200
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 4})
	p := newLatencyProvider(time.Second)
	produceEmails(t, c, "slow", 1000)
	obs := &benchObserver{}
	s, _ := runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: p},
		Concurrency: ceiling, Limit: sender.LimitConfig{Min: floor}, DrainTimeout: 200 * time.Millisecond,
		Observer: obs, Log: quietLog()})
	start := time.Now()
	var peaks []int64
	for time.Since(start) < 8*time.Second {
		time.Sleep(500 * time.Millisecond)
		peaks = append(peaks, p.resetPeak())
		if l, _ := s.ConcurrencyLimit(contract.ChannelEmail); l == ceiling && p.inFlight.Load() >= ceiling*9/10 {
			break
		}
	}
	limit, inFlight := s.ConcurrencyLimit(contract.ChannelEmail)
	t.Logf("after %s: limit %d, %d calls in flight; peaks every 500 ms %v", time.Since(start).Round(time.Millisecond), limit, inFlight, peaks)
	if peaks[0] > floor {
		t.Errorf("%d calls in flight at first, above the floor of %d", peaks[0], floor)
	}
	if limit != ceiling || obs.emailLimit.Load() != ceiling {
		t.Fatalf("limit %d (observer %d), want the ceiling %d", limit, obs.emailLimit.Load(), ceiling)
	}
	if n := p.inFlight.Load(); n < ceiling*9/10 {
		t.Errorf("%d calls in flight at the provider, want about the ceiling of %d", n, ceiling)
	}
	if got := obs.emailCalls.Load(); got > ceiling || got < ceiling*9/10 {
		t.Errorf("observer: %d calls in flight", got)
	}
}

// Commands are polled for the calls the limits allow, not up to the
// ceiling: with every channel's limit at 10 and a backlog of 2,000, at
// most minInFlight (256) commands are in flight, not Concurrency's 2,000
// (each of which waited in a goroutine for a slot). The calls still get
// every slot.
func TestSenderPollsForTheLimitsNotTheCeiling(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	const start, ceiling, bound = 10, 2000, 256
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 4})
	p := newLatencyProvider(2 * time.Second)
	produceEmails(t, c, "backlog", ceiling)
	obs := &benchObserver{}
	runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: p},
		Concurrency: ceiling, Limit: sender.LimitConfig{Min: start, Start: start}, DrainTimeout: 200 * time.Millisecond,
		Observer: obs, Log: quietLog()})
	heraldtest.WaitFor(t, 10*time.Second, "the first calls", func() bool { return p.inFlight.Load() >= start })
	time.Sleep(500 * time.Millisecond) // within the limit's first window (one latency): still at its start
	if n := obs.inFlight.Load(); n < bound*9/10 || n > bound {
		t.Errorf("%d commands in flight with every limit at %d, want about %d (minInFlight), not the ceiling %d", n, start, bound, ceiling)
	}
	if n := p.inFlight.Load(); n != start {
		t.Errorf("%d calls in flight, want the limit of %d", n, start)
	}
}

// A provider that slows down tenfold (100 ms, then 1 s an answer) gets
// fewer calls at once: from the ceiling down to the floor.
func TestSenderConcurrencyShrinksWhenTheProviderSlowsDown(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	const floor, ceiling = 10, 100
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 4})
	p := newLatencyProvider(100 * time.Millisecond)
	produceEmails(t, c, "slowing", 4000)
	s, _ := runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: p},
		Concurrency: ceiling, Limit: sender.LimitConfig{Min: floor, Floor: 10 * time.Millisecond},
		DrainTimeout: 200 * time.Millisecond, Log: quietLog()})
	heraldtest.WaitFor(t, 10*time.Second, "the limit at the ceiling", func() bool {
		l, _ := s.ConcurrencyLimit(contract.ChannelEmail)
		return l == ceiling
	})
	time.Sleep(300 * time.Millisecond)
	fast := p.resetPeak()
	p.latency.Store(int64(time.Second))
	slowAt := time.Now()
	heraldtest.WaitFor(t, 10*time.Second, "the limit at the floor", func() bool {
		l, _ := s.ConcurrencyLimit(contract.ChannelEmail)
		return l == floor
	})
	// The calls begun before the limit came down end within a second.
	time.Sleep(time.Until(slowAt.Add(2500 * time.Millisecond)))
	p.resetPeak()
	time.Sleep(time.Second)
	slow := p.resetPeak()
	t.Logf("peak calls in flight: %d at 100 ms, %d at 1 s; the limit reached the floor %s after the slow-down",
		fast, slow, time.Since(slowAt).Round(time.Millisecond))
	if fast < ceiling*8/10 {
		t.Errorf("%d calls in flight at 100 ms, want about the ceiling of %d", fast, ceiling)
	}
	if slow > floor {
		t.Errorf("%d calls in flight at 1 s, want at most the floor of %d", slow, floor)
	}
}

// A command waiting for a slot is not held past its cut-off: it is
// answered not_attempted before it, while the call holding the only slot
// still runs.
func TestSenderSlotWaitEndsAtTheCutoff(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1})
	p := newLatencyProvider(4 * time.Second)
	const budget = 100 * time.Millisecond
	runSender(t, sender.Config{Topology: c.Topology, Concurrency: 10, Limit: sender.LimitConfig{Min: 1, Start: 1},
		Providers: provider.Set{contract.ChannelEmail: p, contract.ChannelSMS: provider.NewMock(provider.Simulation{})},
		MinBudget: budget, DrainTimeout: 100 * time.Millisecond, Log: quietLog()})
	c.Produce(t, c.Client(t), command("warm-up", contract.ChannelSMS, 1))
	results(t, c, 1, 20*time.Second)

	late, cmd := commandWith("waits", contract.ChannelEmail, 1, func(c *contract.SendCommand) {
		c.Deadline = time.Now().Add(1500 * time.Millisecond)
	})
	c.Produce(t, c.Client(t), command("holds", contract.ChannelEmail, 1))
	heraldtest.WaitFor(t, 10*time.Second, "the first call", func() bool { return p.inFlight.Load() == 1 })
	c.Produce(t, c.Client(t), late)
	got := results(t, c, 2, 20*time.Second)
	if len(got) != 2 || got[1].ID != "waits" {
		t.Fatalf("results %+v: want the warm-up's, then the waiting command's while the other call runs", got)
	}
	r := got[1]
	if r.Outcome != contract.OutcomeNotAttempted || !r.At.Before(cmd.Deadline) {
		t.Errorf("waiting command answered %s at %s, want not_attempted before its cut-off %s (%s)",
			r.Outcome, r.At.Format(time.StampMilli), cmd.Deadline.Format(time.StampMilli), r.Error)
	}
	if n := p.arrivals(time.Time{}, time.Now()); n != 1 {
		t.Errorf("%d provider calls, want 1", n)
	}
}

// A channel's rate holds for the whole sender group: 1, 2 or 3 senders
// together call the provider at the configured rate, each at its share.
func TestSenderRateHoldsAcrossInstances(t *testing.T) {
	t.Parallel() // its bounds hold on a loaded machine (see the lower bound)
	if testing.Short() {
		t.Skip("integration test")
	}
	const rate = 150.0
	const window = 3 * time.Second
	for k := 1; k <= 3; k++ {
		t.Run(fmt.Sprintf("%d instances", k), func(t *testing.T) {
			c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 6})
			c.Topology.HeartbeatInterval = 100 * time.Millisecond
			p := newLatencyProvider(0)
			produceEmails(t, c, "rated", 3000)
			var senders []*sender.Sender
			var stops []func()
			var first *benchObserver
			begin := time.Now()
			for i := range k {
				obs := &benchObserver{}
				if i == 0 {
					first = obs
				}
				s, stop := runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: p},
					Rates: map[contract.Channel]float64{contract.ChannelEmail: rate}, Concurrency: 50,
					DrainTimeout: 200 * time.Millisecond, Observer: obs, Log: quietLog()})
				senders, stops = append(senders, s), append(stops, stop)
			}
			heraldtest.WaitFor(t, 30*time.Second, "the first call", func() bool { return p.arrivals(begin, time.Now()) > 0 })
			heraldtest.WaitFor(t, 30*time.Second, fmt.Sprintf("every sender dividing by %d members", k), func() bool {
				for _, s := range senders {
					if s.Members() != k {
						return false
					}
				}
				return true
			})
			t.Logf("every sender divides by %d members %s after the start", k, time.Since(begin).Round(time.Millisecond))
			if share := math.Float64frombits(first.emailRate.Load()); share != rate/float64(k) || first.members.Load() != int64(k) {
				t.Errorf("the first sender's observer: %v/s among %d members, want %v/s among %d", share, first.members.Load(), rate/float64(k), k)
			}
			from := time.Now()
			time.Sleep(window)
			calls := p.arrivals(from, from.Add(window))
			perSecond := float64(calls) / window.Seconds()
			t.Logf("%d senders: %d calls in %s, %.0f/s against a rate of %.0f/s", k, calls, window, perSecond, rate)
			if limit := rate*window.Seconds()*1.1 + float64(k); float64(calls) > limit {
				t.Errorf("%d calls in %s: over the rate of %.0f/s (at most %.0f)", calls, window, rate, limit)
			}
			// The lower bound only shows the window saw real traffic (the
			// division itself is checked exactly through the observers):
			// it is loose, as a loaded 2-core machine starves senders.
			if least := 0.3 * rate * window.Seconds(); float64(calls) < least {
				t.Errorf("%d calls in %s: want at least %.0f at a rate of %.0f/s with a backlog", calls, window, least, rate)
			}
			if k == 1 {
				return
			}
			// One leaves: the others divide again, by one member less.
			stops[k-1]()
			heraldtest.WaitFor(t, 30*time.Second, fmt.Sprintf("the first sender dividing by %d members", k-1), func() bool {
				return senders[0].Members() == k-1
			})
			if share := math.Float64frombits(first.emailRate.Load()); share != rate/float64(k-1) {
				t.Errorf("the first sender's share after one left: %v/s, want %v/s", share, rate/float64(k-1))
			}
		})
	}
}

// shareLog keeps the rate shares a ProviderObserver is told.
type shareLog struct {
	mu    sync.Mutex
	share map[string]float64
}

func (o *shareLog) ProviderAdded(contract.Channel, string)                 {}
func (o *shareLog) ProviderLimit(contract.Channel, string, int)            {}
func (o *shareLog) ProviderCalls(contract.Channel, string, int)            {}
func (o *shareLog) ProviderPaused(contract.Channel, string, time.Duration) {}
func (o *shareLog) ProviderRateShare(ch contract.Channel, p string, r float64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.share == nil {
		o.share = map[string]float64{}
	}
	o.share[string(ch)+"/"+p] = r
}

func (o *shareLog) get(k string) float64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.share[k]
}

// A chained provider's rate is for the whole sender group, as a
// channel's: with no channel rate at all, two senders follow their group
// and each takes half of it.
func TestSenderProviderRateDividedAcrossInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 4})
	c.Topology.HeartbeatInterval = 100 * time.Millisecond
	var senders []*sender.Sender
	var logs []*shareLog
	for range 2 {
		chain := provider.NewChain(contract.ChannelSMS, []string{"a", "b"},
			[]provider.Provider{provider.NewMock(provider.Simulation{}), provider.NewMock(provider.Simulation{})}, provider.ChainOptions{Log: quietLog()})
		obs := &shareLog{}
		s, _ := runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelSMS: chain},
			ProviderRates: map[sender.RateTarget]float64{{Channel: contract.ChannelSMS, Provider: "b"}: 90},
			DrainTimeout:  200 * time.Millisecond, ProviderObserver: obs, Log: quietLog()})
		senders, logs = append(senders, s), append(logs, obs)
	}
	heraldtest.WaitFor(t, 30*time.Second, "both senders dividing b's rate by 2 members", func() bool {
		for i, s := range senders {
			if s.Members() != 2 || logs[i].get("sms/b") != 45 {
				return false
			}
		}
		return true
	})
	for i, l := range logs {
		if got := l.get("sms/a"); got != 0 {
			t.Errorf("sender %d: a's share %v, want 0 (unlimited)", i, got)
		}
	}
}

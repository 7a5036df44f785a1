package sender

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/herald-dispatch/herald/internal/topology"
)

// scriptedProvider answers from a script (the last answer repeats) and
// counts its calls.
type scriptedProvider struct {
	mu      sync.Mutex
	answers []provider.Result
	calls   atomic.Int32
}

func (p *scriptedProvider) Send(context.Context, *contract.SendCommand) provider.Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls.Add(1)
	r := p.answers[0]
	if len(p.answers) > 1 {
		p.answers = p.answers[1:]
	}
	return r
}

func (p *scriptedProvider) Close() error { return nil }

// providerLog records what a ProviderObserver is told.
type providerLog struct {
	mu     sync.Mutex
	added  []string
	limit  map[string]int
	calls  map[string]int
	share  map[string]float64
	paused map[string]int
}

func newProviderLog() *providerLog {
	return &providerLog{limit: map[string]int{}, calls: map[string]int{}, share: map[string]float64{}, paused: map[string]int{}}
}

func (o *providerLog) ProviderAdded(ch contract.Channel, p string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.added = append(o.added, string(ch)+"/"+p)
}
func (o *providerLog) ProviderLimit(ch contract.Channel, p string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.limit[string(ch)+"/"+p] = n
}
func (o *providerLog) ProviderCalls(ch contract.Channel, p string, d int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls[string(ch)+"/"+p] += d
}
func (o *providerLog) ProviderRateShare(ch contract.Channel, p string, r float64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.share[string(ch)+"/"+p] = r
}
func (o *providerLog) ProviderPaused(ch contract.Channel, p string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.paused[string(ch)+"/"+p]++
}

// chainSender is a sender (never run) whose sms channel is a chain of
// providers a, b, ..., on clk, with the sessions' gates at hand.
func chainSender(t *testing.T, clk *fakeClock, cfg Config, ps ...provider.Provider) (*session, *provider.Chain, *providerLog) {
	t.Helper()
	names := make([]string, len(ps))
	for i := range ps {
		names[i] = string(rune('a' + i))
	}
	chain := provider.NewChain(contract.ChannelSMS, names, ps, provider.ChainOptions{Log: heraldtest.QuietLog()})
	obs := newProviderLog()
	cfg.Topology = topology.Config{Brokers: []string{"127.0.0.1:1"}}
	cfg.Providers = provider.Set{contract.ChannelSMS: chain}
	cfg.ProviderObserver, cfg.Now, cfg.Log = obs, clk.now, heraldtest.QuietLog()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &session{s: s, base: context.Background()}, chain, obs
}

// send runs cmd through the gates that decide a call (provider, slot,
// cut-off, call) and returns its result.
func (ss *session) send(cmd *contract.SendCommand) contract.SendResult {
	c := newCall(context.Background(), cmd)
	defer c.releaseSlot()
	for _, g := range []func(*call) verdict{ss.gateProvider, ss.gateSlot, ss.gateCutoff, ss.gateCall} {
		if v := g(c); v != verdictNext {
			return c.res
		}
	}
	panic("no gate decided")
}

func smsCmd(id string) *contract.SendCommand {
	return &contract.SendCommand{ID: id, Channel: contract.ChannelSMS, Attempt: 1, Address: "+821012345678", IdempotencyKey: id}
}

// A 429 from one provider of a chain pauses that provider, not the
// channel: the next calls go to the chain's next provider while it is
// paused, and come back to it after its Retry-After.
func TestChainedProviderThrottlePausesOnlyIt(t *testing.T) {
	clk := &fakeClock{t: time.Now()}
	a := &scriptedProvider{answers: []provider.Result{{Outcome: contract.OutcomeThrottled, Code: 429, RetryAfter: time.Minute}, provider.Success(200)}}
	b := &scriptedProvider{answers: []provider.Result{provider.Success(202)}}
	ss, _, obs := chainSender(t, clk, Config{}, a, b)
	if r := ss.send(smsCmd("t")); r.Outcome != contract.OutcomeThrottled || r.Provider != "a" {
		t.Fatalf("first: %+v, want a's throttled answer", r)
	}
	if until := ss.s.gates[contract.ChannelSMS].pausedUntil.Load(); until != 0 {
		t.Fatalf("the channel's gate is paused until %s by one provider's 429", time.Unix(0, until))
	}
	for i := range 5 {
		if r := ss.send(smsCmd(fmt.Sprint("n", i))); r.Outcome != contract.OutcomeSuccess || r.Provider != "b" {
			t.Fatalf("while a is paused: %+v, want b's success", r)
		}
	}
	if a.calls.Load() != 1 || obs.paused["sms/a"] != 1 || obs.paused["sms/b"] != 0 {
		t.Fatalf("a called %d times, pauses %v: want 1 call and one pause of a", a.calls.Load(), obs.paused)
	}
	clk.advance(time.Minute)
	if r := ss.send(smsCmd("after")); r.Provider != "a" || r.Outcome != contract.OutcomeSuccess {
		t.Fatalf("after a's Retry-After: %+v, want a's success", r)
	}
}

// A single provider's 429 still pauses its channel (no other provider
// can take the calls).
func TestSingleProviderThrottlePausesTheChannel(t *testing.T) {
	clk := &fakeClock{t: time.Now()}
	p := &scriptedProvider{answers: []provider.Result{{Outcome: contract.OutcomeThrottled, Code: 429, RetryAfter: time.Minute}}}
	s, err := New(Config{Topology: topology.Config{Brokers: []string{"127.0.0.1:1"}}, Providers: provider.Set{contract.ChannelSMS: p},
		Now: clk.now, Log: heraldtest.QuietLog()})
	if err != nil {
		t.Fatal(err)
	}
	ss := &session{s: s, base: context.Background()}
	ss.send(smsCmd("t"))
	if until := s.gates[contract.ChannelSMS].pausedUntil.Load(); time.Unix(0, until).Before(clk.t.Add(time.Minute)) {
		t.Fatalf("a single provider's 429 did not pause its channel for its Retry-After (until %s)", time.Unix(0, until))
	}
}

// A provider past its rate is skipped for a call another provider can
// take, and waited for when none can: until the cut-off less the min
// budget, then not_attempted, without a call.
func TestProviderRate(t *testing.T) {
	clk := &fakeClock{t: time.Now()}
	a := &scriptedProvider{answers: []provider.Result{provider.Success(200)}}
	b := &scriptedProvider{answers: []provider.Result{provider.Success(202)}}
	ss, _, obs := chainSender(t, clk, Config{ProviderRates: map[RateTarget]float64{{contract.ChannelSMS, "a"}: 1.0 / 3600}}, a, b)
	if obs.share["sms/a"] != 1.0/3600 || obs.share["sms/b"] != 0 {
		t.Fatalf("rate shares %v", obs.share)
	}
	for i := range 10 {
		r := ss.send(smsCmd(fmt.Sprint("n", i)))
		if r.Outcome != contract.OutcomeSuccess {
			t.Fatalf("%d: %+v", i, r)
		}
	}
	if a.calls.Load() != 1 || b.calls.Load() != 9 {
		t.Fatalf("a called %d times, b %d: want a once (its one token an hour), b for the rest", a.calls.Load(), b.calls.Load())
	}

	// Both past their rate: the call waits, up to its cut-off less the
	// min budget, and is not attempted.
	ss2, _, _ := chainSender(t, clk, Config{MinBudget: time.Second, ProviderRates: map[RateTarget]float64{
		{contract.ChannelSMS, "a"}: 1.0 / 3600, {contract.ChannelSMS, "b"}: 1.0 / 3600}}, a, b)
	ss2.send(smsCmd("x"))
	ss2.send(smsCmd("y"))
	calls := a.calls.Load() + b.calls.Load()
	late := smsCmd("late")
	late.Cutoff = clk.t.Add(time.Second + 50*time.Millisecond)
	if r := ss2.send(late); r.Outcome != contract.OutcomeNotAttempted || a.calls.Load()+b.calls.Load() != calls {
		t.Fatalf("%+v after %d calls (now %d): want not_attempted and no call", r, calls, a.calls.Load()+b.calls.Load())
	}
}

// A provider's rate is for the whole deployment: divided by the sender
// group's members, as a channel's.
func TestProviderRateDivided(t *testing.T) {
	clk := &fakeClock{t: time.Now()}
	ss, _, obs := chainSender(t, clk, Config{ProviderRates: map[RateTarget]float64{{contract.ChannelSMS, "b"}: 90}},
		&scriptedProvider{answers: []provider.Result{provider.Success(200)}}, &scriptedProvider{answers: []provider.Result{provider.Success(200)}})
	if !ss.s.rated() {
		t.Fatal("a provider's rate alone does not make the sender follow its group")
	}
	ss.s.divide(3)
	if obs.share["sms/b"] != 30 || float64(ss.s.pacers[1].g.limiter.Limit()) != 30 {
		t.Fatalf("b's share %v (limiter %v), want 30", obs.share["sms/b"], ss.s.pacers[1].g.limiter.Limit())
	}
	if _, ok := obs.share["sms/a"]; !ok || obs.share["sms/a"] != 0 {
		t.Errorf("a's share %v, want 0 (unlimited)", obs.share)
	}
}

func TestProviderRateNamesAProviderOfAChain(t *testing.T) {
	ok := &scriptedProvider{answers: []provider.Result{provider.Success(200)}}
	chain := provider.NewChain(contract.ChannelSMS, []string{"a", "b"}, []provider.Provider{ok, ok}, provider.ChainOptions{})
	for _, tc := range []struct {
		rate RateTarget
		want string
	}{
		{RateTarget{contract.ChannelSMS, "c"}, `no provider named "c"`},
		{RateTarget{contract.ChannelEmail, "a"}, "email has no failover chain"},
	} {
		_, err := New(Config{Topology: topology.Config{Brokers: []string{"127.0.0.1:1"}},
			Providers:     provider.Set{contract.ChannelSMS: chain, contract.ChannelEmail: ok},
			ProviderRates: map[RateTarget]float64{tc.rate: 1}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("rate %s: %v, want an error saying %q", tc.rate, err, tc.want)
		}
	}
}

func TestParseRateTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want RateTarget
		n    float64
	}{
		{"sms=50/s", RateTarget{contract.ChannelSMS, ""}, 50},
		{"sms/twilio=20/s", RateTarget{contract.ChannelSMS, "twilio"}, 20},
		{"sms/127.0.0.1:8080#2=60/m", RateTarget{contract.ChannelSMS, "127.0.0.1:8080#2"}, 1},
	} {
		got, n, err := ParseRateTarget(tc.in)
		if err != nil || got != tc.want || n != tc.n {
			t.Errorf("ParseRateTarget(%q) = %+v %v %v", tc.in, got, n, err)
		}
	}
	for _, bad := range []string{"sms/=5/s", "fax/a=1/s", "sms/a=0/s", "sms/a"} {
		if _, _, err := ParseRateTarget(bad); err == nil {
			t.Errorf("ParseRateTarget(%q): no error", bad)
		}
	}
	if _, _, err := ParseRate("sms/a=5/s"); err == nil {
		t.Error("ParseRate took a provider's rate")
	}
}

// Each provider of a chain adapts its own concurrency limit to its own
// latency: a slow vendor's limit shrinks while a fast one's grows, and
// the channel's limit (fixed at the ceiling) caps neither.
func TestProviderLimitsAdaptApart(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	lc := LimitConfig{Min: 4, Tolerance: 1.5, Floor: 100 * time.Millisecond, Memory: time.Minute}
	ss, _, obs := chainSender(t, clk, Config{Concurrency: 64, Limit: lc},
		&scriptedProvider{answers: []provider.Result{provider.Success(200)}}, &scriptedProvider{answers: []provider.Result{provider.Success(200)}})
	slow, fast := ss.s.pacers[0], ss.s.pacers[1]
	ok := provider.Success(200)
	// feed answers the whole limit of p in latency, spread over two
	// floors (one window or more).
	feed := func(p *providerPacer, latency time.Duration) {
		limit, _ := p.lim.state()
		var pms []provider.Permit
		for range limit {
			pm, taken := p.TryTake()
			if !taken {
				t.Fatalf("%s: no place with %d of %d taken", p.name, len(pms), limit)
			}
			pms = append(pms, pm)
		}
		step := 2 * lc.Floor / time.Duration(limit)
		for _, pm := range pms {
			clk.advance(step)
			pm.Done(&ok, latency)
		}
	}
	for range 2 {
		feed(slow, 100*time.Millisecond)
		feed(fast, 100*time.Millisecond)
	}
	for range 3 {
		feed(slow, time.Second) // ten times its base: queueing
		feed(fast, 100*time.Millisecond)
	}
	slowLimit, _ := slow.lim.state()
	fastLimit, _ := fast.lim.state()
	if slowLimit != lc.Min || fastLimit <= 2*lc.Min {
		t.Fatalf("limits: slow %d, fast %d; want the slow one at its floor %d and the fast one grown well past it", slowLimit, fastLimit, lc.Min)
	}
	if obs.limit["sms/a"] != slowLimit || obs.limit["sms/b"] != fastLimit || obs.calls["sms/a"] != 0 || obs.calls["sms/b"] != 0 {
		t.Errorf("observer: limits %v, calls %v", obs.limit, obs.calls)
	}
	if l, _ := ss.s.ConcurrencyLimit(contract.ChannelSMS); l != 64 {
		t.Errorf("the chain's channel limit is %d, want the ceiling 64 (its providers adapt their own)", l)
	}
}

package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// deadURL is an http:// URL on a port nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/sms"
}

type circuitLog struct {
	mu     sync.Mutex
	states map[string]CircuitState
	seen   []string
}

func (c *circuitLog) CircuitState(ch contract.Channel, p string, s CircuitState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.states == nil {
		c.states = map[string]CircuitState{}
	}
	c.states[string(ch)+"/"+p] = s
	c.seen = append(c.seen, fmt.Sprintf("%s/%s=%s", ch, p, s))
}

func (c *circuitLog) get(k string) (CircuitState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.states[k]
	return s, ok
}

// The acceptance case at the provider level: --provider
// sms=http://DEAD --provider sms=http://LIVE/sms. Every notification is
// delivered once, by the second provider, and the first one's circuit is
// open.
func TestChainDeadThenLiveWebhook(t *testing.T) {
	t.Parallel()
	mock := NewMockServer(MockServerOptions{})
	live := httptest.NewServer(mock)
	defer live.Close()
	dead := deadURL(t)
	obs := &circuitLog{}
	set, err := OpenSet([]string{"sms=" + dead, "sms=" + live.URL + "/sms"},
		Options{Chain: ChainOptions{FailureThreshold: 3, Observer: obs}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	chain, ok := set[contract.ChannelSMS].(*Chain)
	if !ok {
		t.Fatalf("sms provider %T, want *Chain", set[contract.ChannelSMS])
	}
	deadName := chain.Circuits()[0].Provider
	liveName := chain.Circuits()[1].Provider
	if st, ok := obs.get("sms/" + deadName); !ok || st != CircuitClosed {
		t.Errorf("circuit of %s not reported closed at start: %v %v", deadName, st, ok)
	}
	const n = 20
	for i := range n {
		cmd := &contract.SendCommand{ID: fmt.Sprintf("n-%d", i), Channel: contract.ChannelSMS, Attempt: 1,
			Address: "+15005550006", Content: []byte(`{"text":"hi"}`), IdempotencyKey: fmt.Sprintf("n-%d", i)}
		r := set[contract.ChannelSMS].Send(context.Background(), cmd)
		if r.Outcome != contract.OutcomeSuccess || r.Provider != liveName {
			t.Fatalf("%s: %s by %q (%v), want success by %s", cmd.ID, r.Outcome, r.Provider, r.Err, liveName)
		}
	}
	st := mock.Stats()
	if st.UniqueIDs != n || st.Accepted != n || st.Duplicates != 0 {
		t.Errorf("live provider: %d unique, %d accepted, %d duplicates; want %d, %d, 0", st.UniqueIDs, st.Accepted, st.Duplicates, n, n)
	}
	c := chain.Circuits()
	if c[0].State != CircuitOpen || c[1].State != CircuitClosed {
		t.Errorf("circuits %+v: want the dead provider's open, the live one's closed", c)
	}
	if s, _ := obs.get("sms/" + deadName); s != CircuitOpen {
		t.Errorf("observer: %s is %s, want open", deadName, s)
	}
}

// scripted answers from a script and counts its calls.
type scripted struct {
	mu      sync.Mutex
	answers []Result // the last one repeats
	calls   atomic.Int32
	ids     []string
}

func (s *scripted) Send(_ context.Context, cmd *contract.SendCommand) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls.Add(1)
	s.ids = append(s.ids, cmd.ID)
	r := s.answers[0]
	if len(s.answers) > 1 {
		s.answers = s.answers[1:]
	}
	return r
}

func (s *scripted) Close() error { return nil }

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func testChain(o ChainOptions, ps ...Provider) (*Chain, *fakeClock) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	o.now = clk.now
	names := make([]string, len(ps))
	for i := range ps {
		names[i] = fmt.Sprintf("p%d", i+1)
	}
	return NewChain(contract.ChannelSMS, names, ps, o), clk
}

func cmdN(id string) *contract.SendCommand {
	return &contract.SendCommand{ID: id, Channel: contract.ChannelSMS, Attempt: 1, Address: "+1", IdempotencyKey: id}
}

var errRefused = &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection errRefused")}

func TestChainMovesOnlyOnDefiniteFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		first Result
		moves bool
	}{
		{"connection errRefused", Transient(0, fmt.Errorf("x: %w", errRefused)), true},
		{"dns failure", Transient(0, &net.DNSError{Err: "no such host", Name: "api.example"}), true},
		{"declared 503", Result{Outcome: contract.OutcomeTransient, Code: 503, Failover: true}, true},
		{"declared 429", Result{Outcome: contract.OutcomeThrottled, Code: 429, Failover: true}, true},
		{"declared 401", Result{Outcome: contract.OutcomePermanent, Code: 401, Failover: true}, true},
		{"unknown", Unknown(errors.New("no answer within 10s")), false},
		{"undeclared 503", Transient(503, errors.New("HTTP 503")), false},
		{"undeclared 429", Result{Outcome: contract.OutcomeThrottled, Code: 429}, false},
		{"permanent", Permanent(400, errors.New("bad number")), false},
		{"not attempted", NotAttempted(errors.New("cut-off")), false},
		{"success", Success(200), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := &scripted{answers: []Result{tc.first}}
			b := &scripted{answers: []Result{Success(201)}}
			c, _ := testChain(ChainOptions{}, a, b)
			r := c.Send(context.Background(), cmdN("x"))
			if got := b.calls.Load() == 1; got != tc.moves {
				t.Fatalf("second provider called: %v, want %v (result %+v)", got, tc.moves, r)
			}
			want := "p1"
			if tc.moves {
				want = "p2"
			}
			if r.Provider != want {
				t.Errorf("result names %q, want %q", r.Provider, want)
			}
		})
	}
}

// An id whose outcome at a provider stayed unknown is pinned to it: the
// next attempt goes to the same provider even when its circuit is open,
// since it may still deliver the first one.
func TestChainUnknownPinsTheID(t *testing.T) {
	t.Parallel()
	a := &scripted{answers: []Result{Unknown(errors.New("timeout")), Transient(0, errRefused)}}
	b := &scripted{answers: []Result{Success(200)}}
	c, _ := testChain(ChainOptions{FailureThreshold: 1}, a, b)
	if r := c.Send(context.Background(), cmdN("x")); r.Outcome != contract.OutcomeUnknown || b.calls.Load() != 0 {
		t.Fatalf("first attempt: %+v, second provider called %d times", r, b.calls.Load())
	}
	if c.Circuits()[0].State != CircuitOpen {
		t.Fatalf("circuit after an unknown with threshold 1: %s", c.Circuits()[0].State)
	}
	// Another id skips the open circuit...
	if r := c.Send(context.Background(), cmdN("y")); r.Provider != "p2" || r.Outcome != contract.OutcomeSuccess {
		t.Fatalf("other id: %+v", r)
	}
	// ...but x stays with p1, even on a definite failure there.
	r := c.Send(context.Background(), cmdN("x"))
	if r.Provider != "p1" || r.Outcome != contract.OutcomeTransient {
		t.Fatalf("pinned id: %+v, want p1's transient", r)
	}
	if b.ids[len(b.ids)-1] == "x" || a.calls.Load() != 2 {
		t.Errorf("pinned id reached p2 (%v) or p1 called %d times, want 2", b.ids, a.calls.Load())
	}
	// Once p1 answers for itself (success), x is free again.
	a.answers = []Result{Success(200)}
	c.links[0].br = &breaker{threshold: 1, coolDown: time.Hour, now: time.Now}
	c.Send(context.Background(), cmdN("x"))
	if _, ok := c.pinned.get("x"); ok {
		t.Error("x still pinned after p1's success")
	}
}

// A command's cut-off is the chain's: not_attempted does not move on (a
// mock next in line would deliver after the cut-off).
func TestChainStopsAtTheCutoff(t *testing.T) {
	t.Parallel()
	mock := NewMock(Simulation{}) // checks no cut-off: it would deliver
	c, _ := testChain(ChainOptions{}, providerFunc(func(ctx context.Context, cmd *contract.SendCommand) Result {
		return notHandedOver("test", 0)
	}), mock)
	cmd := cmdN("late")
	cmd.Cutoff = time.Now().Add(-time.Second)
	if r := c.Send(context.Background(), cmd); r.Outcome != contract.OutcomeNotAttempted || mock.Counts().Accepted != 0 {
		t.Fatalf("%+v, mock accepted %d", r, mock.Counts().Accepted)
	}
}

type providerFunc func(context.Context, *contract.SendCommand) Result

func (f providerFunc) Send(ctx context.Context, c *contract.SendCommand) Result { return f(ctx, c) }
func (f providerFunc) Close() error                                             { return nil }

func TestBreaker(t *testing.T) {
	t.Parallel()
	a := &scripted{answers: []Result{Transient(0, errRefused)}}
	b := &scripted{answers: []Result{Success(200)}}
	obs := &circuitLog{}
	c, clk := testChain(ChainOptions{FailureThreshold: 3, CoolDown: time.Minute, Observer: obs}, a, b)
	send := func() Result { return c.Send(context.Background(), cmdN(fmt.Sprint(clk.t.UnixNano()))) }
	for range 3 {
		send()
	}
	if a.calls.Load() != 3 || c.Circuits()[0].State != CircuitOpen {
		t.Fatalf("after 3 definite failures: %d calls, %s", a.calls.Load(), c.Circuits()[0].State)
	}
	for range 5 {
		clk.t = clk.t.Add(time.Second)
		if r := send(); r.Provider != "p2" {
			t.Fatalf("open circuit: %+v", r)
		}
	}
	if a.calls.Load() != 3 {
		t.Fatalf("an open circuit was called: %d calls", a.calls.Load())
	}
	// Cool-down over: one probe, which fails: open again.
	clk.t = clk.t.Add(time.Minute)
	send()
	if a.calls.Load() != 4 || c.Circuits()[0].State != CircuitOpen {
		t.Fatalf("failed probe: %d calls, %s", a.calls.Load(), c.Circuits()[0].State)
	}
	send()
	if a.calls.Load() != 4 {
		t.Fatal("called again right after a failed probe")
	}
	// Next probe succeeds: closed, and every attempt goes to p1 again.
	clk.t = clk.t.Add(time.Minute)
	a.answers = []Result{Success(200)}
	if r := send(); r.Provider != "p1" || c.Circuits()[0].State != CircuitClosed {
		t.Fatalf("successful probe: %+v, %s", r, c.Circuits()[0].State)
	}
	want := []string{"sms/p1=closed", "sms/p2=closed", "sms/p1=open", "sms/p1=half-open", "sms/p1=open", "sms/p1=half-open", "sms/p1=closed"}
	if fmt.Sprint(obs.seen) != fmt.Sprint(want) {
		t.Errorf("transitions %v, want %v", obs.seen, want)
	}
}

func TestBreakerOneProbeAtATime(t *testing.T) {
	t.Parallel()
	b := &breaker{threshold: 1, coolDown: time.Second, now: time.Now}
	b.record(healthFailed, false)
	b.openedAt = time.Now().Add(-time.Hour)
	ok1, probe1 := b.allow()
	ok2, _ := b.allow()
	if !ok1 || !probe1 || ok2 {
		t.Fatalf("half-open: first %v/%v, second %v: want one probe only", ok1, probe1, ok2)
	}
	b.record(healthUnknown, true) // a probe cut at shutdown says nothing
	if ok, probe := b.allow(); !ok || !probe {
		t.Fatal("no new probe after one that said nothing")
	}
}

func TestChainEveryCircuitOpen(t *testing.T) {
	t.Parallel()
	a := &scripted{answers: []Result{Transient(0, errRefused)}}
	b := &scripted{answers: []Result{Result{Outcome: contract.OutcomeTransient, Code: 503, Failover: true}}}
	c, clk := testChain(ChainOptions{FailureThreshold: 1, CoolDown: time.Minute}, a, b)
	r := c.Send(context.Background(), cmdN("a"))
	if r.Outcome != contract.OutcomeTransient || r.Code != 503 || r.Provider != "p2" {
		t.Fatalf("both failing: %+v, want p2's 503", r)
	}
	clk.t = clk.t.Add(20 * time.Second)
	r = c.Send(context.Background(), cmdN("b"))
	if r.Outcome != contract.OutcomeTransient || r.RetryAfter != 40*time.Second || a.calls.Load()+b.calls.Load() != 2 {
		t.Fatalf("every circuit open: %+v (calls %d, %d), want transient, retry after 40s, no call", r, a.calls.Load(), b.calls.Load())
	}
}

func TestPinsBounded(t *testing.T) {
	t.Parallel()
	p := newPins(2)
	p.put("a", 1)
	p.put("b", 1)
	p.forget("a")
	p.put("a", 0) // pinned again, in a new slot
	p.put("c", 1) // evicts the oldest slot (a's first), not a's new pin
	if i, ok := p.get("a"); !ok || i != 0 {
		t.Errorf("a: %d %v", i, ok)
	}
	if _, ok := p.get("b"); ok {
		t.Error("b outlived the bound")
	}
	if len(p.of) > 2 {
		t.Errorf("%d pins, bound 2", len(p.of))
	}
}

// A webhook that takes the request and never answers: unknown, and the
// chain must not move it (the second server sees nothing).
func TestChainWebhookUnknownDoesNotMove(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer hang.Close()
	defer close(release)
	var second atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { second.Add(1) }))
	defer other.Close()
	set, err := OpenSet([]string{"sms=" + hang.URL, "sms=" + other.URL}, Options{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	r := set[contract.ChannelSMS].Send(context.Background(), cmdN("u"))
	if r.Outcome != contract.OutcomeUnknown || second.Load() != 0 {
		t.Fatalf("%+v; second provider got %d requests, want unknown and none", r, second.Load())
	}
}

// Many attempts at once through a chain whose first provider is down:
// each is delivered exactly once, by the second (run with -race).
func TestChainConcurrent(t *testing.T) {
	t.Parallel()
	mock := NewMockServer(MockServerOptions{})
	live := httptest.NewServer(mock)
	defer live.Close()
	set, err := OpenSet([]string{"sms=" + deadURL(t), "sms=" + live.URL + "/sms"}, Options{Chain: ChainOptions{FailureThreshold: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	const n = 200
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range n {
		wg.Go(func() {
			cmd := cmdN(fmt.Sprintf("c-%d", i))
			if r := set[contract.ChannelSMS].Send(context.Background(), cmd); r.Outcome != contract.OutcomeSuccess {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if st := mock.Stats(); failed.Load() != 0 || st.UniqueIDs != n || st.Duplicates != 0 {
		t.Errorf("%d failed; live provider: %d unique, %d duplicates; want 0, %d, 0", failed.Load(), st.UniqueIDs, st.Duplicates, n)
	}
}

// After a failover, the next provider is not called within the min budget
// of the cut-off (the sender's rule for the first call).
func TestChainFailoverKeepsTheMinBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		left  time.Duration
		calls int32
		want  contract.Outcome
	}{{500 * time.Millisecond, 0, contract.OutcomeNotAttempted}, {2 * time.Second, 1, contract.OutcomeSuccess}} {
		a := &scripted{answers: []Result{Transient(0, errRefused)}}
		b := &scripted{answers: []Result{Success(200)}}
		c, clk := testChain(ChainOptions{MinBudget: time.Second}, a, b)
		cmd := cmdN("x")
		cmd.Cutoff = clk.t.Add(tc.left)
		r := c.Send(context.Background(), cmd)
		if r.Outcome != tc.want || b.calls.Load() != tc.calls {
			t.Errorf("%s left: %s (%v), second provider called %d times; want %s, %d", tc.left, r.Outcome, r.Err, b.calls.Load(), tc.want, tc.calls)
		}
	}
}

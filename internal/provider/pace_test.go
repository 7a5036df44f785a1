package provider

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// testPacer has places (free ones, taken at once), expects one in delay,
// and gives one to a waiting Take when its channel is sent to.
type testPacer struct {
	mu      sync.Mutex
	places  int
	delay   time.Duration
	grant   chan struct{}
	out     int // places taken and not given back
	answers []Result
	unused  int // places given back without a call
}

func newTestPacer(places int, delay time.Duration) *testPacer {
	return &testPacer{places: places, delay: delay, grant: make(chan struct{}, 16)}
}

func (p *testPacer) TryTake() (Permit, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.places == 0 {
		return nil, false
	}
	p.places--
	p.out++
	return testPermit{p}, true
}

func (p *testPacer) Take(ctx context.Context) (Permit, error) {
	if pm, ok := p.TryTake(); ok {
		return pm, nil
	}
	select {
	case <-p.grant:
		p.mu.Lock()
		p.out++
		p.mu.Unlock()
		return testPermit{p}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *testPacer) Delay() time.Duration { return p.delay }

func (p *testPacer) state() (out, unused int, answers []Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out, p.unused, append([]Result(nil), p.answers...)
}

type testPermit struct{ p *testPacer }

func (t testPermit) Done(r *Result, _ time.Duration) {
	t.p.mu.Lock()
	defer t.p.mu.Unlock()
	t.p.out--
	if r == nil {
		t.p.unused++
		return
	}
	t.p.answers = append(t.p.answers, *r)
}

func paced(c *Chain, ps ...*testPacer) {
	byName := map[string]Pacer{}
	for i, n := range c.Providers() {
		byName[n] = ps[i]
	}
	c.Pace(func(n string) Pacer { return byName[n] })
}

// A provider without a place (paused after a 429, past its rate, at its
// concurrency limit) is skipped for the call when another can take it.
func TestChainSkipsAPacedOutProvider(t *testing.T) {
	a := &scripted{answers: []Result{Success(200)}}
	b := &scripted{answers: []Result{Success(201)}}
	c, _ := testChain(ChainOptions{}, a, b)
	pa, pb := newTestPacer(0, time.Second), newTestPacer(-1, 0)
	paced(c, pa, pb)
	r := c.Send(context.Background(), cmdN("x"))
	if r.Outcome != contract.OutcomeSuccess || r.Provider != "p2" || a.calls.Load() != 0 {
		t.Fatalf("%+v, first provider called %d times: want p2's success and no call to p1", r, a.calls.Load())
	}
	// Once p1 has a place again, it takes the calls (chain order).
	pa.mu.Lock()
	pa.places = 1
	pa.mu.Unlock()
	if r := c.Send(context.Background(), cmdN("y")); r.Provider != "p1" {
		t.Fatalf("p1 with a place: call went to %q", r.Provider)
	}
	for i, p := range []*testPacer{pa, pb} {
		if out, _, answers := p.state(); out != 0 || len(answers) != 1 {
			t.Errorf("pacer %d: %d places not given back, %d answers; want 0, 1", i+1, out, len(answers))
		}
	}
}

// With no provider able to take a call at once, the call waits for the
// one expected soonest, and only until the cut-off less the min budget.
func TestChainWaitsForTheSoonestProvider(t *testing.T) {
	a := &scripted{answers: []Result{Success(200)}}
	b := &scripted{answers: []Result{Success(201)}}
	c, _ := testChain(ChainOptions{}, a, b)
	pa, pb := newTestPacer(0, time.Minute), newTestPacer(0, 10*time.Millisecond)
	paced(c, pa, pb)
	pb.grant <- struct{}{}
	if r := c.Send(context.Background(), cmdN("x")); r.Provider != "p2" || a.calls.Load() != 0 {
		t.Fatalf("%+v: want the call to wait for p2, expected sooner", r)
	}

	// No place before the cut-off: not attempted, no call.
	cmd := cmdN("late")
	cmd.Cutoff = c.now().Add(50 * time.Millisecond)
	r := c.Send(context.Background(), cmd)
	if r.Outcome != contract.OutcomeNotAttempted || a.calls.Load() != 0 || b.calls.Load() != 1 {
		t.Fatalf("%+v (calls %d, %d): want not_attempted without a call", r, a.calls.Load(), b.calls.Load())
	}
}

// A pinned id (unknown outcome at p1) waits for p1's place and never
// moves to p2, which has places.
func TestChainPinnedWaitsForItsProvider(t *testing.T) {
	a := &scripted{answers: []Result{Unknown(errors.New("timeout")), Success(200)}}
	b := &scripted{answers: []Result{Success(201)}}
	c, _ := testChain(ChainOptions{}, a, b)
	pa, pb := newTestPacer(1, time.Minute), newTestPacer(-1, 0)
	paced(c, pa, pb)
	if r := c.Send(context.Background(), cmdN("x")); r.Outcome != contract.OutcomeUnknown {
		t.Fatalf("first attempt: %+v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := c.Reserve(ctx, cmdN("x")); err == nil {
		t.Fatal("reserved a place for a pinned id while its provider had none")
	}
	pa.grant <- struct{}{}
	r := c.Send(context.Background(), cmdN("x"))
	if r.Provider != "p1" || r.Outcome != contract.OutcomeSuccess || b.calls.Load() != 0 {
		t.Fatalf("pinned id: %+v, p2 called %d times; want p1 only", r, b.calls.Load())
	}
}

// After a definite failure, the next provider with a place takes the
// attempt: one without a place is skipped.
func TestChainFailoverSkipsAPacedOutProvider(t *testing.T) {
	a := &scripted{answers: []Result{{Outcome: contract.OutcomeThrottled, Code: 429, Failover: true, RetryAfter: 5 * time.Second}}}
	b := &scripted{answers: []Result{Success(201)}}
	d := &scripted{answers: []Result{Success(202)}}
	c, _ := testChain(ChainOptions{}, a, b, d)
	pa, pb, pd := newTestPacer(-1, 0), newTestPacer(0, time.Second), newTestPacer(-1, 0)
	paced(c, pa, pb, pd)
	r := c.Send(context.Background(), cmdN("x"))
	if r.Provider != "p3" || r.Outcome != contract.OutcomeSuccess || b.calls.Load() != 0 {
		t.Fatalf("%+v, p2 called %d times: want p3's success", r, b.calls.Load())
	}
	// The throttled answer reached p1's pacer, which pauses p1 (the
	// sender's pacer does; the chain hands it the answer).
	if _, _, answers := pa.state(); len(answers) != 1 || answers[0].Outcome != contract.OutcomeThrottled || answers[0].RetryAfter != 5*time.Second {
		t.Errorf("p1's pacer got %+v, want the throttled answer", answers)
	}
}

// A reservation not used gives its place (and its circuit's probe) back.
func TestReservationRelease(t *testing.T) {
	a := &scripted{answers: []Result{Success(200)}}
	c, _ := testChain(ChainOptions{}, a, &scripted{answers: []Result{Success(200)}})
	pa := newTestPacer(-1, 0)
	paced(c, pa, newTestPacer(-1, 0))
	r, err := c.Reserve(context.Background(), cmdN("x"))
	if err != nil || r.Provider() != "p1" {
		t.Fatalf("reserve: %v %q", err, r.Provider())
	}
	r.Release()
	r.Release()
	if out, unused, _ := pa.state(); out != 0 || unused != 1 || a.calls.Load() != 0 {
		t.Errorf("after release: %d out, %d given back unused, %d calls; want 0, 1, 0", out, unused, a.calls.Load())
	}
}

// A definite failure close to the cut-off with no other circuit letting
// an attempt through is the attempt's answer (as before pacing), not
// not_attempted: there was no next provider to hold back.
func TestChainFailoverNearTheCutoffWithEveryOtherCircuitOpen(t *testing.T) {
	a := &scripted{answers: []Result{Transient(0, errRefused)}}
	b := &scripted{answers: []Result{Success(200)}}
	c, clk := testChain(ChainOptions{FailureThreshold: 1, CoolDown: time.Hour, MinBudget: time.Second}, a, b)
	c.links[1].br.record(healthFailed, false) // p2's circuit opens
	cmd := cmdN("x")
	cmd.Cutoff = clk.t.Add(500 * time.Millisecond)
	r := c.Send(context.Background(), cmd)
	if r.Outcome != contract.OutcomeTransient || r.Provider != "p1" || b.calls.Load() != 0 {
		t.Fatalf("%+v: want p1's definite transient as the answer, p2 not called", r)
	}
}

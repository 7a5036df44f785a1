package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/loadtest"
	"github.com/herald-dispatch/herald/internal/provider"
)

// evidence builds a run of n notifications, all published at t0 and all
// delivered once by email and sent in PostgreSQL; tests then break it.
func evidence(t *testing.T, n int, honour bool) *Evidence {
	t.Helper()
	p, err := loadtest.NewPlan(loadtest.Workload{N: n, Campaign: "chk", AttemptsPerChannel: 2})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	e := &Evidence{Plan: p, Partitions: 6, Rows: map[string]Row{}, Honour: honour, Channels: 2,
		AttemptsPerChannel: 2, InFlightWindow: 2 * time.Second, T0: t0}
	for i := range n {
		id := p.ID(i)
		p.Published[i].Store(t0.UnixNano())
		at := t0.Add(time.Duration(i) * time.Second)
		e.Calls = append(e.Calls, Call{Caller: "herald-1", ID: id, Channel: contract.ChannelEmail, Attempt: 1, Key: id,
			Start: at, End: at.Add(100 * time.Millisecond), Status: 200, Outcome: OutcomeDelivered})
		e.Deliveries = append(e.Deliveries, provider.Delivery{ID: id, Channel: contract.ChannelEmail, Attempt: 1, Key: id, At: at})
		e.Rows[id] = Row{Status: "sent", Channel: "email", Attempts: 1, Version: 3, UpdatedAt: at}
	}
	return e
}

func TestCheckCleanRunPasses(t *testing.T) {
	v := Check(evidence(t, 10, true))
	if !v.Passed() || v.DeliveredOnce != 10 || v.Valid != 10 || v.Published != 10 {
		t.Fatalf("clean run: %+v", v)
	}
}

func TestCheckLost(t *testing.T) {
	e := evidence(t, 10, true)
	lost := e.Plan.ID(3)
	e.Deliveries = append(e.Deliveries[:3], e.Deliveries[4:]...)
	e.Faults = []FaultEvent{{Fault: Fault{Kind: KillBroker}, Start: e.T0.Add(2 * time.Second), End: e.T0.Add(4 * time.Second)}}
	v := Check(e)
	if v.Passed() || len(v.Lost) != 1 || v.Lost[0] != lost {
		t.Fatalf("lost: %+v", v)
	}
	// Postgres says sent, the provider has no delivery: it differs too.
	if len(v.Differs) != 1 || v.Differs[0] != lost {
		t.Fatalf("differs: %v", v.Differs)
	}
	d := strings.Join(v.Details, "\n")
	for _, want := range []string{"lost: " + lost, "deliveries (0)", "postgres: status sent", "kill -9 broker at t+2.0s",
		"from herald-1: email attempt 1"} {
		if !strings.Contains(d, want) {
			t.Fatalf("details lack %q:\n%s", want, d)
		}
	}
}

// A notification that failed at the provider on every attempt of every
// channel is legitimately final; one with fewer failures is lost.
func TestCheckLegitimateFailure(t *testing.T) {
	e := evidence(t, 2, true)
	e.Deliveries = nil
	e.Calls = nil
	for i := range 2 {
		id := e.Plan.ID(i)
		e.Rows[id] = Row{Status: "failed"}
		for _, ch := range []contract.Channel{contract.ChannelEmail, contract.ChannelSMS} {
			for a := 1; a <= 2; a++ {
				if i == 1 && ch == contract.ChannelSMS && a == 2 {
					continue // the second id's last attempt never reached the provider
				}
				e.Calls = append(e.Calls, Call{Caller: "herald-1", ID: id, Channel: ch, Attempt: a, Outcome: OutcomeFailed, Status: 503})
			}
		}
	}
	v := Check(e)
	if v.Failed != 1 || len(v.Lost) != 1 || v.Lost[0] != e.Plan.ID(1) {
		t.Fatalf("failed %d lost %v", v.Failed, v.Lost)
	}
}

func TestCheckDuplicates(t *testing.T) {
	for _, honour := range []bool{true, false} {
		e := evidence(t, 10, honour)
		dup := e.Deliveries[5]
		dup.At = dup.At.Add(30 * time.Second)
		e.Deliveries = append(e.Deliveries, dup)
		// A kill while id 5's call was open: one call in flight.
		kill := e.Calls[5].Start.Add(50 * time.Millisecond)
		e.Faults = []FaultEvent{{Fault: Fault{Kind: KillInstance}, Start: kill, End: kill.Add(100 * time.Millisecond)}}
		v := Check(e)
		if len(v.Duplicated) != 1 || v.Extra != 1 {
			t.Fatalf("honour %v: %+v", honour, v)
		}
		// Calls 3 and 4 (answered 1.95 s and 0.95 s before the kill) and 5
		// (open) were in flight; call 2 was answered 2.95 s before.
		if v.InFlightAtKills != 3 || len(v.UnexplainedDuplicates) != 0 {
			t.Fatalf("honour %v: in flight %d, unexplained %v", honour, v.InFlightAtKills, v.UnexplainedDuplicates)
		}
		if v.Passed() == honour {
			t.Fatalf("honour %v: passed %v, failures %v", honour, v.Passed(), v.Failures)
		}
	}
	// Without idempotency, more extra deliveries than calls in flight fail.
	e := evidence(t, 10, false)
	for _, i := range []int{1, 7} {
		d := e.Deliveries[i]
		e.Deliveries = append(e.Deliveries, d, d)
	}
	kill := e.Calls[7].Start.Add(50 * time.Millisecond)
	e.Faults = []FaultEvent{{Fault: Fault{Kind: KillInstance}, Start: kill, End: kill.Add(100 * time.Millisecond)}}
	v := Check(e)
	if v.Passed() || v.Extra != 4 || v.InFlightAtKills != 3 || len(v.UnexplainedDuplicates) != 1 {
		t.Fatalf("%+v", v)
	}
	// Strict, the duplicate without a call in flight at a kill fails too.
	e.Strict = true
	if v := Check(e); !strings.Contains(strings.Join(v.Failures, "\n"), "1 duplicated notifications had no provider call in flight") {
		t.Fatalf("strict: %v", v.Failures)
	}
	e.Strict = false
	// A kill of another instance does not concern herald-1's calls; a
	// broker kill concerns every instance's.
	e.Faults[0].Instance = 1
	if v := Check(e); v.InFlightAtKills != 0 {
		t.Fatalf("herald-2's kill counted %d of herald-1's calls", v.InFlightAtKills)
	}
	e.Faults[0].Kind = KillBroker
	if v := Check(e); v.InFlightAtKills != 3 {
		t.Fatalf("broker kill: %d calls in flight, want 3", v.InFlightAtKills)
	}
	e.Faults[0].Kind, e.Faults[0].Instance = KillInstance, 0
	// A failure answered before the kill cannot be delivered again.
	e.Calls[6].Outcome = OutcomeFailed
	if v := Check(e); v.InFlightAtKills != 2 {
		t.Fatalf("a failed call counted in flight: %d", v.InFlightAtKills)
	}
	// A call that reached the provider while its instance was paused was
	// sent before the pause; one after the pause ended was not.
	e.Faults[0].Kind = PauseInstance
	e.Faults[0].Start = e.Calls[5].Start.Add(50 * time.Millisecond)
	e.Faults[0].End = e.Calls[9].Start.Add(-time.Millisecond)
	if v := Check(e); v.InFlightAtKills != 6 {
		t.Fatalf("pause: %d calls in flight, want 6 (3 and 4 delivered before, 5 open, 6 to 8 arrived during it)", v.InFlightAtKills)
	}
	// A provider outage is no kill: its calls do not count as in flight.
	e.Faults[0].Kind = ProviderOutage
	if v := Check(e); v.InFlightAtKills != 0 {
		t.Fatalf("outage counted %d calls in flight", v.InFlightAtKills)
	}
}

func TestCheckPostgres(t *testing.T) {
	e := evidence(t, 10, true)
	e.Rows[e.Plan.ID(1)] = Row{Status: "sending", Channel: "email"}
	delete(e.Rows, e.Plan.ID(2))
	e.Rows[e.Plan.ID(3)] = Row{Status: "sent", Channel: "sms"}
	e.Rows[e.Plan.ID(4)] = Row{Status: "failed", Channel: "email"}
	v := Check(e)
	if len(v.NotFinal) != 2 || len(v.Differs) != 2 || len(v.Lost) != 0 || v.Passed() {
		t.Fatalf("not final %v, differs %v, lost %v", v.NotFinal, v.Differs, v.Lost)
	}
	if !strings.Contains(strings.Join(v.Details, "\n"), "postgres: no row") {
		t.Fatalf("details: %v", v.Details)
	}
}

func TestCheckUnknownDelivery(t *testing.T) {
	e := evidence(t, 3, true)
	e.Deliveries = append(e.Deliveries, provider.Delivery{ID: "someone-else", Channel: contract.ChannelEmail, Attempt: 1})
	if v := Check(e); v.Unknown != 1 || v.Passed() {
		t.Fatalf("%+v", v)
	}
}

func TestSummaryNamesFailures(t *testing.T) {
	e := evidence(t, 4, true)
	e.Deliveries = e.Deliveries[1:]
	r := &Result{Name: "x", Instances: 2, Honour: true, Started: e.T0, Verdict: Check(e), Waited: time.Minute,
		Faults: []FaultEvent{{Fault: Fault{Kind: PauseInstance, Instance: 0}, Start: e.T0.Add(time.Second), End: e.T0.Add(16 * time.Second),
			OpenCalls: 7, TargetOpen: 4}},
		Load:       Config{CPUHog: 2, Accept: Accept{Backlog: 5, Delay: 2 * time.Millisecond, CloseEvery: 4}}.load(),
		LogSignals: map[string]int{"out of order sequence number": 3}, Outcomes: map[string]int{OutcomeDelivered: 3, OutcomeAbandoned: 2}}
	r.Verdict.RecallBound = 100
	var b strings.Builder
	Summary(&b, []*Result{r})
	s := b.String()
	for _, want := range []string{"| x | 2 | honours key | 4 | 1 | 1 | 0 (0) |", "not reached (waited 1m0s)", "FAIL",
		"SIGSTOP instance (zombie) 1 at t+1.0s until t+16.0s, 7 provider calls open (4 from herald-1)", "lost: " + e.Plan.ID(0),
		"Load: a CPU hog spinning on 2 cores, a provider slow to accept (listen backlog 5, 2ms before each accept, every 4th answer closes its connection).",
		`- "out of order sequence number": 3`, "at most 100 allowed", "Provider calls by outcome: 3 delivered, 2 abandoned."} {
		if !strings.Contains(s, want) {
			t.Fatalf("summary lacks %q:\n%s", want, s)
		}
	}
}

// With SendConcurrency set and a provider that ignores the key, the
// notifications delivered twice may be at most the send concurrency per
// instance hit by a kill, and at most the calls in flight at the kills.
func TestCheckRecallBound(t *testing.T) {
	// 10 calls one second apart; the kill of herald-1 at call 6's start
	// finds calls 4 and 5 (delivered within 2 s) and 6 (open) in flight.
	build := func(dups []int) *Evidence {
		e := evidence(t, 10, false)
		e.Strict, e.SendConcurrency, e.Instances = true, 2, 2
		for _, i := range dups {
			d := e.Deliveries[i]
			d.At = d.At.Add(30 * time.Second)
			e.Deliveries = append(e.Deliveries, d)
		}
		kill := e.Calls[6].Start.Add(50 * time.Millisecond)
		e.Faults = []FaultEvent{{Fault: Fault{Kind: KillInstance}, Start: kill, End: kill.Add(100 * time.Millisecond)}}
		return e
	}
	v := Check(build([]int{5, 6}))
	if !v.Passed() || v.RecallBound != 2 || v.InFlightAtKills != 3 {
		t.Fatalf("2 recalled, bound 2: %+v", v)
	}
	// Three recalled: within the calls in flight (3), above the send
	// concurrency (2).
	v = Check(build([]int{4, 5, 6}))
	if v.Passed() || !strings.Contains(strings.Join(v.Failures, "\n"), "3 notifications delivered more than once without idempotency, more than the send concurrency 2 times the 1 instances") {
		t.Fatalf("3 recalled, bound 2: %v", v.Failures)
	}
	// A broker kill hits every instance: the bound is 2 × 2.
	e := build([]int{4, 5, 6})
	e.Faults[0].Kind = KillBroker
	if v := Check(e); !v.Passed() || v.RecallBound != 4 {
		t.Fatalf("broker kill: bound %d, failures %v", v.RecallBound, v.Failures)
	}
	// Above the calls in flight, within the send concurrency.
	e = build([]int{3, 4, 5, 6})
	e.SendConcurrency = 10
	e.Faults[0].Start = e.Calls[5].Start.Add(50 * time.Millisecond) // calls 3, 4 and 5 in flight, 6 not yet made
	e.Faults[0].End = e.Faults[0].Start.Add(100 * time.Millisecond)
	if v := Check(e); v.Passed() || !strings.Contains(strings.Join(v.Failures, "\n"), "4 notifications delivered more than once without idempotency, more than the 3 provider calls in flight") {
		t.Fatalf("above the calls in flight: %+v", v)
	}
	// Honoured keys, or no send concurrency: no bound is taken.
	e = build([]int{4, 5, 6})
	e.SendConcurrency = 0
	if v := Check(e); v.RecallBound != 0 || !v.Passed() {
		t.Fatalf("no send concurrency: %+v", v)
	}
}

// A run must be all final within the bound after the last fault: seen
// later (the count is polled) fails as surely as never.
func TestFinalFailure(t *testing.T) {
	for _, tc := range []struct {
		res  Result
		want string
	}{
		{Result{AllFinal: true, ToAllFinal: 29 * time.Second}, ""},
		{Result{AllFinal: true, ToAllFinal: 30 * time.Second}, ""},
		{Result{AllFinal: true, ToAllFinal: 31*time.Second + 240*time.Millisecond}, "all final 31.2s after the last fault, more than the 30s bound"},
		{Result{Waited: 31 * time.Second}, "not all final 31s after the last fault"},
	} {
		if got := finalFailure(&tc.res, 30*time.Second); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.res, got, tc.want)
		}
	}
}

// Ids late at the bound are explained, with their calls and row; the
// verdict on time is the run's (finalFailure), not Check's.
func TestCheckLate(t *testing.T) {
	e := evidence(t, 3, true)
	e.Late = []string{e.Plan.ID(2)}
	v := Check(e)
	d := strings.Join(v.Details, "\n")
	if !v.Passed() || !strings.Contains(d, "not final at the bound after the last fault: "+e.Plan.ID(2)) || !strings.Contains(d, "deliveries (1)") {
		t.Fatalf("passed %v, details:\n%s", v.Passed(), d)
	}
}

// The tail (ids not final at half the bound) is explained on a passing
// run, at most tailDetails of them, and fails nothing.
func TestCheckTail(t *testing.T) {
	e := evidence(t, 8, true)
	for i := range 7 {
		e.Tail = append(e.Tail, e.Plan.ID(i))
	}
	v := Check(e)
	d := strings.Join(v.Details, "\n")
	if !v.Passed() || strings.Count(d, "tail (not a failure): not final at half the bound") != tailDetails || !strings.Contains(d, "2 more not final at half the bound") {
		t.Fatalf("passed %v, details:\n%s", v.Passed(), d)
	}
}

package loadtest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/provider"
)

// world is a run that went right: every record published, every valid
// notification called once, after its release (window_queued and
// expiring ones before their window opens or they expire), delivered
// once by email, reported sent, and every malformed record
// dead-lettered.
func world(t *testing.T) (*Plan, *Observed) {
	t.Helper()
	p, err := NewPlan(Workload{N: 2000, Duplicates: 0.05, Blackout: 0.05, NotBefore: 0.05, Malformed: 0.01,
		WindowQueued: 0.05, Expiring: 0.05, SlowProvider: 0.02, Campaign: "w", Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2025, 11, 3, 12, 0, 0, 0, time.UTC)
	o := &Observed{FirstCall: make([]int64, p.W.N), Delivered: make([]int32, p.W.N), DeliveredOn: make([]uint8, p.W.N),
		Forbidden: make([]int32, p.W.N), ForbiddenBy: make([]time.Duration, p.W.N),
		DB:       DBCounts{ByStatus: map[string]int64{}, SentByChannel: map[string]int64{}, NotSent: map[string]string{}},
		Provider: provider.Stats{Channels: map[contract.Channel]*provider.ChannelStats{}}}
	var email provider.ChannelStats
	for i, k := range p.Kinds {
		now := start.Add(time.Duration(i) * time.Millisecond)
		key, value := p.First(i, now)
		if k == KindMalformed {
			o.DLQ = append(o.DLQ, contract.DeadLetter{Reason: "malformed", Key: key, Value: value})
			continue
		}
		call := now.Add(20 * time.Millisecond)
		if k.Held() {
			call = time.Unix(0, p.Release[i]).Add(5 * time.Millisecond)
		}
		o.FirstCall[i] = call.UnixNano()
		o.Delivered[i] = 1
		o.DeliveredOn[i] = channelBit(contract.ChannelEmail)
		email.Accepted++
		email.UniqueIDs++
		o.DB.Rows++
		o.DB.ByStatus["sent"]++
		o.DB.SentByChannel["email"]++
	}
	o.Provider.Channels[contract.ChannelEmail] = &email
	o.Provider.Accepted, o.Provider.UniqueIDs = email.Accepted, email.UniqueIDs
	o.DB.Duplicates = int64(len(p.Rerun))
	return p, o
}

func firstIndex(p *Plan, k Kind) int {
	for i, x := range p.Kinds {
		if x == k {
			return i
		}
	}
	panic("no " + k.String())
}

func failedNames(rs []CheckResult) []string {
	var out []string
	for _, r := range Failed(rs) {
		out = append(out, r.Name)
	}
	return out
}

func wantOnlyFailure(t *testing.T, rs []CheckResult, name, example string) {
	t.Helper()
	f := Failed(rs)
	if len(f) != 1 || f[0].Name != name {
		t.Fatalf("failed checks %v, want only %q", failedNames(rs), name)
	}
	if example != "" && !strings.Contains(strings.Join(f[0].Examples, "\n"), example) {
		t.Fatalf("examples %q do not name %q", f[0].Examples, example)
	}
}

func TestChecksPassOnCleanRun(t *testing.T) {
	p, o := world(t)
	if f := Failed(Check(p, o)); len(f) > 0 {
		t.Fatalf("clean run failed: %+v", f)
	}
}

func TestCheckDetectsLoss(t *testing.T) {
	p, o := world(t)
	i := firstIndex(p, KindNormal)
	o.Delivered[i] = 0
	o.Provider.UniqueIDs--
	o.Provider.Channels[contract.ChannelEmail].UniqueIDs--
	o.DB.ByStatus["sent"]--
	o.DB.SentByChannel["email"]--
	o.DB.ByStatus["failed"]++
	o.DB.Rows += 0
	// Reported failed: not a loss.
	o.DB.NotSent[p.ID(i)] = "failed"
	if f := Failed(Check(p, o)); len(f) > 0 {
		t.Fatalf("a failure reported in Postgres counted as a loss: %+v", f)
	}
	// Reported sent but never delivered: a loss.
	delete(o.DB.NotSent, p.ID(i))
	wantOnlyFailure(t, Check(p, o), "exactly once at the provider", p.ID(i))
}

func TestCheckDetectsDuplicate(t *testing.T) {
	p, o := world(t)
	i := firstIndex(p, KindNormal)
	o.Delivered[i] = 2
	rs := Check(p, o)
	wantOnlyFailure(t, rs, "exactly once at the provider", p.ID(i)+" x2")
}

func TestCheckDetectsMalformedDelivered(t *testing.T) {
	p, o := world(t)
	o.Delivered[firstIndex(p, KindMalformed)] = 1
	wantOnlyFailure(t, Check(p, o), "exactly once at the provider", "")
}

func TestCheckDetectsBlackoutViolation(t *testing.T) {
	p, o := world(t)
	i := firstIndex(p, KindBlackout)
	// Contacted one second before the window ends.
	o.FirstCall[i] = p.Release[i] - int64(time.Second)
	wantOnlyFailure(t, Check(p, o), "nobody contacted inside a blackout window", p.ID(i))
	// At the window's end exactly is allowed: [from, to).
	o.FirstCall[i] = p.Release[i]
	if f := Failed(Check(p, o)); len(f) > 0 {
		t.Fatalf("call at the window's end flagged: %+v", f)
	}
}

func TestCheckDetectsEarlyNotBefore(t *testing.T) {
	p, o := world(t)
	i := firstIndex(p, KindNotBefore)
	o.FirstCall[i] = p.Release[i] - 1
	wantOnlyFailure(t, Check(p, o), "nothing sent before not_before", p.ID(i))
}

func TestCheckDetectsDatabaseMismatch(t *testing.T) {
	p, o := world(t)
	o.DB.SentByChannel["email"]--
	o.DB.SentByChannel["sms"]++
	wantOnlyFailure(t, Check(p, o), "Postgres counts equal the provider's", "sent by email")

	p, o = world(t)
	o.DB.Duplicates--
	wantOnlyFailure(t, Check(p, o), "Postgres counts equal the provider's", "duplicates")
}

func TestCheckDetectsNotFinal(t *testing.T) {
	p, o := world(t)
	i := firstIndex(p, KindNormal)
	o.DB.ByStatus["sent"]--
	o.DB.ByStatus["retrying"]++
	o.DB.NotSent[p.ID(i)] = "retrying"
	rs := Check(p, o)
	if f := failedNames(rs); len(f) != 2 || f[0] != "every notification final" {
		t.Fatalf("failed %v, want the final check (and the count check)", f)
	}
}

func TestCheckDetectsDLQProblems(t *testing.T) {
	p, o := world(t)
	missing := string(o.DLQ[0].Key)
	o.DLQ = o.DLQ[1:]
	wantOnlyFailure(t, Check(p, o), "every malformed record in herald.dlq", missing)

	p, o = world(t)
	o.DLQ[0].Value = append([]byte(nil), "changed"...)
	wantOnlyFailure(t, Check(p, o), "every malformed record in herald.dlq", "other bytes")

	p, o = world(t)
	o.DLQ = append(o.DLQ, contract.DeadLetter{Reason: "invalid", Key: []byte(p.ID(0))})
	wantOnlyFailure(t, Check(p, o), "every malformed record in herald.dlq", "unexpected dead letter")
}

func TestObservedFromDeliveries(t *testing.T) {
	p, _ := NewPlan(Workload{N: 10, Campaign: "d"})
	var o Observed
	ObservedFromDeliveries(p, []provider.Delivery{{ID: p.ID(1)}, {ID: p.ID(1)}, {ID: p.ID(2)}, {ID: "stranger"}}, &o)
	if o.Delivered[1] != 2 || o.Delivered[2] != 1 || o.Delivered[0] != 0 || o.UnknownCalls != 1 {
		t.Fatalf("delivered %v unknown %d", o.Delivered, o.UnknownCalls)
	}
}

func TestCheckDetectsCallInsideAQueuedWindow(t *testing.T) {
	const name = "no provider call starts inside a window that opens while queued"
	p, o := world(t)
	i := firstIndex(p, KindWindowQueued)
	// Arrived 300 ms after the opening: started before it, in transit.
	o.Forbidden[i], o.ForbiddenBy[i] = 1, 300*time.Millisecond
	rs := Check(p, o)
	if f := Failed(rs); len(f) > 0 {
		t.Fatalf("a call in transit at the opening failed: %+v", f)
	}
	if d := checkNamed(t, rs, name).Detail; !strings.Contains(d, "1 whose call arrived within 1s") {
		t.Fatalf("detail %q does not count the call in transit", d)
	}
	o.ForbiddenBy[i] = 5 * time.Second
	wantOnlyFailure(t, Check(p, o), name, p.ID(i))

	// A blackout notification's window counts too.
	p, o = world(t)
	j := firstIndex(p, KindBlackout)
	o.Forbidden[j], o.ForbiddenBy[j] = 2, time.Hour
	wantOnlyFailure(t, Check(p, o), name, p.ID(j))
}

func TestCheckCountsHeldAndExpired(t *testing.T) {
	p, o := world(t)
	i := firstIndex(p, KindWindowQueued)
	o.FirstCall[i] = p.Release[i] // held to the window's end
	k := firstIndex(p, KindExpiring)
	o.FirstCall[k], o.Delivered[k], o.DeliveredOn[k] = 0, 0, 0 // expired unsent
	o.DB.NotSent[p.ID(k)] = string(contract.StatusExpired)
	o.DB.ByStatus["sent"]--
	o.DB.ByStatus["expired"]++
	o.DB.SentByChannel["email"]--
	o.Provider.UniqueIDs--
	o.Provider.Channels[contract.ChannelEmail].UniqueIDs--
	rs := Check(p, o)
	if f := Failed(rs); len(f) > 0 {
		t.Fatalf("failed: %+v", f)
	}
	queued, expiring := p.Count(KindWindowQueued), p.Count(KindExpiring)
	for _, want := range []string{
		fmt.Sprintf("%d notifications whose window opened at least %s after publication: %d first called before it opened, 1 held and first called after it ended, 0 never called; 0 notifications", queued, p.W.WindowAfter, queued-1),
		fmt.Sprintf("%d notifications expiring 20s after publication: %d sent, 1 expired, 0 otherwise final; 0 called after expires_at", expiring, expiring-1),
	} {
		found := false
		for _, r := range rs {
			found = found || strings.HasPrefix(r.Detail, want)
		}
		if !found {
			t.Errorf("no check detail starts with %q", want)
		}
	}
}

func TestCheckDetectsCallAfterExpiry(t *testing.T) {
	p, o := world(t)
	i := firstIndex(p, KindExpiring)
	o.Forbidden[i], o.ForbiddenBy[i] = 1, 2*time.Second
	wantOnlyFailure(t, Check(p, o), "no provider call starts after expires_at", p.ID(i))
	o.ForbiddenBy[i] = time.Second // at the transit allowance: in transit
	if f := Failed(Check(p, o)); len(f) > 0 {
		t.Fatalf("a call in transit at expires_at failed: %+v", f)
	}
}

func TestCheckDetectsDeliveryOnTwoChannels(t *testing.T) {
	p, o := world(t)
	i := firstIndex(p, KindSlowProvider)
	o.Delivered[i] = 2
	o.DeliveredOn[i] |= channelBit(contract.ChannelSMS)
	rs := Check(p, o)
	if f := failedNames(rs); len(f) != 2 || f[0] != "exactly once at the provider" || f[1] != "no notification delivered on two channels" {
		t.Fatalf("failed %v, want exactly once and two channels", f)
	}
	c := Failed(rs)[1]
	if !strings.Contains(c.Detail, "1 notifications delivered on two channels") || !strings.Contains(c.Detail, "1 delivered by SMS") ||
		!strings.Contains(strings.Join(c.Examples, "\n"), p.ID(i)+" (slow_provider) delivered on email and sms") {
		t.Fatalf("check %+v", c)
	}
}

func checkNamed(t *testing.T, rs []CheckResult, name string) CheckResult {
	t.Helper()
	for _, r := range rs {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no check %q", name)
	return CheckResult{}
}

// A notification delivered while its call had no answer within the
// provider timeout and expires_at passed is
// reported expired with an unknown outcome: counted apart, not as a
// mismatch. Without that marker an expired row the provider delivered is
// a mismatch.
func TestCheckDatabaseCountsUnknownAtCutoffApart(t *testing.T) {
	p, o := world(t)
	i := firstIndex(p, KindExpiring)
	o.DB.ByStatus["sent"]--
	o.DB.SentByChannel["email"]--
	o.DB.ByStatus["expired"]++
	o.DB.NotSent[p.ID(i)] = "expired"
	wantOnlyFailure(t, Check(p, o), "Postgres counts equal the provider's", "")
	o.DB.UnknownAtCutoff = map[string]bool{p.ID(i): true}
	if f := Failed(Check(p, o)); len(f) > 0 {
		t.Fatalf("an expired notification with an unknown outcome that the provider delivered: %+v", f)
	}
}

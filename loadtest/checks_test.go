package loadtest

import (
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/provider"
)

// world is a run that went right: every record published, every valid
// notification called once, after its release, delivered once by email,
// reported sent, and every malformed record dead-lettered.
func world(t *testing.T) (*Plan, *Observed) {
	t.Helper()
	p, err := NewPlan(Workload{N: 2000, Duplicates: 0.05, Blackout: 0.05, NotBefore: 0.05, Malformed: 0.01, Campaign: "w", Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2025, 11, 3, 12, 0, 0, 0, time.UTC)
	o := &Observed{FirstCall: make([]int64, p.W.N), Delivered: make([]int32, p.W.N),
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

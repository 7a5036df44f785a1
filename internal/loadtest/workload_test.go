package loadtest

import (
	"errors"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/schedule"
)

func testWorkload(n int) Workload {
	return Workload{N: n, Duplicates: 0.05, Blackout: 0.02, NotBefore: 0.03, Malformed: 0.001,
		WindowQueued: 0.01, Expiring: 0.01, SlowProvider: 0.005, Campaign: "bill-t", Seed: 7}
}

func TestPlanShares(t *testing.T) {
	p, err := NewPlan(testWorkload(100_000))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[Kind]int{KindMalformed: 100, KindBlackout: 2000, KindNotBefore: 3000,
		KindWindowQueued: 1000, KindExpiring: 1000, KindSlowProvider: 500, KindNormal: 92_400} {
		if got := p.Count(k); got != want {
			t.Errorf("%s: %d records, want %d", k, got, want)
		}
	}
	if p.Valid() != 99_900 {
		t.Errorf("valid %d, want 99900", p.Valid())
	}
	if len(p.Rerun) != 5000 || p.Records() != 105_000 {
		t.Errorf("rerun %d records %d, want 5000 and 105000", len(p.Rerun), p.Records())
	}
	seen := map[int32]bool{}
	for j, i := range p.Rerun {
		if p.Kinds[i] == KindMalformed {
			t.Fatalf("re-run includes malformed record %d", i)
		}
		if seen[i] {
			t.Fatalf("re-run has %d twice", i)
		}
		seen[i] = true
		if j > 0 && i < p.Rerun[j-1] {
			t.Fatalf("re-run block is not contiguous in batch order at %d", j)
		}
	}
	// The kinds are spread through the batch, not bunched: each tenth of
	// it holds about a tenth of the blackout records.
	for tenth := range 10 {
		n := 0
		for i := tenth * 10_000; i < (tenth+1)*10_000; i++ {
			if p.Kinds[i] == KindBlackout {
				n++
			}
		}
		if n < 120 || n > 280 {
			t.Errorf("tenth %d holds %d blackout records, want about 200", tenth, n)
		}
	}
}

func TestPlanDeterministic(t *testing.T) {
	a, _ := NewPlan(testWorkload(5000))
	b, _ := NewPlan(testWorkload(5000))
	w := testWorkload(5000)
	w.Seed = 8
	c, _ := NewPlan(w)
	same, diff := true, false
	for i := range a.Kinds {
		same = same && a.Kinds[i] == b.Kinds[i]
		diff = diff || a.Kinds[i] != c.Kinds[i]
	}
	if !same || !diff {
		t.Fatalf("same seed same plan: %v; other seed other plan: %v", same, diff)
	}
}

func TestPlanValidate(t *testing.T) {
	for _, w := range []Workload{
		{N: 10, Blackout: 0.6, NotBefore: 0.6},
		{N: 10, Duplicates: -0.1},
		{N: 10, Malformed: 1.5},
		{N: 10, WindowQueued: 0.5, Expiring: 0.3, SlowProvider: 0.3},
		{N: 10, SlowProvider: -0.1},
		{N: 10, WindowQueued: 0.1, WindowLength: 90 * time.Second},
	} {
		if _, err := NewPlan(w); err == nil {
			t.Errorf("%+v: no error", w)
		}
	}
}

func TestIDIndex(t *testing.T) {
	p, _ := NewPlan(testWorkload(2000))
	for _, i := range []int{0, 7, 1999} {
		if got, ok := p.Index(p.ID(i)); !ok || got != i {
			t.Errorf("Index(ID(%d)) = %d, %v", i, got, ok)
		}
	}
	for _, id := range []string{"bill-t-2000", "other-0000001", "bill-t-bad-0000001", "bill-t-12", ""} {
		if _, ok := p.Index(id); ok {
			t.Errorf("Index(%q) accepted", id)
		}
	}
}

// Every record decodes the way the dispatcher will see it: valid kinds as
// valid requests with the promised hold, malformed ones as errors.
func TestRecordsDecode(t *testing.T) {
	p, _ := NewPlan(testWorkload(4000))
	now := time.Date(2025, 11, 30, 23, 59, 30, 0, time.UTC) // windows cross midnight in some zones
	var kinds [numKinds]int
	for i := range p.W.N {
		key, value := p.First(i, now)
		r, err := contract.Decode(key, value)
		k := p.Kinds[i]
		kinds[k]++
		if k == KindMalformed {
			if err == nil {
				t.Fatalf("malformed record %d decoded: %s", i, value)
			}
			var ve *contract.ValidationError
			if !errors.Is(err, contract.ErrMalformed) && !errors.As(err, &ve) {
				t.Fatalf("malformed record %d: unexpected error %v", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("record %d (%s): %v\n%s", i, k, err, value)
		}
		if r.ID != p.ID(i) || string(key) != r.ID {
			t.Fatalf("record %d: id %q key %q", i, r.ID, key)
		}
		if p.Published[i].Load() != now.UnixNano() {
			t.Fatalf("record %d: publish time not recorded", i)
		}
		loc, _ := contract.LoadLocation(r.Recipient.TZ)
		rel, err := schedule.Release(now, schedule.Rule{Windows: r.Blackout, Loc: loc})
		if err != nil {
			t.Fatal(err)
		}
		switch k {
		case KindBlackout:
			want := time.Unix(0, p.Release[i])
			if !rel.Equal(want) {
				t.Fatalf("record %d in %s: window %v releases at %s, plan says %s", i, loc, r.Blackout, rel, want)
			}
			if d := want.Sub(now); d < p.W.BlackoutFor || d > p.W.BlackoutFor+time.Minute {
				t.Fatalf("record %d: held %s, want %s to %s", i, d, p.W.BlackoutFor, p.W.BlackoutFor+time.Minute)
			}
			if time.Unix(0, p.Window[i]).After(now) {
				t.Fatalf("record %d: window not open at publication", i)
			}
		case KindNotBefore:
			if r.NotBefore == nil || r.NotBefore.UnixNano() != p.Release[i] {
				t.Fatalf("record %d: not_before %v, plan %d", i, r.NotBefore, p.Release[i])
			}
			if d := r.NotBefore.Sub(now); d < p.W.NotBeforeMin || d > p.W.NotBeforeMax {
				t.Fatalf("record %d: not_before in %s", i, d)
			}
		case KindWindowQueued:
			// Free at publication; the window opens at the first whole
			// minute at least WindowAfter later and holds until Release.
			open, end := time.Unix(0, p.Window[i]), time.Unix(0, p.Release[i])
			if d := open.Sub(now); d < p.W.WindowAfter || d >= p.W.WindowAfter+time.Minute || !open.Equal(open.Truncate(time.Minute)) {
				t.Fatalf("record %d: window opens %s after publication at %s", i, d, open)
			}
			if end.Sub(open) != p.W.WindowLength {
				t.Fatalf("record %d: window [%s, %s), want %s long", i, open, end, p.W.WindowLength)
			}
			inside, _ := schedule.Release(open, schedule.Rule{Windows: r.Blackout, Loc: loc})
			before, _ := schedule.Release(open.Add(-time.Nanosecond), schedule.Rule{Windows: r.Blackout, Loc: loc})
			if !rel.Equal(now) || !inside.Equal(end) || !before.Equal(open.Add(-time.Nanosecond)) {
				t.Fatalf("record %d in %s: window %v releases %s at publication, %s at its opening %s, %s just before",
					i, loc, r.Blackout, rel, inside, open, before)
			}
		case KindExpiring:
			if r.ExpiresAt == nil || r.ExpiresAt.UnixNano() != p.Expires[i] || r.ExpiresAt.Sub(now) != p.W.ExpireAfter || !rel.Equal(now) {
				t.Fatalf("record %d: expires_at %v, plan %d, want %s after publication", i, r.ExpiresAt, p.Expires[i], p.W.ExpireAfter)
			}
		case KindSlowProvider:
			if r.Policy.AttemptsPerChannel != 1 || r.Policy.FallbackOnUnknown || len(r.Channels) != 2 || !rel.Equal(now) {
				t.Fatalf("record %d: policy %+v channels %v, want one attempt per channel, email then SMS, no fallback on unknown", i, r.Policy, r.Channels)
			}
		default:
			if !rel.Equal(now) || r.NotBefore != nil || r.ExpiresAt != nil || r.Policy.AttemptsPerChannel != workloadAttemptsPerChannel {
				t.Fatalf("record %d: normal record is held, expires or has another policy", i)
			}
		}
		// A re-run publishes the same notification.
		k2, v2 := p.Again(i, now.Add(time.Minute))
		r2, err := contract.Decode(k2, v2)
		if err != nil || r2.ID != r.ID || len(r2.Blackout) != len(r.Blackout) {
			t.Fatalf("record %d: re-run differs: %v", i, err)
		}
	}
	if kinds[KindMalformed] == 0 || kinds[KindBlackout] == 0 || kinds[KindNotBefore] == 0 ||
		kinds[KindWindowQueued] == 0 || kinds[KindExpiring] == 0 || kinds[KindSlowProvider] == 0 {
		t.Fatalf("kinds %v", kinds)
	}
}

// The four malformed shapes all occur, and each is dead-lettered for its
// own reason.
func TestMalformedShapes(t *testing.T) {
	p, _ := NewPlan(Workload{N: 400, Malformed: 0.1, Campaign: "c", Seed: 3})
	reasons := map[string]int{}
	for i, k := range p.Kinds {
		if k != KindMalformed {
			continue
		}
		key, value := p.malformed(i)
		_, err := contract.Decode(key, value)
		reasons[contract.Reason(err)]++
	}
	for _, r := range []string{contract.ReasonMalformed, contract.ReasonInvalid, contract.ReasonKeyMismatch} {
		if reasons[r] == 0 {
			t.Errorf("no malformed record with reason %s: %v", r, reasons)
		}
	}
}

// A batch with a window_queued share starts 2 × WindowAfter before a
// whole minute: the notifications published in its first WindowAfter have
// their windows open at that minute.
func TestPublishAlignment(t *testing.T) {
	p, _ := NewPlan(Workload{N: 100, WindowQueued: 0.5, WindowAfter: 5 * time.Second, Campaign: "a"})
	for _, c := range []struct{ start, want string }{
		{"10:00:00", "50s"}, {"10:00:49", "1s"}, {"10:00:50", "0s"}, {"10:00:51", "59s"}, {"10:00:50.5", "59.5s"},
	} {
		start, _ := time.Parse("2006-01-02 15:04:05", "2026-01-05 "+c.start)
		got := p.PublishAlignment(start)
		if got.String() != c.want {
			t.Errorf("start %s: wait %s, want %s", c.start, got, c.want)
		}
		first := start.Add(got)
		for _, pub := range []time.Duration{0, p.W.WindowAfter} {
			i := firstIndex(p, KindWindowQueued)
			p.First(i, first.Add(pub))
			if open := time.Unix(0, p.Window[i]); !open.Equal(first.Add(2 * p.W.WindowAfter)) {
				t.Errorf("start %s, published %s later: window opens %s, want %s", c.start, pub, open, first.Add(2*p.W.WindowAfter))
			}
		}
	}
	none, _ := NewPlan(Workload{N: 100, Campaign: "a"})
	if got := none.PublishAlignment(time.Now()); got != 0 {
		t.Errorf("no window_queued share: wait %s", got)
	}
}

// The workload's attempts per channel is the requests' policy, 3 unless set.
func TestWorkloadAttemptsPerChannel(t *testing.T) {
	for _, tc := range []struct{ set, want int }{{0, 3}, {7, 7}} {
		w := testWorkload(10)
		w.Malformed, w.Blackout, w.NotBefore = 0, 0, 0
		w.AttemptsPerChannel = tc.set
		p, err := NewPlan(w)
		if err != nil {
			t.Fatal(err)
		}
		key, value := p.First(0, time.Now())
		r, err := contract.Decode(key, value)
		if err != nil {
			t.Fatal(err)
		}
		if r.Policy.AttemptsPerChannel != tc.want {
			t.Fatalf("attempts_per_channel %d set: request says %d, want %d", tc.set, r.Policy.AttemptsPerChannel, tc.want)
		}
	}
}

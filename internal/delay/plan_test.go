package delay

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

var t0 = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)

const target = "herald.wakeups"

func allowWakeups(topic string) bool { return topic == target }

// delayed builds a record as the dispatcher publishes it: produced at ts
// (to the millisecond, as franz-go and Sarama stamp records), due at due.
func delayed(key string, ts, due time.Time) *kgo.Record {
	return &kgo.Record{
		Key:       []byte(key),
		Value:     []byte(`{"id":"` + key + `"}`),
		Timestamp: ts.Truncate(time.Millisecond),
		Topic:     topology.Route(due, ts, target),
		Headers: []kgo.RecordHeader{
			{Key: topology.HeaderDue, Value: topology.FormatDue(due)},
			{Key: topology.HeaderTarget, Value: []byte(target)},
		},
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	noDue := delayed("a", t0, t0)
	noDue.Headers = noDue.Headers[1:]
	badDue := delayed("a", t0, t0)
	badDue.Headers[0].Value = []byte("tomorrow")
	noTarget := delayed("a", t0, t0)
	noTarget.Headers = noTarget.Headers[:1]
	elsewhere := delayed("a", t0, t0)
	elsewhere.Headers[1].Value = []byte("herald.send")

	tests := []struct {
		name    string
		r       *kgo.Record
		tier    time.Duration
		now     time.Time
		want    Action
		release time.Time
		topic   string
	}{
		{"tier not spent, not due: wait for the tier", delayed("a", t0, t0.Add(90*time.Second)), time.Minute, t0.Add(59 * time.Second),
			Wait, t0.Add(time.Minute), ""},
		{"tier spent, not due: hop to the tier for the rest", delayed("a", t0, t0.Add(90*time.Second)), time.Minute, t0.Add(time.Minute),
			Hop, t0.Add(time.Minute), topology.TierTopic(30 * time.Second)},
		{"hop a little late: the rest picks a shorter tier", delayed("a", t0, t0.Add(90*time.Second)), time.Minute, t0.Add(75 * time.Second),
			Hop, t0.Add(time.Minute), topology.TierTopic(10 * time.Second)},
		{"less than the smallest tier left: the smallest tier", delayed("a", t0, t0.Add(time.Minute+50*ms)), time.Minute, t0.Add(time.Minute),
			Hop, t0.Add(time.Minute), topology.TierTopic(100 * ms)},
		{"due before the tier is spent: wait for due", delayed("a", t0, t0.Add(40*ms)), 100 * ms, t0.Add(39 * ms),
			Wait, t0.Add(40 * ms), ""},
		{"due before the tier is spent: forward at due", delayed("a", t0, t0.Add(40*ms)), 100 * ms, t0.Add(40 * ms),
			Forward, t0.Add(40 * ms), target},
		{"due exactly when the tier is spent: forward", delayed("a", t0, t0.Add(time.Minute)), time.Minute, t0.Add(time.Minute),
			Forward, t0.Add(time.Minute), target},
		{"long overdue (the stage was down): forward", delayed("a", t0, t0.Add(time.Minute)), time.Minute, t0.Add(time.Hour),
			Forward, t0.Add(time.Minute), target},
		{"timestamp far in the past: hop at once, never forward early", delayed("a", t0.Add(-24*time.Hour), t0.Add(time.Hour)), time.Hour, t0,
			Hop, t0.Add(-23 * time.Hour), topology.TierTopic(time.Hour)},
		{"timestamp in the future: due still bounds the wait", delayed("a", t0.Add(24*time.Hour), t0.Add(time.Second)), time.Hour, t0.Add(time.Second),
			Forward, t0.Add(time.Second), target},
		{"no due header", noDue, time.Second, t0, Reject, t0, ""},
		{"bad due header", badDue, time.Second, t0, Reject, t0, ""},
		{"no target header", noTarget, time.Second, t0, Reject, t0, ""},
		{"target not allowed", elsewhere, time.Second, t0, Reject, t0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := Decide(tc.r, tc.tier, tc.now, allowWakeups)
			if st.Action != tc.want || !st.Release.Equal(tc.release) || st.Topic != tc.topic {
				t.Fatalf("Decide = %s release %v topic %q (err %v), want %s release %v topic %q",
					st.Action, st.Release.Sub(t0), st.Topic, st.Err, tc.want, tc.release.Sub(t0), tc.topic)
			}
			if (st.Action == Reject) != (st.Err != nil) || (st.Err != nil && !errors.Is(st.Err, ErrBadRecord)) {
				t.Fatalf("Decide err = %v for %s", st.Err, st.Action)
			}
			if st.Action == Forward && tc.now.Before(st.Due) {
				t.Fatalf("forwarded %v before due", st.Due.Sub(tc.now))
			}
		})
	}
}

// TestPlanHeadOfLine: a partition releases in order. A record behind a
// waiting head waits too, even when it could go, and the partition sleeps
// until the head's release.
func TestPlanHeadOfLine(t *testing.T) {
	t.Parallel()
	tier := time.Second
	q := []*kgo.Record{
		delayed("a", t0, t0.Add(5*time.Second)),                         // leaves at t0+1s (hop)
		delayed("b", t0.Add(100*time.Millisecond), t0.Add(time.Second)), // due at t0+1s
		delayed("bad", t0.Add(200*time.Millisecond), t0),                // rejected when reached
		delayed("c", t0.Add(300*time.Millisecond), t0.Add(2*time.Second)),
	}
	q[2].Headers = nil

	steps, next := Plan(q, tier, t0.Add(500*time.Millisecond), 0, allowWakeups)
	if len(steps) != 0 || !next.Equal(t0.Add(time.Second)) {
		t.Fatalf("at +0.5s: %d steps, next %v; want none until +1s", len(steps), next.Sub(t0))
	}
	steps, next = Plan(q, tier, t0.Add(time.Second), 0, allowWakeups)
	got := actions(steps)
	// The bad record is rejected as soon as it is reached; c waits for its tier.
	if want := []Action{Hop, Forward, Reject}; !slices.Equal(got, want) || !next.Equal(t0.Add(1300*time.Millisecond)) {
		t.Fatalf("at +1s: %v next %v, want %v", got, next.Sub(t0), want)
	}
}

func actions(steps []Step) []Action {
	var out []Action
	for _, s := range steps {
		out = append(out, s.Action)
	}
	return out
}

// TestPlanBatch: at most max steps per plan; the rest comes next time.
func TestPlanBatch(t *testing.T) {
	t.Parallel()
	var q []*kgo.Record
	for i := range 10 {
		q = append(q, delayed(fmt.Sprint(i), t0, t0.Add(time.Second)))
	}
	steps, next := Plan(q, time.Second, t0.Add(2*time.Second), 4, allowWakeups)
	if len(steps) != 4 || !next.IsZero() {
		t.Fatalf("%d steps, next %v; want 4 and no wait", len(steps), next)
	}
	steps, _ = Plan(q, time.Second, t0.Add(2*time.Second), 0, allowWakeups)
	if len(steps) != 10 {
		t.Fatalf("%d steps without a limit, want 10", len(steps))
	}
}

// TestSimulatedTiers runs the delay stage's scheduling over every tier with
// an injected clock and no Kafka: records with delays from 1 ms to 3 days
// are published over a minute and routed as the dispatcher routes them;
// each tier partition sleeps until Plan's next time, and a hop is published
// again at the clock's time. Every record is forwarded exactly once, never
// before its due time, and no later than the smallest tier after it (the
// head of the smallest tier can hold a record behind it that long).
func TestSimulatedTiers(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 20000
	type arrival struct {
		at  time.Time
		rec *kgo.Record
	}
	var arrivals []arrival
	due := map[string]time.Time{}
	delays := map[string]time.Duration{}
	for i := range n {
		at := t0.Add(time.Duration(i) * 3 * time.Millisecond)
		d := time.Duration(float64(time.Millisecond) * math.Pow(10, rng.Float64()*8.4))
		if i%50 == 0 {
			d = time.Millisecond // the shortest wait a record is ever held for
		}
		key := fmt.Sprint(i)
		r := delayed(key, at, at.Add(d))
		if r.Topic == target {
			t.Fatalf("record %s routed straight to the target", key)
		}
		due[key], delays[key] = at.Add(d), d
		arrivals = append(arrivals, arrival{at, r})
	}

	queues := map[string][]*kgo.Record{}
	forwarded := map[string]time.Time{}
	hops := map[string]int{}
	var maxLate time.Duration
	now := t0
	for round := 0; len(forwarded) < n; round++ {
		if round > 20*n {
			t.Fatalf("simulation does not finish: %d of %d forwarded", len(forwarded), n)
		}
		for len(arrivals) > 0 && !arrivals[0].at.After(now) {
			r := arrivals[0].rec
			queues[r.Topic] = append(queues[r.Topic], r)
			arrivals = arrivals[1:]
		}
		// Every tier partition acts on what it can release now.
		acted := false
		for _, d := range topology.Tiers() {
			topic := topology.TierTopic(d)
			steps, _ := Plan(queues[topic], d, now, 0, allowWakeups)
			for i, st := range steps {
				key := string(queues[topic][i].Key)
				switch st.Action {
				case Forward:
					if now.Before(due[key]) {
						t.Fatalf("%s forwarded %v early", key, due[key].Sub(now))
					}
					if _, dup := forwarded[key]; dup {
						t.Fatalf("%s forwarded twice", key)
					}
					forwarded[key] = now
					maxLate = max(maxLate, now.Sub(due[key]))
				case Hop:
					hops[key]++
					again := delayed(key, now, due[key])
					if again.Topic != st.Topic {
						t.Fatalf("hop of %s to %s, Route says %s", key, st.Topic, again.Topic)
					}
					queues[again.Topic] = append(queues[again.Topic], again)
				default:
					t.Fatalf("unexpected %s for %s: %v", st.Action, key, st.Err)
				}
			}
			queues[topic] = queues[topic][len(steps):]
			acted = acted || len(steps) > 0
		}
		if acted {
			continue // hops may be releasable at once
		}
		// Sleep until the earliest head may leave or the next record comes.
		var wake time.Time
		if len(arrivals) > 0 {
			wake = arrivals[0].at
		}
		for _, d := range topology.Tiers() {
			_, next := Plan(queues[topology.TierTopic(d)], d, now, 0, allowWakeups)
			if !next.IsZero() && (wake.IsZero() || next.Before(wake)) {
				wake = next
			}
		}
		if !wake.After(now) {
			t.Fatalf("round %d: no wake-up after %v with %d of %d forwarded", round, now.Sub(t0), len(forwarded), n)
		}
		now = wake
	}
	if maxLate > topology.Tiers()[0] {
		t.Errorf("max lateness %v, want at most the smallest tier %v", maxLate, topology.Tiers()[0])
	}
	t.Logf("max lateness %v (scheduling only, no processing time)", maxLate)
	maxHops, sumHops, count := map[time.Duration]int{}, map[time.Duration]int{}, map[time.Duration]int{}
	for key, d := range delays {
		b := bucket(d)
		maxHops[b] = max(maxHops[b], hops[key])
		sumHops[b] += hops[key]
		count[b]++
	}
	for _, b := range slices.Sorted(maps.Keys(maxHops)) {
		t.Logf("delays under %v: %d records, hops mean %.1f max %d", b, count[b], float64(sumHops[b])/float64(count[b]), maxHops[b])
	}
}

func bucket(d time.Duration) time.Duration {
	for _, b := range []time.Duration{time.Second, time.Minute, time.Hour, 24 * time.Hour} {
		if d < b {
			return b
		}
	}
	return 100 * 24 * time.Hour
}

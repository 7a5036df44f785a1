package delay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	heralddlq "github.com/herald-dispatch/herald/internal/dlq"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/delay"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/metrics"
	"github.com/herald-dispatch/herald/internal/topology"
)

const group = "herald-delay-test"

// testLog logs warnings and errors to stderr.
var testLog = heraldtest.QuietLog

// runningStage is a delay stage running in the background, with its
// metrics.
type runningStage struct {
	*heraldtest.Delay
	Reg *prometheus.Registry
}

// startStage runs a delay stage of the test group on c until its Stop is
// called or the test ends.
func startStage(t testing.TB, c *heraldtest.Cluster, tune func(*delay.Config)) *runningStage {
	t.Helper()
	reg := prometheus.NewRegistry()
	s := heraldtest.StartDelay(t, c, func(cfg *delay.Config) {
		cfg.Group, cfg.Log, cfg.Observer = group, testLog(), metrics.NewDelay(reg)
		if tune != nil {
			tune(cfg)
		}
	})
	metrics.NewDelayBacklog(reg, s.Stage)
	return &runningStage{Delay: s, Reg: reg}
}

// heldRecord is a wake-up as the dispatcher publishes it to a tier.
func heldRecord(id string, due, now time.Time) *kgo.Record {
	w := contract.Wakeup{ID: id, Kind: contract.WakeupHold, Due: due}
	b, _ := json.Marshal(w)
	return &kgo.Record{
		Topic: topology.Route(due, now, topology.TopicWakeups),
		Key:   []byte(id), Value: b,
		Headers: []kgo.RecordHeader{
			{Key: topology.HeaderDue, Value: topology.FormatDue(due)},
			{Key: topology.HeaderTarget, Value: []byte(topology.TopicWakeups)},
		},
	}
}

// arrival is a record seen at the target, and when.
type arrival struct {
	rec  *kgo.Record
	seen time.Time
}

// watch consumes topic from the start in the background, stamping each
// record with the time it was polled.
func watch(t testing.TB, c *heraldtest.Cluster, topic string) (snapshot func() []arrival) {
	t.Helper()
	cl := c.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var got []arrival
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			now := time.Now()
			mu.Lock()
			fs.EachRecord(func(r *kgo.Record) { got = append(got, arrival{r, now}) })
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func() []arrival {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

// checkReleases asserts that every id of due arrived exactly once at the
// target, unchanged, on its own partition, never before its due time, and
// returns the lateness of each (arrival at the test's consumer minus due).
func checkReleases(t *testing.T, c *heraldtest.Cluster, due map[string]time.Time, got []arrival) []time.Duration {
	t.Helper()
	seen := map[string]int{}
	var late []time.Duration
	for _, a := range got {
		id := string(a.rec.Key)
		seen[id]++
		d, ok := due[id]
		if !ok {
			t.Errorf("unexpected record %q at the target", id)
			continue
		}
		if seen[id] > 1 {
			t.Errorf("%s released %d times", id, seen[id])
			continue
		}
		if w, err := contract.DecodeWakeup(a.rec.Key, a.rec.Value); err != nil || w.ID != id || !w.Due.Equal(d) {
			t.Errorf("%s: value changed on the way: %s (%v)", id, a.rec.Value, err)
		}
		if hd, tgt, err := delay.Headers(a.rec); err != nil || !hd.Equal(d) || tgt != topology.TopicWakeups {
			t.Errorf("%s: headers changed on the way: %v %s %v", id, hd, tgt, err)
		}
		if want := topology.Partition(id, c.Topology.Partitions); a.rec.Partition != want {
			t.Errorf("%s on partition %d, want %d", id, a.rec.Partition, want)
		}
		// The record's timestamp is when the delay stage published it
		// (franz-go stamps to the millisecond).
		if a.rec.Timestamp.Before(d.Truncate(time.Millisecond)) || a.seen.Before(d) {
			t.Errorf("%s released early: published %v, seen %v before due", id, d.Sub(a.rec.Timestamp), d.Sub(a.seen))
		}
		late = append(late, a.seen.Sub(d))
	}
	for id := range due {
		if seen[id] == 0 {
			t.Errorf("%s never released", id)
		}
	}
	return late
}

func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[int(p*float64(len(s)-1))] }
	return fmt.Sprintf("n=%d p50=%v p99=%v max=%v", len(s), q(0.5).Round(time.Millisecond), q(0.99).Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}

// TestReleaseOnTime: records due 1-5 s ahead, spread over several tiers,
// reach the target exactly once and never early; records with bad headers
// go to the DLQ. Reports the lateness.
func TestReleaseOnTime(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test")
	}
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 4})
	cl := c.Client(t)
	rs := startStage(t, c, nil)
	heraldtest.WaitFor(t, 30*time.Second, "delay stage ready", rs.Ready)
	got := watch(t, c, topology.TopicWakeups)

	rng := rand.New(rand.NewPCG(3, 4))
	const n = 3000
	due := map[string]time.Time{}
	tiers := map[string]int{}
	var recs []*kgo.Record
	now := time.Now()
	for i := range n {
		id := fmt.Sprintf("on-time-%04d", i)
		d := now.Add(time.Second + time.Duration(rng.Int64N(int64(4*time.Second))))
		due[id] = d
		r := heldRecord(id, d, now)
		tiers[r.Topic]++
		recs = append(recs, r)
	}
	// Bad records: no due, a due that does not parse, no target, a target
	// the stage must not write to.
	bad := []*kgo.Record{
		{Topic: topology.TierTopic(time.Second), Key: []byte("bad-no-due"), Value: []byte("x"),
			Headers: []kgo.RecordHeader{{Key: topology.HeaderTarget, Value: []byte(topology.TopicWakeups)}}},
		{Topic: topology.TierTopic(time.Second), Key: []byte("bad-due"), Value: []byte("x"),
			Headers: []kgo.RecordHeader{{Key: topology.HeaderDue, Value: []byte("soon")}, {Key: topology.HeaderTarget, Value: []byte(topology.TopicWakeups)}}},
		{Topic: topology.TierTopic(2 * time.Second), Key: []byte("bad-no-target"), Value: []byte("x"),
			Headers: []kgo.RecordHeader{{Key: topology.HeaderDue, Value: topology.FormatDue(now)}}},
		{Topic: topology.TierTopic(2 * time.Second), Key: []byte("bad-target"), Value: []byte("x"),
			Headers: []kgo.RecordHeader{{Key: topology.HeaderDue, Value: topology.FormatDue(now)}, {Key: topology.HeaderTarget, Value: []byte(topology.TopicSend)}}},
	}
	c.Produce(t, cl, append(recs, bad...)...)
	t.Logf("%d records produced in %v over tiers %v", n, time.Since(now), tiers)

	heraldtest.WaitFor(t, 40*time.Second, "all records released", func() bool { return len(got()) >= n })
	time.Sleep(time.Second) // room for a wrong duplicate
	late := checkReleases(t, c, due, got())
	t.Logf("lateness at the target's consumer: %s", quantiles(late))
	hist := histogram(t, rs.Reg, "herald_delay_release_lateness_seconds")
	t.Logf("lateness at the delay stage (produce acknowledged): %s", hist)

	dlq := c.Consume(t, topology.TopicDLQ, 20*time.Second, func(rs []*kgo.Record) bool { return len(rs) >= len(bad) })
	if len(dlq) != len(bad) {
		t.Fatalf("%d dead letters, want %d", len(dlq), len(bad))
	}
	for _, r := range dlq {
		dl, err := heralddlq.Parse(r)
		if err != nil {
			t.Fatalf("dead letter: %v", err)
		}
		if dl.Reason != contract.ReasonMalformed || dl.Error == "" || string(r.Value) != "x" ||
			!slices.Contains(topology.TierTopics(), dl.Topic) || string(r.Key) != string(dl.Key) {
			t.Errorf("bad dead letter %+v", dl)
		}
	}
	if v := metricSum(t, rs.Reg, "herald_delay_forwarded_total"); v != n {
		t.Errorf("herald_delay_forwarded_total = %v, want %d", v, n)
	}
	if v := metricSum(t, rs.Reg, "herald_delay_dead_letters_total"); v != float64(len(bad)) {
		t.Errorf("herald_delay_dead_letters_total = %v, want %d", v, len(bad))
	}
	// Nothing is held any more.
	if v := metricSum(t, rs.Reg, "herald_delay_held_records"); v != 0 {
		t.Errorf("herald_delay_held_records = %v after every release, want 0", v)
	}
}

// TestRestartAndRebalanceMidHold: a second stage joins the group while
// records are held (the partitions are rebalanced between them), the first
// stops, the second stops and a third starts, all mid-hold. Every record is
// released exactly once, never early, and a stop returns promptly even
// though its partitions are waiting for due times seconds away.
func TestRestartAndRebalanceMidHold(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test")
	}
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 4})
	cl := c.Client(t)
	got := watch(t, c, topology.TopicWakeups)

	rng := rand.New(rand.NewPCG(5, 6))
	const n = 2000
	due := map[string]time.Time{}
	var recs []*kgo.Record
	now := time.Now()
	for i := range n {
		id := fmt.Sprintf("restart-%04d", i)
		d := now.Add(time.Second + time.Duration(rng.Int64N(int64(7*time.Second))))
		due[id] = d
		recs = append(recs, heldRecord(id, d, now))
	}
	c.Produce(t, cl, recs...)
	released := func() int { return len(got()) }

	a := startStage(t, c, nil)
	heraldtest.WaitFor(t, 30*time.Second, "first stage ready", a.Ready)
	time.Sleep(1500 * time.Millisecond)
	b := startStage(t, c, nil)
	heraldtest.WaitFor(t, 30*time.Second, "second stage ready", b.Ready)
	t.Logf("second stage joined at %v with %d released", time.Since(now).Round(time.Millisecond), released())
	time.Sleep(time.Second)
	took := a.Stop()
	t.Logf("first stage stopped at %v in %v with %d released", time.Since(now).Round(time.Millisecond), took.Round(time.Millisecond), released())
	if took > 5*time.Second {
		t.Errorf("stopping a stage that waits took %v", took)
	}
	time.Sleep(time.Second)
	took = b.Stop()
	t.Logf("second stage stopped at %v in %v with %d released", time.Since(now).Round(time.Millisecond), took.Round(time.Millisecond), released())
	if took > 5*time.Second {
		t.Errorf("stopping a stage that waits took %v", took)
	}
	if r := released(); r == 0 || r == n {
		t.Fatalf("%d of %d released before the restart: the test does not restart mid-hold", r, n)
	}
	startStage(t, c, nil)
	heraldtest.WaitFor(t, 40*time.Second, "all records released", func() bool { return released() >= n })
	time.Sleep(time.Second) // room for a wrong duplicate
	late := checkReleases(t, c, due, got())
	t.Logf("lateness across restarts (includes the stopped time): %s", quantiles(late))
}

// metricSum adds up every series of a counter or gauge.
var metricSum = heraldtest.MetricSum

// histogram summarises a histogram: its count and the upper bound of the
// bucket holding p50, p99 and the largest sample.
func histogram(t testing.TB, reg *prometheus.Registry, name string) string {
	t.Helper()
	ms := series(t, reg, name)
	if len(ms) != 1 {
		return "no histogram"
	}
	h := ms[0].GetHistogram()
	n := h.GetSampleCount()
	bound := func(p float64) string {
		for _, b := range h.GetBucket() {
			if float64(b.GetCumulativeCount()) >= p*float64(n) {
				return fmt.Sprintf("<=%gs", b.GetUpperBound())
			}
		}
		return "+Inf"
	}
	return fmt.Sprintf("n=%d mean=%.3fs p50%s p99%s max%s", n, h.GetSampleSum()/float64(max(n, 1)), bound(0.5), bound(0.99), bound(1))
}

func series(t testing.TB, reg *prometheus.Registry, name string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

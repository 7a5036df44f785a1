package sink

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

func TestBatchingLimits(t *testing.T) {
	t.Parallel()
	b := Batching{MinSize: 100, MaxSize: 10000, MinInterval: 20 * time.Millisecond, MaxInterval: 220 * time.Millisecond}
	for _, tc := range []struct {
		name      string
		collected int
		backlog   int64
		size      int
		wait      time.Duration
	}{
		{"caught up, empty batch", 0, 0, 100, 20 * time.Millisecond},
		{"caught up, a trickle", 3, 0, 100, 20 * time.Millisecond},
		{"caught up, at the min size", 100, 0, 100, 20 * time.Millisecond},
		{"caught up, above the min size: written now", 700, 0, 700, 20 * time.Millisecond},
		{"a little behind: takes the backlog", 50, 150, 200, 23 * time.Millisecond},
		{"half the max behind", 1000, 5000, 6000, 120 * time.Millisecond},
		{"far behind: the max, the longest wait", 2000, 50000, 10000, 220 * time.Millisecond},
		{"exactly the max behind", 0, 10000, 10000, 220 * time.Millisecond},
		{"a negative backlog counts as none", 10, -5, 100, 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size, wait := b.Limits(tc.collected, tc.backlog)
			if size != tc.size || wait != tc.wait {
				t.Fatalf("Limits(%d, %d) = %d, %s; want %d, %s", tc.collected, tc.backlog, size, wait, tc.size, tc.wait)
			}
		})
	}
}

func TestBatchingValidateAndDefaults(t *testing.T) {
	t.Parallel()
	if err := DefaultBatching().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		b    Batching
		want string
	}{
		{Batching{MinSize: 0, MaxSize: 10, MinInterval: time.Millisecond, MaxInterval: time.Second}, "positive"},
		{Batching{MinSize: 20, MaxSize: 10, MinInterval: time.Millisecond, MaxInterval: time.Second}, "above the max size"},
		{Batching{MinSize: 1, MaxSize: 10, MinInterval: -time.Millisecond, MaxInterval: time.Second}, "positive"},
		{Batching{MinSize: 1, MaxSize: 10, MinInterval: 2 * time.Second, MaxInterval: time.Second}, "above the max interval"},
	} {
		err := tc.b.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", tc.b, err, tc.want)
		}
	}
	pool, err := pgxpool.New(context.Background(), "postgres://127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := New(Config{Topology: topology.Config{Brokers: []string{"127.0.0.1:1"}}, Pool: pool, BatchMinSize: 50, BatchSize: 10}); err == nil ||
		!strings.Contains(err.Error(), "above the max size") {
		t.Fatalf("New with a min size above the max: %v", err)
	}
	// A max below the defaults' min pulls the min down with it.
	got := Batching{MaxSize: 50, MaxInterval: 5 * time.Millisecond}.withDefaults()
	if got != (Batching{MinSize: 50, MaxSize: 50, MinInterval: 5 * time.Millisecond, MaxInterval: 5 * time.Millisecond}) {
		t.Fatalf("withDefaults: %+v", got)
	}
}

// batches is how many batches the sink committed, and how many records
// they held.
func batches(cfg Config) (count, records int64) {
	return counts(cfg).batches.Load(), counts(cfg).records.Load()
}

// A backlog is written in large batches; once caught up, each record of a
// trickle is written in a batch of its own, closed by the short interval
// and not the long one (a sink that waited --sink-batch-interval, here a
// minute, would time the trickle out).
func TestSinkBatchesAdaptToTheBacklog(t *testing.T) {
	t.Parallel()
	c, cl, cfg := setup(t, "")
	cfg.BatchMinSize, cfg.BatchSize = 5, 2000
	cfg.BatchMinInterval, cfg.BatchInterval = 20*time.Millisecond, time.Minute
	backlog := ids("b", 1000)
	produce(t, c, cl, backlog, "nov", 1, 2, 3, 4) // 4,000 records
	startSink(t, cfg, nil)
	heraldtest.WaitFor(t, 60*time.Second, "the backlog written", func() bool { return allAt(rows(t, cfg.Pool), wantAll(backlog, 4)) })
	// The observer hears of a batch after its transaction commits, so the
	// rows can be visible a moment before the last batch is counted.
	heraldtest.WaitFor(t, 30*time.Second, "the backlog's batches reported", func() bool { _, r := batches(cfg); return r >= 4000 })

	n, recs := batches(cfg)
	t.Logf("the backlog of 4,000 records took %d batches", n)
	if recs != 4000 {
		t.Fatalf("%d records in batches, want 4000", recs)
	}
	// At the min size, 800 batches; a batch takes what is waiting, in
	// practice one or two fetches' worth.
	if n > 20 || recs/n < 200 {
		t.Fatalf("the backlog took %d batches (%d records each on average), want at most 20", n, recs/n)
	}

	trickle := ids("t", 8)
	for i, id := range trickle {
		produce(t, c, cl, []string{id}, "nov", 2)
		heraldtest.WaitFor(t, 30*time.Second, fmt.Sprintf("trickle record %d written", i), func() bool { return rows(t, cfg.Pool)[id].Version == 2 })
		heraldtest.WaitFor(t, 30*time.Second, fmt.Sprintf("trickle record %d's batch reported", i), func() bool {
			_, r := batches(cfg)
			return r >= recs+int64(i+1)
		})
	}
	n2, recs2 := batches(cfg)
	if n2-n != int64(len(trickle)) || recs2-recs != int64(len(trickle)) {
		t.Fatalf("the trickle of %d records took %d batches of %d records", len(trickle), n2-n, recs2-recs)
	}
}

// The next batch is collected and decoded while the one before it is
// written, and only one: once complete by the policy it goes on taking
// records while the writer is busy, up to BatchSize, and is handed over
// when the writer is free. Everything is written and committed in the end.
func TestSinkCollectsTheNextBatchWhileWriting(t *testing.T) {
	t.Parallel()
	c, cl, cfg := setup(t, "")
	cfg.BatchMinSize, cfg.BatchSize = 1, 15
	obs := counts(cfg)
	var (
		mu        sync.Mutex
		handed    int
		collected = make(chan int, 1000)
		filling   = make(chan struct{}, 1000)
		writing   = make(chan struct{})
		release   = make(chan struct{})
		first     sync.Once
	)
	hook := func(point string) error {
		var n int
		switch {
		case point == "decoded":
			mu.Lock()
			handed++
			mu.Unlock()
		case point == "filling":
			select {
			case filling <- struct{}{}:
			default:
			}
		case point == "upserted":
			first.Do(func() {
				close(writing)
				select {
				case <-release:
				case <-time.After(60 * time.Second): // the test failed: do not hang its cleanup
				}
			})
		default:
			if _, err := fmt.Sscanf(point, "collected %d", &n); err == nil {
				select {
				case collected <- n:
				default:
				}
			}
		}
		return nil
	}
	startSink(t, cfg, func(s *Sink) { s.hook, s.writer.hook = hook, hook })
	handedOver := func() int { mu.Lock(); defer mu.Unlock(); return handed }
	await := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			close(release)
			t.Fatalf("timed out waiting for %s", what)
		}
	}

	a, b, d := ids("a", 10), ids("b", 10), ids("d", 10)
	produce(t, c, cl, a, "nov", 1)
	await("the first write", writing) // the first batch is in its transaction, held there
	produce(t, c, cl, b, "nov", 1)
	await("the next batch complete while the first is written", filling)
	produce(t, c, cl, d, "nov", 1)
	full := make(chan struct{})
	go func() {
		for n := range collected {
			if n == cfg.BatchSize {
				close(full)
				return
			}
		}
	}()
	await("the next batch filled to BatchSize while the first is written", full)
	if n := handedOver(); n > 2 {
		close(release)
		t.Fatalf("%d batches collected while the first was written, want at most 2 (one written, one waiting)", n)
	}
	if got := rows(t, cfg.Pool); len(got) != 0 {
		close(release)
		t.Fatalf("%d rows visible before the first batch committed", len(got))
	}
	close(release)
	want := wantAll(append(append(a, b...), d...), 1)
	heraldtest.WaitFor(t, 30*time.Second, "every batch written", func() bool { return allAt(rows(t, cfg.Pool), want) })
	heraldtest.WaitFor(t, 20*time.Second, "offsets committed", func() bool { return committedAll(t, admin(t, c), DefaultGroup, cfg.Topic) })
	heraldtest.WaitFor(t, 20*time.Second, "every batch reported", func() bool { _, r := batches(cfg); return r >= 30 })
	sizes := obs.batchSizes()
	if len(sizes) < 2 || sizes[1] != cfg.BatchSize {
		t.Fatalf("batch sizes %v: want the second, collected during the first's write, full at %d", sizes, cfg.BatchSize)
	}
	for _, n := range sizes {
		if n > cfg.BatchSize {
			t.Fatalf("batch sizes %v: one above BatchSize %d", sizes, cfg.BatchSize)
		}
	}
}

package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	heralddlq "github.com/herald-dispatch/herald/internal/dlq"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

// setup starts a broker and a migrated database.
func setup(t *testing.T, dsn string) (*heraldtest.Cluster, *kgo.Client, Config) {
	t.Helper()
	if dsn == "" {
		dsn = heraldtest.Postgres(t)
	}
	pool := migratedPool(t, dsn)
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 4})
	cfg := Config{Topology: c.Topology, Pool: pool, Topic: string(topology.TableDispatcher), BatchSize: 100, BatchInterval: 50 * time.Millisecond,
		RetryMin: 50 * time.Millisecond, RetryMax: time.Second, Observer: new(testObserver)}
	return c, c.Client(t), cfg
}

// testObserver counts what the sink reports.
type testObserver struct {
	batches, records, statusRows, stale, retries, commitFailed atomic.Int64
	mu                                                         sync.Mutex
	deadLetters                                                map[string]int
	sizes                                                      []int
}

func (o *testObserver) Batch(records int, _ time.Duration, statusRows, _, staleRows int64) {
	o.batches.Add(1)
	o.records.Add(int64(records))
	o.statusRows.Add(statusRows)
	o.stale.Add(staleRows)
	o.mu.Lock()
	o.sizes = append(o.sizes, records)
	o.mu.Unlock()
}
func (o *testObserver) Retry()        { o.retries.Add(1) }
func (o *testObserver) CommitFailed() { o.commitFailed.Add(1) }

// batchSizes is the records of each batch reported, in order.
func (o *testObserver) batchSizes() []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]int(nil), o.sizes...)
}
func (o *testObserver) DeadLetter(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.deadLetters == nil {
		o.deadLetters = map[string]int{}
	}
	o.deadLetters[reason]++
}

func (o *testObserver) deadLetter(reason string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.deadLetters[reason]
}

// counts is the testObserver of cfg.
func counts(cfg Config) *testObserver { return cfg.Observer.(*testObserver) }

// produce publishes the given versions of every id, as the dispatcher
// would: whole states to the table's changelog, keyed by id.
func produce(t *testing.T, c *heraldtest.Cluster, cl *kgo.Client, idList []string, campaign string, versions ...uint64) {
	t.Helper()
	var recs []*kgo.Record
	for _, v := range versions {
		for _, id := range idList {
			recs = append(recs, stateRecord(state(id, campaign, v)))
		}
	}
	c.Produce(t, cl, recs...)
}

func wantAll(idList []string, v uint64) map[string]uint64 {
	m := map[string]uint64{}
	for _, id := range idList {
		m[id] = v
	}
	return m
}

func TestSinkStatusesArrive(t *testing.T) {
	t.Parallel()
	c, cl, cfg := setup(t, "")
	all := ids("n", 300)
	produce(t, c, cl, all, "nov", 1, 2, 3, 4)
	r := startSink(t, cfg, nil)

	heraldtest.WaitFor(t, 30*time.Second, "every notification at version 4", func() bool { return allAt(rows(t, cfg.Pool), wantAll(all, 4)) })
	adm := admin(t, c)
	heraldtest.WaitFor(t, 20*time.Second, "offsets committed", func() bool { return committedAll(t, adm, DefaultGroup, cfg.Topic) })
	if n := countRows(t, cfg.Pool, `SELECT count(*) FROM dispatch_attempts`); n != 600 {
		t.Fatalf("%d attempts, want 600", n)
	}
	got := rows(t, cfg.Pool)["n-0042"]
	if got != (row{Status: "sent", Version: 4, Attempts: 2, Sent: true}) {
		t.Fatalf("n-0042: %+v", got)
	}
	if n := float64(counts(cfg).records.Load()); n != 1200 {
		t.Fatalf("records metric %v, want 1200", n)
	}
	if !r.sink.Ready() {
		t.Fatal("sink not ready")
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// The same changes played twice, and older versions after newer ones,
// leave the newest.
func TestSinkReplayAndReorderKeepNewest(t *testing.T) {
	t.Parallel()
	c, cl, cfg := setup(t, "")
	all := ids("r", 200)
	adm := admin(t, c)
	produce(t, c, cl, all, "nov", 4)
	startSink(t, cfg, nil)
	heraldtest.WaitFor(t, 30*time.Second, "version 4 everywhere", func() bool { return allAt(rows(t, cfg.Pool), wantAll(all, 4)) })

	// Older versions arrive later, newest first, twice over.
	produce(t, c, cl, all, "nov", 3, 2, 1, 3, 2, 1)
	heraldtest.WaitFor(t, 30*time.Second, "replayed versions consumed", func() bool { return committedAll(t, adm, DefaultGroup, cfg.Topic) })
	if !allAt(rows(t, cfg.Pool), wantAll(all, 4)) {
		t.Fatal("an older version moved a row back")
	}
	if n := float64(counts(cfg).stale.Load()); n < 200 {
		t.Fatalf("stale metric %v, want >= 200", n)
	}

	// A second sink group replays the whole changelog from the start.
	cfg2 := cfg
	cfg2.Group, cfg2.Observer = "herald-sink-replay", new(testObserver)
	startSink(t, cfg2, nil)
	heraldtest.WaitFor(t, 30*time.Second, "full replay consumed", func() bool { return committedAll(t, adm, cfg2.Group, cfg.Topic) })
	if !allAt(rows(t, cfg.Pool), wantAll(all, 4)) {
		t.Fatal("a full replay moved a row back")
	}
	if n := float64(counts(cfg2).statusRows.Load()); n != 0 {
		t.Fatalf("full replay changed %v rows", n)
	}
	if n := countRows(t, cfg.Pool, `SELECT count(*) FROM dispatch_attempts`); n != 400 {
		t.Fatalf("%d attempts, want 400", n)
	}
}

// A sink that dies in the middle of a batch (after the INSERTs, before the
// COMMIT; or after PostgreSQL committed, before Kafka did) loses nothing:
// the next one replays the batch.
func TestSinkCrashMidBatchLosesNothing(t *testing.T) {
	t.Parallel()
	for _, point := range []string{"upserted", "pg-committed"} {
		t.Run(point, func(t *testing.T) {
			c, cl, cfg := setup(t, "")
			all := ids("k", 150)
			produce(t, c, cl, all, "nov", 2)
			crash := errors.New("power cut")
			first := startSink(t, cfg, func(s *Sink) {
				hook := func(p string) error {
					if p == point {
						return fmt.Errorf("%w: %w", errCrash, crash)
					}
					return nil
				}
				s.hook, s.writer.hook = hook, hook
			})
			var err error
			select {
			case <-first.done:
				err = first.err
			case <-time.After(30 * time.Second):
				t.Fatal("sink did not crash")
			}
			if !errors.Is(err, crash) {
				t.Fatalf("Run returned %v, want the simulated crash", err)
			}
			written := len(rows(t, cfg.Pool))
			switch point {
			case "upserted":
				if written != 0 {
					t.Fatalf("%d rows visible after a crash before the INSERT", written)
				}
			case "pg-committed":
				if written == 0 {
					t.Fatal("no rows after a crash after the PostgreSQL commit")
				}
			}
			adm := admin(t, c)
			if committedAll(t, adm, DefaultGroup, cfg.Topic) {
				t.Fatal("offsets committed by a sink that crashed before committing")
			}

			cfg.Observer = new(testObserver)
			startSink(t, cfg, nil)
			heraldtest.WaitFor(t, 30*time.Second, "every notification after the restart", func() bool { return allAt(rows(t, cfg.Pool), wantAll(all, 2)) })
			heraldtest.WaitFor(t, 20*time.Second, "offsets committed", func() bool { return committedAll(t, adm, DefaultGroup, cfg.Topic) })
			if point == "pg-committed" {
				if n := float64(counts(cfg).stale.Load()); n < float64(written) {
					t.Fatalf("replay after the crash: stale %v < %d rows the crashed sink wrote", n, written)
				}
			}
		})
	}
}

// PostgreSQL stopped for 10 s: the sink retries, lag grows, nothing is
// lost, and it catches up once PostgreSQL is back.
func TestSinkSurvivesPostgresOutage(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("10 s outage")
	}
	if os.Getenv("DATABASE_URL") != "" {
		t.Skip("DATABASE_URL set: this test stops its own server")
	}
	srv := heraldtest.PostgresServer(t)
	c, cl, cfg := setup(t, srv.URL())
	adm := admin(t, c)
	before, during := ids("b", 100), ids("d", 200)
	produce(t, c, cl, before, "nov", 1)
	r := startSink(t, cfg, nil)
	heraldtest.WaitFor(t, 30*time.Second, "first states", func() bool { return allAt(rows(t, cfg.Pool), wantAll(before, 1)) })

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	produce(t, c, cl, before, "nov", 4)
	produce(t, c, cl, during, "nov", 1, 2, 3)
	time.Sleep(10 * time.Second)
	if n := float64(counts(cfg).retries.Load()); n < 2 {
		t.Fatalf("%v retries during a 10 s outage", n)
	}
	if r.sink.Ready() {
		t.Fatal("sink ready while PostgreSQL is down")
	}
	if committedAll(t, adm, DefaultGroup, cfg.Topic) {
		t.Fatal("offsets committed while PostgreSQL was down")
	}

	if err := srv.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := wantAll(before, 4)
	for id, v := range wantAll(during, 3) {
		want[id] = v
	}
	heraldtest.WaitFor(t, 30*time.Second, "catch-up after the outage", func() bool { return allAt(rows(t, cfg.Pool), want) })
	heraldtest.WaitFor(t, 20*time.Second, "offsets committed", func() bool { return committedAll(t, adm, DefaultGroup, cfg.Topic) })
	heraldtest.WaitFor(t, 5*time.Second, "ready again", r.sink.Ready)
}

// Poison records go to herald.dlq with their bytes and reason, tombstones
// are skipped, and everything else arrives.
func TestSinkPoisonGoesToDLQ(t *testing.T) {
	t.Parallel()
	c, cl, cfg := setup(t, "")
	good := ids("g", 60)
	var recs []*kgo.Record
	for _, id := range good {
		recs = append(recs, stateRecord(state(id, "nov", 3)))
	}
	nul := state("poison-nul", "nov", 3)
	nul.HoldReason = "held \x00" // PostgreSQL refuses NUL (a provider's error text would be mended)
	recs = append(recs[:30], append([]*kgo.Record{stateRecord(nul),
		{Topic: cfg.Topic, Key: []byte("poison-json"), Value: []byte("{not json")},
		{Topic: cfg.Topic, Key: []byte("g-0001"), Value: nil}, // a tombstone
	}, recs[30:]...)...)
	c.Produce(t, cl, recs...)
	startSink(t, cfg, nil)

	heraldtest.WaitFor(t, 30*time.Second, "good states", func() bool { return allAt(rows(t, cfg.Pool), wantAll(good, 3)) })
	dlq := c.Consume(t, topology.TopicDLQ, 20*time.Second, func(rs []*kgo.Record) bool { return len(rs) >= 2 })
	if len(dlq) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dlq))
	}
	byKey := map[string]contract.DeadLetter{}
	for _, r := range dlq {
		dl, err := heralddlq.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		byKey[string(r.Key)] = dl
	}
	if dl := byKey["poison-nul"]; dl.Reason != ReasonRejected || dl.Topic != cfg.Topic || !bytes.Equal(dl.Value, recs[30].Value) {
		t.Fatalf("NUL dead letter: %+v", dl)
	}
	if dl := byKey["poison-json"]; dl.Reason != ReasonUndecodable || string(dl.Value) != "{not json" {
		t.Fatalf("undecodable dead letter: %+v", dl)
	}
	if _, ok := rows(t, cfg.Pool)["poison-nul"]; ok {
		t.Fatal("poison row written")
	}
	adm := admin(t, c)
	heraldtest.WaitFor(t, 20*time.Second, "offsets committed past the poison", func() bool { return committedAll(t, adm, DefaultGroup, cfg.Topic) })
	if n := float64(counts(cfg).deadLetter(ReasonRejected)); n != 1 {
		t.Fatalf("dead letter metric %v", n)
	}
}

package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/internal/heraldtest"
)

// commitLog records the sink's offset commits and checks, at each, that
// every record it commits has its row in PostgreSQL at that record's
// version or a newer one, and that no other commit is in flight.
type commitLog struct {
	t        *testing.T
	cfg      Config
	inFlight atomic.Int32
	mu       sync.Mutex
	last     map[topicPartition]int64 // highest offset committed, per partition
	calls    int
	problems []string
	// before, when set, runs at the start of a commit; an error fails it.
	before func(call int) error
}

func (l *commitLog) commit(ctx context.Context, cl *kgo.Client, recs ...*kgo.Record) error {
	if n := l.inFlight.Add(1); n > 1 {
		l.problem("%d commits in flight", n)
	}
	defer l.inFlight.Add(-1)
	l.mu.Lock()
	l.calls++
	call := l.calls
	l.mu.Unlock()
	stored := rows(l.t, l.cfg.Pool)
	for _, r := range recs {
		var st struct {
			ID      string
			Version int64
		}
		if err := json.Unmarshal(r.Value, &st); err != nil {
			l.problem("commit %d: record %s/%d/%d is not a state: %v", call, r.Topic, r.Partition, r.Offset, err)
			continue
		}
		if got := stored[st.ID].Version; got < st.Version {
			l.problem("commit %d: offset %d of partition %d committed with %s at version %d in PostgreSQL, the record's is %d",
				call, r.Offset, r.Partition, st.ID, got, st.Version)
		}
	}
	if l.before != nil {
		if err := l.before(call); err != nil {
			return err
		}
	}
	if err := cl.CommitRecords(ctx, recs...); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range recs {
		tp := topicPartition{r.Topic, r.Partition}
		if at, ok := l.last[tp]; ok && r.Offset <= at {
			l.problems = append(l.problems, fmt.Sprintf("commit %d: partition %d from offset %d back to %d", call, r.Partition, at, r.Offset))
		}
		l.last[tp] = r.Offset
	}
	return nil
}

func (l *commitLog) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
}

func (l *commitLog) check() {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.problems {
		l.t.Error(p)
	}
	if l.calls == 0 {
		l.t.Error("no offset commit")
	}
}

func newCommitLog(t *testing.T, cfg Config) *commitLog {
	return &commitLog{t: t, cfg: cfg, last: map[topicPartition]int64{}}
}

// The offset commit of a batch does not hold up writing the next one:
// while the first commit is held, the following batches are written;
// commits run one at a time, in order, each only for records whose rows
// PostgreSQL has, and the last covers everything.
func TestSinkCommitDoesNotHoldUpTheWriter(t *testing.T) {
	t.Parallel()
	c, cl, cfg := setup(t, "")
	cfg.BatchMinSize = 1
	log := newCommitLog(t, cfg)
	held, release := make(chan struct{}), make(chan struct{})
	log.before = func(call int) error {
		if call == 1 {
			close(held)
			select {
			case <-release:
			case <-time.After(60 * time.Second): // the test failed: do not hang its cleanup
			}
		}
		return nil
	}
	startSink(t, cfg, func(s *Sink) { s.commitHook = log.commit })

	a, b := ids("a", 20), ids("b", 20)
	produce(t, c, cl, a, "nov", 1)
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("no offset commit")
	}
	produce(t, c, cl, b, "nov", 2)
	ok := false
	deadline := time.Now().Add(30 * time.Second)
	for !ok && time.Now().Before(deadline) {
		ok = allAt(rows(t, cfg.Pool), wantAll(b, 2))
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	if !ok {
		t.Fatal("the next batch was not written while the first batch's offset commit was held")
	}
	heraldtest.WaitFor(t, 20*time.Second, "offsets committed", func() bool { return committedAll(t, admin(t, c), DefaultGroup, cfg.Topic) })
	heraldtest.WaitFor(t, 20*time.Second, "every batch reported", func() bool { _, r := batches(cfg); return r >= 40 })
	log.check()
}

// A failed offset commit after PostgreSQL took the batch loses and skips
// nothing: the offsets stay behind, later commits still run in order,
// and a restart replays the uncommitted records, which change nothing.
func TestSinkCommitFailureLosesNothing(t *testing.T) {
	t.Parallel()
	c, cl, cfg := setup(t, "")
	adm := admin(t, c)
	log := newCommitLog(t, cfg)
	var failing atomic.Bool
	failing.Store(true)
	log.before = func(int) error {
		if failing.Load() {
			return errors.New("coordinator gone")
		}
		return nil
	}
	r := startSink(t, cfg, func(s *Sink) { s.commitHook = log.commit })
	a := ids("a", 50)
	produce(t, c, cl, a, "nov", 1, 2)
	heraldtest.WaitFor(t, 30*time.Second, "the rows written", func() bool { return allAt(rows(t, cfg.Pool), wantAll(a, 2)) })
	heraldtest.WaitFor(t, 30*time.Second, "the batches reported", func() bool { _, n := batches(cfg); return n >= 100 })
	if counts(cfg).commitFailed.Load() == 0 {
		t.Fatal("no failed commit counted")
	}
	if committedAll(t, adm, DefaultGroup, cfg.Topic) {
		t.Fatal("offsets committed though every commit failed")
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	failing.Store(false)
	cfg.Observer = new(testObserver)
	b := ids("b", 30)
	produce(t, c, cl, b, "nov", 3)
	startSink(t, cfg, func(s *Sink) { s.commitHook = log.commit })
	heraldtest.WaitFor(t, 30*time.Second, "the new rows after the restart", func() bool { return allAt(rows(t, cfg.Pool), wantAll(b, 3)) })
	heraldtest.WaitFor(t, 20*time.Second, "offsets committed", func() bool { return committedAll(t, adm, DefaultGroup, cfg.Topic) })
	heraldtest.WaitFor(t, 20*time.Second, "every batch reported", func() bool { _, n := batches(cfg); return n >= 130 })
	if got := rows(t, cfg.Pool); !allAt(got, wantAll(a, 2)) {
		t.Fatal("rows of the replayed batches changed")
	}
	if n := counts(cfg).stale.Load(); n < 50 {
		t.Fatalf("%d stale rows in the replay, want the 50 already written", n)
	}
	log.check()
}

// A shutdown waits for the write in flight and commits what was written.
func TestSinkShutdownFinishesTheWriteAndCommits(t *testing.T) {
	t.Parallel()
	c, cl, cfg := setup(t, "")
	writing, release := make(chan struct{}), make(chan struct{})
	var first sync.Once
	hook := func(point string) error {
		if point == "upserted" {
			first.Do(func() {
				close(writing)
				select {
				case <-release:
				case <-time.After(60 * time.Second):
				}
			})
		}
		return nil
	}
	r := startSink(t, cfg, func(s *Sink) { s.writer.hook = hook })
	a := ids("a", 40)
	produce(t, c, cl, a, "nov", 1)
	select {
	case <-writing:
	case <-time.After(30 * time.Second):
		t.Fatal("no write")
	}
	r.cancel()
	time.Sleep(100 * time.Millisecond) // let the shutdown begin while the write is held
	close(release)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	got := rows(t, cfg.Pool)
	n := 0
	for _, id := range a {
		if got[id].Version == 1 {
			n++
		}
	}
	if n == 0 {
		t.Fatal("the batch in flight at the shutdown was not written")
	}
	// What was written is committed: a new sink has nothing of it to replay.
	cfg.Observer = new(testObserver)
	startSink(t, cfg, nil)
	heraldtest.WaitFor(t, 30*time.Second, "the rest written", func() bool { return allAt(rows(t, cfg.Pool), wantAll(a, 1)) })
	heraldtest.WaitFor(t, 20*time.Second, "offsets committed", func() bool { return committedAll(t, admin(t, c), DefaultGroup, cfg.Topic) })
	if replayed, _ := batches(cfg); counts(cfg).stale.Load() > 0 {
		t.Fatalf("%d rows replayed (in %d batches) after a clean shutdown", counts(cfg).stale.Load(), replayed)
	}
}

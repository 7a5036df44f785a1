package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

func TestMain(m *testing.M) { heraldtest.PostgresMain(m) }

// t0 is recent: the writer only makes attempt partitions near the present.
var t0 = time.Now().UTC().Truncate(time.Hour)

func testLog() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("HERALD_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// migratedPool returns a pool on the migrated database of dsn.
var migratedPool = heraldtest.MigratedPool

// state builds the version-th state of notification id: version 1 is
// scheduled, 2 sending with one attempt out, 3 retrying after a transient
// failure, 4 sent on the second attempt (each with its history).
func state(id, campaign string, version uint64) *contract.State {
	s := &contract.State{
		ID: id, Campaign: campaign, Channel: contract.ChannelEmail, Version: version,
		FirstSeen: t0, UpdatedAt: t0.Add(time.Duration(version) * time.Second),
		Request: &contract.Request{ID: id, Campaign: campaign, Policy: contract.Policy{ID: "statements", Version: 7}},
	}
	switch {
	case version <= 1:
		s.Status = contract.StatusScheduled
	case version == 2:
		s.Status, s.Attempts = contract.StatusSending, 1
	case version == 3:
		s.Status, s.Attempts = contract.StatusRetrying, 1
		s.LastError = "email attempt 1: 503 try later"
		next := t0.Add(time.Minute)
		s.NextAttemptAt = &next
		s.History = []contract.Attempt{{Attempt: 1, Channel: contract.ChannelEmail, Outcome: contract.OutcomeTransient, Error: "503 try later", Code: 503, At: t0.Add(3 * time.Second)}}
	default:
		s.Status, s.Attempts = contract.StatusSent, 2
		sent := t0.Add(time.Duration(version) * time.Second)
		s.SentAt = &sent
		s.History = []contract.Attempt{
			{Attempt: 1, Channel: contract.ChannelEmail, Outcome: contract.OutcomeTransient, Error: "503 try later", Code: 503, At: t0.Add(3 * time.Second)},
			{Attempt: 2, Channel: contract.ChannelEmail, Outcome: contract.OutcomeSuccess, Code: 250, At: sent},
		}
	}
	return s
}

func change(s *contract.State) Change {
	b, _ := json.Marshal(s)
	return Change{State: s, Key: []byte(s.ID), Value: b, Source: contract.Position{Topic: string(topology.TableDispatcher)}}
}

func stateRecord(s *contract.State) *kgo.Record {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return &kgo.Record{Topic: string(topology.TableDispatcher), Key: []byte(s.ID), Value: b}
}

// row is what dispatch_status holds for an id.
type row struct {
	Status    string
	Version   int64
	Attempts  int
	LastError string
	Sent      bool
}

func rows(t testing.TB, pool *pgxpool.Pool) map[string]row {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := pool.Query(ctx, `SELECT id, status, version, attempts, last_error, sent_at IS NOT NULL FROM dispatch_status`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := map[string]row{}
	for rs.Next() {
		var id string
		var r row
		if err := rs.Scan(&id, &r.Status, &r.Version, &r.Attempts, &r.LastError, &r.Sent); err != nil {
			t.Fatal(err)
		}
		out[id] = r
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func countRows(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// allAt reports whether every id in want is stored at its wanted version.
func allAt(got map[string]row, want map[string]uint64) bool {
	for id, v := range want {
		if got[id].Version != int64(v) {
			return false
		}
	}
	return true
}

// running is a sink started by startSink.
type running struct {
	sink   *Sink
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned err
	err    error
}

// stop ends the sink and returns Run's error.
func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		t.Fatal("sink did not stop")
		return nil
	}
}

func startSink(t testing.TB, cfg Config, setup func(*Sink)) *running {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = testLog()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{sink: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = s.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
		}
	})
	return r
}

func admin(t testing.TB, c *heraldtest.Cluster) *kadm.Client {
	return kadm.NewClient(c.Client(t))
}

// committedAll reports whether group has committed every partition of
// topic up to its end.
func committedAll(t testing.TB, adm *kadm.Client, group, topic string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Logf("end offsets: %v", err)
		return false
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Logf("committed offsets: %v", err)
		return false
	}
	ok := true
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset == 0 {
			return
		}
		got, found := committed.Lookup(topic, o.Partition)
		if !found || got.At < o.Offset {
			ok = false
		}
	})
	return ok
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
}

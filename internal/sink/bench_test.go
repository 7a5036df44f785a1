package sink

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/heraldtest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-dispatch/herald/internal/migrations"
	"github.com/herald-dispatch/herald/internal/pglocal"
)

// BenchmarkSinkVsRowUpdates writes the same status changes (1,000,000 by
// default, HERALD_SINK_BENCH_ROWS to change it) to dispatch_status three
// ways, in one run, on one PostgreSQL with its durable defaults (fsync and
// synchronous_commit on; a cluster of its own unless DATABASE_URL is set):
//
//   - update: the reference design, one UPDATE ... WHERE id = $1 AND
//     version < $2 per change in its own transaction, from 8 concurrent
//     clients;
//   - sink: the sink's Writer, batches of 5,000 (COPY into a temporary
//     table, one version-guarded INSERT ... ON CONFLICT per batch), one
//     client, as the sink runs;
//   - sink+attempts: the same, with one provider attempt per change also
//     written to dispatch_attempts (the sink's real work; the baseline
//     does not do it).
//
// Every row exists beforehand at version 1 and each change moves it to
// version 2, so all three do the same updates. Reported: rows/s of each and
// the ratio of the sink's to the baseline's.
func BenchmarkSinkVsRowUpdates(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("HERALD_SINK_BENCH_ROWS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("HERALD_SINK_BENCH_ROWS=%q", s)
		}
		n = v
	}
	ctx := context.Background()
	dbURL := benchDatabase(b)

	changes := make([]Change, n)
	plain := make([]Change, n)
	for i := range changes {
		s := state(fmt.Sprintf("bench:%08d:bill", i), "bench", 4)
		s.Version = 2
		changes[i] = Change{State: s}
		p := *s
		p.History = nil
		plain[i] = Change{State: &p}
	}

	for i := 0; i < b.N; i++ {
		update := benchPhase(b, dbURL("update"), n, func(pool *pgxpool.Pool) error { return rowUpdates(ctx, pool, plain, 8) })
		sinkOnly := benchPhase(b, dbURL("sink"), n, func(pool *pgxpool.Pool) error { return batchWrites(ctx, pool, plain) })
		withAttempts := benchPhase(b, dbURL("sink_attempts"), n, func(pool *pgxpool.Pool) error { return batchWrites(ctx, pool, changes) })

		rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
		b.ReportMetric(rate(update), "update_rows/s")
		b.ReportMetric(rate(sinkOnly), "sink_rows/s")
		b.ReportMetric(rate(withAttempts), "sink+attempts_rows/s")
		b.ReportMetric(rate(sinkOnly)/rate(update), "x_sink_vs_update")
		b.ReportMetric(rate(withAttempts)/rate(update), "x_sink+attempts_vs_update")
		b.Logf("%d status changes: update (8 clients) %s = %.0f rows/s; sink %s = %.0f rows/s (%.1fx); sink+attempts %s = %.0f rows/s (%.1fx)",
			n, update.Round(time.Millisecond), rate(update), sinkOnly.Round(time.Millisecond), rate(sinkOnly), rate(sinkOnly)/rate(update),
			withAttempts.Round(time.Millisecond), rate(withAttempts), rate(withAttempts)/rate(update))
	}
}

// benchDatabase returns a function making a fresh, migrated database per
// phase on a durable server.
func benchDatabase(b *testing.B) func(name string) string {
	b.Helper()
	ctx := context.Background()
	if os.Getenv("DATABASE_URL") != "" {
		return func(string) string { return heraldtest.Postgres(b) }
	}
	srv, err := pglocal.Start(ctx, pglocal.Config{Dir: filepath.Join(b.TempDir(), "pg"), Log: testLog()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Stop() })
	return func(name string) string {
		name = fmt.Sprintf("%s_%d", name, time.Now().UnixNano())
		if err := srv.CreateDatabase(ctx, name); err != nil {
			b.Fatal(err)
		}
		return srv.DatabaseURL(name)
	}
}

// benchPhase prepares a database with n rows at version 1, then times run.
func benchPhase(b *testing.B, dsn string, n int, run func(*pgxpool.Pool) error) time.Duration {
	b.Helper()
	b.StopTimer()
	ctx := context.Background()
	if _, err := migrations.Migrate(ctx, dsn, testLog()); err != nil {
		b.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"dispatch_status"},
		[]string{"id", "campaign", "status", "channel", "created_at", "updated_at", "version"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			return []any{fmt.Sprintf("bench:%08d:bill", i), "bench", "sending", "email", t0, t0, int64(1)}, nil
		})); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE dispatch_status"); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "CHECKPOINT"); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	start := time.Now()
	if err := run(pool); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	b.StopTimer()
	if got := countRows(b, pool, "SELECT count(*) FROM dispatch_status WHERE version = 2"); got != n {
		b.Fatalf("%d rows at version 2, want %d", got, n)
	}
	return took
}

// rowUpdates is the reference design: one UPDATE per change, each its own
// transaction, from clients concurrent connections.
func rowUpdates(ctx context.Context, pool *pgxpool.Pool, changes []Change, clients int) error {
	const q = `UPDATE dispatch_status SET status = $2, channel = $3, attempts = $4, duplicates = $5,
		policy_id = $6, policy_version = $7, hold_reason = $8, last_error = $9, updated_at = $10,
		sent_at = $11, next_attempt_at = $12, version = $13, synced_at = now()
		WHERE id = $1 AND version < $13`
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	per := (len(changes) + clients - 1) / clients
	for c := 0; c < clients; c++ {
		part := changes[min(c*per, len(changes)):min((c+1)*per, len(changes))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pool.Acquire(ctx)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Release()
			for _, ch := range part {
				s := ch.State
				if _, err := conn.Exec(ctx, q, s.ID, string(s.Status), string(s.Channel), int32(s.Attempts), int32(s.Duplicates),
					policyID(s), int32(policyVersion(s)), string(s.HoldReason), s.LastError, s.UpdatedAt,
					s.SentAt, s.NextAttemptAt, int64(s.Version)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// batchWrites feeds the changes to the sink's Writer in batches of 5,000
// (the figures in docs/sink.md were measured so), one after the other, as
// the sink does.
func batchWrites(ctx context.Context, pool *pgxpool.Pool, changes []Change) error {
	const size = 5000
	w := NewWriter(pool)
	for i := 0; i < len(changes); i += size {
		res, err := w.Write(ctx, changes[i:min(i+size, len(changes))])
		if err != nil {
			return err
		}
		if len(res.Rejected) > 0 {
			return fmt.Errorf("%d rejected: %v", len(res.Rejected), res.Rejected[0].Err)
		}
	}
	return nil
}

package pglocal_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/pglocal"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { heraldtest.PostgresMain(m) }

func connect(t *testing.T, dsn string) (*pgx.Conn, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, ctx
}

func exec1(t *testing.T, dsn, sql string, args ...any) {
	t.Helper()
	conn, ctx := connect(t, dsn)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, dsn, sql string) int {
	t.Helper()
	conn, ctx := connect(t, dsn)
	var n int
	if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// A cluster keeps its data across a stop and a start on the same dir, a
// second Start on a running dir attaches instead of failing, and the
// attached Server's Stop leaves the server running.
func TestStartStopReuseAttach(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "pg")
	srv, err := pglocal.Start(ctx, pglocal.Config{Dir: dir, Ephemeral: true, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	if !srv.Owned() {
		t.Fatal("fresh server not owned")
	}
	exec1(t, srv.URL(), "CREATE TABLE kept (n int); INSERT INTO kept VALUES (1), (2)")

	att, err := pglocal.Start(ctx, pglocal.Config{Dir: dir, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if att.Owned() || att.Port() != srv.Port() {
		t.Fatalf("attach: owned=%v port=%d, want false %d", att.Owned(), att.Port(), srv.Port())
	}
	if err := att.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := count(t, srv.URL(), "SELECT count(*) FROM kept"); n != 2 {
		t.Fatalf("after attached Stop: %d rows", n)
	}

	port := srv.Port()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err == nil {
		t.Fatal("postmaster.pid left after Stop")
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if srv.Port() != port {
		t.Fatalf("restart moved port %d -> %d", port, srv.Port())
	}
	if n := count(t, srv.URL(), "SELECT count(*) FROM kept"); n != 2 {
		t.Fatalf("after restart: %d rows", n)
	}
	srv.Stop()

	// A new Start on the stopped dir (a second `herald run`) reuses the cluster.
	again, err := pglocal.Start(ctx, pglocal.Config{Dir: dir, Ephemeral: true, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Stop()
	if n := count(t, again.URL(), "SELECT count(*) FROM kept"); n != 2 {
		t.Fatalf("after reuse: %d rows", n)
	}
}

// Test gives each test its own empty database.
func TestTestDatabasesAreSeparate(t *testing.T) {
	a, b := heraldtest.Postgres(t), heraldtest.Postgres(t)
	if a == b {
		t.Fatalf("same database twice: %s", a)
	}
	exec1(t, a, "CREATE TABLE only_in_a (n int)")
	if n := count(t, b, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"); n != 0 {
		t.Fatal("table of one test database seen in another")
	}
}

func TestFixedPortBusy(t *testing.T) {
	srv := heraldtest.PostgresServer(t)
	_, err := pglocal.Start(context.Background(), pglocal.Config{Dir: filepath.Join(t.TempDir(), "pg2"), Port: srv.Port(), Ephemeral: true,
		Log: slog.New(slog.DiscardHandler), StartTimeout: 30 * time.Second})
	if err == nil {
		t.Fatal("second server on a busy fixed port started")
	}
	t.Log(err)
}

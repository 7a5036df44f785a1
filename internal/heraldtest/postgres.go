package heraldtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/migrations"
	"github.com/herald-dispatch/herald/internal/pglocal"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The Postgres half of Herald's test helpers.
//
// Postgres gives each test a fresh, empty database. Where the database comes
// from:
//   - DATABASE_URL set: a new database on that server (or, when the role may
//     not create databases, a new schema in that database), dropped at
//     cleanup;
//   - the package's TestMain calls PostgresMain: one throwaway cluster per
//     test binary (started on first use, in a temp dir, stopped and removed
//     when the tests end), one database per test;
//   - otherwise: a throwaway cluster for this test alone, in t.TempDir().
//
// PostgresServer always starts a cluster of the test's own, which the test may
// stop and start (to simulate an outage).

// shared is the per-binary cluster of Main.
var shared struct {
	mu      sync.Mutex
	enabled bool
	srv     *pglocal.Server
	base    string
	err     error
}

// PostgresMain runs the package's tests with one shared throwaway cluster and
// removes it afterwards. Use it from TestMain:
//
//	func TestMain(m *testing.M) { heraldtest.PostgresMain(m) }
func PostgresMain(m *testing.M) {
	shared.mu.Lock()
	shared.enabled = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	if shared.base != "" {
		os.RemoveAll(shared.base)
	}
	shared.mu.Unlock()
	os.Exit(code)
}

func sharedServer() (*pglocal.Server, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil || shared.err != nil {
		return shared.srv, shared.err
	}
	base, err := os.MkdirTemp("", "herald-pg-")
	if err != nil {
		shared.err = err
		return nil, err
	}
	shared.base = base
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	shared.srv, shared.err = pglocal.Start(ctx, pglocal.Config{Dir: filepath.Join(base, "data"), Ephemeral: true, Database: "postgres", Log: QuietLog()})
	return shared.srv, shared.err
}

// Postgres returns the URL of a fresh, empty database for t, dropped when t
// ends.
func Postgres(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return externalDatabase(t, u)
	}
	shared.mu.Lock()
	enabled := shared.enabled
	shared.mu.Unlock()
	if !enabled {
		return PostgresServer(t).URL()
	}
	srv, err := sharedServer()
	if err != nil {
		t.Fatalf("heraldtest: %v", err)
	}
	db := testDBName(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.CreateDatabase(ctx, db); err != nil {
		t.Fatalf("heraldtest: %v", err)
	}
	t.Cleanup(func() { dropDatabase(t, srv.DatabaseURL("postgres"), db) })
	return srv.DatabaseURL(db)
}

// PostgresServer starts a throwaway cluster for t alone in t.TempDir(),
// stopped when t ends. Its database is DefaultDatabase.
func PostgresServer(t testing.TB) *pglocal.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pglocal.Start(ctx, pglocal.Config{Dir: filepath.Join(t.TempDir(), "pg"), Ephemeral: true, Log: QuietLog()})
	if err != nil {
		t.Fatalf("heraldtest: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("heraldtest: %v", err)
		}
	})
	return srv
}

func testDBName(t testing.TB) string {
	var b [4]byte
	rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '_'
	}, t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	return "t_" + name + "_" + hex.EncodeToString(b[:])
}

func dropDatabase(t testing.TB, adminURL, db string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Logf("heraldtest: drop %s: %v", db, err)
		return
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Logf("heraldtest: drop %s: %v", db, err)
	}
}

// externalDatabase makes a database (or a schema) for t on the server of
// DATABASE_URL.
func externalDatabase(t testing.TB, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("heraldtest: DATABASE_URL: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := testDBName(t)
	err = pglocal.CreateDatabase(ctx, base, name)
	var pgErr *pgconn.PgError
	if err == nil {
		t.Cleanup(func() { dropDatabase(t, base, name) })
		u.Path = "/" + name
		return u.String()
	}
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" { // insufficient_privilege
		t.Fatalf("heraldtest: %v", err)
	}
	// No CREATEDB: a schema of its own, first on the search path.
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("heraldtest: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("heraldtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, base); err == nil {
			c.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE")
			c.Close(ctx)
		}
	})
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// MigratedPool migrates the database of dsn to Herald's schema and returns
// a pool on it, closed when the test ends.
func MigratedPool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := migrations.Migrate(ctx, dsn, QuietLog()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

package migrations_test

import (
	"context"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/migrations"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

func TestMain(m *testing.M) { heraldtest.PostgresMain(m) }

// The migrations apply on an empty database, a second run applies
// nothing, and the month partitions of dispatch_attempts route rows,
// including a month whose rows first landed in the default partition.
func TestMigrateAndPartitions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	dsn := heraldtest.Postgres(t)
	// The status of a database never migrated changes nothing in it.
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	st, err := migrations.Status(ctx, db)
	if err != nil || len(st) != 6 || st[0].State != goose.StatePending {
		t.Fatalf("status before migrating: %v %v", st, err)
	}
	var tables int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("status created %d tables (%v)", tables, err)
	}
	res, err := migrations.Migrate(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != 6 || res.Version != 6 {
		t.Fatalf("first run: %+v", res)
	}
	res, err = migrations.Migrate(ctx, dsn, nil)
	if err != nil || len(res.Applied) != 0 || res.Version != 6 {
		t.Fatalf("second run: %+v %v", res, err)
	}

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	old := time.Date(2020, 3, 15, 12, 0, 0, 0, time.UTC)
	ins := `INSERT INTO dispatch_attempts (id, attempt, channel, outcome, at) VALUES ($1, $2, 'email', 'success', $3)`
	for i, at := range []time.Time{old, old.Add(24 * time.Hour), time.Now()} {
		if _, err := conn.Exec(ctx, ins, "n1", i+1, at); err != nil {
			t.Fatal(err)
		}
	}
	where := func(id string, attempt int) string {
		var part string
		if err := conn.QueryRow(ctx, `SELECT tableoid::regclass::text FROM dispatch_attempts WHERE id = $1 AND attempt = $2`, id, attempt).Scan(&part); err != nil {
			t.Fatal(err)
		}
		return part
	}
	if p := where("n1", 1); p != "dispatch_attempts_default" {
		t.Fatalf("2020-03 row in %s before its partition exists", p)
	}
	if p := where("n1", 3); p != "dispatch_attempts_"+time.Now().UTC().Format("2006_01") {
		t.Fatalf("this month's row in %s", p)
	}
	var name string
	if err := conn.QueryRow(ctx, `SELECT herald_attempts_partition($1)`, old).Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name != "dispatch_attempts_2020_03" {
		t.Fatalf("partition %s", name)
	}
	for _, a := range []int{1, 2} {
		if p := where("n1", a); p != name {
			t.Fatalf("attempt %d in %s after the month's partition was made", a, p)
		}
	}
	// Idempotent, and the primary key still refuses a duplicate attempt.
	if err := conn.QueryRow(ctx, `SELECT herald_attempts_partition($1)`, old).Scan(&name); err != nil {
		t.Fatal(err)
	}
	tag, err := conn.Exec(ctx, ins+` ON CONFLICT (id, attempt, at) DO NOTHING`, "n1", 1, old)
	if err != nil || tag.RowsAffected() != 0 {
		t.Fatalf("duplicate attempt: %v %v", tag, err)
	}
}

package loadtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/migrations"
)

// dbFinalSynced reads the write time of the final sent and failed rows of
// the campaign, by plan index; a schema without status_synced_at (an older
// herald) is not measured rather than an error.
func TestDBFinalSynced(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx := context.Background()
	dsn := heraldtest.Postgres(t)
	if _, err := migrations.Migrate(ctx, dsn, nil); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	p, err := NewPlan(Workload{N: 10, Campaign: "db"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	for _, r := range []struct {
		id, campaign, status string
		synced               *time.Time
	}{
		{p.ID(1), "db", "sent", &at},
		{p.ID(2), "db", "failed", &at},
		{p.ID(3), "db", "sent", nil},
		{p.ID(4), "db", "sending", &at},
		{p.ID(5), "other", "sent", &at},
		{"not-in-the-plan", "db", "sent", &at},
	} {
		if _, err := pool.Exec(ctx, `INSERT INTO dispatch_status (id, campaign, status, created_at, updated_at, version, status_synced_at)
			VALUES ($1, $2, $3, now(), now(), 1, $4)`, r.id, r.campaign, r.status, r.synced); err != nil {
			t.Fatal(err)
		}
	}
	got, err := dbFinalSynced(ctx, pool, p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]int64{1: at.UnixNano(), 2: at.UnixNano(), 3: 0}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i, v := range want {
		if got[i] != v {
			t.Fatalf("index %d: %d, want %d", i, got[i], v)
		}
	}
	if _, err := pool.Exec(ctx, `ALTER TABLE dispatch_status DROP COLUMN status_synced_at`); err != nil {
		t.Fatal(err)
	}
	if got, err := dbFinalSynced(ctx, pool, p); got != nil || err != nil {
		t.Fatalf("without the column: %v, %v; want nothing measured and no error", got, err)
	}
}

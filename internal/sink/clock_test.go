package sink

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-dispatch/herald/internal/topology"
)

// The sink's restarts are timed on its own clock.
func TestServiceRunsOnTheSinkClock(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	// New only keeps the pool; nothing here reaches PostgreSQL.
	s, err := New(Config{Topology: topology.Config{Brokers: []string{"127.0.0.1:1"}}, Pool: new(pgxpool.Pool),
		Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	if s.svc.Now == nil || !s.svc.Now().Equal(at) {
		t.Fatal("the sink's service does not run on the sink's clock")
	}
}

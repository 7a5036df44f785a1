package sender

import (
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/topology"
)

// The sender's restarts are timed on its own clock.
func TestServiceRunsOnTheSenderClock(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s, err := New(Config{Topology: topology.Config{Brokers: []string{"127.0.0.1:1"}}, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	if s.svc.Now == nil || !s.svc.Now().Equal(at) {
		t.Fatal("the sender's service does not run on the sender's clock")
	}
}

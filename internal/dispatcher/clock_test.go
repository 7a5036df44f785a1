package dispatcher_test

import (
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/dispatcher"
	"github.com/herald-dispatch/herald/internal/topology"
)

// The supervisor times the dispatcher's sessions on the dispatcher's clock.
func TestSupervisorRunsOnTheDispatcherClock(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	d := &dispatcher.Dispatcher{Now: func() time.Time { return at }}
	sup := d.Supervisor(topology.Config{Brokers: []string{"127.0.0.1:1"}}, t.TempDir(), nil)
	if sup.Now == nil || !sup.Now().Equal(at) {
		t.Fatal("the supervisor does not run on the dispatcher's clock")
	}
}

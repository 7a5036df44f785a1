package heraldtest

import (
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/delay"
	"github.com/herald-dispatch/herald/internal/topology"
)

// Delay is a delay stage running in the background.
type Delay struct {
	*delay.Stage
	stop func() time.Duration
}

// Stop stops the stage, waits for Run to return and says how long that
// took. It is also called when the test ends.
func (d *Delay) Stop() time.Duration { return d.stop() }

// StartDelay runs a delay stage on c, as `herald run` wires it (c's
// topology, releasing to herald.wakeups, dead-lettering to herald.dlq,
// warnings to stderr), until Stop or the end of the test. tune, when not nil, edits the config first. It does not wait
// for the stage to be ready (Ready).
func StartDelay(t testing.TB, c *Cluster, tune func(*delay.Config)) *Delay {
	t.Helper()
	cfg := delay.Config{
		Topology: c.Topology,
		Targets:  []string{topology.TopicWakeups},
		DLQTopic: topology.TopicDLQ,
		Log:      QuietLog(),
	}
	if tune != nil {
		tune(&cfg)
	}
	s, err := delay.New(cfg)
	if err != nil {
		t.Fatalf("delay.New: %v", err)
	}
	return &Delay{Stage: s, stop: Background(t, "delay stage", s.Run)}
}

package heraldtest

import (
	"context"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/gokax"
	"github.com/herald-dispatch/herald/internal/topology"
)

// View is an in-memory Goka view of the dispatcher table, for tests that
// check the states a pipeline left behind.
type View struct {
	t testing.TB
	v *goka.View
}

// TableView starts a view of the dispatcher table, waits until it has
// recovered, and stops it when the test ends.
func (c *Cluster) TableView(t testing.TB) *View {
	t.Helper()
	v, err := goka.NewView(c.Brokers, topology.TableDispatcher, new(contract.StateCodec),
		append(gokax.ViewOptions(c.Topology, "test-view", nil), goka.WithViewStorageBuilder(storage.MemoryBuilder()))...)
	if err != nil {
		t.Fatalf("kafkatest: view: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = v.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(60 * time.Second)
	for !v.Recovered() {
		if time.Now().After(deadline) {
			t.Fatalf("kafkatest: view did not recover within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &View{t: t, v: v}
}

// State returns the state of id, or nil when the table has none.
func (v *View) State(id string) *contract.State {
	v.t.Helper()
	s, err := v.v.Get(id)
	if err != nil {
		v.t.Fatalf("kafkatest: view get %s: %v", id, err)
	}
	if s == nil {
		return nil
	}
	return s.(*contract.State)
}

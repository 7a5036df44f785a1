package heraldtest

import (
	"context"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
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
	return &View{t: t, v: c.tableView(t, "test-view", new(contract.StateCodec))}
}

// RawTableView is a view of the dispatcher table with raw values
// (codec.Bytes, as the sweep reads it), of its own group, recovered and
// stopped when the test ends.
func (c *Cluster) RawTableView(t testing.TB, group string) *goka.View {
	t.Helper()
	return c.tableView(t, group, new(codec.Bytes))
}

func (c *Cluster) tableView(t testing.TB, group string, cd goka.Codec) *goka.View {
	t.Helper()
	v, err := goka.NewView(c.Brokers, topology.TableDispatcher, cd,
		append(gokax.ViewOptions(c.Topology, group, nil), goka.WithViewStorageBuilder(storage.MemoryBuilder()))...)
	if err != nil {
		t.Fatalf("heraldtest: view: %v", err)
	}
	Background(t, "view", func(ctx context.Context) error { _ = v.Run(ctx); return nil })
	WaitFor(t, 60*time.Second, "the view of the table to recover", v.Recovered)
	return v
}

// State returns the state of id, or nil when the table has none.
// Version is the version of id's state in the view (ok false: none), as
// the dispatcher's Changelog reads it.
func (v *View) Version(id string) (uint64, bool) {
	if s := v.State(id); s != nil {
		return s.Version, true
	}
	return 0, false
}

func (v *View) State(id string) *contract.State {
	v.t.Helper()
	s, err := v.v.Get(id)
	if err != nil {
		v.t.Fatalf("heraldtest: view get %s: %v", id, err)
	}
	if s == nil {
		return nil
	}
	return s.(*contract.State)
}

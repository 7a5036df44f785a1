package tableview_test

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/tableview"
	"github.com/herald-dispatch/herald/internal/topology"
)

// stateRec is a changelog record of id's state in status at version, or a
// tombstone when status is "".
func stateRec(t *testing.T, id string, status contract.Status, version uint64) *kgo.Record {
	t.Helper()
	rec := &kgo.Record{Topic: string(topology.TableDispatcher), Key: []byte(id)}
	if status == "" {
		return rec
	}
	s := &contract.State{ID: id, Campaign: "c", Status: status, Version: version, Channel: contract.ChannelEmail,
		Attempts: int(version), Issue: int(version / 2), Commands: int(version/2) + 1,
		UpdatedAt: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC),
		HoldReason: map[contract.Status]contract.HoldReason{contract.StatusScheduled: contract.HoldSchedule,
			contract.StatusDeferred: contract.HoldBlackout, contract.StatusRetrying: contract.HoldBackoff}[status]}
	b, err := contract.EncodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	rec.Value = b
	return rec
}

// inFlightIDs is every partition's InFlight, checked to be on the
// partition the table's hash gives each id.
func inFlightIDs(t *testing.T, v *tableview.StateView, partitions int) []string {
	t.Helper()
	var all []string
	for p := range int32(partitions) {
		for _, id := range v.InFlight(p) {
			if got := topology.Partition(id, partitions); got != p {
				t.Errorf("%s indexed under partition %d, stored on %d", id, p, got)
			}
			all = append(all, id)
		}
	}
	slices.Sort(all)
	return all
}

// checkCounts compares the index's counts with a scan of the view, the
// truth they stand for, leaving out statuses with none.
func checkCounts(t *testing.T, v *tableview.StateView, when string) {
	t.Helper()
	wantStatus, wantHeld := map[contract.Status]int{}, map[contract.HoldReason]int{}
	if err := v.Scan(context.Background(), func(s contract.Summary) {
		wantStatus[s.Status]++
		if s.Status.Held() {
			wantHeld[s.HoldReason]++
		}
	}); err != nil {
		t.Fatal(err)
	}
	status, held := v.Counts()
	maps.DeleteFunc(status, func(_ contract.Status, n int) bool { return n == 0 })
	maps.DeleteFunc(held, func(_ contract.HoldReason, n int) bool { return n == 0 })
	if !reflect.DeepEqual(status, wantStatus) || !reflect.DeepEqual(held, wantHeld) {
		t.Fatalf("%s: counts %v %v, a scan counts %v %v", when, status, held, wantStatus, wantHeld)
	}
}

// checkProgress compares the view's Progress of each id with the progress
// decoded from what its store holds: the index's answer for the states in
// flight, the store's for the others, and nil for an unknown id.
func checkProgress(t *testing.T, v *tableview.StateView, when string, ids ...string) {
	t.Helper()
	for _, id := range append(ids, "unknown") {
		got, err := v.Progress(id)
		if err != nil {
			t.Fatalf("%s: progress of %s: %v", when, id, err)
		}
		raw, err := v.Goka().Get(id)
		if err != nil {
			t.Fatal(err)
		}
		var want *contract.State
		if b, _ := raw.([]byte); b != nil {
			p, err := contract.DecodeProgress(b)
			if err != nil {
				t.Fatal(err)
			}
			want = &contract.State{ID: p.ID, Status: p.Status, HoldReason: p.HoldReason, Attempts: p.Attempts, Issue: p.Issue,
				Commands: p.Commands, Version: p.Version}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: progress of %s %+v, the store's %+v", when, id, got, want)
		}
	}
}

// runView starts a StateView on dir and waits until it has recovered; the
// returned stop ends it and waits for it.
func runView(t *testing.T, c *heraldtest.Cluster, dir string) (*tableview.StateView, func()) {
	t.Helper()
	v, err := tableview.NewStateView(c.Topology, dir, heraldtest.QuietLog())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	heraldtest.WaitFor(t, 60*time.Second, "the view to recover", v.Recovered)
	return v, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("view: %v", err)
		}
	}
}

// The view's index of the states in flight holds exactly its non-final
// states: from the changelog as it recovers and follows it (a state gone
// final or remembered leaves it, a tombstone removes it, a record of a
// lower version changes nothing), and from its own local store when it
// opens again on the same data dir after a restart, with what was written
// meanwhile on top.
func TestInFlightIndexFollowsTheTable(t *testing.T) {
	t.Parallel()
	const partitions = 3
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: partitions})
	cl := c.Client(t)
	dir := t.TempDir()
	c.Produce(t, cl,
		stateRec(t, "scheduled", contract.StatusScheduled, 1),
		stateRec(t, "sending", contract.StatusSending, 2),
		stateRec(t, "retrying", contract.StatusRetrying, 3),
		stateRec(t, "sent", contract.StatusSent, 4),
		stateRec(t, "sent-then-sending", contract.StatusSending, 1),
		stateRec(t, "sent-then-sending", contract.StatusSent, 2),
	)
	v, stop := runView(t, c, dir)
	want := []string{"retrying", "scheduled", "sending"}
	if got := inFlightIDs(t, v, partitions); !reflect.DeepEqual(got, want) {
		t.Fatalf("in flight after recovery: %v, want %v", got, want)
	}
	checkCounts(t, v, "after recovery")
	ids := []string{"scheduled", "sending", "retrying", "sent", "sent-then-sending", "deferred", "marker", "late"}
	checkProgress(t, v, "after recovery", ids...)

	c.Produce(t, cl,
		stateRec(t, "sending", contract.StatusSent, 5),      // final now
		stateRec(t, "retrying", "", 0),                      // a tombstone
		stateRec(t, "sent", contract.StatusSending, 1),      // a lower version: dropped
		stateRec(t, "deferred", contract.StatusDeferred, 1), // new
		stateRec(t, "scheduled", contract.StatusSending, 2), // still in flight
		stateRec(t, "scheduled", contract.StatusSent, 1),    // a lower version of a state in flight: dropped
		stateRec(t, "deferred", contract.StatusDeferred, 1), // an equal version of one in flight: stored again
		stateRec(t, "marker", contract.StatusSent, 1),       // the last record, to wait for
	)
	heraldtest.WaitFor(t, 30*time.Second, "the view to read the updates", func() bool { st, _ := v.Get("marker"); return st != nil })
	want = []string{"deferred", "scheduled"}
	if got := inFlightIDs(t, v, partitions); !reflect.DeepEqual(got, want) {
		t.Fatalf("in flight after the updates: %v, want %v", got, want)
	}
	checkCounts(t, v, "after the updates")
	checkProgress(t, v, "after the updates", ids...)
	var scanned []string
	if err := v.ScanInFlight(context.Background(), func(b []byte) {
		st, err := contract.DecodeState(b)
		if err != nil {
			t.Fatal(err)
		}
		scanned = append(scanned, st.ID)
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(scanned)
	if !reflect.DeepEqual(scanned, want) {
		t.Fatalf("ScanInFlight read %v, want %v", scanned, want)
	}
	stop()

	// While the view is down: one state goes final, one arrives.
	c.Produce(t, cl, stateRec(t, "deferred", contract.StatusCanceled, 2), stateRec(t, "late", contract.StatusScheduled, 1))
	v, stop = runView(t, c, dir)
	defer stop()
	want = []string{"late", "scheduled"}
	if got := inFlightIDs(t, v, partitions); !reflect.DeepEqual(got, want) {
		t.Fatalf("in flight after a restart on the same data dir: %v, want %v (the local store's, then the changelog's since)", got, want)
	}
	checkCounts(t, v, "after a restart")
	checkProgress(t, v, "after a restart", ids...)
}

// Seeding reads a partition's store whole: many states, of which every
// tenth is in flight.
func TestInFlightIndexSeedsFromTheStore(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 2})
	cl := c.Client(t)
	dir := t.TempDir()
	var recs []*kgo.Record
	var want []string
	for i := range 2000 {
		id := fmt.Sprintf("n%04d", i)
		st := contract.StatusSent
		if i%10 == 0 {
			st = contract.StatusRetrying
			want = append(want, id)
		}
		recs = append(recs, stateRec(t, id, st, 1))
	}
	c.Produce(t, cl, recs...)
	_, stop := runView(t, c, dir)
	stop()
	v, stop := runView(t, c, dir) // nothing new in the changelog: all from the store
	defer stop()
	if got := inFlightIDs(t, v, 2); !reflect.DeepEqual(got, want) {
		t.Fatalf("in flight from the store: %d ids, want %d", len(got), len(want))
	}
	checkCounts(t, v, "from the store")
}

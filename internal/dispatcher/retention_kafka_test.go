package dispatcher_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dispatcher"
	"github.com/herald-dispatch/herald/internal/topology"
)

// lastChangelog is the newest changelog record of id (nil: none).
func (r *crashRig) lastChangelog(id string) *kgo.Record {
	var last *kgo.Record
	for _, rec := range r.c.ReadAll(r.t, string(topology.TableDispatcher)) {
		if string(rec.Key) == id {
			last = rec
		}
	}
	return last
}

// The life of one id under retention, through Kafka with the sweep on a
// fake clock: its final state reaches the changelog without content or
// recipient; past --state-retention the sweep's retire wake-up makes the
// owner replace it with a remembered record of a few dozen bytes, and a
// re-published request sends nothing; past --dedup-retention the record
// is deleted with a tombstone, after which the id is new again.
func TestRetentionShedsRemembersAndDeletes(t *testing.T) {
	r := newCrashRig(t)
	r.start()
	r.request("a", time.Time{})
	r.waitFor("a's command", func() bool { return len(r.commands("a")) == 1 })
	cmd := r.commands("a")[0]
	r.produce(topology.TopicResults, "a", contract.SendResult{ID: "a", Attempt: cmd.Attempt, Issue: cmd.Issue,
		Channel: cmd.Channel, Outcome: contract.OutcomeSuccess, At: r.now()})
	v := r.c.TableView(t)
	r.waitFor("a sent", func() bool { s := v.State("a"); return s != nil && s.Status == contract.StatusSent })

	// 1. The final state in the changelog has no payload.
	rec := r.lastChangelog("a")
	sent, err := contract.DecodeState(rec.Value)
	if err != nil || sent.Status != contract.StatusSent || sent.HasPayload() || sent.Request == nil {
		t.Fatalf("final state in the changelog: %+v, %v; want sent with its request but no content or recipient", sent, err)
	}
	for _, secret := range []string{"a@example.com", "subject"} {
		if strings.Contains(string(rec.Value), secret) {
			t.Fatalf("the changelog's final state still holds %q", secret)
		}
	}
	t.Logf("sent state in the changelog: %d bytes", len(rec.Value))

	gv := r.c.RawTableView(t, "retention-test")
	r.waitFor("a sent in the sweep's view", func() bool {
		x, _ := gv.Get("a")
		b, _ := x.([]byte)
		s, err := contract.DecodeSummary(b)
		return err == nil && s.Status == contract.StatusSent
	})
	var passes []int // retire wake-ups of each retention pass
	sw := &dispatcher.Sweeper{View: gv, Fence: r.sup.Fence(), Partitions: 1, Publish: dispatcher.PublishWakeups(r.cl),
		Now: r.now, StateRetention: dispatcher.DefaultStateRetention, DedupRetention: dispatcher.DefaultDedupRetention,
		ObserveRetire: func(n int) { passes = append(passes, n) }}
	ctx := context.Background()
	// Past --state-retention at the first sweep, but the first retention
	// pass waits one RetireInterval (a rolling upgrade's margin).
	r.setNow(rigT0.Add(dispatcher.DefaultStateRetention + time.Hour))
	if n, err := sw.Sweep(ctx); err != nil || n != 0 || len(passes) != 0 {
		t.Fatalf("first sweep: %d, %v, retention passes %v; want none", n, err, passes)
	}
	// Within --state-retention: kept whole.
	within := dispatcher.DefaultStateRetention - dispatcher.DefaultRetireInterval - time.Hour
	r.setNow(rigT0.Add(within))
	sw2 := &dispatcher.Sweeper{View: gv, Fence: r.sup.Fence(), Partitions: 1, Publish: dispatcher.PublishWakeups(r.cl),
		Now: r.now, StateRetention: dispatcher.DefaultStateRetention, DedupRetention: dispatcher.DefaultDedupRetention,
		ObserveRetire: func(n int) { passes = append(passes, n) }}
	for _, d := range []time.Duration{0, dispatcher.DefaultRetireInterval} {
		r.setNow(rigT0.Add(within + d))
		if _, err := sw2.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(passes) != 1 || passes[0] != 0 {
		t.Fatalf("retention passes within --state-retention: %v, want one with nothing", passes)
	}

	// 2. Past --state-retention: the remembered record.
	r.setNow(rigT0.Add(dispatcher.DefaultStateRetention + time.Hour + dispatcher.DefaultRetireInterval))
	if _, err := sw.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.Sweep(ctx); err != nil { // within RetireInterval of the last pass: none
		t.Fatal(err)
	}
	if len(passes) != 2 || passes[1] != 1 {
		t.Fatalf("retention passes %v, want a second with a's retire wake-up, and no third within RetireInterval", passes)
	}
	r.waitFor("a remembered", func() bool { s := v.State("a"); return s != nil && s.Remembered })
	rec = r.lastChangelog("a")
	mem, err := contract.DecodeState(rec.Value)
	if err != nil || !mem.Remembered || mem.Status != contract.StatusSent || !mem.UpdatedAt.Equal(sent.UpdatedAt) ||
		mem.Request != nil || mem.History != nil || len(rec.Value) > 64 {
		t.Fatalf("remembered record in the changelog (%d bytes): %+v, %v", len(rec.Value), mem, err)
	}
	t.Logf("remembered record in the changelog: %d bytes", len(rec.Value))

	// 3. A re-published request during --dedup-retention sends nothing.
	r.setNow(rigT0.Add(100 * 24 * time.Hour))
	r.request("a", time.Time{})
	r.waitFor("the duplicate", func() bool { return r.obs.count(topology.TopicRequests, dispatcher.VerdictDuplicate) == 1 })
	if n := len(r.commands("a")); n != 1 {
		t.Fatalf("a's command made %d times, want once: a remembered id is a duplicate", n)
	}
	if s := v.State("a"); s == nil || !s.Remembered || s.Version != mem.Version {
		t.Fatalf("the duplicate wrote %+v, want the remembered record untouched", s)
	}

	// 4. Past --dedup-retention: a tombstone.
	r.waitFor("a remembered in the sweep's view", func() bool {
		x, _ := gv.Get("a")
		b, _ := x.([]byte)
		ret, err := contract.DecodeRetention(b)
		return err == nil && ret.Remembered
	})
	r.setNow(sent.UpdatedAt.Add(dispatcher.DefaultDedupRetention + time.Hour))
	if _, err := sw.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	r.waitFor("a's tombstone", func() bool { rec := r.lastChangelog("a"); return rec != nil && rec.Value == nil })
	r.waitFor("a gone from the view", func() bool { return v.State("a") == nil })
	if n := r.obs.count(topology.TopicWakeups, dispatcher.VerdictDeleted); n != 1 {
		t.Fatalf("%d deletions, want 1", n)
	}

	// 5. After the tombstone, the id is a new notification.
	r.request("a", time.Time{})
	r.waitFor("a's new command", func() bool { return len(r.commands("a")) == 2 })
}

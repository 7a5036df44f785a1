package loadtest

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dispatcher"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

// verdicts counts a dispatcher's verdicts per topic.
type verdicts struct {
	mu sync.Mutex
	n  map[string]int
}

func (v *verdicts) Event(topic string, verdict dispatcher.Verdict) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.n == nil {
		v.n = map[string]int{}
	}
	v.n[topic+"/"+string(verdict)]++
}
func (*verdicts) Transition(contract.Status, contract.Status, *contract.State) {}
func (*verdicts) DeadLetter(string, string)                                    {}
func (v *verdicts) count(key string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.n[key]
}

// A small history seeded into the changelog is what the dispatcher would
// have left there: every id on the partition the dispatcher's table puts
// it on, the old ones as remembered records and the last month's as sent
// states without their payload; the groups that follow the changelog are
// committed at its end; and a dispatcher that recovers the table takes a
// re-published request for either kind as a duplicate and sends nothing,
// while a new id is sent.
func TestHistorySeedsWhatTheDispatcherRecovers(t *testing.T) {
	const parts = 4
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: parts})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h := History{States: 1000, Partitions: parts, Now: time.Now()}.WithDefaults()
	if err := (History{States: 10, Span: dispatcher.DefaultDedupRetention}).Validate(0); err == nil {
		t.Fatal("a history reaching past --dedup-retention was accepted")
	}
	st, err := h.Seed(ctx, c.Topology, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 330 of 365 days are past the 35-day state retention.
	if st.States != 1000 || st.Remembered < 895 || st.Remembered > 910 || st.Final != 1000-st.Remembered {
		t.Fatalf("stats %+v, want 1,000 states, about 904 remembered", st)
	}
	t.Logf("seeded %+v (%.0f B a record)", st, float64(st.ValueBytes)/float64(st.States))

	recs := c.ReadAll(t, string(topology.TableDispatcher))
	if len(recs) != h.States {
		t.Fatalf("%d changelog records, want %d", len(recs), h.States)
	}
	index := map[string]int{}
	for i := range h.States {
		index[h.ID(i)] = i
	}
	var remembered, shed, last int
	var newestShed string
	for _, rec := range recs {
		id := string(rec.Key)
		i, ok := index[id]
		if !ok {
			t.Fatalf("unknown id %q in the changelog", id)
		}
		delete(index, id)
		if want := topology.Partition(id, parts); rec.Partition != want {
			t.Fatalf("%s on partition %d, the dispatcher's table has it on %d", id, rec.Partition, want)
		}
		s, err := contract.DecodeState(rec.Value)
		if err != nil || s.ID != id || s.Status != contract.StatusSent || !s.UpdatedAt.Equal(h.Changed(i)) {
			t.Fatalf("%s: %+v, %v; want sent at %s", id, s, err, h.Changed(i))
		}
		if rec.Timestamp.After(h.Now) || rec.Timestamp.Before(s.UpdatedAt) {
			t.Fatalf("%s written at %s, outside its last change %s .. now %s", id, rec.Timestamp, s.UpdatedAt, h.Now)
		}
		switch {
		case h.Remembered(i):
			if !s.Remembered || s.Request != nil || s.History != nil || len(rec.Value) > 64 {
				t.Fatalf("%s (%d B): %+v, want its remembered record", id, len(rec.Value), s)
			}
			remembered++
		default:
			if s.Remembered || s.Request == nil || s.HasPayload() || len(s.History) == 0 {
				t.Fatalf("%s: %+v, want a shed sent state with its request and history", id, s)
			}
			shed++
			if i > last {
				last, newestShed = i, id
			}
		}
	}
	if remembered != st.Remembered || shed != st.Final {
		t.Fatalf("changelog: %d remembered and %d shed, stats %+v", remembered, shed, st)
	}

	if err := CommitTableEnd(ctx, c.Topology, TableFollowers()...); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(c.Client(t))
	ends, err := adm.ListEndOffsets(ctx, string(topology.TableDispatcher))
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(e kadm.ListedOffset) { total += e.Offset })
	if total != int64(h.States) {
		t.Fatalf("the changelog ends at %d records in all, want %d", total, h.States)
	}
	for _, g := range TableFollowers() {
		got, err := adm.FetchOffsets(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		ends.Each(func(e kadm.ListedOffset) {
			if o, ok := got.Lookup(e.Topic, e.Partition); !ok || o.At != e.Offset {
				t.Fatalf("%s committed at %+v on %s/%d, want the end %d", g, o, e.Topic, e.Partition, e.Offset)
			}
		})
	}

	obs := &verdicts{}
	d := heraldtest.StartDispatcher(t, c, heraldtest.DispatcherOptions{Observer: obs})
	heraldtest.WaitFor(t, time.Minute, "the dispatcher ready", d.Ready)
	cl := c.Client(t)
	oldest := h.ID(0)
	var published []*kgo.Record
	for _, id := range []string{oldest, newestShed, "bill-new-0000001"} {
		b, err := json.Marshal(historyRequest(id, time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		published = append(published, &kgo.Record{Topic: topology.TopicRequests, Key: []byte(id), Value: b})
	}
	c.Produce(t, cl, published...)
	// The shed state's request position is an offset of a past the
	// fresh topic never had (History), so its copy, published at a lower
	// offset, may be taken as a replay of it rather than a duplicate:
	// either way nothing is sent.
	dup := topology.TopicRequests + "/" + string(dispatcher.VerdictDuplicate)
	replay := topology.TopicRequests + "/" + string(dispatcher.VerdictReplay)
	applied := topology.TopicRequests + "/" + string(dispatcher.VerdictApplied)
	heraldtest.WaitFor(t, time.Minute, "the three requests dispatched", func() bool {
		return obs.count(dup)+obs.count(replay)+obs.count(applied) == 3
	})
	if obs.count(dup) < 1 || obs.count(dup)+obs.count(replay) != 2 || obs.count(applied) != 1 {
		t.Fatalf("verdicts %v: want the remembered id a duplicate, the shed one a duplicate or a replay, the new one applied", obs.n)
	}
	cmds := c.Consume(t, topology.TopicSend, 30*time.Second, func(rs []*kgo.Record) bool { return len(rs) >= 1 })
	for _, r := range cmds {
		if string(r.Key) != "bill-new-0000001" {
			t.Fatalf("a send command for history id %s", r.Key)
		}
	}
}

// The comparison pairs a history run with the empty-table run before it
// and judges issue 23's targets; a run without its pair is left out.
func TestHistoryComparison(t *testing.T) {
	rss := func(mb int64) map[string]ProcUsage { return map[string]ProcUsage{"herald-1": {PeakRSS: mb << 20}} }
	empty := &Result{Name: "p12-i1", Partitions: 12, Instances: 1, Throughput: Throughput{To90: 1000}, Procs: rss(500)}
	good := &Result{Name: "p12-i1-history", Partitions: 12, Instances: 1, History: &HistoryStats{States: 10},
		Throughput: Throughput{To90: 950}, Procs: rss(550), Ready: map[string]time.Duration{"herald-1": 20 * time.Second}}
	bad := &Result{Name: "p12-i1-history", Partitions: 12, Instances: 1, History: &HistoryStats{States: 10},
		Throughput: Throughput{To90: 800}, Procs: rss(700), Ready: map[string]time.Duration{"herald-1": 90 * time.Second}}
	out := HistoryComparison([]*Result{empty, good})
	for _, want := range []string{"0.95× (target ≥ 0.90×: met)", "1.10× (target ≤ 1.20×: met)", "20s (target < 1m0s: met)"} {
		if !strings.Contains(out, want) {
			t.Errorf("comparison lacks %q:\n%s", want, out)
		}
	}
	out = HistoryComparison([]*Result{empty, bad})
	for _, want := range []string{"0.80× (target ≥ 0.90×: MISSED)", "1.40× (target ≤ 1.20×: MISSED)", "1m30s (target < 1m0s: MISSED)"} {
		if !strings.Contains(out, want) {
			t.Errorf("comparison lacks %q:\n%s", want, out)
		}
	}
	other := *empty
	other.Instances = 2
	if out := HistoryComparison([]*Result{&other, good}); out != "" {
		t.Errorf("a history run compared with another point:\n%s", out)
	}
}

// The herald processes' CPU counts from the first publication: a
// history's recovery before it is not the burst's.
func TestHeraldCPULeavesOutStartUp(t *testing.T) {
	r := &Result{Procs: map[string]ProcUsage{"herald-1": {CPU: 500, PeakRSS: 2}, "herald-2": {CPU: 60, PeakRSS: 3},
		"api-1": {CPU: 40}, "broker": {CPU: 9}},
		CPUBefore: map[string]float64{"herald-1": 430, "herald-2": 1, "broker": 5}}
	if cpu, rss := r.HeraldCPU(); cpu != 129 || rss != 3 {
		t.Fatalf("HeraldCPU = %v, %v; want 70 + 59 s and the highest peak", cpu, rss)
	}
}

package dispatcher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/dlq"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/tester"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dispatcher"
	"github.com/herald-dispatch/herald/internal/gokax"
	"github.com/herald-dispatch/herald/internal/topology"
)

// gokaHarness runs the dispatcher callback on Goka's in-memory tester.
type gokaHarness struct {
	t     *testing.T
	tt    *tester.Tester
	now   time.Time
	send  *tester.QueueTracker
	dlq   *tester.QueueTracker
	tiers map[string]*tester.QueueTracker
}

func newGokaHarness(t *testing.T) *gokaHarness {
	h := &gokaHarness{t: t, tt: tester.New(t), now: time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)}
	d := &dispatcher.Dispatcher{
		Config: dispatcher.DispatchConfig{DefaultLoc: time.UTC, SendTimeout: 30 * time.Second},
		Now:    func() time.Time { return h.now },
		// Goka's tester has one partition.
		Placement: dispatcher.Placement{Partitions: 1},
	}
	// NilProcess as in gokax.GokaOptions: tombstones reach the DLQ.
	proc, err := goka.NewProcessor(nil, d.Graph(), goka.WithTester(h.tt), goka.WithNilHandling(goka.NilProcess),
		goka.WithLogger(gokax.GokaLogger(slog.New(slog.DiscardHandler))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("processor: %v", err)
		}
	})
	h.send = h.tt.NewQueueTracker(topology.TopicSend)
	h.dlq = h.tt.NewQueueTracker(topology.TopicDLQ)
	h.tiers = map[string]*tester.QueueTracker{}
	for _, tp := range append(topology.TierTopics(), topology.TopicWakeups) {
		h.tiers[tp] = h.tt.NewQueueTracker(tp)
	}
	return h
}

func (h *gokaHarness) state(id string) *contract.State {
	v := h.tt.TableValue(topology.TableDispatcher, id)
	if v == nil {
		return nil
	}
	return v.(*contract.State)
}

func (h *gokaHarness) sends() []contract.SendCommand {
	var out []contract.SendCommand
	for {
		k, v, ok := h.send.Next()
		if !ok {
			return out
		}
		c, err := contract.DecodeCommand([]byte(k), v.([]byte))
		if err != nil {
			h.t.Fatalf("send command: %v", err)
		}
		out = append(out, *c)
	}
}

// wakeups drains every tier (and the wake-up topic) and returns topic ->
// wakeups.
func (h *gokaHarness) wakeups() map[string][]contract.Wakeup {
	out := map[string][]contract.Wakeup{}
	for tp, qt := range h.tiers {
		for {
			k, v, ok := qt.Next()
			if !ok {
				break
			}
			w, err := contract.DecodeWakeup([]byte(k), v.([]byte))
			if err != nil {
				h.t.Fatalf("wakeup: %v", err)
			}
			out[tp] = append(out[tp], *w)
		}
	}
	return out
}

func (h *gokaHarness) deadLetters() []contract.DeadLetter {
	var out []contract.DeadLetter
	for {
		hs, k, v, ok := h.dlq.NextRawWithHeaders()
		if !ok {
			return out
		}
		d, err := contract.ParseDeadLetter([]byte(k), v, dlq.GokaToHeaders(hs))
		if err != nil {
			h.t.Fatalf("dead letter: %v", err)
		}
		out = append(out, d)
	}
}

func TestDispatcherCallbackNewRequest(t *testing.T) {
	t.Parallel()
	h := newGokaHarness(t)
	h.tt.Consume(topology.TopicRequests, "n-1", requestJSON("n-1"))

	s := h.state("n-1")
	if s == nil || s.Status != contract.StatusSending || s.Attempts != 1 || s.Version != 1 {
		t.Fatalf("state = %+v, want sending, attempt 1, version 1", s)
	}
	cmds := h.sends()
	if len(cmds) != 1 || cmds[0].ID != "n-1" || cmds[0].Attempt != 1 || cmds[0].Channel != contract.ChannelEmail ||
		cmds[0].Address != "user@example.com" || cmds[0].IdempotencyKey != "n-1" || !cmds[0].IssuedAt.Equal(h.now) {
		t.Fatalf("send commands = %+v", cmds)
	}
	// No timer per send: the state records when the send times out (the
	// cut-off, the 30 s deadline, plus the provider timeout plus the
	// margin), and only the sweep acts on it, if no result comes.
	due := h.now.Add(30*time.Second + contract.DefaultProviderTimeout + dispatcher.DefaultTimeoutMargin)
	if w := h.wakeups(); len(w) != 0 || s.TimeoutAt == nil || !s.TimeoutAt.Equal(due) || !cmds[0].Cutoff.Equal(h.now.Add(30*time.Second)) {
		t.Fatalf("wakeups = %+v, timeout_at %v, want none and %s; command cut-off %s", w, s.TimeoutAt, due, cmds[0].Cutoff)
	}
}

func TestDispatcherCallbackDuplicate(t *testing.T) {
	t.Parallel()
	h := newGokaHarness(t)
	h.tt.Consume(topology.TopicRequests, "n-1", requestJSON("n-1"))
	h.sends()
	h.tt.Consume(topology.TopicRequests, "n-1", requestJSON("n-1"))
	h.tt.Consume(topology.TopicRequests, "n-1", requestJSON("n-1"))
	if cmds := h.sends(); len(cmds) != 0 {
		t.Fatalf("duplicates produced %d send commands", len(cmds))
	}
	if s := h.state("n-1"); s.Duplicates != 2 || s.Status != contract.StatusSending || s.Version != 3 {
		t.Fatalf("state = %+v, want 2 duplicates, still sending, version 3", s)
	}
}

func TestDispatcherCallbackDeadLetters(t *testing.T) {
	t.Parallel()
	h := newGokaHarness(t)
	cases := []struct {
		topic, key string
		value      []byte
		reason     string
	}{
		{topology.TopicRequests, "x", []byte("not json"), contract.ReasonMalformed},
		{topology.TopicRequests, "y", nil, contract.ReasonMalformed},
		{topology.TopicRequests, "other", requestJSON("z"), contract.ReasonKeyMismatch},
		{topology.TopicRequests, "w", []byte(`{"schema":"herald.dispatch.v1","id":"w"}`), contract.ReasonInvalid},
		{topology.TopicResults, "r", []byte(`{"id":`), contract.ReasonMalformed},
		{topology.TopicWakeups, "k", []byte(`{"id":"other","kind":"hold"}`), contract.ReasonKeyMismatch},
	}
	for _, c := range cases {
		h.tt.Consume(c.topic, c.key, c.value)
	}
	dls := h.deadLetters()
	if len(dls) != len(cases) {
		t.Fatalf("%d dead letters, want %d", len(dls), len(cases))
	}
	for i, c := range cases {
		d := dls[i]
		if d.Reason != c.reason || d.Topic != c.topic || string(d.Key) != c.key || string(d.Value) != string(c.value) || d.Error == "" {
			t.Errorf("case %d: dead letter %+v, want reason %s with the original record", i, d, c.reason)
		}
		if h.state(c.key) != nil {
			t.Errorf("case %d: a state was written for a bad record", i)
		}
	}
	if len(dls) > 3 && len(dls[3].Problems) == 0 {
		t.Errorf("an invalid request's dead letter lists no field problems")
	}
}

func TestDispatcherCallbackResult(t *testing.T) {
	t.Parallel()
	h := newGokaHarness(t)
	h.tt.Consume(topology.TopicRequests, "n-1", requestJSON("n-1"))
	h.now = h.now.Add(time.Second)
	res, _ := json.Marshal(contract.SendResult{ID: "n-1", Attempt: 1, Channel: contract.ChannelEmail,
		Outcome: contract.OutcomeSuccess, Code: 202, At: h.now})
	h.tt.Consume(topology.TopicResults, "n-1", res)
	s := h.state("n-1")
	if s.Status != contract.StatusSent || s.SentAt == nil || !s.SentAt.Equal(h.now) || len(s.History) != 1 {
		t.Fatalf("state = %+v, want sent with one attempt in history", s)
	}
	// A result for the same attempt again is stale: nothing changes.
	h.tt.Consume(topology.TopicResults, "n-1", res)
	if s2 := h.state("n-1"); s2.Version != s.Version {
		t.Fatalf("a repeated result changed the state: version %d -> %d", s.Version, s2.Version)
	}
}

// Records that come back from the repartition topic are dispatched under
// their origin: its dead letters name it, and a second copy of one move is
// no duplicate. (Goka's tester has one partition, so nothing is misplaced
// here; the move itself is tested on the broker, placement_kafka_test.go.)
func TestDispatcherCallbackMovedRecords(t *testing.T) {
	t.Parallel()
	h := newGokaHarness(t)
	origin := func(topic string, part, off int) tester.EmitOption {
		return tester.WithHeaders(goka.Headers{
			dispatcher.HeaderOriginTopic:     []byte(topic),
			dispatcher.HeaderOriginPartition: []byte(fmt.Sprint(part)),
			dispatcher.HeaderOriginOffset:    []byte(fmt.Sprint(off)),
		})
	}
	h.tt.Consume(topology.TopicRepartition, "n-1", requestJSON("n-1"), origin(topology.TopicRequests, 5, 42))
	h.tt.Consume(topology.TopicRepartition, "n-1", requestJSON("n-1"), origin(topology.TopicRequests, 5, 42))
	h.tt.Consume(topology.TopicRepartition, "n-1", requestJSON("n-1"), origin(topology.TopicRequests, 2, 42))
	s := h.state("n-1")
	if s == nil || s.Status != contract.StatusSending || s.Duplicates != 1 || s.Moved[topology.TopicRequests+"/5"] != 42 {
		t.Fatalf("state %+v, want sending with one duplicate (the copy from partition 2), origin 5/42 remembered", s)
	}
	if cmds := h.sends(); len(cmds) != 1 {
		t.Fatalf("%d send commands, want 1", len(cmds))
	}

	h.tt.Consume(topology.TopicRepartition, "bad", []byte("not json"), origin(topology.TopicControl, 3, 7))
	h.tt.Consume(topology.TopicRepartition, "bare", requestJSON("bare"))
	h.tt.Consume(topology.TopicRepartition, "half", requestJSON("half"), tester.WithHeaders(goka.Headers{
		dispatcher.HeaderOriginTopic: []byte(topology.TopicRequests), dispatcher.HeaderOriginPartition: []byte("x")}))
	dls := h.deadLetters()
	if len(dls) != 3 {
		t.Fatalf("%d dead letters, want 3: %+v", len(dls), dls)
	}
	if d := dls[0]; d.Topic != topology.TopicControl || d.Partition != 3 || d.Offset != 7 || d.Reason != contract.ReasonMalformed ||
		string(d.Value) != "not json" {
		t.Errorf("dead letter of a moved record %+v, want its origin herald.control/3/7", d)
	}
	for _, d := range dls[1:] {
		if d.Topic != topology.TopicRepartition || d.Reason != contract.ReasonMalformed || !strings.Contains(d.Error, "origin headers") {
			t.Errorf("dead letter of a repartition record without origin %+v", d)
		}
		if h.state(string(d.Key)) != nil {
			t.Errorf("a state was written for %s", d.Key)
		}
	}

	// A moved cancel for an id with no state yet is parked to the topic it
	// was published to, not to the repartition topic: it comes back there
	// well placed.
	cancel, _ := json.Marshal(contract.Cancel{ID: "ghost"})
	h.tt.Consume(topology.TopicRepartition, "ghost", cancel, origin(topology.TopicControl, 3, 9))
	parked := 0
	for _, qt := range h.tiers {
		for {
			hdr, key, _, ok := qt.NextWithHeaders()
			if !ok {
				break
			}
			if key == "ghost" {
				parked++
				if target := string(hdr[topology.HeaderTarget]); target != topology.TopicControl {
					t.Errorf("the moved cancel was parked to %q, want %s", target, topology.TopicControl)
				}
			}
		}
	}
	if parked != 1 {
		t.Errorf("the moved cancel for an unknown id was parked %d times, want once", parked)
	}
}

// The repartition topic is the dispatcher group's Goka loop stream.
func TestRepartitionTopicIsTheLoopStream(t *testing.T) {
	t.Parallel()
	g := new(dispatcher.Dispatcher).Graph()
	if l := g.LoopStream(); l == nil || l.Topic() != topology.TopicRepartition {
		t.Fatalf("loop stream %v, want %s", l, topology.TopicRepartition)
	}
}

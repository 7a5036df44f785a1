package processors_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/dlq"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/tester"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/delay"
	"github.com/herald-dispatch/herald/processors"
	"github.com/herald-dispatch/herald/topology"
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
	d := &processors.Dispatcher{
		Config: processors.DispatchConfig{DefaultLoc: time.UTC, SendTimeout: 30 * time.Second},
		Now:    func() time.Time { return h.now },
		// Goka's tester has one partition.
		Placement: processors.Placement{Partitions: 1},
	}
	// NilProcess as in processors.GokaOptions: tombstones reach the DLQ.
	proc, err := goka.NewProcessor(nil, d.Graph(), goka.WithTester(h.tt), goka.WithNilHandling(goka.NilProcess),
		goka.WithLogger(processors.GokaLogger(slog.New(slog.DiscardHandler))))
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
	for _, tp := range append(delay.TierTopics(), topology.TopicWakeups) {
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
		_, v, ok := h.send.Next()
		if !ok {
			return out
		}
		var c contract.SendCommand
		if err := json.Unmarshal(v.([]byte), &c); err != nil {
			h.t.Fatalf("send command: %v", err)
		}
		out = append(out, c)
	}
}

// wakeups drains every tier (and the wake-up topic) and returns topic ->
// wakeups.
func (h *gokaHarness) wakeups() map[string][]contract.Wakeup {
	out := map[string][]contract.Wakeup{}
	for tp, qt := range h.tiers {
		for {
			_, v, ok := qt.Next()
			if !ok {
				break
			}
			var w contract.Wakeup
			if err := json.Unmarshal(v.([]byte), &w); err != nil {
				h.t.Fatalf("wakeup: %v", err)
			}
			out[tp] = append(out[tp], w)
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
	w := h.wakeups()
	// The send timeout fires after the cut-off (the 30 s deadline) plus the
	// provider timeout plus the margin.
	due := h.now.Add(30*time.Second + processors.DefaultProviderTimeout + processors.DefaultTimeoutMargin)
	timeoutTier := delay.TierTopic(delay.Tier(due.Sub(h.now)))
	if len(w[timeoutTier]) != 1 || w[timeoutTier][0].Kind != contract.WakeupSendTimeout ||
		!w[timeoutTier][0].Due.Equal(due) || !cmds[0].Cutoff.Equal(h.now.Add(30*time.Second)) {
		t.Fatalf("wakeups = %+v, want one send-timeout on %s due at %s; command cut-off %s", w, timeoutTier, due, cmds[0].Cutoff)
	}
}

func TestDispatcherCallbackDuplicate(t *testing.T) {
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

package loadtest

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/provider"
)

func recorderCommand(id string, ch contract.Channel) *contract.SendCommand {
	addr := map[contract.Channel]string{contract.ChannelEmail: "c@example.com", contract.ChannelSMS: "+491500000000"}[ch]
	return &contract.SendCommand{ID: id, Channel: ch, Attempt: 1, Address: addr, IdempotencyKey: id,
		Content: json.RawMessage(`{"template":"t"}`)}
}

// Each channel is its own provider with its own idempotency keys: the same
// notification delivered by email and by SMS is two deliveries of one id,
// even when the providers honour Idempotency-Key.
func TestRecorderSeparateProviderPerChannel(t *testing.T) {
	p, err := NewPlan(Workload{N: 10, Campaign: "r"})
	if err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder(p, true)
	srv := httptest.NewServer(rec)
	defer srv.Close()
	for _, ch := range []contract.Channel{contract.ChannelEmail, contract.ChannelSMS} {
		w, _ := provider.NewWebhook(srv.URL+"/"+string(ch), provider.Options{Timeout: 5 * time.Second})
		if r := w.Send(context.Background(), recorderCommand(p.ID(1), ch)); r.Outcome != contract.OutcomeSuccess {
			t.Fatalf("%s: %+v", ch, r)
		}
	}
	st := rec.Stats()
	if st.Accepted != 2 || st.UniqueIDs != 1 || st.Duplicates != 1 || st.Replays != 0 {
		t.Fatalf("stats %+v, want two deliveries of one id", st)
	}
	var o Observed
	ObservedFromDeliveries(p, rec.Deliveries(), &o)
	if o.Delivered[1] != 2 || o.DeliveredOn[1] != channelBit(contract.ChannelEmail)|channelBit(contract.ChannelSMS) {
		t.Fatalf("delivered %d on %b", o.Delivered[1], o.DeliveredOn[1])
	}
	if rec.Accepted() != 2 || rec.Calls() != 2 || rec.CallCount(1) != 2 {
		t.Fatalf("accepted %d calls %d (%d for the id)", rec.Accepted(), rec.Calls(), rec.CallCount(1))
	}
}

// The slow provider delivers a slow_provider notification's email after
// SlowLatency although the caller timed out (an unknown outcome), once;
// the same key again, while the delivery is under way or after it, is
// answered from it. Other kinds and SMS are not slowed.
func TestRecorderSlowProvider(t *testing.T) {
	p, err := NewPlan(Workload{N: 20, SlowProvider: 0.5, Campaign: "s", SlowLatency: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder(p, false) // the slow share honours its key whatever the mock does
	srv := httptest.NewServer(rec)
	defer srv.Close()
	impatient, _ := provider.NewWebhook(srv.URL+"/email?latency=1ms", provider.Options{Timeout: 100 * time.Millisecond})
	patient, _ := provider.NewWebhook(srv.URL+"/email?latency=1ms", provider.Options{Timeout: 5 * time.Second})
	sms, _ := provider.NewWebhook(srv.URL+"/sms", provider.Options{Timeout: 100 * time.Millisecond})
	slow := p.ID(firstIndex(p, KindSlowProvider))
	normal := p.ID(firstIndex(p, KindNormal))

	if r := impatient.Send(context.Background(), recorderCommand(slow, contract.ChannelEmail)); r.Outcome != contract.OutcomeUnknown {
		t.Fatalf("first call of the slow id: %+v, want unknown (timed out after the request was sent)", r)
	}
	start := time.Now()
	if r := patient.Send(context.Background(), recorderCommand(slow, contract.ChannelEmail)); r.Outcome != contract.OutcomeSuccess {
		t.Fatalf("re-issued call: %+v, want success from the first delivery", r)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("the re-issued call was answered after %s, before the first delivery was made", waited)
	}
	if r := impatient.Send(context.Background(), recorderCommand(slow, contract.ChannelEmail)); r.Outcome != contract.OutcomeSuccess {
		t.Fatalf("a third call: %+v, want an immediate answer from the delivery", r)
	}
	for _, c := range []struct {
		w  *provider.Webhook
		id string
		ch contract.Channel
	}{{impatient, normal, contract.ChannelEmail}, {sms, slow, contract.ChannelSMS}} {
		if r := c.w.Send(context.Background(), recorderCommand(c.id, c.ch)); r.Outcome != contract.OutcomeSuccess {
			t.Fatalf("%s by %s: %+v, want a fast success", c.id, c.ch, r)
		}
	}
	st := rec.Stats()
	em := st.Channels[contract.ChannelEmail]
	if em == nil || em.Accepted != 2 || st.Replays != 2 || rec.SlowReplays() != 2 {
		t.Fatalf("stats %+v (email %+v), want the slow id delivered once by email, two replays", st, em)
	}
}

// A call is noted as forbidden when it arrives inside a window or at or
// after expires_at, with how far past the cut-off it arrived.
func TestRecorderNotesForbiddenCalls(t *testing.T) {
	p, err := NewPlan(Workload{N: 20, WindowQueued: 0.5, Expiring: 0.5, Campaign: "f"})
	if err != nil {
		t.Fatal(err)
	}
	pub := time.Date(2026, 1, 5, 10, 0, 10, 0, time.UTC)
	for i := range p.W.N {
		p.First(i, pub)
	}
	rec := NewRecorder(p, false)
	w, e := firstIndex(p, KindWindowQueued), firstIndex(p, KindExpiring)
	open, end, exp := p.Window[w], p.Release[w], p.Expires[e]
	for _, c := range []struct {
		i      int
		at     int64
		n      int
		by     time.Duration
		reason string
	}{
		{w, open - 1, 0, 0, "before the window"},
		{w, open + int64(2*time.Second), 1, 2 * time.Second, "inside the window"},
		{w, end, 1, 2 * time.Second, "at the window's end (free)"},
		{e, exp - 1, 0, 0, "before expiry"},
		{e, exp, 1, 0, "at expiry"},
		{e, exp + int64(3*time.Second), 2, 3 * time.Second, "after expiry"},
	} {
		rec.note(p.ID(c.i), c.at)
		if n, by := rec.Forbidden(c.i); n != c.n || by != c.by {
			t.Errorf("%s: %d forbidden calls, furthest %s; want %d, %s", c.reason, n, by, c.n, c.by)
		}
	}
}

// The recorder notes when a call is answered: after the provider's
// latency, the latest answer per notification.
func TestRecorderNotesAnswers(t *testing.T) {
	p, err := NewPlan(Workload{N: 10, Campaign: "a"})
	if err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder(p, false)
	srv := httptest.NewServer(rec)
	defer srv.Close()
	w, _ := provider.NewWebhook(srv.URL+"/email?latency=30ms", provider.Options{Timeout: 5 * time.Second})
	var prev int64
	for n := 1; n <= 2; n++ {
		if r := w.Send(context.Background(), recorderCommand(p.ID(3), contract.ChannelEmail)); r.Outcome != contract.OutcomeSuccess {
			t.Fatalf("call %d: %+v", n, r)
		}
		ans := rec.Answered(3)
		if ans <= prev || ans-rec.FirstCall(3) < int64(time.Duration(n)*30*time.Millisecond) {
			t.Fatalf("call %d: answered at %d, first call at %d, previous answer %d", n, ans, rec.FirstCall(3), prev)
		}
		prev = ans
	}
	if rec.Answered(4) != 0 {
		t.Fatal("an answer noted for a notification never called")
	}
}

package sender_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/herald-dispatch/herald/internal/topology"
)

// providerCall is one call a fakeProvider received.
type providerCall struct {
	At      time.Time // on the pipeline's clock, when the call arrived
	ID      string
	Attempt int
	Key     string
}

// fakeProvider is one channel's provider behind the webhook protocol. It
// records every call as it arrives, then takes the time behave gives
// for the id, whether or not the caller is still waiting (a real provider
// does not notice that its client timed out), and delivers once per
// idempotency key. With replay, a call whose key was already delivered is
// answered at once, as a provider that honours Idempotency-Key answers a
// replay from its first acceptance.
type fakeProvider struct {
	now    func() time.Time
	behave func(id string) (latency time.Duration, replay bool)

	mu        sync.Mutex
	calls     []providerCall
	delivered map[string]time.Time // by idempotency key
}

func newFakeProvider(t *testing.T, now func() time.Time, behave func(string) (time.Duration, bool)) (*fakeProvider, string) {
	p := &fakeProvider{now: now, behave: behave, delivered: map[string]time.Time{}}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv.URL
}

func (p *fakeProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := p.now()
	var body provider.WebhookBody
	b, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	key := r.Header.Get(provider.HeaderIdempotencyKey)
	latency, replay := p.behave(body.ID)
	p.mu.Lock()
	p.calls = append(p.calls, providerCall{At: at, ID: body.ID, Attempt: body.Attempt, Key: key})
	_, known := p.delivered[key]
	p.mu.Unlock()
	if !(known && replay) {
		time.Sleep(latency)
		p.mu.Lock()
		if _, ok := p.delivered[key]; !ok {
			p.delivered[key] = p.now()
		}
		p.mu.Unlock()
	}
	w.WriteHeader(http.StatusOK)
}

// callsOf returns the calls for id, in arrival order.
func (p *fakeProvider) callsOf(id string) []providerCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []providerCall
	for _, c := range p.calls {
		if c.ID == id {
			out = append(out, c)
		}
	}
	return out
}

func (p *fakeProvider) deliveredIDs() map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]bool{}
	for key := range p.delivered {
		out[key] = true // the key is the id
	}
	return out
}

// clockRequest renders a request for email then SMS with one attempt per
// channel, edited by edit.
func clockRequest(id string, edit func(r *contract.Request)) *kgo.Record {
	r := contract.Request{Schema: contract.SchemaV1, ID: id, Campaign: "clock",
		Recipient: contract.Recipient{Email: "user@example.com", Phone: "+821012345678", TZ: "UTC"},
		Channels:  []contract.Channel{contract.ChannelEmail, contract.ChannelSMS},
		Content:   json.RawMessage(`{"subject":"Your bill","text":"Amount due: 10"}`),
		Policy: contract.Policy{ID: "clock", Version: 1, AttemptsPerChannel: 1,
			Backoff: contract.Backoff{Initial: contract.Duration(100 * time.Millisecond), Multiplier: 2, Max: contract.Duration(time.Second)}},
	}
	if edit != nil {
		edit(&r)
	}
	b, _ := json.Marshal(r)
	return &kgo.Record{Topic: topology.TopicRequests, Key: []byte(id), Value: b}
}

func clockOf(t time.Time) contract.Clock { return contract.Clock(t.UTC().Hour()*60 + t.UTC().Minute()) }

func hasOutcome(s *contract.State, o contract.Outcome) bool {
	for _, h := range s.History {
		if h.Outcome == o {
			return true
		}
	}
	return false
}

// TestPipelineSendsRespectTheClock is issue 12's integration test with a
// real backlog: the dispatcher, the delay stage and the sender on the
// embedded broker, two sender slots, and provider calls of 0.6 s to 3 s
// queued ahead of the notifications under test, one fake provider per
// channel recording every call. The three findings of the issue hold:
//
//   - blackout: the window (per message, UTC) opens at a minute boundary 4 s
//     after publication, while the commands wait in herald.send. No call
//     starts inside it; the commands that arrive too late are answered
//     not_attempted and the notifications are deferred to the window's
//     end without using up an attempt.
//   - expiry: expires_at is 3 s after publication, inside the backlog. No
//     call starts at or after it; those not called are expired.
//   - unknown outcome: the email provider takes 3 s, longer than the 1 s
//     provider timeout, with one attempt per channel, email then SMS, and
//     no fallback_on_unknown. No SMS call is made for them, so none is
//     delivered on both channels. Where the provider answers the
//     re-issued attempt from its idempotency key, the status is sent by
//     email (history: unknown, then success); where it stays slow, the
//     status is failed with "outcome unknown" after MaxReissues re-issues.
func TestPipelineSendsRespectTheClock(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test")
	}
	const (
		providerTimeout = time.Second
		fillerLatency   = 600 * time.Millisecond
		slowLatency     = 3 * time.Second
		fast            = 20 * time.Millisecond
	)
	var clk heraldtest.ShiftedClock
	email, emailURL := newFakeProvider(t, clk.Now, func(id string) (time.Duration, bool) {
		switch {
		case strings.HasPrefix(id, "filler-"), id == "warmup":
			return fillerLatency, false
		case strings.HasPrefix(id, "unknown-replay-"):
			return slowLatency, true
		case strings.HasPrefix(id, "unknown-slow-"):
			return slowLatency, false
		}
		return fast, false
	})
	sms, smsURL := newFakeProvider(t, clk.Now, func(string) (time.Duration, bool) { return fast, false })
	p := startPipeline(t, pipelineOptions{Partitions: 1, Concurrency: 2, SendTimeout: time.Minute,
		ProviderTimeout: providerTimeout, EmailURL: emailURL, SMSURL: smsURL, Now: clk.Now})
	cl := p.c.Client(t)

	// Warm up: one notification through every stage, so that the backlog
	// below is the only delay.
	heraldtest.WaitFor(t, 60*time.Second, "the view of the table to recover", p.view.Recovered)
	p.c.Produce(t, cl, clockRequest("warmup", nil))
	waitState(t, p, "warmup", 60*time.Second, func(s *contract.State) bool { return s.Status == contract.StatusSent })

	// Publish 4 s before a minute boundary (the window's start).
	const lead = 4 * time.Second
	opens := clk.BeforeMinute(lead)
	ends := opens.Add(time.Minute)
	start := clk.Now()
	expires := start.Add(3 * time.Second)
	var recs []*kgo.Record
	var ids struct{ replay, slow, filler, blackout, expiry []string }
	add := func(list *[]string, prefix string, n int, edit func(*contract.Request)) {
		for i := range n {
			id := fmt.Sprintf("%s%02d", prefix, i)
			*list = append(*list, id)
			recs = append(recs, clockRequest(id, edit))
		}
	}
	// In herald.send's order: the slow calls first (2 × 3 timed-out
	// seconds on 2 slots), then 12 × 0.6 s, then the notifications under
	// test, about 5.6 s after publication, past the window's start and
	// the expiry; the re-issues come last.
	add(&ids.replay, "unknown-replay-", 2, nil)
	add(&ids.slow, "unknown-slow-", 2, nil)
	add(&ids.filler, "filler-", 12, nil)
	add(&ids.blackout, "blackout-", 6, func(r *contract.Request) {
		r.Blackout = []contract.Window{{From: clockOf(opens), To: clockOf(ends)}}
	})
	add(&ids.expiry, "expiry-", 6, func(r *contract.Request) { r.ExpiresAt = &expires })
	p.c.Produce(t, cl, recs...)
	t.Logf("%d requests published at %s; window [%s, %s), expiry %s", len(recs), start.Format("15:04:05.000"),
		opens.Format("15:04:05"), ends.Format("15:04:05"), expires.Format("15:04:05.000"))

	final := func(s *contract.State) bool { return s.Status.Final() }
	for _, id := range append(append(append([]string(nil), ids.replay...), ids.slow...), append(ids.filler, ids.expiry...)...) {
		waitState(t, p, id, 45*time.Second, final)
	}
	for _, id := range ids.blackout {
		waitState(t, p, id, 45*time.Second, func(s *contract.State) bool {
			return s.Status == contract.StatusSent || s.Status == contract.StatusDeferred
		})
	}
	time.Sleep(time.Second) // room for a wrong late call
	t.Logf("settled %s after publication", clk.Now().Sub(start).Round(time.Millisecond))

	// No notification is delivered on both channels.
	smsDelivered := sms.deliveredIDs()
	for id := range email.deliveredIDs() {
		if smsDelivered[id] {
			t.Errorf("%s: delivered by email and by SMS", id)
		}
	}
	for _, id := range ids.filler {
		if s := state(t, p, id); s.Status != contract.StatusSent || s.Channel != contract.ChannelEmail {
			t.Errorf("%s: %s on %s, want sent by email", id, s.Status, s.Channel)
		}
	}

	// Blackout: no call starts inside [opens, ends).
	var calledBefore, held, inside int
	for _, id := range ids.blackout {
		calls := append(email.callsOf(id), sms.callsOf(id)...)
		for _, c := range calls {
			if !c.At.Before(opens) && c.At.Before(ends) {
				inside++
				t.Errorf("%s: provider call started %s inside its blackout window", id, c.At.Sub(opens).Round(time.Millisecond))
			}
		}
		s := state(t, p, id)
		switch s.Status {
		case contract.StatusSent:
			calledBefore++
			if len(calls) != 1 {
				t.Errorf("%s: sent after %d calls, want 1", id, len(calls))
			}
		case contract.StatusDeferred:
			held++
			if len(calls) != 0 || s.Attempts != 0 || s.ChannelAttempts != 0 || s.HoldReason != contract.HoldBlackout ||
				s.NextAttemptAt == nil || !s.NextAttemptAt.Equal(ends) || !hasOutcome(s, contract.OutcomeNotAttempted) {
				t.Errorf("%s: deferred with %d calls, %d attempts (%d on the channel), hold %q until %v, history %+v; "+
					"want no call, nothing used up, held for the blackout until %v after a not_attempted answer",
					id, len(calls), s.Attempts, s.ChannelAttempts, s.HoldReason, s.NextAttemptAt, s.History, ends)
			}
		}
	}
	t.Logf("blackout: %d sent, %d held to the window's end, %d calls inside the window", calledBefore, held, inside)
	if held == 0 {
		t.Errorf("no blackout command was still queued when the window opened: the test did not exercise the cut-off")
	}

	// Expiry: no call starts at or after expires_at.
	var sentBefore, expired, after int
	for _, id := range ids.expiry {
		calls := append(email.callsOf(id), sms.callsOf(id)...)
		for _, c := range calls {
			if !c.At.Before(expires) {
				after++
				t.Errorf("%s: provider call started %s after expires_at", id, c.At.Sub(expires).Round(time.Millisecond))
			}
		}
		s := state(t, p, id)
		switch s.Status {
		case contract.StatusSent:
			sentBefore++
		case contract.StatusExpired:
			expired++
			if len(calls) != 0 || !hasOutcome(s, contract.OutcomeNotAttempted) {
				t.Errorf("%s: expired with %d calls, history %+v; want no call and a not_attempted answer", id, len(calls), s.History)
			}
		default:
			t.Errorf("%s: %s (%s), want sent before expires_at or expired", id, s.Status, s.LastError)
		}
	}
	t.Logf("expiry: %d sent, %d expired unsent, %d calls at or after expires_at", sentBefore, expired, after)
	if expired == 0 {
		t.Errorf("no expiring command was still queued at expires_at: the test did not exercise the cut-off")
	}

	// Unknown outcome: the same attempt and key on email only; the status
	// says what happened.
	for _, id := range append(append([]string(nil), ids.replay...), ids.slow...) {
		s := state(t, p, id)
		calls := email.callsOf(id)
		if n := len(sms.callsOf(id)); n != 0 {
			t.Errorf("%s: %d SMS calls after an unknown email outcome, want none (no fallback_on_unknown)", id, n)
		}
		for _, c := range calls {
			if c.Attempt != 1 || c.Key != id {
				t.Errorf("%s: email call for attempt %d with key %q, want attempt 1 with key %q", id, c.Attempt, c.Key, id)
			}
		}
		if s.Attempts != 1 || len(s.History) != len(calls) || len(calls) < 2 {
			t.Fatalf("%s: %d attempts, history %+v, %d email calls; want attempt 1 re-issued, one history entry per call",
				id, s.Attempts, s.History, len(calls))
		}
		for i, h := range s.History[:len(s.History)-1] {
			if h.Outcome != contract.OutcomeUnknown || h.Channel != contract.ChannelEmail || h.Issue != i {
				t.Errorf("%s: history[%d] %+v, want an unknown outcome of email issue %d", id, i, h, i)
			}
		}
		last := s.History[len(s.History)-1]
		if strings.HasPrefix(id, "unknown-replay-") {
			if s.Status != contract.StatusSent || s.Channel != contract.ChannelEmail || last.Outcome != contract.OutcomeSuccess {
				t.Errorf("%s: %s on %s, last %+v; want sent by email, confirmed by the replay of the same key", id, s.Status, s.Channel, last)
			}
			continue
		}
		if s.Status != contract.StatusFailed || len(calls) != contract.MaxReissues+1 || last.Outcome != contract.OutcomeUnknown ||
			!strings.Contains(s.LastError, "outcome unknown") {
			t.Errorf("%s: %s after %d calls (%q), last %+v; want failed, outcome unknown after %d re-issues",
				id, s.Status, len(calls), s.LastError, last, contract.MaxReissues)
		}
	}
}

// state returns id's state in the pipeline's view of the table.
func state(t *testing.T, p *pipeline, id string) *contract.State {
	t.Helper()
	s, err := p.view.Get(id)
	if err != nil || s == nil {
		t.Fatalf("%s: state %v, %v", id, s, err)
	}
	return s
}

// waitState waits until id's state satisfies ok.
func waitState(t *testing.T, p *pipeline, id string, timeout time.Duration, ok func(*contract.State) bool) {
	t.Helper()
	heraldtest.Settle(t, timeout, id, func() error {
		s, err := p.view.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if s != nil && ok(s) {
			return nil
		}
		return fmt.Errorf("state %+v", s)
	})
}

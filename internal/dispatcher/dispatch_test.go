package dispatcher

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/schedule"
	"github.com/herald-dispatch/herald/internal/topology"
)

// The dispatcher's contract, one row per rule. Every row starts from a
// history played through Dispatch itself (so the starting state is one the
// dispatcher can reach), then applies one event at one instant and states
// what must come out: the verdict, the new state, and the emits.
//
// Every call, in the rows and in their histories, also goes through
// checkDispatch, which asserts what holds for every transition: cur is never
// mutated, Version grows by exactly one per change, the emits follow from
// the new state, the state survives the changelog's JSON, and the same
// record replayed at once changes nothing and emits the same again. A record
// moved through the repartition topic also leaves its origin in the state,
// and another copy of the same move changes nothing and emits nothing.

// t0 is the instant the stories start: Thursday 2026-01-15, 12:00 UTC.
var t0 = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)

const (
	sendTimeout     = 30 * time.Second
	providerTimeout = 10 * time.Second
	margin          = 5 * time.Second
	// timeoutAfter is when a command's send timeout fires after its issue,
	// with no window or expiry to cut it off earlier.
	timeoutAfter = sendTimeout + providerTimeout + margin
)

const (
	stateRetention = 35 * 24 * time.Hour
	dedupRetention = 395 * 24 * time.Hour
)

func testConfig() DispatchConfig {
	return DispatchConfig{DefaultLoc: time.UTC, SendTimeout: sendTimeout, ProviderTimeout: providerTimeout, TimeoutMargin: margin,
		StateRetention: stateRetention, DedupRetention: dedupRetention}
}

// request decodes a valid request through the contract, as the dispatcher
// gets it: email then sms, two attempts per channel, backoff 1s*2^n up to
// 1m, no windows. change edits the JSON first.
func request(t testing.TB, change func(m map[string]any)) *contract.Request {
	t.Helper()
	m := map[string]any{
		"schema": contract.SchemaV1, "id": "n-1", "campaign": "billing-2026-01",
		"recipient": map[string]any{"email": "jane@example.com", "phone": "+821012345678"},
		"channels":  []any{"email", "sms"},
		"content":   map[string]any{"template": "statement"},
		"policy": map[string]any{"attempts_per_channel": 2,
			"backoff": map[string]any{"initial": "1s", "multiplier": 2, "max": "1m"}},
	}
	if change != nil {
		change(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	r, err := contract.Decode([]byte("n-1"), b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func utc(s string) time.Time {
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return v
}

// step is one event of a story, at t0+at. ev builds the event from the
// state as it is then, so a result can answer the current attempt and a
// wake-up can carry the due time the state waits for.
type step struct {
	at time.Duration
	ev func(s *contract.State) Event
}

func newRequest(t testing.TB, change func(m map[string]any)) step {
	r := request(t, change)
	return step{ev: func(*contract.State) Event { return Event{Request: r} }}
}

func (s step) after(d time.Duration) step { s.at = d; return s }

func result(at time.Duration, o contract.Outcome, opts ...func(*contract.SendResult)) step {
	return step{at: at, ev: func(s *contract.State) Event {
		res := &contract.SendResult{ID: s.ID, Attempt: s.Attempts, Issue: s.Issue, Channel: s.Channel, Outcome: o, At: t0.Add(at)}
		switch o {
		case contract.OutcomeTransient:
			res.Code, res.Error = 503, "unavailable"
		case contract.OutcomePermanent:
			res.Code, res.Error = 400, "invalid address"
		case contract.OutcomeThrottled:
			res.Code = 429
		}
		for _, f := range opts {
			f(res)
		}
		return Event{Result: res}
	}}
}

func retryAfter(d time.Duration) func(*contract.SendResult) {
	return func(r *contract.SendResult) { r.RetryAfter = contract.Duration(d) }
}

// wakeDue is the hold wake-up the state waits for, arriving at t0+at.
func wakeDue(at time.Duration) step {
	return step{at: at, ev: func(s *contract.State) Event {
		return Event{Wakeup: &contract.Wakeup{ID: s.ID, Kind: contract.WakeupHold, Due: *s.NextAttemptAt}}
	}}
}

// sendTimedOut is the send-timeout wake-up of the current attempt.
func sendTimedOut(at time.Duration) step {
	return step{at: at, ev: func(s *contract.State) Event {
		return Event{Wakeup: &contract.Wakeup{ID: s.ID, Kind: contract.WakeupSendTimeout,
			Due: *s.TimeoutAt, Attempt: s.Attempts, Issue: s.Issue}}
	}}
}

func cancel(at time.Duration) step {
	return step{at: at, ev: func(s *contract.State) Event {
		return Event{Cancel: &contract.Cancel{ID: s.ID, Reason: "customer closed account", RequestedAt: t0.Add(at)}}
	}}
}

// movedFrom is p published on partition part of its topic at offset off,
// by a producer with another partitioner, and moved through the
// repartition topic.
func movedFrom(p step, part int32, off int64) step {
	return step{at: p.at, ev: func(s *contract.State) Event {
		ev := p.ev(s)
		ev.Origin = contract.Position{Topic: topicOf(ev), Partition: part, Offset: off}
		return ev
	}}
}

func fixed(at time.Duration, ev Event) step {
	return step{at: at, ev: func(*contract.State) Event { return ev }}
}

// story plays steps through Dispatch, numbering the records per topic as
// Kafka would.
type story struct {
	t       *testing.T
	cfg     DispatchConfig
	s       *contract.State
	offsets map[string]int64
	last    Event
}

func newStory(t *testing.T, cfg DispatchConfig) *story {
	return &story{t: t, cfg: cfg, offsets: map[string]int64{}}
}

func topicOf(ev Event) string {
	switch {
	case ev.Request != nil:
		return topology.TopicRequests
	case ev.Result != nil:
		return topology.TopicResults
	case ev.Wakeup != nil:
		return topology.TopicWakeups
	case ev.Cancel != nil, ev.Retry != nil:
		return topology.TopicControl
	}
	return "herald.other"
}

func (st *story) play(p step) Decision {
	st.t.Helper()
	ev := p.ev(st.s)
	if ev.Source == (contract.Position{}) {
		topic := topicOf(ev)
		if ev.Origin.Topic != "" {
			topic = topology.TopicRepartition
		}
		st.offsets[topic]++
		ev.Source = contract.Position{Topic: topic, Partition: 3, Offset: 100 + st.offsets[topic]}
	}
	st.last = ev
	d := checkDispatch(st.t, st.s, ev, t0.Add(p.at), st.cfg)
	switch {
	case d.State != nil:
		st.s = d.State
	case d.Delete:
		st.s = nil
	}
	return d
}

// stateJSON is the changelog form of s; comparing it before and after a
// call shows any mutation, of the maps and slices too.
func stateJSON(t testing.TB, s *contract.State) string {
	t.Helper()
	if s == nil {
		return "null"
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkDispatch calls Dispatch and asserts what every transition owes.
func checkDispatch(t *testing.T, cur *contract.State, ev Event, now time.Time, cfg DispatchConfig) Decision {
	t.Helper()
	before := stateJSON(t, cur)
	d := Dispatch(cur, ev, now, cfg)
	if after := stateJSON(t, cur); after != before {
		t.Fatalf("Dispatch mutated cur:\nbefore %s\nafter  %s", before, after)
	}
	checkRetention(t, cur, ev, now, cfg, d)
	if d.State == nil {
		remembered := cur != nil && cur.Remembered
		if d.Verdict == VerdictApplied || (d.Verdict == VerdictDuplicate && !remembered) {
			t.Fatalf("verdict %s without a new state", d.Verdict)
		}
		healed := d.Verdict == VerdictHealed && ev.Wakeup != nil && ev.Wakeup.SeenVersion != 0 &&
			(cur == nil || ev.Wakeup.SeenVersion < cur.Version)
		if d.Repair && (cur == nil || cur.LastSource != ev.Source) && !healed {
			t.Errorf("repair asked for by a record that did not make the current state, nor a sweep that saw an older version")
		}
		if d.Verdict == VerdictHealed && !healed {
			t.Errorf("healed by a wake-up that saw version %d of a state %+v", ev.Wakeup.SeenVersion, cur)
		}
		return d
	}
	s := d.State
	if cur != nil && s == cur {
		t.Fatal("Dispatch returned cur itself as the new state")
	}
	if s.Remembered {
		return d // checkRetention checked it
	}
	var v0 uint64
	if cur != nil {
		v0 = cur.Version
		// The one other way out of a final status: an operator's Retry
		// of a failed one, recorded in the history.
		retried := ev.Retry != nil && cur.Status == contract.StatusFailed && len(s.History) > 0 &&
			s.History[len(s.History)-1].Outcome == contract.OutcomeRetry && s.Attempts >= cur.Attempts
		if cur.Status.Final() && s.Status != cur.Status && !retried &&
			!(s.Status == contract.StatusSent && (d.Verdict == VerdictLateSuccess || d.Verdict == VerdictDoubleDelivery)) {
			t.Errorf("final %s changed to %s by %s: only a provider's success (to sent), or an operator's retry of a failed one, may move a final state", cur.Status, s.Status, d.Verdict)
		}
	}
	if want := NextVersion(v0, ev.Epoch); s.Version != want || s.Version <= v0 {
		t.Errorf("version %d -> %d, want %d (epoch %d)", v0, s.Version, want, ev.Epoch)
	}
	if len(s.History) > contract.MaxHistory {
		t.Errorf("history of %d entries, the bound is %d", len(s.History), contract.MaxHistory)
	}
	if !s.UpdatedAt.Equal(now) || s.LastSource != ev.Source || s.LastEmitted == d.Emits.Empty() ||
		(ev.Source.Topic != "" && s.Applied[ev.Source.Topic] != ev.Source) {
		t.Errorf("bookkeeping: updated %s (now %s), last source %+v, emitted %v, applied %+v for %+v",
			s.UpdatedAt, now, s.LastSource, s.LastEmitted, s.Applied, ev.Source)
	}
	checkEmitsFollowState(t, d, now, cfg)
	checkShed(t, cur, ev, s)
	// The changelog keeps the state encoded; it must come back the same.
	enc, err := contract.EncodeState(s)
	if err != nil {
		t.Fatalf("encode the state: %v", err)
	}
	if back, err := contract.DecodeState(enc); err != nil || stateJSON(t, back) != stateJSON(t, s) {
		t.Errorf("state does not survive its encoding (%v):\n got %s\nwant %s", err, stateJSON(t, back), stateJSON(t, s))
	}
	// A crash after the local write replays the record (its changelog
	// write may be lost): the same state is written again unchanged, and
	// the same emits go out again.
	r := Dispatch(s, ev, now.Add(time.Minute), cfg)
	if r.State != nil || !r.Repair || r.Verdict != VerdictReplay || !reflect.DeepEqual(r.Emits, d.Emits) {
		t.Errorf("replay of the same record: verdict %s, state changed %v, repair %v, emits %v, want a repairing replay with %v",
			r.Verdict, r.State != nil, r.Repair, emitStrings(r.Emits), emitStrings(d.Emits))
	}
	if wasMoved(ev) {
		if got := s.Moved[movedKey(ev.Origin)]; got != ev.Origin.Offset {
			t.Errorf("moved from %+v, but the state remembers offset %d (%v)", ev.Origin, got, s.Moved)
		}
		// A crash after the move and before the origin's commit moves the
		// record again: the same origin at a later repartition offset.
		again := ev
		again.Source.Offset += 1000
		r := Dispatch(s, again, now.Add(time.Minute), cfg)
		if r.State != nil || r.Verdict != VerdictReplay || !r.Emits.Empty() {
			t.Errorf("second copy of the move: verdict %s, state changed %v, emits %v, want a replay with nothing",
				r.Verdict, r.State != nil, emitStrings(r.Emits))
		}
	}
	return d
}

// checkRetention: only a retire wake-up deletes or remembers, and only a
// final state past its retention (or a record the changelog still shows
// after its owner deleted it); a remembered record holds nothing but the
// id, the status, the last change and its version, survives its
// encoding in a few dozen bytes, and a request for it is a duplicate that
// writes and sends nothing; nothing but a retire wake-up changes it.
func checkRetention(t *testing.T, cur *contract.State, ev Event, now time.Time, cfg DispatchConfig, d Decision) {
	t.Helper()
	retire := ev.Wakeup != nil && ev.Wakeup.Kind == contract.WakeupRetire
	healing := retire && ev.Wakeup.SeenVersion != 0 && (cur == nil || ev.Wakeup.SeenVersion < cur.Version)
	var age time.Duration
	if cur != nil {
		age = now.Sub(cur.UpdatedAt)
	}
	final := cur != nil && cur.Status.Final()
	if d.Delete {
		switch {
		case d.State != nil || d.Repair || !d.Emits.Empty():
			t.Errorf("a deletion that also writes (%v, repair %v) or emits %v", d.State != nil, d.Repair, emitStrings(d.Emits))
		case !retire:
			t.Errorf("deleted by a %s event: only a retire wake-up deletes", topicOf(ev))
		case cur == nil && !healing:
			t.Errorf("deleted an unknown id on a wake-up that saw no record")
		case cur != nil && !(final && age >= cfg.DedupRetention):
			t.Errorf("deleted a %s state %s after its last change (dedup retention %s)", cur.Status, age, cfg.DedupRetention)
		}
	} else if retire && final && !healing && age >= cfg.DedupRetention {
		t.Errorf("a final state %s past its dedup retention was not deleted (%s)", age, d.Verdict)
	}
	if retire && final && !healing && !cur.Remembered && age >= cfg.StateRetention && age < cfg.DedupRetention &&
		(d.State == nil || !d.State.Remembered) {
		t.Errorf("a final state %s past its state retention was not remembered (%s)", age, d.Verdict)
	}
	if cur != nil && cur.Remembered && !retire {
		want := VerdictStale
		if ev.Request != nil {
			want = VerdictDuplicate
		}
		if d.State != nil || d.Repair || d.Delete || !d.Emits.Empty() || d.Verdict != want {
			t.Errorf("a %s event for a remembered id: verdict %s, written %v, emits %v; want %s and nothing",
				topicOf(ev), d.Verdict, d.State != nil || d.Repair || d.Delete, emitStrings(d.Emits), want)
		}
	}
	s := d.State
	if s == nil || !s.Remembered {
		return
	}
	switch {
	case !retire || cur == nil || cur.Remembered || !final || age < cfg.StateRetention:
		t.Fatalf("remembered by a %s event a state %+v", topicOf(ev), cur)
	case !reflect.DeepEqual(s, &contract.State{ID: cur.ID, Status: cur.Status, UpdatedAt: cur.UpdatedAt,
		Version: NextVersion(cur.Version, ev.Epoch), Remembered: true}):
		t.Errorf("remembered record %+v holds more, or other, than id, status, last change and version of %s", s, cur.ID)
	case !d.Emits.Empty() || d.Repair || d.Delete:
		t.Errorf("remembering emitted %v, repair %v, delete %v", emitStrings(d.Emits), d.Repair, d.Delete)
	}
	enc, err := contract.EncodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := contract.DecodeState(enc); err != nil || !reflect.DeepEqual(back, s) {
		t.Errorf("remembered record does not survive its encoding (%v): %+v", err, back)
	}
	if n := len(enc) - len(s.ID); n > 40 {
		t.Errorf("remembered record of %d bytes beside its id, want a few dozen", n)
	}
	// A replay of the same wake-up, and a re-published request, change
	// nothing and send nothing.
	if r := Dispatch(s, ev, now.Add(time.Minute), cfg); r.State != nil || r.Delete || !r.Emits.Empty() {
		t.Errorf("the same retire wake-up again: %+v", r)
	}
	if r := Dispatch(s, Event{Request: &contract.Request{ID: s.ID, Channels: []contract.Channel{contract.ChannelEmail}}},
		now.Add(time.Minute), cfg); r.State != nil || r.Verdict != VerdictDuplicate || !r.Emits.Empty() {
		t.Errorf("a request for a remembered id: %+v, want a duplicate with nothing written or sent", r)
	}
}

// checkShed: a final state keeps no payload (content, recipient
// addresses), but a failed one, which an operator's retry sends again; and
// shedding keeps what the reports and the API read of the request (its
// policy, channels, windows, time zone, not_before and expires_at).
func checkShed(t *testing.T, cur *contract.State, ev Event, s *contract.State) {
	t.Helper()
	switch {
	case s.Status.Final() && s.Status != contract.StatusFailed && s.HasPayload():
		t.Errorf("final %s state keeps its payload: content %s, recipient %+v", s.Status, s.Request.Content, s.Request.Recipient)
	case s.Status == contract.StatusFailed && cur != nil && cur.HasPayload() && !s.HasPayload():
		t.Errorf("a failed state lost its payload: an operator's retry needs it")
	}
	was := ev.Request
	if cur != nil {
		was = cur.Request
	}
	if was == nil || s.Request == nil {
		return
	}
	r := s.Request
	if r.ID != was.ID || r.Campaign != was.Campaign || r.Policy != was.Policy || !reflect.DeepEqual(r.Channels, was.Channels) ||
		!reflect.DeepEqual(r.Blackout, was.Blackout) || r.Recipient.TZ != was.Recipient.TZ ||
		!reflect.DeepEqual(r.NotBefore, was.NotBefore) || !reflect.DeepEqual(r.ExpiresAt, was.ExpiresAt) {
		t.Errorf("the request lost more than its payload:\n got %+v\nwant %+v", r, was)
	}
}

// checkEmitsFollowState: a change emits exactly what its new state needs,
// a send command while sending (its timeout is the sweep's), the hold wake-up while held,
// nothing once final; a duplicate emits nothing.
func checkEmitsFollowState(t *testing.T, d Decision, now time.Time, cfg DispatchConfig) {
	t.Helper()
	s, e := d.State, d.Emits
	if d.Verdict == VerdictDuplicate {
		if !e.Empty() {
			t.Errorf("a duplicate emitted %v", emitStrings(e))
		}
		return
	}
	switch {
	case s.Status == contract.StatusSending:
		c := e.Send
		if c == nil || c.ID != s.ID || c.Attempt != s.Attempts || c.Channel != s.Channel ||
			c.Address != s.Request.Recipient.Address(s.Channel) || c.IdempotencyKey != s.ID ||
			!c.IssuedAt.Equal(now) || !c.RequestedAt.Equal(s.FirstSeen) || string(c.Content) != string(s.Request.Content) {
			t.Errorf("sending state %s#%d with send command %+v", s.Channel, s.Attempts, c)
		}
		checkCutoff(t, s, c, now, cfg)
		// No timeout wake-up per send (the sweep times out a command
		// nobody answered, at TimeoutAt): only the time is recorded.
		timeout := c.Cutoff.Add(cfg.ProviderTimeout + cfg.TimeoutMargin)
		if len(e.Wakeups) != 0 || s.TimeoutAt == nil || !s.TimeoutAt.Equal(timeout) {
			t.Errorf("sending state with wake-ups %v and timeout_at %v, want none and %s (cut-off + provider timeout + margin)", e.Wakeups, s.TimeoutAt, timeout)
		}
		// The command carries the provider timeout its send timeout
		// assumes, so a call started before the cut-off ends before
		// TimeoutAt whatever the sender's own --provider-timeout.
		if c != nil && (c.CallTimeout.D() != cfg.ProviderTimeout || c.Cutoff.Add(c.CallTimeout.D()).After(timeout)) {
			t.Errorf("send command with call timeout %s, want the provider timeout %s (ending before timeout_at %s)", c.CallTimeout.D(), cfg.ProviderTimeout, timeout)
		}
		if s.NextAttemptAt != nil || s.HoldReason != "" {
			t.Errorf("sending state still held: %v %s", s.NextAttemptAt, s.HoldReason)
		}
	case s.Status.Held():
		if s.NextAttemptAt == nil || s.HoldReason == "" || e.Send != nil ||
			!reflect.DeepEqual(e.Wakeups, []contract.Wakeup{{ID: s.ID, Kind: contract.WakeupHold, Due: *s.NextAttemptAt}}) {
			t.Errorf("held state (%s until %v, %s) with emits %v", s.Status, s.NextAttemptAt, s.HoldReason, emitStrings(e))
		}
		if !s.NextAttemptAt.After(now) {
			t.Errorf("held until %s, not after now %s", s.NextAttemptAt, now)
		}
	case s.Status.Final():
		if !e.Empty() || s.NextAttemptAt != nil || s.HoldReason != "" {
			t.Errorf("final state %s with emits %v, next %v, hold %q", s.Status, emitStrings(e), s.NextAttemptAt, s.HoldReason)
		}
	default:
		t.Errorf("unknown status %q", s.Status)
	}
}

// checkCutoff: a send command's cut-off is the earliest of its deadline,
// the next window start and the expiry, and no provider call could start
// inside a window or after the expiry before it.
func checkCutoff(t *testing.T, s *contract.State, c *contract.SendCommand, now time.Time, cfg DispatchConfig) {
	t.Helper()
	cfg = cfg.WithDefaults()
	want := now.Add(cfg.SendTimeout)
	if e := s.Request.ExpiresAt; e != nil && e.Before(want) {
		want = *e
	}
	rs := rules(s.Request, cfg)
	if start, ok := schedule.NextStart(now, want, rs...); ok {
		want = start
	}
	if !c.Cutoff.Equal(want) || !c.Deadline.Equal(now.Add(cfg.SendTimeout)) || c.Issue != s.Issue {
		t.Errorf("command cut-off %s deadline %s issue %d, want %s, %s, %d", c.Cutoff, c.Deadline, c.Issue, want, now.Add(cfg.SendTimeout), s.Issue)
	}
	if !c.Cutoff.After(now) {
		t.Errorf("cut-off %s is not after the issue %s", c.Cutoff, now)
	}
	if rel, _ := schedule.Release(now, rs...); !rel.Equal(now) {
		t.Errorf("a command issued inside a blackout window (released at %s)", rel)
	}
}

// emitStrings writes emits the way the rows state them.
func emitStrings(e Emits) []string {
	var out []string
	if c := e.Send; c != nil {
		out = append(out, send(c.Channel, c.Attempt))
	}
	for _, w := range e.Wakeups {
		if w.Kind == contract.WakeupSendTimeout {
			out = append(out, fmt.Sprintf("send_timeout %s #%d", w.Due.UTC().Format(time.RFC3339Nano), w.Attempt))
		} else {
			out = append(out, fmt.Sprintf("%s %s", w.Kind, w.Due.UTC().Format(time.RFC3339Nano)))
		}
	}
	return out
}

func send(c contract.Channel, attempt int) string { return fmt.Sprintf("send %s #%d", c, attempt) }

// timeoutAt is the send-timeout wake-up of an attempt issued at t0+at.
func timeoutAt(at time.Duration, attempt int) string {
	return fmt.Sprintf("send_timeout %s #%d", t0.Add(at).Add(timeoutAfter).Format(time.RFC3339Nano), attempt)
}

// resendAt is a resend wake-up due at t0+at.
func resendAt(at time.Duration) string {
	return fmt.Sprintf("resend %s", t0.Add(at).UTC().Format(time.RFC3339Nano))
}

// resend is a resend wake-up for the state's current command, due (and
// delivered) at t0+at.
func resend(at time.Duration) step {
	return step{at: at, ev: func(s *contract.State) Event {
		return Event{Wakeup: &contract.Wakeup{ID: s.ID, Kind: contract.WakeupResend, Due: t0.Add(at),
			Attempt: s.Attempts, Issue: s.Issue}}
	}}
}

// sameCommand checks that a resend made the first command again: issue 0
// of one command so far, stamped afresh at the resend (t0+75s).
func sameCommand(t *testing.T, s *contract.State) {
	t.Helper()
	at := t0.Add(time.Minute + providerTimeout + margin)
	if s.Issue != 0 || s.Commands != 1 || s.IssuedAt == nil || !s.IssuedAt.Equal(at) {
		t.Errorf("after the resend: issue %d of %d commands, issued %v; want the first command again (issue 0 of 1), issued %v",
			s.Issue, s.Commands, s.IssuedAt, at)
	}
}

// holdUntil is a hold wake-up due at due.
func holdUntil(due time.Time) string {
	return fmt.Sprintf("hold %s", due.UTC().Format(time.RFC3339Nano))
}

// backoff is the policy's wait before retry n of notification n-1 (the
// jitter is the schedule package's, tested there).
func backoff(t testing.TB, n int) time.Duration {
	b := request(t, nil).Policy.Backoff
	d := schedule.Backoff(b, n, "n-1")
	base := time.Second << (n - 1)
	if d < base*9/10 || d > base*11/10 {
		t.Fatalf("backoff %d = %s, not within 10%% of %s", n, d, base)
	}
	return d
}

// want is what a row expects. An empty status means the state must not
// change (Decision.State nil).
type want struct {
	verdict  Verdict
	status   contract.Status
	hold     contract.HoldReason
	next     time.Time // NextAttemptAt; zero means none
	channel  contract.Channel
	attempts int // Attempts, on all channels
	onChan   int // ChannelAttempts
	emits    []string
	// repair: the current state is written again (Decision.Repair).
	repair bool
	// delete: the state is deleted (Decision.Delete).
	delete bool
	check  func(t *testing.T, s *contract.State)
}

type row struct {
	rule  string
	cfg   func(*DispatchConfig)
	given []step
	when  step
	want  want
}

func runRows(t *testing.T, rows []row) {
	t.Helper()
	for _, r := range rows {
		t.Run(r.rule, func(t *testing.T) {
			cfg := testConfig()
			if r.cfg != nil {
				r.cfg(&cfg)
			}
			st := newStory(t, cfg)
			for _, g := range r.given {
				st.play(g)
			}
			cur := st.s
			d := st.play(r.when)
			w := r.want
			if d.Verdict != w.verdict {
				t.Errorf("verdict %s, want %s", d.Verdict, w.verdict)
			}
			if w.repair && !d.Repair {
				t.Errorf("the state is not written again, want a repair")
			}
			if w.delete != d.Delete {
				t.Errorf("deleted %v, want %v", d.Delete, w.delete)
			}
			if got := emitStrings(d.Emits); strings.Join(got, "\n") != strings.Join(w.emits, "\n") {
				t.Errorf("emits\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(w.emits, "\n  "))
			}
			if w.status == "" {
				if d.State != nil {
					t.Errorf("state changed to %s, want unchanged", d.State.Status)
				}
				return
			}
			s := d.State
			if s == nil {
				t.Fatalf("state unchanged (%s), want %s", cur.Status, w.status)
			}
			var next time.Time
			if s.NextAttemptAt != nil {
				next = *s.NextAttemptAt
			}
			if s.Status != w.status || s.HoldReason != w.hold || !next.Equal(w.next) || s.Channel != w.channel ||
				s.Attempts != w.attempts || s.ChannelAttempts != w.onChan {
				t.Errorf("state %s/%q next %s on %s, attempts %d (%d on channel);\nwant  %s/%q next %s on %s, attempts %d (%d on channel)",
					s.Status, s.HoldReason, fmtTime(next), s.Channel, s.Attempts, s.ChannelAttempts,
					w.status, w.hold, fmtTime(w.next), w.channel, w.attempts, w.onChan)
			}
			if w.check != nil {
				w.check(t, s)
			}
		})
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func given(steps ...step) []step { return steps }

func TestDispatchRequests(t *testing.T) {
	t.Parallel()
	plain := newRequest(t, nil)
	window := func(from, to string) func(m map[string]any) {
		return func(m map[string]any) { m["blackout"] = []any{map[string]any{"from": from, "to": to}} }
	}
	runRows(t, []row{
		{rule: "a new request is sent at once: send command and its timeout",
			when: plain,
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1,
				emits: []string{send("email", 1)},
				check: func(t *testing.T, s *contract.State) {
					if !s.FirstSeen.Equal(t0) || s.Version != 1 || s.Campaign != "billing-2026-01" || s.Request == nil {
						t.Errorf("new state: %+v", s)
					}
				}}},
		{rule: "not_before in the future: scheduled until then",
			when: newRequest(t, func(m map[string]any) { m["not_before"] = "2026-01-15T18:00:00Z" }),
			want: want{verdict: VerdictApplied, status: contract.StatusScheduled, hold: contract.HoldSchedule,
				next: utc("2026-01-15T18:00:00Z"), channel: "email",
				emits: []string{holdUntil(utc("2026-01-15T18:00:00Z"))}}},
		{rule: "not_before in the past: sent at once",
			when: newRequest(t, func(m map[string]any) { m["not_before"] = "2026-01-15T11:00:00Z" }),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1,
				emits: []string{send("email", 1)}}},
		{rule: "inside a blackout window: deferred until the window ends",
			when: newRequest(t, window("11:00", "13:30")),
			want: want{verdict: VerdictApplied, status: contract.StatusDeferred, hold: contract.HoldBlackout,
				next: utc("2026-01-15T13:30:00Z"), channel: "email",
				emits: []string{holdUntil(utc("2026-01-15T13:30:00Z"))}}},
		{rule: "the window is read in recipient.tz (21:00 in Seoul is inside 20:00-07:00)",
			when: newRequest(t, func(m map[string]any) {
				window("20:00", "07:00")(m)
				m["recipient"].(map[string]any)["tz"] = "Asia/Seoul"
			}),
			want: want{verdict: VerdictApplied, status: contract.StatusDeferred, hold: contract.HoldBlackout,
				next: utc("2026-01-15T22:00:00Z"), channel: "email",
				emits: []string{holdUntil(utc("2026-01-15T22:00:00Z"))}}},
		{rule: "without recipient.tz the window is read in the default zone",
			cfg:  func(c *DispatchConfig) { c.DefaultLoc = mustZone("Asia/Seoul") },
			when: newRequest(t, window("20:00", "07:00")),
			want: want{verdict: VerdictApplied, status: contract.StatusDeferred, hold: contract.HoldBlackout,
				next: utc("2026-01-15T22:00:00Z"), channel: "email",
				emits: []string{holdUntil(utc("2026-01-15T22:00:00Z"))}}},
		{rule: "the global window applies on top, in its own zone",
			cfg: func(c *DispatchConfig) {
				c.Global = schedule.Rule{Windows: []contract.Window{{From: 20 * 60, To: 22 * 60}}, Loc: mustZone("Asia/Seoul")}
			},
			when: plain.after(-30 * time.Minute), // 20:30 in Seoul
			want: want{verdict: VerdictApplied, status: contract.StatusDeferred, hold: contract.HoldBlackout,
				next: utc("2026-01-15T13:00:00Z"), channel: "email",
				emits: []string{holdUntil(utc("2026-01-15T13:00:00Z"))}}},
		{rule: "a window end inside the global window moves on to its end",
			cfg: func(c *DispatchConfig) {
				c.Global = schedule.Rule{Windows: []contract.Window{{From: 13 * 60, To: 14 * 60}}, Loc: time.UTC}
			},
			when: newRequest(t, window("11:00", "13:30")),
			want: want{verdict: VerdictApplied, status: contract.StatusDeferred, hold: contract.HoldBlackout,
				next: utc("2026-01-15T14:00:00Z"), channel: "email",
				emits: []string{holdUntil(utc("2026-01-15T14:00:00Z"))}}},
		{rule: "not_before inside a window: deferred to the window's end",
			when: newRequest(t, func(m map[string]any) {
				m["not_before"] = "2026-01-15T23:00:00Z"
				window("22:00", "06:00")(m)
			}),
			want: want{verdict: VerdictApplied, status: contract.StatusDeferred, hold: contract.HoldBlackout,
				next: utc("2026-01-16T06:00:00Z"), channel: "email",
				emits: []string{holdUntil(utc("2026-01-16T06:00:00Z"))}}},
		{rule: "windows with no free instant: rejected",
			cfg: func(c *DispatchConfig) {
				c.Global = schedule.Rule{Windows: []contract.Window{{From: 6 * 60, To: 22 * 60}}, Loc: time.UTC}
			},
			when: newRequest(t, window("21:00", "07:00")),
			want: want{verdict: VerdictApplied, status: contract.StatusRejected, channel: "email",
				check: func(t *testing.T, s *contract.State) {
					if !strings.Contains(s.LastError, "whole day") {
						t.Errorf("last error %q", s.LastError)
					}
				}}},
		{rule: "expires_at passed: expired, nothing sent",
			when: newRequest(t, func(m map[string]any) { m["expires_at"] = "2026-01-15T12:00:00Z" }),
			want: want{verdict: VerdictApplied, status: contract.StatusExpired, channel: "email",
				check: func(t *testing.T, s *contract.State) {
					if s.LastError != "expired at 2026-01-15T12:00:00Z" {
						t.Errorf("last error %q", s.LastError)
					}
				}}},
		{rule: "a hold due after expires_at wakes at the expiry",
			when: newRequest(t, func(m map[string]any) {
				window("11:00", "18:00")(m)
				m["expires_at"] = "2026-01-15T14:00:00Z"
			}),
			want: want{verdict: VerdictApplied, status: contract.StatusDeferred, hold: contract.HoldBlackout,
				next: utc("2026-01-15T14:00:00Z"), channel: "email",
				emits: []string{holdUntil(utc("2026-01-15T14:00:00Z"))}}},
		{rule: "a request without channels (not from Decode) is rejected, not a panic",
			when: fixed(0, Event{Request: &contract.Request{ID: "n-1", Campaign: "c"}}),
			want: want{verdict: VerdictApplied, status: contract.StatusRejected}},
	})
}

func mustZone(name string) *time.Location {
	loc, err := contract.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

func TestDispatchDuplicatesAndReplays(t *testing.T) {
	t.Parallel()
	plain := newRequest(t, nil)
	dupCount := func(n int) func(t *testing.T, s *contract.State) {
		return func(t *testing.T, s *contract.State) {
			if s.Duplicates != n {
				t.Errorf("duplicates %d, want %d", s.Duplicates, n)
			}
		}
	}
	runRows(t, []row{
		{rule: "a request for a known id (another offset) is a duplicate: counted, nothing sent",
			given: given(plain),
			when:  plain.after(time.Second),
			want: want{verdict: VerdictDuplicate, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1,
				check: dupCount(1)}},
		{rule: "duplicates of a sent notification are counted too",
			given: given(plain, result(time.Second, contract.OutcomeSuccess), plain.after(2*time.Second)),
			when:  plain.after(3 * time.Second),
			want: want{verdict: VerdictDuplicate, status: contract.StatusSent, channel: "email", attempts: 1, onChan: 1,
				check: dupCount(2)}},
		{rule: "a duplicate of a held notification keeps it held, with no second wake-up",
			given: given(newRequest(t, func(m map[string]any) { m["not_before"] = "2026-01-15T18:00:00Z" })),
			when:  plain.after(time.Second),
			want: want{verdict: VerdictDuplicate, status: contract.StatusScheduled, hold: contract.HoldSchedule,
				next: utc("2026-01-15T18:00:00Z"), channel: "email", check: dupCount(1)}},
		{rule: "the replay of the record that made this version emits the same again and changes nothing",
			given: given(plain),
			when: step{at: time.Minute, ev: func(s *contract.State) Event {
				return Event{Source: s.LastSource, Request: s.Request}
			}},
			want: want{verdict: VerdictReplay, emits: []string{send("email", 1)}}},
		{rule: "the replay of the record that made a sending version the changelog holds sends nothing at once: a resend check after the provider timeout and margin",
			given: given(plain),
			when: step{at: time.Minute, ev: func(s *contract.State) Event {
				return Event{Source: s.LastSource, Request: s.Request, Confirmed: true}
			}},
			want: want{verdict: VerdictReplay, emits: []string{resendAt(time.Minute + providerTimeout + margin)}}},
		{rule: "a resend check while the command still has no result makes the same command again (same attempt and issue)",
			given: given(plain, resend(time.Minute)),
			when:  resend(time.Minute + providerTimeout + margin),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1,
				emits: []string{send("email", 1)}, check: sameCommand}},
		{rule: "a resend check inside a blackout window that began since the command was issued makes no command: the attempt is given back until the window ends",
			given: given(newRequest(t, func(m map[string]any) {
				m["blackout"] = []any{map[string]any{"from": "12:01", "to": "13:00"}}
			})),
			when: resend(time.Minute + providerTimeout + margin),
			want: want{verdict: VerdictApplied, status: contract.StatusDeferred, hold: contract.HoldBlackout,
				next: utc("2026-01-15T13:00:00Z"), channel: "email", attempts: 0, onChan: 0,
				emits: []string{holdUntil(utc("2026-01-15T13:00:00Z"))}}},
		{rule: "a resend check after expires_at expires the notification, with no command",
			given: given(newRequest(t, func(m map[string]any) { m["expires_at"] = "2026-01-15T12:01:00Z" })),
			when:  resend(time.Minute + providerTimeout + margin),
			want:  want{verdict: VerdictApplied, status: contract.StatusExpired, channel: "email"}},
		{rule: "a resend check after the command's result is stale",
			given: given(plain, result(time.Second, contract.OutcomeSuccess)),
			when:  resend(time.Minute),
			want:  want{verdict: VerdictStale}},
		{rule: "a resend check that comes early waits again",
			given: given(plain),
			when: step{at: time.Second, ev: func(s *contract.State) Event {
				return Event{Wakeup: &contract.Wakeup{ID: s.ID, Kind: contract.WakeupResend, Due: t0.Add(time.Minute),
					Attempt: s.Attempts, Issue: s.Issue}}
			}},
			want: want{verdict: VerdictEarly, emits: []string{resendAt(time.Minute)}}},
		{rule: "the replay of a held notification's last record re-emits its wake-up",
			given: given(plain, result(time.Second, contract.OutcomeTransient)),
			when: step{at: time.Minute, ev: func(s *contract.State) Event {
				return Event{Source: s.LastSource, Result: &contract.SendResult{ID: s.ID, Attempt: 1, Channel: "email",
					Outcome: contract.OutcomeTransient}}
			}},
			want: want{verdict: VerdictReplay, emits: []string{holdUntil(t0.Add(time.Second + backoff(t, 1)))}}},
		{rule: "the replay of a duplicate emits nothing, as the duplicate did",
			given: given(plain, plain.after(time.Second)),
			when: step{at: time.Minute, ev: func(s *contract.State) Event {
				return Event{Source: s.LastSource, Request: s.Request}
			}},
			want: want{verdict: VerdictReplay}},
		{rule: "an older replay of a request is not a duplicate and sends nothing",
			given: given(plain, result(time.Second, contract.OutcomeSuccess)),
			when: step{at: time.Minute, ev: func(s *contract.State) Event {
				return Event{Source: s.Applied[topology.TopicRequests], Request: s.Request}
			}},
			want: want{verdict: VerdictReplay}},
		{rule: "an older replay while held re-emits only the hold wake-up (its own emits may be lost)",
			given: given(plain, result(time.Second, contract.OutcomeTransient), plain.after(2*time.Second)),
			when: step{at: time.Minute, ev: func(s *contract.State) Event {
				return Event{Source: s.Applied[topology.TopicResults], Result: &contract.SendResult{ID: s.ID, Attempt: 1,
					Channel: "email", Outcome: contract.OutcomeTransient}}
			}},
			want: want{verdict: VerdictReplay, emits: []string{holdUntil(t0.Add(time.Second + backoff(t, 1)))}}},
		{rule: "an older replay while sending emits nothing: never the send command, and no timer (the sweep times a lost command out)",
			given: given(plain, plain.after(time.Second)),
			when: step{at: time.Minute, ev: func(s *contract.State) Event {
				return Event{Source: contract.Position{Topic: topology.TopicRequests, Partition: 3, Offset: 101}, Request: s.Request}
			}},
			want: want{verdict: VerdictReplay}},
		{rule: "a record from another partition of the topic is not a replay",
			given: given(plain),
			when: step{at: time.Second, ev: func(s *contract.State) Event {
				return Event{Source: contract.Position{Topic: topology.TopicRequests, Partition: 4, Offset: 1}, Request: s.Request}
			}},
			want: want{verdict: VerdictDuplicate, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1,
				check: dupCount(1)}},
		{rule: "a result for an id with no state is unknown",
			when: fixed(0, Event{Result: &contract.SendResult{ID: "n-9", Attempt: 1, Outcome: contract.OutcomeSuccess}}),
			want: want{verdict: VerdictUnknown}},
		{rule: "a wake-up for an id with no state is unknown",
			when: fixed(0, Event{Wakeup: &contract.Wakeup{ID: "n-9", Kind: contract.WakeupHold, Due: t0}}),
			want: want{verdict: VerdictUnknown}},
		{rule: "a cancel for an id with no state is unknown",
			when: fixed(0, Event{Cancel: &contract.Cancel{ID: "n-9"}}),
			want: want{verdict: VerdictUnknown}},
		{rule: "an event with nothing in it is stale",
			given: given(plain),
			when:  fixed(time.Second, Event{}),
			want:  want{verdict: VerdictStale}},
	})
}

// Records of producers with another partitioner come through the
// repartition topic (placement.go), with the position they were published
// at as their origin.
func TestDispatchMoved(t *testing.T) {
	t.Parallel()
	plain := newRequest(t, nil)
	scheduled := newRequest(t, func(m map[string]any) { m["not_before"] = "2026-01-15T18:00:00Z" })
	dupCount := func(n int) func(t *testing.T, s *contract.State) {
		return func(t *testing.T, s *contract.State) {
			if s.Duplicates != n {
				t.Errorf("duplicates %d, want %d", s.Duplicates, n)
			}
		}
	}
	sending := want{verdict: VerdictDuplicate, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1, check: dupCount(1)}
	runRows(t, []row{
		{rule: "a moved request is dispatched like a well-placed one, and its origin remembered",
			when: movedFrom(plain, 1, 7),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1,
				emits: []string{send("email", 1)},
				check: func(t *testing.T, s *contract.State) {
					if len(s.Moved) != 1 || s.Moved[topology.TopicRequests+"/1"] != 7 || s.Duplicates != 0 {
						t.Errorf("moved %v, duplicates %d", s.Moved, s.Duplicates)
					}
				}}},
		{rule: "a second copy of the move (moved again after a crash) is a replay: not counted, nothing sent",
			given: given(movedFrom(plain, 1, 7)),
			when:  movedFrom(plain.after(time.Second), 1, 7),
			want:  want{verdict: VerdictReplay}},
		{rule: "an older copy from the same origin partition is a replay too",
			given: given(movedFrom(plain, 1, 7), movedFrom(plain.after(time.Second), 1, 9)),
			when:  movedFrom(plain.after(2*time.Second), 1, 7),
			want:  want{verdict: VerdictReplay}},
		{rule: "a re-publish moved from another partition is a duplicate",
			given: given(movedFrom(plain, 1, 7)),
			when:  movedFrom(plain.after(time.Second), 2, 7),
			want:  sending},
		{rule: "a re-publish from the same origin partition at a later offset is a duplicate",
			given: given(movedFrom(plain, 1, 7)),
			when:  movedFrom(plain.after(time.Second), 1, 8),
			want:  sending},
		{rule: "a well-placed re-publish of a moved request is a duplicate",
			given: given(movedFrom(plain, 1, 7)),
			when:  plain.after(time.Second),
			want:  sending},
		{rule: "a moved re-publish of a well-placed request is a duplicate",
			given: given(plain),
			when:  movedFrom(plain.after(time.Second), 0, 101),
			want:  sending},
		{rule: "the replay of the repartition record that made this version emits the same again",
			given: given(movedFrom(plain, 1, 7)),
			when: step{at: time.Minute, ev: func(s *contract.State) Event {
				return Event{Source: s.LastSource, Origin: contract.Position{Topic: topology.TopicRequests, Partition: 1, Offset: 7},
					Request: s.Request}
			}},
			want: want{verdict: VerdictReplay, emits: []string{send("email", 1)}}},
		{rule: "a moved cancel cancels a held notification",
			given: given(scheduled),
			when:  movedFrom(cancel(time.Minute), 0, 4),
			want: want{verdict: VerdictApplied, status: contract.StatusCanceled, channel: "email",
				check: func(t *testing.T, s *contract.State) {
					if s.Moved[topology.TopicControl+"/0"] != 4 {
						t.Errorf("moved %v", s.Moved)
					}
				}}},
		{rule: "origins are remembered per topic and partition",
			given: given(movedFrom(scheduled, 1, 7), movedFrom(plain.after(time.Second), 2, 3)),
			when:  movedFrom(cancel(time.Minute), 1, 2),
			want: want{verdict: VerdictApplied, status: contract.StatusCanceled, channel: "email",
				check: func(t *testing.T, s *contract.State) {
					want := map[string]int64{topology.TopicRequests + "/1": 7, topology.TopicRequests + "/2": 3, topology.TopicControl + "/1": 2}
					if !reflect.DeepEqual(s.Moved, want) || s.Duplicates != 1 {
						t.Errorf("moved %v, duplicates %d; want %v and 1", s.Moved, s.Duplicates, want)
					}
				}}},
	})
}

func TestDispatchResults(t *testing.T) {
	t.Parallel()
	plain := newRequest(t, nil)
	history := func(outcomes ...contract.Outcome) func(t *testing.T, s *contract.State) {
		return func(t *testing.T, s *contract.State) {
			if len(s.History) != len(outcomes) {
				t.Fatalf("history %+v, want outcomes %v", s.History, outcomes)
			}
			for i, o := range outcomes {
				if h := s.History[i]; h.Outcome != o || h.Attempt != i+1 {
					t.Errorf("history[%d] = %+v, want attempt %d %s", i, h, i+1, o)
				}
			}
		}
	}
	b1, b2 := backoff(t, 1), backoff(t, 2)
	runRows(t, []row{
		{rule: "success: sent, with sent_at the provider's time and the attempt in history",
			given: given(plain),
			when:  result(2*time.Second, contract.OutcomeSuccess),
			want: want{verdict: VerdictApplied, status: contract.StatusSent, channel: "email", attempts: 1, onChan: 1,
				check: func(t *testing.T, s *contract.State) {
					history(contract.OutcomeSuccess)(t, s)
					if s.SentAt == nil || !s.SentAt.Equal(t0.Add(2*time.Second)) || s.LastError != "" {
						t.Errorf("sent_at %v, last error %q", s.SentAt, s.LastError)
					}
				}}},
		{rule: "success without the provider's time: sent_at is now",
			given: given(plain),
			when:  result(3*time.Second, contract.OutcomeSuccess, func(r *contract.SendResult) { r.At = time.Time{} }),
			want: want{verdict: VerdictApplied, status: contract.StatusSent, channel: "email", attempts: 1, onChan: 1,
				check: func(t *testing.T, s *contract.State) {
					if s.SentAt == nil || !s.SentAt.Equal(t0.Add(3*time.Second)) {
						t.Errorf("sent_at %v", s.SentAt)
					}
				}}},
		{rule: "transient failure: retrying after the policy's backoff",
			given: given(plain),
			when:  result(time.Second, contract.OutcomeTransient),
			want: want{verdict: VerdictApplied, status: contract.StatusRetrying, hold: contract.HoldBackoff,
				next: t0.Add(time.Second + b1), channel: "email", attempts: 1, onChan: 1,
				emits: []string{holdUntil(t0.Add(time.Second + b1))},
				check: func(t *testing.T, s *contract.State) {
					history(contract.OutcomeTransient)(t, s)
					if s.LastError != "email attempt 1: transient (503): unavailable" {
						t.Errorf("last error %q", s.LastError)
					}
				}}},
		{rule: "transient failure with a longer Retry-After: waits for it",
			given: given(plain),
			when:  result(time.Second, contract.OutcomeTransient, retryAfter(time.Minute)),
			want: want{verdict: VerdictApplied, status: contract.StatusRetrying, hold: contract.HoldBackoff,
				next: t0.Add(time.Second + time.Minute), channel: "email", attempts: 1, onChan: 1,
				emits: []string{holdUntil(t0.Add(time.Second + time.Minute))}}},
		{rule: "transient failure with a shorter Retry-After: the backoff wins",
			given: given(plain),
			when:  result(time.Second, contract.OutcomeTransient, retryAfter(time.Millisecond)),
			want: want{verdict: VerdictApplied, status: contract.StatusRetrying, hold: contract.HoldBackoff,
				next: t0.Add(time.Second + b1), channel: "email", attempts: 1, onChan: 1,
				emits: []string{holdUntil(t0.Add(time.Second + b1))}}},
		{rule: "the retry's wake-up sends the next attempt on the same channel",
			given: given(plain, result(time.Second, contract.OutcomeTransient)),
			when:  wakeDue(time.Second + b1),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 2, onChan: 2,
				emits: []string{send("email", 2)}}},
		{rule: "the second retry waits initial*multiplier",
			given: given(newRequest(t, func(m map[string]any) { m["policy"].(map[string]any)["attempts_per_channel"] = 3 }),
				result(time.Second, contract.OutcomeTransient), wakeDue(time.Second+b1)),
			when: result(time.Second+b1+time.Second, contract.OutcomeTransient),
			want: want{verdict: VerdictApplied, status: contract.StatusRetrying, hold: contract.HoldBackoff,
				next: t0.Add(2*time.Second + b1 + b2), channel: "email", attempts: 2, onChan: 2,
				emits: []string{holdUntil(t0.Add(2*time.Second + b1 + b2))}}},
		{rule: "a retry due inside a blackout window waits for its end",
			given: given(newRequest(t, func(m map[string]any) {
				m["blackout"] = []any{map[string]any{"from": "12:00", "to": "13:00"}}
			}).after(-time.Second)),
			when: result(0, contract.OutcomeTransient),
			want: want{verdict: VerdictApplied, status: contract.StatusRetrying, hold: contract.HoldBlackout,
				next: utc("2026-01-15T13:00:00Z"), channel: "email", attempts: 1, onChan: 1,
				emits: []string{holdUntil(utc("2026-01-15T13:00:00Z"))}}},
		{rule: "attempts_per_channel used up: the next channel takes over at once",
			given: given(plain, result(time.Second, contract.OutcomeTransient), wakeDue(time.Second+b1)),
			when:  result(5*time.Second, contract.OutcomeTransient),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "sms", attempts: 3, onChan: 1,
				emits: []string{send("sms", 3)},
				check: func(t *testing.T, s *contract.State) {
					history(contract.OutcomeTransient, contract.OutcomeTransient)(t, s)
					if s.ChannelIndex != 1 {
						t.Errorf("channel index %d", s.ChannelIndex)
					}
				}}},
		{rule: "permanent failure: the next channel takes over at once",
			given: given(plain),
			when:  result(time.Second, contract.OutcomePermanent),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "sms", attempts: 2, onChan: 1,
				emits: []string{send("sms", 2)},
				check: func(t *testing.T, s *contract.State) {
					if s.LastError != "email attempt 1: permanent (400): invalid address" {
						t.Errorf("last error %q", s.LastError)
					}
				}}},
		{rule: "an outcome this version does not know counts as permanent",
			given: given(plain),
			when:  result(time.Second, contract.Outcome("bounced")),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "sms", attempts: 2, onChan: 1,
				emits: []string{send("sms", 2)}}},
		{rule: "the next channel still waits for a blackout window",
			given: given(newRequest(t, func(m map[string]any) {
				m["blackout"] = []any{map[string]any{"from": "12:00", "to": "13:00"}}
			}).after(-time.Second)),
			when: result(0, contract.OutcomePermanent),
			want: want{verdict: VerdictApplied, status: contract.StatusDeferred, hold: contract.HoldBlackout,
				next: utc("2026-01-15T13:00:00Z"), channel: "sms", attempts: 1,
				emits: []string{holdUntil(utc("2026-01-15T13:00:00Z"))}}},
		{rule: "permanent failure on the last channel: failed",
			given: given(plain, result(time.Second, contract.OutcomePermanent)),
			when:  result(2*time.Second, contract.OutcomePermanent),
			want: want{verdict: VerdictApplied, status: contract.StatusFailed, channel: "sms", attempts: 2, onChan: 1,
				check: func(t *testing.T, s *contract.State) {
					history(contract.OutcomePermanent, contract.OutcomePermanent)(t, s)
					if s.LastError != "sms attempt 2: permanent (400): invalid address" {
						t.Errorf("last error %q", s.LastError)
					}
				}}},
		{rule: "attempts used up on the last channel: failed",
			given: given(plain, result(time.Second, contract.OutcomePermanent),
				result(2*time.Second, contract.OutcomeTransient), wakeDue(2*time.Second+b1)),
			when: result(10*time.Second, contract.OutcomeTransient),
			want: want{verdict: VerdictApplied, status: contract.StatusFailed, channel: "sms", attempts: 3, onChan: 2}},
		{rule: "throttled (429): waits for Retry-After without using up an attempt",
			given: given(plain),
			when:  result(time.Second, contract.OutcomeThrottled, retryAfter(30*time.Second)),
			want: want{verdict: VerdictApplied, status: contract.StatusRetrying, hold: contract.HoldRateLimit,
				next: t0.Add(31 * time.Second), channel: "email", attempts: 1, onChan: 0,
				emits: []string{holdUntil(t0.Add(31 * time.Second))}}},
		{rule: "throttled without Retry-After waits a second",
			given: given(plain),
			when:  result(time.Second, contract.OutcomeThrottled),
			want: want{verdict: VerdictApplied, status: contract.StatusRetrying, hold: contract.HoldRateLimit,
				next: t0.Add(2 * time.Second), channel: "email", attempts: 1, onChan: 0,
				emits: []string{holdUntil(t0.Add(2 * time.Second))}}},
		{rule: "after a 429 the channel still has all its attempts",
			given: given(plain, result(time.Second, contract.OutcomeThrottled), wakeDue(2*time.Second),
				result(3*time.Second, contract.OutcomeThrottled), wakeDue(4*time.Second)),
			when: result(5*time.Second, contract.OutcomeTransient),
			want: want{verdict: VerdictApplied, status: contract.StatusRetrying, hold: contract.HoldBackoff,
				next: t0.Add(5*time.Second + b1), channel: "email", attempts: 3, onChan: 1,
				emits: []string{holdUntil(t0.Add(5*time.Second + b1))}}},
		{rule: "a failure for another attempt is stale",
			given: given(plain, result(time.Second, contract.OutcomeTransient), wakeDue(time.Second+b1)),
			when: fixed(5*time.Second, Event{Result: &contract.SendResult{ID: "n-1", Attempt: 1, Channel: "email",
				Outcome: contract.OutcomeTransient}}),
			want: want{verdict: VerdictStale}},
		{rule: "a failure while not sending is stale",
			given: given(plain, result(time.Second, contract.OutcomeTransient)),
			when: fixed(2*time.Second, Event{Result: &contract.SendResult{ID: "n-1", Attempt: 1, Channel: "email",
				Outcome: contract.OutcomePermanent}}),
			want: want{verdict: VerdictStale}},
		{rule: "a success for an earlier attempt is never thrown away: sent, though a later attempt is out",
			given: given(plain, result(time.Second, contract.OutcomeTransient), wakeDue(time.Second+b1)),
			when: fixed(5*time.Second, Event{Result: &contract.SendResult{ID: "n-1", Attempt: 1, Channel: "email",
				Outcome: contract.OutcomeSuccess}}),
			want: want{verdict: VerdictLateSuccess, status: contract.StatusSent, channel: "email", attempts: 2, onChan: 2,
				check: func(t *testing.T, s *contract.State) {
					last := s.History[len(s.History)-1]
					if !last.Late || last.Attempt != 1 || s.SentAt == nil || s.IssuedAt != nil {
						t.Errorf("history %+v, sent at %v, command %v", s.History, s.SentAt, s.IssuedAt)
					}
				}}},
		{rule: "a late success on the first channel after the fallback: sent on that channel",
			given: given(plain, result(time.Second, contract.OutcomePermanent)),
			when: fixed(5*time.Second, Event{Result: &contract.SendResult{ID: "n-1", Attempt: 1, Channel: "email",
				Outcome: contract.OutcomeSuccess}}),
			want: want{verdict: VerdictLateSuccess, status: contract.StatusSent, channel: "email", attempts: 2, onChan: 1}},
		{rule: "a success for another attempt of a sent notification is a double delivery, recorded",
			given: given(plain, result(time.Second, contract.OutcomeTransient), wakeDue(time.Second+b1),
				result(3*time.Second, contract.OutcomeSuccess)),
			when: fixed(5*time.Second, Event{Result: &contract.SendResult{ID: "n-1", Attempt: 1, Channel: "email",
				Outcome: contract.OutcomeSuccess}}),
			want: want{verdict: VerdictDoubleDelivery, status: contract.StatusSent, channel: "email", attempts: 2, onChan: 2,
				check: func(t *testing.T, s *contract.State) {
					if s.DoubleDeliveries != 1 || !s.History[len(s.History)-1].Double {
						t.Errorf("double deliveries %d, history %+v", s.DoubleDeliveries, s.History)
					}
				}}},
		{rule: "the same late success twice is stale the second time",
			given: given(plain, result(time.Second, contract.OutcomeTransient), wakeDue(time.Second+b1),
				fixed(5*time.Second, Event{Result: &contract.SendResult{ID: "n-1", Attempt: 1, Channel: "email",
					Outcome: contract.OutcomeSuccess}})),
			when: fixed(6*time.Second, Event{Result: &contract.SendResult{ID: "n-1", Attempt: 1, Channel: "email",
				Outcome: contract.OutcomeSuccess}}),
			want: want{verdict: VerdictStale}},
		{rule: "not attempted (the cut-off passed in the queue): nothing used up, issued again at once",
			given: given(plain),
			when:  result(20*time.Second, contract.OutcomeNotAttempted),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1,
				emits: []string{send("email", 1)},
				check: func(t *testing.T, s *contract.State) {
					if s.Issue != 1 || s.Unknowns != 0 {
						t.Errorf("issue %d unknowns %d", s.Issue, s.Unknowns)
					}
				}}},
		{rule: "not attempted because a window began: held until it ends, nothing used up",
			given: given(newRequest(t, func(m map[string]any) {
				m["blackout"] = []any{map[string]any{"from": "12:00", "to": "14:00"}}
				m["not_before"] = "2026-01-15T11:59:50Z"
			}).after(-20*time.Second), wakeDue(-10*time.Second)),
			when: result(5*time.Second, contract.OutcomeNotAttempted),
			want: want{verdict: VerdictApplied, status: contract.StatusDeferred, hold: contract.HoldBlackout,
				next: utc("2026-01-15T14:00:00Z"), channel: "email",
				emits: []string{holdUntil(utc("2026-01-15T14:00:00Z"))}}},
		{rule: "not attempted because the request expired: expired, nothing used up",
			given: given(newRequest(t, func(m map[string]any) { m["expires_at"] = "2026-01-15T12:00:20Z" })),
			when:  result(25*time.Second, contract.OutcomeNotAttempted),
			want:  want{verdict: VerdictApplied, status: contract.StatusExpired, channel: "email"}},
		{rule: "a result after the notification is final is stale",
			given: given(plain, result(time.Second, contract.OutcomeSuccess)),
			when:  result(2*time.Second, contract.OutcomeSuccess),
			want:  want{verdict: VerdictStale}},
	})
}

func TestDispatchWakeups(t *testing.T) {
	t.Parallel()
	plain := newRequest(t, nil)
	b1 := backoff(t, 1)
	scheduled := newRequest(t, func(m map[string]any) { m["not_before"] = "2026-01-15T18:00:00Z" })
	runRows(t, []row{
		{rule: "a sweep wake-up that read an older version from the changelog than the owner holds heals it: the state is written again, the wake-up is spent",
			given: given(plain, result(time.Second, contract.OutcomeSuccess)),
			when: step{at: 20 * time.Minute, ev: func(s *contract.State) Event {
				return Event{Wakeup: &contract.Wakeup{ID: s.ID, Kind: contract.WakeupSendTimeout, Due: t0.Add(timeoutAfter),
					Attempt: 1, SeenVersion: s.Version - 1}}
			}},
			want: want{verdict: VerdictHealed, repair: true}},
		{rule: "a healed sending state makes a resend check, not its command at once (it went out with the state)",
			given: given(plain, sendTimedOut(timeoutAfter)),
			when: step{at: timeoutAfter + time.Minute, ev: func(s *contract.State) Event {
				return Event{Wakeup: &contract.Wakeup{ID: s.ID, Kind: contract.WakeupSendTimeout, Due: t0.Add(timeoutAfter),
					Attempt: 1, SeenVersion: s.Version - 1}}
			}},
			want: want{verdict: VerdictHealed, repair: true, emits: []string{resendAt(timeoutAfter + time.Minute + providerTimeout + margin)}}},
		{rule: "a sweep wake-up that read the owner's own version is judged as any wake-up",
			given: given(plain),
			when: step{at: timeoutAfter, ev: func(s *contract.State) Event {
				return Event{Wakeup: &contract.Wakeup{ID: s.ID, Kind: contract.WakeupSendTimeout, Due: *s.TimeoutAt,
					Attempt: s.Attempts, Issue: s.Issue, SeenVersion: s.Version}}
			}},
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1,
				emits: []string{send("email", 1)}}},
		{rule: "send timeout: the outcome is unknown, so the same attempt is issued again with the same key, using nothing up",
			given: given(plain),
			when:  sendTimedOut(timeoutAfter),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1,
				emits: []string{send("email", 1)},
				check: func(t *testing.T, s *contract.State) {
					if s.Issue != 1 || s.Unknowns != 1 {
						t.Errorf("issue %d unknowns %d, want 1 and 1", s.Issue, s.Unknowns)
					}
					if len(s.History) != 1 || s.History[0].Outcome != contract.OutcomeUnknown || s.History[0].Issue != 0 {
						t.Errorf("history %+v", s.History)
					}
					if s.LastError != "email attempt 1: no result within the send timeout" {
						t.Errorf("last error %q", s.LastError)
					}
				}}},
		{rule: "a success for the first issue after a re-issue still counts: sent",
			given: given(plain, sendTimedOut(timeoutAfter)),
			when: fixed(timeoutAfter+time.Second, Event{Result: &contract.SendResult{ID: "n-1", Attempt: 1, Issue: 0,
				Channel: "email", Outcome: contract.OutcomeSuccess}}),
			want: want{verdict: VerdictApplied, status: contract.StatusSent, channel: "email", attempts: 1, onChan: 1}},
		{rule: "a failure for the first issue after a re-issue is stale (the new issue answers)",
			given: given(plain, sendTimedOut(timeoutAfter)),
			when: fixed(timeoutAfter+time.Second, Event{Result: &contract.SendResult{ID: "n-1", Attempt: 1, Issue: 0,
				Channel: "email", Outcome: contract.OutcomeTransient}}),
			want: want{verdict: VerdictStale}},
		{rule: "the send timeout of an earlier issue is stale",
			given: given(plain, sendTimedOut(timeoutAfter)),
			when: fixed(3*timeoutAfter, Event{Wakeup: &contract.Wakeup{ID: "n-1", Kind: contract.WakeupSendTimeout,
				Due: t0.Add(timeoutAfter), Attempt: 1}}),
			want: want{verdict: VerdictStale}},
		{rule: "after MaxReissues unknown outcomes the attempt counts as failed, and retries on the same channel",
			given: given(plain, sendTimedOut(timeoutAfter), sendTimedOut(2*timeoutAfter), sendTimedOut(3*timeoutAfter)),
			when:  sendTimedOut(4 * timeoutAfter),
			want: want{verdict: VerdictApplied, status: contract.StatusRetrying, hold: contract.HoldBackoff,
				next: t0.Add(4*timeoutAfter + b1), channel: "email", attempts: 1, onChan: 1,
				emits: []string{holdUntil(t0.Add(4*timeoutAfter + b1))}}},
		{rule: "unknown outcomes on the channel's last attempt fail the notification: no second channel for an outcome not known",
			given: given(plain, sendTimedOut(timeoutAfter), sendTimedOut(2*timeoutAfter), sendTimedOut(3*timeoutAfter),
				sendTimedOut(4*timeoutAfter), wakeDue(4*timeoutAfter+b1),
				sendTimedOut(5*timeoutAfter+b1), sendTimedOut(6*timeoutAfter+b1), sendTimedOut(7*timeoutAfter+b1)),
			when: sendTimedOut(8*timeoutAfter + b1),
			want: want{verdict: VerdictApplied, status: contract.StatusFailed, channel: "email", attempts: 2, onChan: 2,
				check: func(t *testing.T, s *contract.State) {
					if !strings.Contains(s.LastError, "outcome unknown") {
						t.Errorf("last error %q", s.LastError)
					}
				}}},
		{rule: "with fallback_on_unknown the same history moves to the next channel",
			given: given(newRequest(t, func(m map[string]any) { m["policy"].(map[string]any)["fallback_on_unknown"] = true }),
				sendTimedOut(timeoutAfter), sendTimedOut(2*timeoutAfter), sendTimedOut(3*timeoutAfter),
				sendTimedOut(4*timeoutAfter), wakeDue(4*timeoutAfter+b1),
				sendTimedOut(5*timeoutAfter+b1), sendTimedOut(6*timeoutAfter+b1), sendTimedOut(7*timeoutAfter+b1)),
			when: sendTimedOut(8*timeoutAfter + b1),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "sms", attempts: 3, onChan: 1,
				emits: []string{send("sms", 3)}}},
		{rule: "an unknown outcome when the call was cut off at expires_at: expired, saying the provider may have delivered",
			given: given(newRequest(t, func(m map[string]any) { m["expires_at"] = "2026-01-15T12:00:20Z" })),
			when:  result(20*time.Second, contract.OutcomeUnknown),
			want: want{verdict: VerdictApplied, status: contract.StatusExpired, channel: "email",
				check: func(t *testing.T, s *contract.State) {
					if !strings.HasSuffix(s.LastError, UnknownAtCutoff) || !strings.HasPrefix(s.LastError, "expired at") {
						t.Errorf("last error %q", s.LastError)
					}
				}}},
		{rule: "an attempt cut off at a window's start and held to its end is issued with a new issue number (no command repeats an earlier one)",
			given: given(newRequest(t, func(m map[string]any) {
				m["blackout"] = []any{map[string]any{"from": "12:00", "to": "14:00"}}
				m["not_before"] = "2026-01-15T11:59:50Z"
			}).after(-20*time.Second), wakeDue(-10*time.Second), result(time.Second, contract.OutcomeUnknown)),
			when: wakeDue(2 * time.Hour),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1,
				emits: []string{send("email", 1)},
				check: func(t *testing.T, s *contract.State) {
					if s.Issue != 1 || s.Commands != 2 || s.Unknowns != 1 {
						t.Errorf("issue %d of %d commands, unknowns %d; want issue 1 of 2, 1 unknown", s.Issue, s.Commands, s.Unknowns)
					}
				}}},
		{rule: "an unknown result (a timeout after the request was written) is issued again like a send timeout",
			given: given(plain),
			when:  result(5*time.Second, contract.OutcomeUnknown),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1,
				emits: []string{send("email", 1)}}},
		{rule: "a send timeout whose cut-off is a window's start fires after it, and holds until the window ends",
			given: given(newRequest(t, func(m map[string]any) {
				m["blackout"] = []any{map[string]any{"from": "12:00", "to": "14:00"}}
				m["not_before"] = "2026-01-15T11:59:50Z"
			}).after(-20*time.Second), wakeDue(-10*time.Second)),
			when: sendTimedOut(providerTimeout + margin),
			want: want{verdict: VerdictApplied, status: contract.StatusDeferred, hold: contract.HoldBlackout,
				next: utc("2026-01-15T14:00:00Z"), channel: "email",
				emits: []string{holdUntil(utc("2026-01-15T14:00:00Z"))}}},
		{rule: "a send timeout for an attempt that has its result is stale",
			given: given(plain, result(time.Second, contract.OutcomeSuccess)),
			when: fixed(timeoutAfter, Event{Wakeup: &contract.Wakeup{ID: "n-1", Kind: contract.WakeupSendTimeout,
				Due: t0.Add(timeoutAfter), Attempt: 1}}),
			want: want{verdict: VerdictStale}},
		{rule: "a send timeout for an earlier attempt is stale",
			given: given(plain, result(time.Second, contract.OutcomeTransient), wakeDue(time.Second+b1)),
			when: fixed(sendTimeout, Event{Wakeup: &contract.Wakeup{ID: "n-1", Kind: contract.WakeupSendTimeout,
				Due: t0.Add(sendTimeout), Attempt: 1}}),
			want: want{verdict: VerdictStale}},
		{rule: "an early send timeout is re-emitted, the attempt goes on",
			given: given(plain),
			when:  sendTimedOut(timeoutAfter - time.Second),
			want:  want{verdict: VerdictEarly, emits: []string{timeoutAt(0, 1)}}},
		{rule: "a scheduled notification's wake-up sends it",
			given: given(scheduled),
			when:  wakeDue(6 * time.Hour),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1,
				emits: []string{send("email", 1)}}},
		{rule: "a wake-up that comes late still sends",
			given: given(scheduled),
			when:  wakeDue(6*time.Hour + 3*time.Second),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1,
				emits: []string{send("email", 1)}}},
		{rule: "a deferred notification's wake-up at the window end sends it",
			given: given(newRequest(t, func(m map[string]any) {
				m["blackout"] = []any{map[string]any{"from": "11:00", "to": "13:30"}}
			})),
			when: wakeDue(90 * time.Minute),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1,
				emits: []string{send("email", 1)}}},
		{rule: "a wake-up with another due time is stale",
			given: given(scheduled),
			when: fixed(7*time.Hour, Event{Wakeup: &contract.Wakeup{ID: "n-1", Kind: contract.WakeupHold,
				Due: utc("2026-01-15T17:00:00Z")}}),
			want: want{verdict: VerdictStale}},
		{rule: "a hold wake-up while sending is stale",
			given: given(plain),
			when:  fixed(time.Second, Event{Wakeup: &contract.Wakeup{ID: "n-1", Kind: contract.WakeupHold, Due: t0}}),
			want:  want{verdict: VerdictStale}},
		{rule: "a wake-up of a kind this version does not know is stale",
			given: given(scheduled),
			when: fixed(6*time.Hour, Event{Wakeup: &contract.Wakeup{ID: "n-1", Kind: "digest",
				Due: utc("2026-01-15T18:00:00Z")}}),
			want: want{verdict: VerdictStale}},
		{rule: "an early wake-up is re-emitted and the state waits on",
			given: given(scheduled),
			when:  wakeDue(6*time.Hour - time.Second),
			want:  want{verdict: VerdictEarly, emits: []string{holdUntil(utc("2026-01-15T18:00:00Z"))}}},
		{rule: "a wake-up for a notification that expired meanwhile expires it",
			given: given(newRequest(t, func(m map[string]any) { m["expires_at"] = "2026-01-15T12:00:30Z" }),
				result(time.Second, contract.OutcomeTransient)),
			when: wakeDue(40 * time.Second), // the wake-up was due before the expiry but comes after it
			want: want{verdict: VerdictApplied, status: contract.StatusExpired, channel: "email", attempts: 1, onChan: 1},
		},
		{rule: "a retry due after expires_at wakes at the expiry, and expires then",
			given: given(newRequest(t, func(m map[string]any) { m["expires_at"] = "2026-01-15T12:30:00Z" }),
				result(time.Second, contract.OutcomeTransient, retryAfter(time.Hour))),
			when: wakeDue(30 * time.Minute),
			want: want{verdict: VerdictApplied, status: contract.StatusExpired, channel: "email", attempts: 1, onChan: 1,
				check: func(t *testing.T, s *contract.State) {
					if s.LastError != "expired at 2026-01-15T12:30:00Z" {
						t.Errorf("last error %q", s.LastError)
					}
				}}},
	})
}

func TestDispatchCancel(t *testing.T) {
	t.Parallel()
	plain := newRequest(t, nil)
	canceled := func(t *testing.T, s *contract.State) {
		if s.LastError != "canceled: customer closed account" {
			t.Errorf("last error %q", s.LastError)
		}
	}
	runRows(t, []row{
		{rule: "cancel while scheduled: canceled",
			given: given(newRequest(t, func(m map[string]any) { m["not_before"] = "2026-01-15T18:00:00Z" })),
			when:  cancel(time.Minute),
			want:  want{verdict: VerdictApplied, status: contract.StatusCanceled, channel: "email", check: canceled}},
		{rule: "cancel while deferred: canceled",
			given: given(newRequest(t, func(m map[string]any) {
				m["blackout"] = []any{map[string]any{"from": "11:00", "to": "13:30"}}
			})),
			when: cancel(time.Minute),
			want: want{verdict: VerdictApplied, status: contract.StatusCanceled, channel: "email", check: canceled}},
		{rule: "cancel while retrying: canceled",
			given: given(plain, result(time.Second, contract.OutcomeTransient)),
			when:  cancel(2 * time.Second),
			want: want{verdict: VerdictApplied, status: contract.StatusCanceled, channel: "email", attempts: 1, onChan: 1,
				check: canceled}},
		{rule: "cancel while the command waits in herald.send: canceled (the sender skips a canceled command)",
			given: given(plain),
			when:  cancel(time.Second),
			want: want{verdict: VerdictApplied, status: contract.StatusCanceled, channel: "email", attempts: 1, onChan: 1,
				check: func(t *testing.T, s *contract.State) {
					if !strings.Contains(s.LastError, "cannot be taken back") || s.IssuedAt != nil {
						t.Errorf("last error %q, command %v", s.LastError, s.IssuedAt)
					}
				}}},
		{rule: "a call that had started before the cancel delivers: the notification is sent after all",
			given: given(plain, cancel(time.Second)),
			when:  fixed(2*time.Second, Event{Result: &contract.SendResult{ID: "n-1", Attempt: 1, Channel: "email", Outcome: contract.OutcomeSuccess}}),
			want:  want{verdict: VerdictLateSuccess, status: contract.StatusSent, channel: "email", attempts: 1, onChan: 1}},
		{rule: "a failure of a call that had started before the cancel changes nothing",
			given: given(plain, cancel(time.Second)),
			when:  fixed(2*time.Second, Event{Result: &contract.SendResult{ID: "n-1", Attempt: 1, Channel: "email", Outcome: contract.OutcomeTransient}}),
			want:  want{verdict: VerdictStale}},
		{rule: "cancel after the notification is final is stale",
			given: given(plain, result(time.Second, contract.OutcomeSuccess)),
			when:  cancel(2 * time.Second),
			want:  want{verdict: VerdictStale}},
		{rule: "the wake-up of a canceled notification is stale",
			given: given(newRequest(t, func(m map[string]any) { m["not_before"] = "2026-01-15T18:00:00Z" }), cancel(time.Minute)),
			when: fixed(6*time.Hour, Event{Wakeup: &contract.Wakeup{ID: "n-1", Kind: contract.WakeupHold,
				Due: utc("2026-01-15T18:00:00Z")}}),
			want: want{verdict: VerdictStale}},
	})
}

// retry is an operator's retry of the failure seen after `after` attempts.
// shedPayload checks that a final state has no content and no address
// left, and still has what the reports read.
func shedPayload(t *testing.T, s *contract.State) {
	t.Helper()
	r := s.Request
	if s.HasPayload() || r == nil || len(r.Content) != 0 || r.Recipient != (contract.Recipient{}) {
		t.Errorf("final %s state keeps a payload: %+v", s.Status, r)
		return
	}
	if r.ID != "n-1" || r.Campaign != "billing-2026-01" || len(r.Channels) != 2 || r.Policy.AttemptsPerChannel != 2 {
		t.Errorf("the shed request lost what the reports read: %+v", r)
	}
	b, err := contract.EncodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"jane@example.com", "+821012345678", "statement"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the encoded state still holds %q", secret)
		}
	}
}

func TestDispatchShedsFinalPayload(t *testing.T) {
	plain := newRequest(t, nil)
	failed := given(plain, result(time.Second, contract.OutcomePermanent), result(2*time.Second, contract.OutcomePermanent))
	runRows(t, []row{
		{rule: "sent: the content and the addresses are dropped",
			given: given(plain),
			when:  result(time.Second, contract.OutcomeSuccess),
			want:  want{verdict: VerdictApplied, status: contract.StatusSent, channel: "email", attempts: 1, onChan: 1, check: shedPayload}},
		{rule: "canceled: dropped",
			given: given(newRequest(t, func(m map[string]any) { m["not_before"] = "2026-01-15T18:00:00Z" })),
			when:  cancel(time.Minute),
			want:  want{verdict: VerdictApplied, status: contract.StatusCanceled, channel: "email", check: shedPayload}},
		{rule: "expired: dropped",
			when: newRequest(t, func(m map[string]any) { m["expires_at"] = "2026-01-15T12:00:00Z" }),
			want: want{verdict: VerdictApplied, status: contract.StatusExpired, channel: "email", check: shedPayload}},
		{rule: "rejected: dropped",
			cfg: func(c *DispatchConfig) {
				c.Global = schedule.Rule{Windows: []contract.Window{{From: 0, To: 24 * 60}}, Loc: time.UTC}
			},
			when: plain,
			want: want{verdict: VerdictApplied, status: contract.StatusRejected, channel: "email", check: shedPayload}},
		{rule: "failed keeps its payload: an operator's retry sends it again",
			given: failed[:2],
			when:  failed[2],
			want: want{verdict: VerdictApplied, status: contract.StatusFailed, channel: "sms", attempts: 2, onChan: 1,
				check: func(t *testing.T, s *contract.State) {
					if r := s.Request; string(r.Content) != `{"template":"statement"}` || r.Recipient.Email != "jane@example.com" {
						t.Errorf("failed state lost its payload: %+v", r)
					}
				}}},
		{rule: "a retry of a failed notification sends the kept payload",
			given: failed,
			when:  retry(time.Minute, 2),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 3, onChan: 1,
				emits: []string{send("email", 3)}}},
		{rule: "a late success makes a failed notification sent, and sheds it",
			given: failed,
			when: step{at: time.Minute, ev: func(s *contract.State) Event {
				return Event{Result: &contract.SendResult{ID: s.ID, Attempt: 1, Channel: "email", Outcome: contract.OutcomeSuccess, At: t0.Add(time.Minute)}}
			}},
			want: want{verdict: VerdictLateSuccess, status: contract.StatusSent, channel: "email", attempts: 2, onChan: 1, check: shedPayload}},
	})
}

func retry(at time.Duration, after int) step {
	return step{at: at, ev: func(s *contract.State) Event {
		return Event{Retry: &contract.Retry{Kind: contract.ControlRetry, ID: s.ID, AfterAttempts: after,
			Reason: "provider outage fixed", RequestedAt: t0.Add(at)}}
	}}
}

func TestDispatchRetry(t *testing.T) {
	t.Parallel()
	plain := newRequest(t, nil)
	// email #1 and sms #2 fail permanently: failed after 2 attempts.
	failed := given(plain, result(time.Second, contract.OutcomePermanent), result(2*time.Second, contract.OutcomePermanent))
	retried := func(t *testing.T, s *contract.State) {
		last := s.History[len(s.History)-1]
		if len(s.History) != 3 || last.Outcome != contract.OutcomeRetry || last.Attempt != 0 ||
			last.Error != "retry requested: provider outage fixed" || !last.At.Equal(t0.Add(time.Minute)) {
			t.Errorf("history %+v", s.History)
		}
	}
	runRows(t, []row{
		{rule: "retry of a failed notification: a new series on the first channel, recorded in the history",
			given: failed,
			when:  retry(time.Minute, 2),
			want: want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 3, onChan: 1,
				emits: []string{send("email", 3)}, check: retried}},
		{rule: "retry inside a blackout window: held until it ends",
			given: given(newRequest(t, func(m map[string]any) {
				m["blackout"] = []any{map[string]any{"from": "12:30", "to": "13:00"}}
			}), result(time.Second, contract.OutcomePermanent), result(2*time.Second, contract.OutcomePermanent)),
			when: retry(31*time.Minute, 2),
			want: want{verdict: VerdictApplied, status: contract.StatusDeferred, hold: contract.HoldBlackout,
				next: utc("2026-01-15T13:00:00Z"), channel: "email", attempts: 2,
				emits: []string{holdUntil(utc("2026-01-15T13:00:00Z"))}}},
		{rule: "retry of a sent notification is stale: never sent twice",
			given: given(plain, result(time.Second, contract.OutcomeSuccess)),
			when:  retry(time.Minute, 1),
			want:  want{verdict: VerdictStale}},
		{rule: "retry while sending is stale",
			given: given(plain),
			when:  retry(time.Minute, 1),
			want:  want{verdict: VerdictStale}},
		{rule: "the same retry twice: the second is stale",
			given: append(failed, retry(time.Minute, 2)),
			when:  retry(2*time.Minute, 2),
			want:  want{verdict: VerdictStale}},
		{rule: "a retry of an older failure after the new series failed again is stale",
			given: append(failed, retry(time.Minute, 2), result(61*time.Second, contract.OutcomePermanent),
				result(62*time.Second, contract.OutcomePermanent)),
			when: retry(2*time.Minute, 2),
			want: want{verdict: VerdictStale}},
		{rule: "a failure of the old series after a retry is stale",
			given: append(failed, retry(time.Minute, 2)),
			when: fixed(61*time.Second, Event{Result: &contract.SendResult{ID: "n-1", Attempt: 2, Channel: "sms",
				Outcome: contract.OutcomePermanent, At: t0.Add(61 * time.Second)}}),
			want: want{verdict: VerdictStale}},
		{rule: "a success of the old series after a retry is not thrown away: sent",
			given: append(failed, retry(time.Minute, 2)),
			when: fixed(61*time.Second, Event{Result: &contract.SendResult{ID: "n-1", Attempt: 1, Channel: "email",
				Outcome: contract.OutcomeSuccess, At: t0.Add(61 * time.Second)}}),
			want: want{verdict: VerdictLateSuccess, status: contract.StatusSent, channel: "email", attempts: 3, onChan: 1}},
		{rule: "a retried series can be sent",
			given: append(failed, retry(time.Minute, 2)),
			when:  result(61*time.Second, contract.OutcomeSuccess),
			want: want{verdict: VerdictApplied, status: contract.StatusSent, channel: "email", attempts: 3, onChan: 1,
				check: func(t *testing.T, s *contract.State) {
					if s.SentAt == nil || len(s.History) != 4 {
						t.Errorf("sent at %v, history %+v", s.SentAt, s.History)
					}
				}}},
	})
}

// TestDispatchVersionsCount plays a long story and checks the version
// counts the changes and nothing else.
func TestDispatchVersionsCount(t *testing.T) {
	t.Parallel()
	st := newStory(t, testConfig())
	b1 := backoff(t, 1)
	steps := []step{
		newRequest(t, nil),                               // 1: sending email #1
		newRequest(t, nil).after(time.Second),            // 2: duplicate
		result(2*time.Second, contract.OutcomeTransient), // 3: retrying
		fixed(3*time.Second, Event{Wakeup: &contract.Wakeup{ID: "n-1", Kind: contract.WakeupHold, Due: t0}}), // stale
		wakeDue(2*time.Second + b1),                     // 4: sending email #2
		result(10*time.Second, contract.OutcomeSuccess), // 5: sent
		newRequest(t, nil).after(11 * time.Second),      // 6: duplicate
		cancel(12 * time.Second),                        // stale
	}
	changes := 0
	for _, p := range steps {
		if d := st.play(p); d.State != nil {
			changes++
		}
	}
	if st.s.Version != uint64(changes) || changes != 6 || st.s.Status != contract.StatusSent || st.s.Duplicates != 2 {
		t.Errorf("version %d after %d changes, status %s, duplicates %d", st.s.Version, changes, st.s.Status, st.s.Duplicates)
	}
}

// BenchmarkDispatchNewRequest measures the transition for a new request,
// the dispatcher's commonest event: a request with a zone and a window that
// does not hold it, which becomes sending with its send command and timeout.
func BenchmarkDispatchNewRequest(b *testing.B) {
	r := request(b, func(m map[string]any) {
		m["recipient"].(map[string]any)["tz"] = "Asia/Seoul"
		m["blackout"] = []any{map[string]any{"from": "22:00", "to": "06:00"}}
	})
	cfg := testConfig()
	cfg.Global = schedule.Rule{Windows: []contract.Window{{From: 0, To: 6 * 60}}, Loc: time.UTC}
	ev := Event{Source: contract.Position{Topic: topology.TopicRequests, Partition: 3, Offset: 1}, Request: r}
	b.ReportAllocs()
	for b.Loop() {
		d := Dispatch(nil, ev, t0, cfg)
		if d.Emits.Send == nil {
			b.Fatal("no send command")
		}
	}
}

// A send command's call timeout is the provider timeout, or the shorter
// one its state's send timeout was stamped with: a process restarted with
// a longer --provider-timeout that makes a sending state's command again
// (a replay, a resend) must not let the call outlive the TimeoutAt that
// the state already carries.
func TestCallTimeoutFollowsTheStampedSendTimeout(t *testing.T) {
	t.Parallel()
	cfg := DispatchConfig{ProviderTimeout: 30 * time.Second, TimeoutMargin: 5 * time.Second}.WithDefaults()
	cutoff := time.Date(2026, 1, 5, 0, 10, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		timeout time.Time // the state's TimeoutAt
		want    time.Duration
	}{
		{"stamped with a 10 s provider timeout", cutoff.Add(15 * time.Second), 10 * time.Second},
		{"stamped with this process's", cutoff.Add(35 * time.Second), 30 * time.Second},
		{"stamped with a longer one", cutoff.Add(time.Minute), 30 * time.Second},
		{"no room left: the provider timeout", cutoff.Add(2 * time.Second), 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			issued, c, to := cutoff.Add(-time.Minute), cutoff, tc.timeout
			s := &contract.State{ID: "x", Status: contract.StatusSending, Channel: contract.ChannelEmail, Attempts: 1,
				Request: &contract.Request{ID: "x"}, IssuedAt: &issued, Cutoff: &c, TimeoutAt: &to}
			e := effects(s, cfg)
			if e.Send == nil || e.Send.CallTimeout.D() != tc.want {
				t.Fatalf("command %+v: want call timeout %s", e.Send, tc.want)
			}
		})
	}
	s := &contract.State{ID: "y", Status: contract.StatusSending, Channel: contract.ChannelEmail, Attempts: 1, Request: &contract.Request{ID: "y"}}
	if e := effects(s, cfg); e.Send == nil || e.Send.CallTimeout.D() != 30*time.Second {
		t.Fatalf("a state stamped before v1.8 (no cut-off): command %+v, want the provider timeout", e.Send)
	}
}

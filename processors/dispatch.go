// Package processors holds Herald's stream processors. Each is a pure state
// transition, (state, event, now) -> (new state, emits), tested without
// Kafka, plus a thin Goka callback that reads the event, calls the
// transition and writes what it returns.
package processors

import (
	"fmt"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/schedule"
)

// DispatchConfig is the dispatcher's configuration: everything the
// transition needs besides the state, the event and the clock.
type DispatchConfig struct {
	// DefaultLoc is the zone for recipients without recipient.tz.
	DefaultLoc *time.Location
	// Global is the system-wide blackout, applied on top of the
	// per-message windows.
	Global schedule.Rule
	// SendTimeout is how long a notification may stay sending without a
	// result before the attempt counts as a transient failure.
	SendTimeout time.Duration
}

// DefaultSendTimeout is the default of --send-timeout. The timeout counts
// from when the dispatcher issues the command, so it includes the time the
// command waits in herald.send behind other commands: under a billing run's
// backlog that is minutes (the load test measured a p99 of 53 s at 100,000
// and 8 m at 1,000,000 on 2 cores). A shorter timeout would expire queued
// attempts, burn their attempts and fail notifications that were never
// tried, so the default is generous; the timeout exists to recover from a
// lost command or a crashed sender, not to bound provider latency (the
// provider timeout does that).
const DefaultSendTimeout = 10 * time.Minute

// Event is one input of the dispatcher. Exactly one of the pointers is set.
type Event struct {
	// Source is the Kafka record the event came from.
	Source  contract.Position
	Request *contract.Request
	Result  *contract.SendResult
	Wakeup  *contract.Wakeup
	Cancel  *contract.Cancel
}

// Emits is what one transition publishes.
type Emits struct {
	// Send is a command for the sender, or nil.
	Send *contract.SendCommand
	// Wakeups go to the delay topics, to come back when due.
	Wakeups []contract.Wakeup
}

// Empty reports whether nothing is emitted.
func (e Emits) Empty() bool { return e.Send == nil && len(e.Wakeups) == 0 }

// Verdict says what the dispatcher made of an event, for metrics and logs.
type Verdict string

const (
	VerdictApplied   Verdict = "applied"   // the state changed
	VerdictDuplicate Verdict = "duplicate" // a request for a known id
	VerdictReplay    Verdict = "replay"    // a record seen before a crash
	VerdictStale     Verdict = "stale"     // an event the state has moved past
	VerdictUnknown   Verdict = "unknown"   // an event for an id with no state
	VerdictEarly     Verdict = "early"     // a wake-up before its due time, held again
)

// Decision is the result of Dispatch.
type Decision struct {
	// State is the new state, or nil when the state does not change.
	State   *contract.State
	Emits   Emits
	Verdict Verdict
}

// Dispatch is the dispatcher's state transition. It never mutates cur.
//
// The emits of a change are derived from the new state alone (see effects),
// after its Version and UpdatedAt are set, so that they can be derived again.
//
// Replays: Goka writes the new state to the table (and its changelog) and
// publishes the emits asynchronously, and commits the input offset only
// when all of them are acknowledged. A crash in between hands the same
// record over again after the restart, with the new state already stored.
// The state remembers, per input topic, the newest position applied; a
// record at or below it is a replay, never a duplicate, and never changes
// the state:
//   - the very record that made the current version makes its emits again
//     (they may have been lost);
//   - an older record may have lost its emits too, but a later record has
//     moved the state on since, so what it emitted cannot be made again.
//     Only the wake-up the state waits for is emitted again (a hold wake-up,
//     or the send timeout while sending): a wake-up is checked against the
//     state when it comes, so a second copy is stale and harmless, and the
//     notification cannot be left waiting for a wake-up that was lost. A
//     send command is never made again this way; if it was lost, the send
//     timeout retries it.
func Dispatch(cur *contract.State, ev Event, now time.Time, cfg DispatchConfig) Decision {
	if cur != nil && applied(cur, ev.Source) {
		switch {
		case cur.LastSource != ev.Source:
			return Decision{Emits: Emits{Wakeups: effects(cur, cfg).Wakeups}, Verdict: VerdictReplay}
		case cur.LastEmitted:
			return Decision{Emits: effects(cur, cfg), Verdict: VerdictReplay}
		}
		return Decision{Verdict: VerdictReplay}
	}
	var d Decision
	switch {
	case ev.Request != nil:
		d = onRequest(cur, ev.Request, now, cfg)
	case cur == nil:
		return Decision{Verdict: VerdictUnknown}
	case ev.Result != nil:
		d = onResult(cur, ev.Result, now, cfg)
	case ev.Wakeup != nil:
		d = onWakeup(cur, ev.Wakeup, now, cfg)
	case ev.Cancel != nil:
		d = onCancel(cur, ev.Cancel, now)
	default:
		return Decision{Verdict: VerdictStale}
	}
	if d.State == nil {
		return d
	}
	s := d.State
	s.Version++
	s.UpdatedAt = now
	if ev.Source.Topic != "" {
		if s.Applied == nil {
			s.Applied = map[string]contract.Position{}
		}
		s.Applied[ev.Source.Topic] = ev.Source
	}
	if d.Verdict == VerdictApplied { // a duplicate changes a counter, and emits nothing
		d.Emits = effects(s, cfg)
	}
	s.LastSource = ev.Source
	s.LastEmitted = !d.Emits.Empty()
	return d
}

func applied(s *contract.State, p contract.Position) bool {
	a, ok := s.Applied[p.Topic]
	return ok && p.Topic != "" && a.Partition == p.Partition && p.Offset <= a.Offset
}

// clone copies s deeply enough for the transition to change it. Pointer
// fields (NextAttemptAt, SentAt, Request) are shared and must be replaced,
// never written through.
func clone(s *contract.State) *contract.State {
	n := *s
	n.Applied = make(map[string]contract.Position, len(s.Applied)+1)
	for k, v := range s.Applied {
		n.Applied[k] = v
	}
	n.History = append([]contract.Attempt(nil), s.History...)
	return &n
}

func onRequest(cur *contract.State, r *contract.Request, now time.Time, cfg DispatchConfig) Decision {
	if cur != nil {
		n := clone(cur)
		n.Duplicates++
		return Decision{State: n, Verdict: VerdictDuplicate}
	}
	s := &contract.State{
		ID:        r.ID,
		Campaign:  r.Campaign,
		FirstSeen: now,
		Request:   r,
	}
	if len(r.Channels) == 0 { // Decode refuses these; never index an empty list
		finish(s, contract.StatusRejected, "no channels")
		return Decision{State: s, Verdict: VerdictApplied}
	}
	s.Channel = r.Channels[0]
	advance(s, now, cfg)
	return Decision{State: s, Verdict: VerdictApplied}
}

// advance moves a notification that may be sent towards sending: it
// expires it, holds it until not_before or a window's end, or makes it
// sending with a new attempt.
func advance(s *contract.State, now time.Time, cfg DispatchConfig) {
	r := s.Request
	if r.ExpiresAt != nil && !now.Before(*r.ExpiresAt) {
		finish(s, contract.StatusExpired, "expired at "+r.ExpiresAt.UTC().Format(time.RFC3339))
		return
	}
	at, reason := now, contract.HoldReason("")
	if r.NotBefore != nil && r.NotBefore.After(at) {
		at, reason = *r.NotBefore, contract.HoldSchedule
	}
	rel, err := schedule.Release(at, rules(r, cfg)...)
	if err != nil {
		finish(s, contract.StatusRejected, err.Error())
		return
	}
	if rel.After(at) {
		at, reason = rel, contract.HoldBlackout
	}
	if at.After(now) {
		status := contract.StatusDeferred
		if reason == contract.HoldSchedule {
			status = contract.StatusScheduled
		}
		hold(s, status, reason, at)
		return
	}
	s.Status = contract.StatusSending
	s.HoldReason = ""
	s.NextAttemptAt = nil
	s.Attempts++
	s.ChannelAttempts++
}

// hold parks s until at. If the notification expires before then, the
// wake-up comes at the expiry instead, so it expires on time.
func hold(s *contract.State, status contract.Status, reason contract.HoldReason, at time.Time) {
	if e := s.Request.ExpiresAt; e != nil && e.Before(at) {
		at = *e
	}
	s.Status = status
	s.HoldReason = reason
	s.NextAttemptAt = &at
}

func finish(s *contract.State, status contract.Status, why string) {
	s.Status = status
	s.HoldReason = ""
	s.NextAttemptAt = nil
	if why != "" {
		s.LastError = why
	}
}

// effects derives what the state s must publish: a send command and its
// timeout while sending, a wake-up while held, nothing once final. Because
// the emits follow from the state alone, a replay can make them again. A
// sending state's UpdatedAt is when its attempt was issued.
func effects(s *contract.State, cfg DispatchConfig) Emits {
	switch {
	case s.Status == contract.StatusSending:
		r := s.Request
		timeout := cfg.SendTimeout
		if timeout <= 0 {
			timeout = DefaultSendTimeout
		}
		return Emits{
			Send: &contract.SendCommand{
				ID:             s.ID,
				Campaign:       s.Campaign,
				Channel:        s.Channel,
				Attempt:        s.Attempts,
				Address:        r.Recipient.Address(s.Channel),
				Content:        r.Content,
				IdempotencyKey: s.ID,
				RequestedAt:    s.FirstSeen,
				IssuedAt:       s.UpdatedAt,
				Deadline:       s.UpdatedAt.Add(timeout),
			},
			Wakeups: []contract.Wakeup{{ID: s.ID, Kind: contract.WakeupSendTimeout,
				Due: s.UpdatedAt.Add(timeout), Attempt: s.Attempts}},
		}
	case s.Status.Held() && s.NextAttemptAt != nil:
		return Emits{Wakeups: []contract.Wakeup{{ID: s.ID, Kind: contract.WakeupHold, Due: *s.NextAttemptAt}}}
	}
	return Emits{}
}

func rules(r *contract.Request, cfg DispatchConfig) []schedule.Rule {
	loc := cfg.DefaultLoc
	if loc == nil {
		loc = time.UTC
	}
	if r.Recipient.TZ != "" {
		if l, err := contract.LoadLocation(r.Recipient.TZ); err == nil {
			loc = l
		}
	}
	return []schedule.Rule{{Windows: r.Blackout, Loc: loc}, cfg.Global}
}

func onResult(cur *contract.State, res *contract.SendResult, now time.Time, cfg DispatchConfig) Decision {
	if cur.Status != contract.StatusSending || res.Attempt != cur.Attempts {
		return Decision{Verdict: VerdictStale}
	}
	s := clone(cur)
	at := res.At
	if at.IsZero() {
		at = now
	}
	s.History = append(s.History, contract.Attempt{Attempt: res.Attempt, Channel: res.Channel,
		Outcome: res.Outcome, Error: res.Error, Code: res.Code, At: at})
	switch res.Outcome {
	case contract.OutcomeSuccess:
		s.Status = contract.StatusSent
		s.HoldReason, s.NextAttemptAt, s.LastError = "", nil, ""
		s.SentAt = &at
		return Decision{State: s, Verdict: VerdictApplied}
	case contract.OutcomeThrottled:
		s.LastError = describe(res)
		s.ChannelAttempts-- // a 429 does not use up an attempt
		wait := res.RetryAfter.D()
		if wait <= 0 {
			wait = time.Second
		}
		return retryAt(s, now.Add(wait), contract.HoldRateLimit, now, cfg)
	case contract.OutcomeTransient:
		return transientFailure(s, describe(res), res.RetryAfter.D(), now, cfg)
	default: // permanent, or an outcome this version does not know
		s.LastError = describe(res)
		return nextChannel(s, now, cfg)
	}
}

func describe(res *contract.SendResult) string {
	msg := string(res.Outcome)
	if res.Code != 0 {
		msg += fmt.Sprintf(" (%d)", res.Code)
	}
	if res.Error != "" {
		msg += ": " + res.Error
	}
	return string(res.Channel) + " attempt " + fmt.Sprint(res.Attempt) + ": " + msg
}

// transientFailure retries on the same channel after the policy's backoff
// (or the provider's Retry-After, if longer) while attempts remain, then
// falls back to the next channel.
func transientFailure(s *contract.State, why string, retryAfter time.Duration, now time.Time, cfg DispatchConfig) Decision {
	s.LastError = why
	p := s.Request.Policy
	if s.ChannelAttempts >= p.AttemptsPerChannel {
		return nextChannel(s, now, cfg)
	}
	wait := schedule.Backoff(p.Backoff, s.ChannelAttempts, s.ID)
	if retryAfter > wait {
		wait = retryAfter
	}
	return retryAt(s, now.Add(wait), contract.HoldBackoff, now, cfg)
}

func retryAt(s *contract.State, at time.Time, reason contract.HoldReason, now time.Time, cfg DispatchConfig) Decision {
	rel, err := schedule.Release(at, rules(s.Request, cfg)...)
	if err != nil {
		finish(s, contract.StatusFailed, err.Error())
		return Decision{State: s, Verdict: VerdictApplied}
	}
	if rel.After(at) {
		at, reason = rel, contract.HoldBlackout
	}
	hold(s, contract.StatusRetrying, reason, at)
	return Decision{State: s, Verdict: VerdictApplied}
}

// nextChannel moves to the next channel in the request's order at once, or
// fails the notification after the last one.
func nextChannel(s *contract.State, now time.Time, cfg DispatchConfig) Decision {
	chans := s.Request.Channels
	if s.ChannelIndex+1 >= len(chans) {
		finish(s, contract.StatusFailed, "")
		return Decision{State: s, Verdict: VerdictApplied}
	}
	s.ChannelIndex++
	s.Channel = chans[s.ChannelIndex]
	s.ChannelAttempts = 0
	s.Status = contract.StatusScheduled // not held: advance decides
	s.NextAttemptAt = nil
	advance(s, now, cfg)
	return Decision{State: s, Verdict: VerdictApplied}
}

func onWakeup(cur *contract.State, w *contract.Wakeup, now time.Time, cfg DispatchConfig) Decision {
	switch w.Kind {
	case contract.WakeupSendTimeout:
		if cur.Status != contract.StatusSending || cur.Attempts != w.Attempt {
			return Decision{Verdict: VerdictStale}
		}
		if now.Before(w.Due) {
			// Early: the attempt still has time. Only the wake-up goes
			// out again; the send command must not.
			return Decision{Emits: Emits{Wakeups: []contract.Wakeup{*w}}, Verdict: VerdictEarly}
		}
		s := clone(cur)
		s.History = append(s.History, contract.Attempt{Attempt: cur.Attempts, Channel: cur.Channel,
			Outcome: contract.OutcomeTransient, Error: "send timeout", At: now})
		return transientFailure(s, fmt.Sprintf("%s attempt %d: no result within the send timeout", cur.Channel, cur.Attempts), 0, now, cfg)
	case contract.WakeupHold:
		if !cur.Status.Held() || cur.NextAttemptAt == nil || !cur.NextAttemptAt.Equal(w.Due) {
			return Decision{Verdict: VerdictStale}
		}
		if now.Before(w.Due) {
			// Early (a clock behind the delay stage's): hold on, unchanged.
			return Decision{Emits: Emits{Wakeups: []contract.Wakeup{*w}}, Verdict: VerdictEarly}
		}
		s := clone(cur)
		if s.Status != contract.StatusRetrying {
			s.Status = contract.StatusScheduled
		}
		s.NextAttemptAt = nil
		advance(s, now, cfg)
		return Decision{State: s, Verdict: VerdictApplied}
	}
	return Decision{Verdict: VerdictStale}
}

func onCancel(cur *contract.State, c *contract.Cancel, now time.Time) Decision {
	if !cur.Status.Held() {
		return Decision{Verdict: VerdictStale}
	}
	s := clone(cur)
	why := "canceled"
	if c.Reason != "" {
		why += ": " + c.Reason
	}
	finish(s, contract.StatusCanceled, why)
	return Decision{State: s, Verdict: VerdictApplied}
}

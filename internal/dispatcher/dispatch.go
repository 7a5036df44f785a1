// Package dispatcher is Herald's dispatcher: the Goka processor that owns a
// notification's state. It holds the pure transition Dispatch (state, event,
// now) -> (new state, emits), tested without Kafka through one checker of
// its invariants (dispatch.go); the Goka callback that decodes an event,
// calls Dispatch and writes what it returns, with fencing, parking and dead
// letters (dispatcher.go); the moving of records a producer placed on
// another partition (placement.go); the sweep of overdue wake-ups
// (sweep.go); and the group graph with its table (graph.go).
//
// The Goka plumbing it runs on (ordered commits, fencing epochs, versioned
// changelog reads, the supervisor) is internal/gokax; the state's encoding
// is contract's.
package dispatcher

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/schedule"
)

// DispatchConfig is the dispatcher's configuration: everything the
// transition needs besides the state, the event and the clock.
//
// The timing rule, enforced here and by the sender: a send command may be
// acted on until its cut-off (the earliest of IssuedAt+SendTimeout, the
// next blackout window's start and expires_at); the sender never starts a
// provider call at or after the cut-off, a request that has not reached
// the provider by the cut-off is abandoned (not_attempted), and a call is
// bounded by ProviderTimeout (provider/handover.go). The dispatcher's send
// timeout for the command fires at cut-off + ProviderTimeout +
// TimeoutMargin, when no call for it can still be running, so a timeout
// never overtakes a call. SendTimeout must
// therefore be longer than ProviderTimeout (Validate), or every queued
// command would be cut off before its call could finish.
type DispatchConfig struct {
	// DefaultLoc is the zone for recipients without recipient.tz
	// (default UTC).
	DefaultLoc *time.Location
	// Global is the system-wide blackout, applied on top of the
	// per-message windows (default none).
	Global schedule.Rule
	// SendTimeout bounds how long a send command may wait and run: its
	// deadline is IssuedAt + SendTimeout (default DefaultSendTimeout).
	SendTimeout time.Duration
	// ProviderTimeout is the sender's timeout of one provider call
	// (--provider-timeout; default contract.DefaultProviderTimeout). Each
	// send command carries it (SendCommand.CallTimeout), and the sender
	// bounds the command's call by it.
	ProviderTimeout time.Duration
	// TimeoutMargin is added after cut-off + ProviderTimeout before the
	// send timeout fires, for clock skew and the result's publish (default
	// DefaultTimeoutMargin).
	TimeoutMargin time.Duration
	// StateRetention is how long a final state is kept whole after its
	// last change (--state-retention; default DefaultStateRetention). Past
	// it, a retire wake-up replaces it with a remembered record
	// (contract.State.Remembered): id, status, updated_at and version.
	StateRetention time.Duration
	// DedupRetention is how long an id stays known after its final
	// state's last change (--dedup-retention; default
	// DefaultDedupRetention, at least StateRetention). A request for it
	// is a duplicate until then; past it, a retire wake-up deletes the
	// record (a tombstone), and the id is new again.
	DedupRetention time.Duration
}

// Defaults of DispatchConfig.
const (
	DefaultTimeoutMargin = 5 * time.Second
	// DefaultStateRetention is longer than a billing cycle, so that a
	// month's notifications are whole until the next month's run is over.
	DefaultStateRetention = 35 * 24 * time.Hour
	// DefaultDedupRetention is 13 months: a batch that re-runs any month
	// of the last year sends nothing twice.
	DefaultDedupRetention = 395 * 24 * time.Hour
)

// WithDefaults fills the zero fields of c.
func (c DispatchConfig) WithDefaults() DispatchConfig {
	if c.DefaultLoc == nil {
		c.DefaultLoc = time.UTC
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = DefaultSendTimeout
	}
	if c.ProviderTimeout <= 0 {
		c.ProviderTimeout = contract.DefaultProviderTimeout
	}
	if c.TimeoutMargin <= 0 {
		c.TimeoutMargin = DefaultTimeoutMargin
	}
	if c.StateRetention <= 0 {
		c.StateRetention = DefaultStateRetention
	}
	if c.DedupRetention <= 0 {
		c.DedupRetention = DefaultDedupRetention
	}
	return c
}

// Validate refuses a configuration that breaks the timing rule.
func (c DispatchConfig) Validate() error {
	c = c.WithDefaults()
	if c.SendTimeout <= c.ProviderTimeout {
		return fmt.Errorf("--send-timeout (%s) must be longer than --provider-timeout (%s): a send command's deadline bounds its provider call, so a shorter send timeout would cut off calls the provider could still answer", c.SendTimeout, c.ProviderTimeout)
	}
	if c.DedupRetention < c.StateRetention {
		return fmt.Errorf("--dedup-retention (%s) must be at least --state-retention (%s): an id is remembered for duplicate protection after its state is gone, never forgotten before", c.DedupRetention, c.StateRetention)
	}
	return nil
}

// DefaultSendTimeout is the default of --send-timeout. The deadline counts
// from when the dispatcher issues the command, so it includes the time the
// command waits in herald.send behind other commands: under a billing run's
// backlog that is minutes (the load test measured a p99 of 53 s at 100,000
// and 8 m at 1,000,000 on 2 cores). A command that reaches the sender after
// its cut-off is answered not_attempted and issued again without using an
// attempt, so a short timeout costs a re-issue, not a delivery.
const DefaultSendTimeout = 10 * time.Minute

// Event is one input of the dispatcher. Exactly one of the pointers is set.
type Event struct {
	// Source is the Kafka record the event came from. Origin is where it
	// was published: Source, or for a record moved through the repartition
	// topic, the position it was moved from (zero means Source).
	Source contract.Position
	Origin contract.Position
	// Epoch is the owner epoch of the partition the event is processed
	// on: the consumer group generation that assigned it to this process
	// (Fence). 0 means unknown (tests), and versions then only count.
	Epoch int32
	// Confirmed says that the table's changelog is known to hold the
	// current state's version (a view of the table has it): its write
	// landed. Only a replay of the record that made a sending state asks
	// (Dispatcher.Changelog); see Dispatch on replays.
	Confirmed bool
	Request   *contract.Request
	Result    *contract.SendResult
	Wakeup    *contract.Wakeup
	Cancel    *contract.Cancel
	Retry     *contract.Retry
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
	VerdictUnknown   Verdict = "unknown"   // an event for an id with no state (parked, see Dispatcher)
	VerdictEarly     Verdict = "early"     // a wake-up before its due time, held again
	// VerdictLateSuccess: a success for an attempt the state had moved
	// past (or after a cancel or expiry while its call ran); the
	// notification is sent.
	VerdictLateSuccess Verdict = "late_success"
	// VerdictDoubleDelivery: a success for another attempt of a
	// notification already sent. Recorded in the history and counted.
	VerdictDoubleDelivery Verdict = "double_delivery"
	// VerdictHealed: a sweep wake-up showed the changelog behind this
	// owner's state, which is written again (onWakeup).
	VerdictHealed Verdict = "healed"
	// VerdictRemembered: a retire wake-up replaced a final state past
	// StateRetention with its remembered record.
	VerdictRemembered Verdict = "remembered"
	// VerdictDeleted: a retire wake-up deleted a state or remembered
	// record past DedupRetention (Decision.Delete).
	VerdictDeleted Verdict = "deleted"
)

// Decision is the result of Dispatch.
type Decision struct {
	// State is the new state, or nil when the state does not change.
	State *contract.State
	// Repair asks for the current state to be written again, unchanged
	// (same version): see Dispatch on replays.
	Repair bool
	// Delete asks for the state to be deleted: a tombstone in the
	// changelog (retention, onRetire). State is nil and nothing is emitted.
	Delete  bool
	Emits   Emits
	Verdict Verdict
}

// Dispatch is the dispatcher's state transition. It never mutates cur.
//
// The emits of a change are derived from the new state alone (see effects),
// after its Version and UpdatedAt are set, so that they can be derived again.
//
// Versions: a change sets Version to one more than cur's, raised to at
// least ev.Epoch<<32 + 1. Epochs are consumer group generations, which
// only grow, so every state a later owner of the partition writes has a
// higher version than any an earlier owner wrote, and two different states
// never carry the same version. Readers keep the highest version
// (VersionedUpdate, the views, the sink's upsert), which fences a zombie:
// its retried produces, landing after the new owner's writes, lose.
//
// Replays: Goka writes the new state to its local store at once, and to
// the changelog and the emits asynchronously; the input offset is
// committed only when they, and every earlier record's writes, are
// acknowledged (OrderedCommits). A crash in between hands the same record
// over again after the restart, often with the new state already in the
// local store although its changelog write was lost. The state remembers,
// per input topic, the newest position applied; a record at or below it
// is a replay, never a duplicate, and never changes the state:
//   - the very record that made the current version (LastSource) writes
//     that state again, unchanged (Repair: the changelog write may have
//     been lost; an equal version is idempotent for every reader), and
//     makes its emits again (they may have been lost too). A send
//     command is made again at once only when the changelog is not known
//     to hold the version: when it is (ev.Confirmed), the state's write
//     landed, and the command, produced with it, most likely did too and
//     may already have been answered by a sender whose result this owner
//     has not applied yet (a new owner, or a restart whose input offset
//     was not yet committed). A copy sent at once would reach a sender
//     that does not know the first was answered (another process), read
//     "sending" from its view and call the provider again: a second
//     delivery where the key is not honoured (the chaos suite saw it
//     after a zombie rejoined). Instead the replay makes a resend wake-up
//     due ProviderTimeout + TimeoutMargin later (resendCheck): if the
//     notification still waits for that command's result then, the same
//     command (same attempt, issue and key) is made again (onWakeup);
//     if the result came, the wake-up is stale. So a command lost in a
//     crash between the state's acknowledgement and its own is made
//     again that much later, never lost;
//   - an older record's writes need no repair: the record that made the
//     current version came later on its own topic-partition or on
//     another, and either its writes were acknowledged (they carry the
//     whole state) or its offset was not committed either, so it is
//     replayed and repairs. Only the wake-up the state waits for is
//     emitted again, while held (a wake-up is checked against the state
//     when it comes, so a second copy is stale and harmless). A send
//     command is never made again this way: if it was lost, the sweep's
//     send timeout re-issues it.
//
// cfg is used as it is: the dispatcher applies its defaults once when it
// is built (Dispatcher.Graph); a caller of its own passes
// DispatchConfig.WithDefaults().
func Dispatch(cur *contract.State, ev Event, now time.Time, cfg DispatchConfig) Decision {
	if w := ev.Wakeup; w != nil && w.Kind == contract.WakeupRetire {
		return onRetire(cur, w, now, ev.Epoch, cfg)
	}
	if cur != nil && cur.Remembered {
		return onRemembered(ev)
	}
	if cur != nil && applied(cur, ev.Source) {
		if cur.LastSource == ev.Source {
			d := Decision{Repair: true, Verdict: VerdictReplay}
			if cur.LastEmitted {
				d.Emits = repairEmits(cur, ev.Confirmed, now, cfg)
			}
			return d
		}
		return Decision{Emits: Emits{Wakeups: effects(cur, cfg).Wakeups}, Verdict: VerdictReplay}
	}
	if cur != nil && movedBefore(cur, ev) { // a replay of the move (placement.go)
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
	case ev.Retry != nil:
		d = onRetry(cur, ev.Retry, now, cfg)
	default:
		return Decision{Verdict: VerdictStale}
	}
	if d.State == nil {
		return d
	}
	s := d.State
	var prev uint64
	if cur != nil {
		prev = cur.Version
	}
	s.Version = NextVersion(prev, ev.Epoch)
	s.UpdatedAt = now
	if ev.Source.Topic != "" {
		if s.Applied == nil {
			s.Applied = map[string]contract.Position{}
		}
		s.Applied[ev.Source.Topic] = ev.Source
	}
	if len(s.History) > contract.MaxHistory {
		s.History = append([]contract.Attempt(nil), s.History[len(s.History)-contract.MaxHistory:]...)
	}
	noteMoved(s, ev)
	shed(s)
	if d.Verdict != VerdictDuplicate { // a duplicate changes a counter, and emits nothing
		d.Emits = effects(s, cfg)
	}
	s.LastSource = ev.Source
	s.LastEmitted = !d.Emits.Empty()
	return d
}

// shed drops the payload of a final state: the request's content and the
// recipient's addresses, which nothing needs once the notification can
// never be sent again. What duplicate protection, the API and the reports
// need stays: the id, campaign, channel, status, history, versions,
// timestamps and applied positions, and of the request its channels,
// policy, windows, time zone, not_before and expires_at (the sink reads
// the policy's id and version; a shed state never blanks a column it
// wrote before).
//
// A failed state keeps its payload: an operator's Retry (onRetry) sends
// it again, and needs the address and the content. It loses it with the
// rest of the state after --state-retention (retire), or is shed when a
// late success makes it sent.
//
// The request is replaced, never written through: cur shares it.
func shed(s *contract.State) {
	if !s.Status.Final() || s.Status == contract.StatusFailed || !s.HasPayload() {
		return
	}
	r := *s.Request
	r.Content = nil
	r.Recipient = contract.Recipient{TZ: r.Recipient.TZ}
	s.Request = &r
}

// NextVersion is the version of a state changed by an owner of epoch
// epoch, whose previous version was prev: prev+1, raised to at least
// epoch<<32 + 1.
func NextVersion(prev uint64, epoch int32) uint64 {
	v := prev + 1
	if epoch > 0 {
		if floor := uint64(epoch)<<32 + 1; v < floor {
			v = floor
		}
	}
	return v
}

// repairEmits are the emits of a state written again (a repair): its
// effects, but a send command only when the changelog is not known to
// hold the state (confirmed false); otherwise a resend check instead (see
// Dispatch on replays).
func repairEmits(cur *contract.State, confirmed bool, now time.Time, cfg DispatchConfig) Emits {
	e := effects(cur, cfg)
	if confirmed && e.Send != nil {
		e.Send = nil
		e.Wakeups = append(e.Wakeups, resendCheck(cur, now, cfg))
	}
	return e
}

// resendCheck is the resend wake-up a replay makes instead of the send
// command of a sending state whose version the changelog holds: due when
// the command, if it was sent, has had the provider timeout and the
// margin to be answered.
func resendCheck(s *contract.State, now time.Time, cfg DispatchConfig) contract.Wakeup {
	return contract.Wakeup{ID: s.ID, Kind: contract.WakeupResend, Due: now.Add(cfg.ProviderTimeout + cfg.TimeoutMargin),
		Attempt: s.Attempts, Issue: s.Issue}
}

// replaysMaker reports whether ev is a replay of the record that made
// cur's current version, which Dispatch answers with a repair.
func replaysMaker(cur *contract.State, ev Event) bool {
	return cur != nil && applied(cur, ev.Source) && cur.LastSource == ev.Source
}

func applied(s *contract.State, p contract.Position) bool {
	a, ok := s.Applied[p.Topic]
	return ok && p.Topic != "" && a.Partition == p.Partition && p.Offset <= a.Offset
}

// clone copies s deeply enough for the transition to change it. Pointer
// fields (NextAttemptAt, SentAt, IssuedAt, Cutoff, TimeoutAt, Request) are
// shared and must be replaced, never written through.
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
	g := gate(s, now, cfg)
	switch {
	case g.expired:
		finish(s, contract.StatusExpired, "expired at "+s.Request.ExpiresAt.UTC().Format(time.RFC3339))
	case g.err != nil:
		finish(s, contract.StatusRejected, g.err.Error())
	case g.at.After(now):
		hold(s, g.status, g.reason, g.at)
	default:
		s.Status = contract.StatusSending
		s.HoldReason = ""
		s.NextAttemptAt = nil
		s.Attempts++
		s.ChannelAttempts++
		issue(s, now, cfg)
	}
}

// release is when a notification may next be sent (gate).
type release struct {
	// at is now when it may be sent at once, else when its hold ends,
	// with the hold's status and reason.
	at     time.Time
	status contract.Status
	reason contract.HoldReason
	// expired: expires_at has come. err: its windows cannot be read.
	expired bool
	err     error
}

// gate is the one check every command passes before it is issued, the
// first or again (advance, and a resend check, onWakeup): not after
// expires_at, not before not_before, not inside a blackout window of the
// recipient's zone or the global one. A command issued at now gets a
// cut-off before the next window starts (stamp), so no provider call for
// it can start inside one.
func gate(s *contract.State, now time.Time, cfg DispatchConfig) release {
	r := s.Request
	if r.ExpiresAt != nil && !now.Before(*r.ExpiresAt) {
		return release{expired: true}
	}
	g := release{at: now}
	if r.NotBefore != nil && r.NotBefore.After(g.at) {
		g.at, g.status, g.reason = *r.NotBefore, contract.StatusScheduled, contract.HoldSchedule
	}
	rel, err := schedule.Release(g.at, rules(r, cfg)...)
	if err != nil {
		return release{err: err}
	}
	if rel.After(g.at) {
		g.at, g.status, g.reason = rel, contract.StatusDeferred, contract.HoldBlackout
	}
	return g
}

// retake gives back the current attempt, which used nothing up (it was
// not attempted, or its outcome is unknown and it is issued again), and
// advances: the same attempt number is issued again at once, or after a
// hold, or the notification expires. Every command gets a new issue
// number (issue), so results and timeouts of an earlier command of the
// same attempt, and the sender's memory of answered commands, tell them
// apart, however many holds lie between.
func retake(s *contract.State, now time.Time, cfg DispatchConfig) {
	s.Attempts--
	s.ChannelAttempts--
	advance(s, now, cfg)
}

// issue records a new send command for the current attempt, issued at
// now: its cut-off (the earliest of now+SendTimeout, the start of the
// next blackout window that applies, and expires_at) and its send timeout
// (cut-off + ProviderTimeout + TimeoutMargin). See DispatchConfig.
func issue(s *contract.State, now time.Time, cfg DispatchConfig) {
	stamp(s, now, cfg)
	s.Issue = s.Commands
	s.Commands++
}

// stamp sets the timing of a command sent at now: its issue, cut-off and
// send timeout (see issue). A resend stamps the command it makes again,
// keeping its issue number.
func stamp(s *contract.State, now time.Time, cfg DispatchConfig) {
	cutoff := now.Add(cfg.SendTimeout)
	if e := s.Request.ExpiresAt; e != nil && e.Before(cutoff) {
		cutoff = *e
	}
	if start, ok := schedule.NextStart(now, cutoff, rules(s.Request, cfg)...); ok {
		cutoff = start
	}
	timeout := cutoff.Add(cfg.ProviderTimeout + cfg.TimeoutMargin)
	issued := now
	s.IssuedAt, s.Cutoff, s.TimeoutAt = &issued, &cutoff, &timeout
}

// callTimeout is how long a provider call for s's command may take, which
// the command carries to the sender (SendCommand.CallTimeout): the
// provider timeout, or less if the state's send timeout was stamped with
// a shorter one (a restart with a longer --provider-timeout must not let
// a call outlive the TimeoutAt already written).
func callTimeout(s *contract.State, cfg DispatchConfig) time.Duration {
	pt := cfg.ProviderTimeout
	if s.TimeoutAt != nil && s.Cutoff != nil {
		if d := s.TimeoutAt.Sub(*s.Cutoff) - cfg.TimeoutMargin; d > 0 && d < pt {
			pt = d
		}
	}
	return pt
}

// clearCommand forgets the command of a state that stops sending.
func clearCommand(s *contract.State) {
	s.IssuedAt, s.Cutoff, s.TimeoutAt = nil, nil, nil
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
	clearCommand(s)
}

func finish(s *contract.State, status contract.Status, why string) {
	s.Status = status
	s.HoldReason = ""
	s.NextAttemptAt = nil
	clearCommand(s)
	if why != "" {
		s.LastError = why
	}
}

// effects derives what the state s must publish: a send command while
// sending, a wake-up while held, nothing once final. Because the emits
// follow from the state alone, a replay can make them again.
//
// A sending state emits no timeout wake-up: the sender answers every
// command it takes (a result, not_attempted past the cut-off, unknown when
// its call timed out), so a per-send timer would come back stale almost
// every time and cost a tier record and a dispatcher pass per send. The
// rare command nobody answers (its record lost, a sender that never comes
// back) is timed out by the Sweeper, which publishes the send-timeout
// wake-up for a sending state past its TimeoutAt (sweep.go).
func effects(s *contract.State, cfg DispatchConfig) Emits {
	switch {
	case s.Status == contract.StatusSending:
		r := s.Request
		issued, cutoff := s.UpdatedAt, s.UpdatedAt.Add(cfg.SendTimeout)
		if s.IssuedAt != nil && s.Cutoff != nil {
			issued, cutoff = *s.IssuedAt, *s.Cutoff
		}
		return Emits{
			Send: &contract.SendCommand{
				ID:             s.ID,
				Campaign:       s.Campaign,
				Channel:        s.Channel,
				Attempt:        s.Attempts,
				Issue:          s.Issue,
				Address:        r.Recipient.Address(s.Channel),
				Content:        r.Content,
				IdempotencyKey: s.ID,
				RequestedAt:    s.FirstSeen,
				IssuedAt:       issued,
				Deadline:       issued.Add(cfg.SendTimeout),
				Cutoff:         cutoff,
				CallTimeout:    contract.Duration(callTimeout(s, cfg)),
			},
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
	current := cur.Status == contract.StatusSending && res.Attempt == cur.Attempts
	if res.Outcome == contract.OutcomeSuccess && !current {
		return lateSuccess(cur, res, now)
	}
	if !current || (res.Issue != cur.Issue && res.Outcome != contract.OutcomeSuccess) {
		// A failure answers only the issue the state waits for; a success
		// of any issue of the current attempt counts.
		return Decision{Verdict: VerdictStale}
	}
	s := clone(cur)
	at := res.At
	if at.IsZero() {
		at = now
	}
	s.History = append(s.History, historyEntry(res, at))
	if res.Outcome != contract.OutcomeNotAttempted && res.Outcome != contract.OutcomeUnknown {
		s.Unknowns = 0 // a definite answer: the next attempt starts afresh
	}
	switch res.Outcome {
	case contract.OutcomeSuccess:
		markSent(s, at)
		return Decision{State: s, Verdict: VerdictApplied}
	case contract.OutcomeNotAttempted:
		// The sender did not call the provider (the cut-off had passed):
		// nothing is used up, and the state as it is now decides.
		s.LastError = describe(res)
		retake(s, now, cfg)
		return Decision{State: s, Verdict: VerdictApplied}
	case contract.OutcomeThrottled:
		s.LastError = describe(res)
		s.ChannelAttempts-- // a 429 does not use up an attempt
		wait := res.RetryAfter.D()
		if wait <= 0 {
			wait = time.Second
		}
		return retryAt(s, now.Add(wait), contract.HoldRateLimit, now, cfg)
	case contract.OutcomeUnknown:
		return unknownOutcome(s, describe(res), now, cfg)
	case contract.OutcomeTransient:
		return transientFailure(s, describe(res), res.RetryAfter.D(), now, cfg)
	default: // permanent, or an outcome this version does not know
		s.LastError = describe(res)
		return nextChannel(s, now, cfg)
	}
}

func historyEntry(res *contract.SendResult, at time.Time) contract.Attempt {
	return contract.Attempt{Attempt: res.Attempt, Issue: res.Issue, Channel: res.Channel,
		Outcome: res.Outcome, Error: truncateError(res.Error), Code: res.Code, At: at,
		Provider: res.Provider, ProviderMessageID: res.ProviderMessageID}
}

func truncateError(e string) string {
	if len(e) <= contract.MaxErrorLength {
		return e
	}
	cut := contract.MaxErrorLength
	for cut > 0 && !utf8.RuneStart(e[cut]) {
		cut--
	}
	return e[:cut] + "…"
}

func markSent(s *contract.State, at time.Time) {
	s.Status = contract.StatusSent
	s.HoldReason, s.NextAttemptAt, s.LastError = "", nil, ""
	clearCommand(s)
	s.SentAt = &at
}

// lateSuccess applies a success that is not the answer to the command the
// state waits for: an earlier attempt's or issue's, or one whose call ran
// while the notification was canceled or expired. The provider delivered,
// so the notification is sent; a success for another attempt of a
// notification already sent is a double delivery, recorded and counted.
// The same success twice (a result published again) is stale.
func lateSuccess(cur *contract.State, res *contract.SendResult, now time.Time) Decision {
	for _, h := range cur.History {
		if h.Outcome == contract.OutcomeSuccess && h.Attempt == res.Attempt && h.Issue == res.Issue && h.Channel == res.Channel {
			return Decision{Verdict: VerdictStale}
		}
	}
	s := clone(cur)
	at := res.At
	if at.IsZero() {
		at = now
	}
	e := historyEntry(res, at)
	e.Late = true
	if cur.Status == contract.StatusSent {
		e.Double = true
		s.DoubleDeliveries++
		s.History = append(s.History, e)
		return Decision{State: s, Verdict: VerdictDoubleDelivery}
	}
	s.History = append(s.History, e)
	s.Channel = res.Channel
	markSent(s, at)
	return Decision{State: s, Verdict: VerdictLateSuccess}
}

func describe(res *contract.SendResult) string {
	msg := string(res.Outcome)
	if res.Code != 0 {
		msg += fmt.Sprintf(" (%d)", res.Code)
	}
	if res.Error != "" {
		msg += ": " + truncateError(res.Error)
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
	return retryBackoff(s, retryAfter, now, cfg)
}

func retryBackoff(s *contract.State, retryAfter time.Duration, now time.Time, cfg DispatchConfig) Decision {
	wait := schedule.Backoff(s.Request.Policy.Backoff, s.ChannelAttempts, s.ID)
	if retryAfter > wait {
		wait = retryAfter
	}
	return retryAt(s, now.Add(wait), contract.HoldBackoff, now, cfg)
}

// UnknownAtCutoff ends the last_error of a notification that expired while
// its last attempt's outcome was unknown (typically a call with no answer
// within the provider timeout, while expires_at passed): Herald cannot
// tell whether the provider delivered it.
const UnknownAtCutoff = "outcome unknown: the provider may have delivered it"

// unknownOutcome handles an attempt whose outcome is unknown: a send
// timeout with no result, or a result saying the provider may have
// delivered. It is resolved on the same channel with the same idempotency
// key: the attempt is issued again, up to contract.MaxReissues times,
// without using up a policy attempt. After that it counts as a failed
// attempt on the same channel; the notification moves to the next channel
// only when the policy opts in (fallback_on_unknown), and fails otherwise,
// so Herald never delivers on a second channel because of an attempt it
// cannot prove failed.
func unknownOutcome(s *contract.State, why string, now time.Time, cfg DispatchConfig) Decision {
	s.LastError = why
	if s.Unknowns < contract.MaxReissues {
		s.Unknowns++
		retake(s, now, cfg)
		if s.Status.Final() { // expired while the outcome was unknown
			s.LastError += "; " + why + ": " + UnknownAtCutoff
		}
		return Decision{State: s, Verdict: VerdictApplied}
	}
	p := s.Request.Policy
	s.Unknowns = 0 // the attempt counts as failed; the next one starts afresh
	switch {
	case p.FallbackOnUnknown:
		return transientFailure(s, why, 0, now, cfg)
	case s.ChannelAttempts < p.AttemptsPerChannel:
		return retryBackoff(s, 0, now, cfg)
	}
	finish(s, contract.StatusFailed, why+"; outcome unknown after "+fmt.Sprint(contract.MaxReissues)+
		" re-issues, and the policy does not fall back to another channel on an unknown outcome")
	return Decision{State: s, Verdict: VerdictApplied}
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
	if w.SeenVersion != 0 && w.SeenVersion < cur.Version {
		// The sweep read an older version from the changelog than this
		// owner holds: a write of this state may never have reached the
		// changelog, and every reader of it (the views, the sink,
		// Postgres, a later owner) would stay behind for good. The state
		// is written again, unchanged, with its emits (a resend check in
		// place of a command: the state went out with one), and the
		// wake-up itself is spent. If the changelog did hold it and only
		// the sweep's view lagged, the write is a harmless repeat.
		return Decision{Repair: true, Emits: repairEmits(cur, true, now, cfg), Verdict: VerdictHealed}
	}
	switch w.Kind {
	case contract.WakeupSendTimeout:
		if cur.Status != contract.StatusSending || cur.Attempts != w.Attempt || cur.Issue != w.Issue ||
			(cur.TimeoutAt != nil && !cur.TimeoutAt.Equal(w.Due)) {
			return Decision{Verdict: VerdictStale}
		}
		if now.Before(w.Due) {
			// Early: the attempt still has time. Only the wake-up goes
			// out again; the send command must not.
			return Decision{Emits: Emits{Wakeups: []contract.Wakeup{*w}}, Verdict: VerdictEarly}
		}
		s := clone(cur)
		s.History = append(s.History, contract.Attempt{Attempt: cur.Attempts, Issue: cur.Issue, Channel: cur.Channel,
			Outcome: contract.OutcomeUnknown, Error: "no result within the send timeout", At: now})
		return unknownOutcome(s, fmt.Sprintf("%s attempt %d: no result within the send timeout", cur.Channel, cur.Attempts), now, cfg)
	case contract.WakeupResend:
		if cur.Status != contract.StatusSending || cur.Attempts != w.Attempt || cur.Issue != w.Issue {
			return Decision{Verdict: VerdictStale} // the result came, or the state moved on
		}
		if now.Before(w.Due) {
			return Decision{Emits: Emits{Wakeups: []contract.Wakeup{*w}}, Verdict: VerdictEarly}
		}
		s := clone(cur)
		if g := gate(s, now, cfg); g.expired || g.err != nil || g.at.After(now) {
			// A blackout window has begun (or expires_at has come) since
			// the command was issued: it is not made again now, whatever
			// became of it. Its cut-off keeps the first copy from being
			// called from here on, so the attempt is given back and
			// issued afresh when the window ends, like any re-issue
			// (retake); a late success still makes the notification sent.
			s.LastError = fmt.Sprintf("%s attempt %d: no result by the resend check, which came inside a blackout window or after expires_at", cur.Channel, cur.Attempts)
			retake(s, now, cfg)
			return Decision{State: s, Verdict: VerdictApplied}
		}
		// Still no result for the command: make it again, with the same
		// attempt, issue and key, so that a sender that answered it knows
		// it; its timing is stamped afresh from now, with a cut-off before
		// the next window.
		stamp(s, now, cfg)
		return Decision{State: s, Verdict: VerdictApplied}
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

// onCancel cancels a notification whose provider call has not started: a
// held one, or a sending one whose command still waits in herald.send (the
// sender checks the state just before it calls, and skips a canceled
// one). A call that has already started cannot be taken back; if it
// delivers, its success makes the notification sent (lateSuccess).
func onCancel(cur *contract.State, c *contract.Cancel, now time.Time) Decision {
	if cur.Status.Final() {
		return Decision{Verdict: VerdictStale}
	}
	s := clone(cur)
	why := "canceled"
	if c.Reason != "" {
		why += ": " + c.Reason
	}
	if cur.Status == contract.StatusSending {
		why += fmt.Sprintf(" (while %s attempt %d was queued; a provider call already started cannot be taken back)", cur.Channel, cur.Attempts)
	}
	finish(s, contract.StatusCanceled, why)
	return Decision{State: s, Verdict: VerdictApplied}
}

// onRetry starts a new attempt series for a failed notification, on an
// operator's request: back to the first channel with the policy's full
// allowance, as if the request had just come. Attempt numbers go on from
// the last one, so results of the old series stay stale. The retry is
// recorded in the history (OutcomeRetry, attempt 0). Anything but a failed
// state, or a failure other than the one the operator saw, is stale: a sent
// notification is never sent again.
func onRetry(cur *contract.State, r *contract.Retry, now time.Time, cfg DispatchConfig) Decision {
	if cur.Status != contract.StatusFailed || cur.Attempts != r.AfterAttempts || cur.Request == nil ||
		len(cur.Request.Channels) == 0 {
		return Decision{Verdict: VerdictStale}
	}
	s := clone(cur)
	why := "retry requested"
	if r.Reason != "" {
		why += ": " + r.Reason
	}
	s.History = append(s.History, contract.Attempt{Channel: cur.Channel, Outcome: contract.OutcomeRetry, Error: truncateError(why), At: now})
	s.ChannelIndex, s.Channel, s.ChannelAttempts, s.Unknowns = 0, cur.Request.Channels[0], 0, 0
	s.Status = contract.StatusScheduled // not held: advance decides
	advance(s, now, cfg)
	return Decision{State: s, Verdict: VerdictApplied}
}

// onRetire applies the retention to a final state, on a retire wake-up
// from the sweep (sweep.go): a final state whose last change is older
// than StateRetention becomes its remembered record, and a final state or
// remembered record older than DedupRetention is deleted. The clock is
// the state's UpdatedAt, which the remembered record keeps: a duplicate
// request or a late success moves it on; the remembering does not.
//
// Anything else is stale: a state that is not final (a retry took a
// failed one back to work), or not yet old enough (the sweep's clock, or
// a change since it looked). A wake-up that saw an older version than
// this owner holds heals the changelog first, as every sweep wake-up does
// (onWakeup); and one that saw a record this owner no longer has (its
// deletion's tombstone did not reach the changelog) writes the tombstone
// again.
//
// The remembered record has no applied positions, so a replay of the
// wake-up that made it is stale rather than a repair: a lost write of the
// record is healed by the next retention pass, whose wake-up saw the
// older, whole state in the changelog.
func onRetire(cur *contract.State, w *contract.Wakeup, now time.Time, epoch int32, cfg DispatchConfig) Decision {
	if cur == nil {
		if w.SeenVersion != 0 {
			return Decision{Delete: true, Verdict: VerdictHealed}
		}
		return Decision{Verdict: VerdictStale}
	}
	if w.SeenVersion != 0 && w.SeenVersion < cur.Version {
		return Decision{Repair: true, Emits: repairEmits(cur, true, now, cfg), Verdict: VerdictHealed}
	}
	if !cur.Status.Final() {
		return Decision{Verdict: VerdictStale}
	}
	age := now.Sub(cur.UpdatedAt)
	switch {
	case age >= cfg.DedupRetention:
		return Decision{Delete: true, Verdict: VerdictDeleted}
	case age >= cfg.StateRetention && !cur.Remembered:
		return Decision{State: remembered(cur, epoch), Verdict: VerdictRemembered}
	}
	return Decision{Verdict: VerdictStale}
}

// remembered is the compact record that replaces the final state s after
// StateRetention: its id, status, last change and a new version, and
// nothing else (contract.State.Remembered).
func remembered(s *contract.State, epoch int32) *contract.State {
	return &contract.State{ID: s.ID, Status: s.Status, UpdatedAt: s.UpdatedAt,
		Version: NextVersion(s.Version, epoch), Remembered: true}
}

// onRemembered answers an event for an id that is only remembered: a
// request is a duplicate, and neither writes nor sends anything (a re-run
// of a month would otherwise write a record per id); everything else (a
// late result, a cancel, a retry, a wake-up) is stale: the notification
// ended StateRetention ago, and what it was is no longer stored.
func onRemembered(ev Event) Decision {
	if ev.Request != nil {
		return Decision{Verdict: VerdictDuplicate}
	}
	return Decision{Verdict: VerdictStale}
}

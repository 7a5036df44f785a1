package contract

import (
	"encoding/json"
	"time"
)

// SendCommand asks the sender to make one provider attempt. It is published
// to herald.send, keyed by the notification id, by the dispatcher only.
type SendCommand struct {
	ID       string  `json:"id"`
	Campaign string  `json:"campaign"`
	Channel  Channel `json:"channel"`
	// Attempt numbers the provider attempts of one notification across all
	// channels, from 1. A result names the attempt it answers.
	Attempt int `json:"attempt"`
	// Address is the recipient's address for Channel, and nothing else.
	Address string          `json:"address"`
	Content json.RawMessage `json:"content"`
	// IdempotencyKey is the same for every attempt of one notification, so
	// a provider that honours it never delivers twice.
	IdempotencyKey string `json:"idempotency_key"`
	// RequestedAt is when the dispatcher first saw the request; IssuedAt is
	// when this command was made. Both are for latency metrics.
	RequestedAt time.Time `json:"requested_at"`
	IssuedAt    time.Time `json:"issued_at"`
	// Deadline is IssuedAt plus the dispatcher's --send-timeout: the
	// latest a provider call for this command may start. Zero means none.
	Deadline time.Time `json:"deadline,omitzero"`
	// Cutoff is the earliest of Deadline, the start of the next blackout
	// window that applies to the recipient, and the request's expires_at.
	// The sender never starts a provider call at or after Cutoff, and a
	// call whose request has not reached the provider by Cutoff is
	// abandoned; either way the command is answered OutcomeNotAttempted.
	// A request that reached the provider before Cutoff is answered
	// within the provider timeout, whenever that falls: cutting it would
	// not take the delivery back. Zero means Deadline alone.
	Cutoff time.Time `json:"cutoff,omitzero"`
	// Issue numbers the commands of one notification: 0 for the first, one
	// more for each command after it (a new attempt, or the same attempt
	// issued again because its outcome stayed unknown or it was not
	// attempted). A result echoes it.
	Issue int `json:"issue,omitempty"`
	// CallTimeout (v1.8) is the dispatcher's --provider-timeout: how long
	// the dispatcher assumes a provider call may take after Cutoff, so
	// that its send timeout (Cutoff + CallTimeout + --send-timeout-margin)
	// fires only when no call for the command can still run. The sender
	// bounds each call for this command by it, whatever its own
	// --provider-timeout, so two processes configured apart still keep the
	// rule. Zero (a command from before v1.8) leaves the sender's own.
	CallTimeout Duration `json:"call_timeout,omitempty"`
}

// DefaultProviderTimeout is the default --provider-timeout: how long one
// provider call may take, which the sender applies and the dispatcher's
// send timeout assumes (SendCommand.CallTimeout). Defined once, here,
// where both stages read it.
const DefaultProviderTimeout = 10 * time.Second

// Until returns the instant from which no request for c may reach a
// provider: Cutoff, or Deadline when there is no Cutoff, or zero for
// neither.
func (c *SendCommand) Until() time.Time {
	if !c.Cutoff.IsZero() {
		return c.Cutoff
	}
	return c.Deadline
}

// Outcome classifies a provider attempt.
type Outcome string

const (
	// OutcomeSuccess: the provider accepted the notification.
	OutcomeSuccess Outcome = "success"
	// OutcomeTransient: worth retrying on the same channel (timeouts,
	// connection errors, 408, 5xx).
	OutcomeTransient Outcome = "transient"
	// OutcomePermanent: retrying cannot help (an invalid address, another
	// 4xx); the next channel takes over at once.
	OutcomePermanent Outcome = "permanent"
	// OutcomeThrottled: the provider asked us to slow down (429). It is
	// retried after RetryAfter and does not use up an attempt.
	OutcomeThrottled Outcome = "throttled"
	// OutcomeUnknown: the provider may or may not have delivered (a
	// timeout or a connection cut after the request was written; in the
	// history also a send timeout with no result). The same attempt is
	// issued again with the same idempotency key, up to MaxReissues times,
	// before it counts as a failed attempt; it never moves the
	// notification to another channel unless the policy opts in
	// (Policy.FallbackOnUnknown).
	OutcomeUnknown Outcome = "unknown"
	// OutcomeNotAttempted: the provider was not called because the
	// command's cut-off had passed (a blackout window began, the request
	// expired, or the deadline passed while the command queued), or came
	// before the request reached the provider. No attempt is used up; the
	// dispatcher decides again.
	OutcomeNotAttempted Outcome = "not_attempted"
)

// MaxReissues bounds how often one attempt whose outcome is unknown is
// issued again, with the same idempotency key, before it counts as a
// failed attempt.
const MaxReissues = 3

// MaxErrorLength bounds the provider error text a result and the history
// keep, so that a state always fits the changelog (see MaxRequestBytes).
const MaxErrorLength = 512

// SendResult is the sender's answer to one SendCommand, published to
// herald.results keyed by the notification id.
type SendResult struct {
	ID      string `json:"id"`
	Attempt int    `json:"attempt"`
	// Issue echoes the command's Issue.
	Issue   int     `json:"issue,omitempty"`
	Channel Channel `json:"channel"`
	Outcome Outcome `json:"outcome"`
	Error   string  `json:"error,omitempty"`
	// Code is the provider's response code (an HTTP status or SMTP code),
	// 0 when no response came.
	Code       int      `json:"code,omitempty"`
	RetryAfter Duration `json:"retry_after,omitempty"`
	// At is when the provider answered.
	At time.Time `json:"at"`
	// Latency is how long the provider call took.
	Latency Duration `json:"latency,omitempty"`
	// Provider names the provider that answered, where the channel has a
	// failover chain of providers or a template provider (its name:);
	// empty for a channel's only webhook, SMTP or mock provider.
	Provider string `json:"provider,omitempty"`
	// ProviderMessageID is the provider's own id of the message it
	// accepted, where its answer carries one (a template's
	// answer.message_id).
	ProviderMessageID string `json:"provider_message_id,omitempty"`
}

// WakeupKind says why a wake-up was scheduled.
type WakeupKind string

const (
	// WakeupHold releases a scheduled, deferred or retrying notification.
	WakeupHold WakeupKind = "hold"
	// WakeupSendTimeout fires when a sending notification has had no result
	// for the send timeout.
	WakeupSendTimeout WakeupKind = "send_timeout"
	// WakeupResend makes a sending notification's current command again
	// if, when it is due, the notification still waits for that command's
	// result: the second look a replay takes instead of sending a command
	// that may have been answered already (dispatcher, Dispatch on
	// replays). Attempt and Issue name the command.
	WakeupResend WakeupKind = "resend"
	// WakeupRetire asks the owner to apply the retention to a final state:
	// the dispatcher's sweep publishes it for a final state past
	// --state-retention (it becomes a remembered record, State.Remembered)
	// and for a remembered one past --dedup-retention (it is deleted). The
	// dispatcher decides from the state and its own clock; Due is when
	// the sweep found it due.
	WakeupRetire WakeupKind = "retire"
)

// Wakeup is a message the dispatcher sends to itself through the delay
// topics. It is only acted on if the state still matches it: a hold wake-up
// whose Due differs from the state's next_attempt_at, or a send-timeout for
// an attempt that already has its result, is stale and ignored.
type Wakeup struct {
	ID      string     `json:"id"`
	Kind    WakeupKind `json:"kind"`
	Due     time.Time  `json:"due"`
	Attempt int        `json:"attempt,omitempty"`
	// Issue is the command issue a send timeout or a resend belongs to.
	Issue int `json:"issue,omitempty"`
	// SeenVersion is the version of the state the sweep read from the
	// changelog when it made this wake-up (0: made by the dispatcher). A
	// dispatcher whose own state is newer knows the changelog is behind
	// it, and writes its state again (Dispatch, onWakeup).
	SeenVersion uint64 `json:"seen_version,omitempty"`
}

// Cancel asks the dispatcher to cancel a notification whose provider call
// has not started: a held one, or a sending one whose command still waits
// in herald.send (the sender checks the state just before it calls). A
// call already started cannot be taken back: if it delivers, the
// notification ends sent. Published to herald.control keyed by id.
type Cancel struct {
	ID          string    `json:"id"`
	Reason      string    `json:"reason,omitempty"`
	RequestedAt time.Time `json:"requested_at"`
}

// Retry asks the dispatcher to start a new attempt series for a failed
// notification: an operator's explicit action (POST
// /v1/campaigns/{c}/retry), published to herald.control keyed by id beside
// Cancel, and told apart by Kind. Only a notification that is failed and
// still has AfterAttempts attempts is retried: a Retry published twice for
// the same failure, or one that comes after a new series has begun, is
// stale. A sent notification is never retried.
type Retry struct {
	// Kind is always ControlRetry.
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// AfterAttempts is the state's Attempts the operator saw failed.
	AfterAttempts int       `json:"after_attempts"`
	Reason        string    `json:"reason,omitempty"`
	RequestedAt   time.Time `json:"requested_at"`
}

// ControlRetry is the Kind of a Retry on herald.control. A control record
// without a kind is a Cancel.
const ControlRetry = "retry"

// OutcomeRetry marks an operator's retry in a state's History: not a
// provider attempt (its Attempt is 0), the line between two attempt series.
const OutcomeRetry Outcome = "retry"

package contract

import "time"

// Status is where a notification stands.
type Status string

// Non-final statuses.
const (
	StatusScheduled Status = "scheduled" // waiting for not_before
	StatusDeferred  Status = "deferred"  // waiting for a blackout window to end
	StatusSending   Status = "sending"   // a send command is out, no result yet
	StatusRetrying  Status = "retrying"  // waiting for the next attempt's backoff
)

// Final statuses. A notification in one of these never changes status
// again, with one exception: a provider's success is never thrown away, so
// a success that arrives late (for an attempt the state had moved past, or
// after a cancel or expiry while its call ran) makes the notification sent;
// and an operator's Retry (records.go) takes a failed one back to work.
const (
	StatusSent     Status = "sent"
	StatusFailed   Status = "failed"
	StatusExpired  Status = "expired"
	StatusRejected Status = "rejected"
	StatusCanceled Status = "canceled"
)

// statuses lists every status, non-final first.
var statuses = [...]Status{StatusScheduled, StatusDeferred, StatusSending, StatusRetrying,
	StatusSent, StatusFailed, StatusExpired, StatusRejected, StatusCanceled}

// Statuses lists every status, non-final first (a fresh slice each call).
func Statuses() []Status { return append([]Status(nil), statuses[:]...) }

// Final reports whether s is a final status.
func (s Status) Final() bool {
	switch s {
	case StatusSent, StatusFailed, StatusExpired, StatusRejected, StatusCanceled:
		return true
	}
	return false
}

// Held reports whether s waits for a wake-up.
func (s Status) Held() bool {
	return s == StatusScheduled || s == StatusDeferred || s == StatusRetrying
}

// HoldReason says why a held notification waits.
type HoldReason string

const (
	HoldSchedule  HoldReason = "schedule"   // not_before is in the future
	HoldBlackout  HoldReason = "blackout"   // inside a blackout window
	HoldBackoff   HoldReason = "backoff"    // retry backoff after a transient failure
	HoldRateLimit HoldReason = "rate_limit" // the provider asked us to slow down
)

// State is the dispatcher's record of one notification: the value of the
// herald-dispatcher group table, keyed by notification id. Every change
// writes the whole state to the table's changelog with Version one higher,
// so a reader (the sink, a view) can always keep the newest.
//
// Encoding: EncodeState writes it (the binary encoding of
// internal/pb/herald.proto, after the byte FormatProto), StateCodec is the
// table's Goka codec, and DecodeState also reads the JSON of earlier
// releases (these json tags). Nobody else encodes or decodes a state.
// Other readers depend on parts of the encoding, through the light
// decoders beside it (statecodec.go):
//   - every reader of the changelog (the dispatcher's recovery, every view,
//     gokax.VersionedUpdate) reads only Version, through StateVersion;
//   - the held gauge's scan of the table (tableview.StateView.Scan) reads only
//     Status and HoldReason, through DecodeSummary;
//   - the sender's stale check (tableview.StateView.Progress) and the
//     dispatcher's sweep read ID, Status, HoldReason, Attempts, Issue,
//     Commands, NextAttemptAt, TimeoutAt and Version, through
//     DecodeProgress;
//   - the dispatcher's retention pass (dispatcher.Sweeper) reads ID,
//     Status, UpdatedAt, Version and Remembered of final states, through
//     DecodeRetention, which skips the other fields by their length;
//   - the sink, the status feed and the API decode the whole state
//     (DecodeState), and the sink keeps the highest Version per id.
//
// The light decoders need these fields to be the first of the protobuf
// State, written in field-number order, so that they stop reading after
// them (TestStateFieldOrder). For the JSON of earlier releases,
// DecodeSummary's fast path needs "status" and "hold_reason" to come
// before "version" in this declaration order, with nothing nested before
// "version": do not reorder these fields.
// TestLightDecodersAgreeWithDecodeState fails if a light decoder and the
// full decode ever disagree, in either encoding.
type State struct {
	ID       string `json:"id"`
	Campaign string `json:"campaign"`
	Status   Status `json:"status"`
	// Channel is the channel in use (or the one that succeeded, once sent);
	// ChannelIndex is its position in Request.Channels.
	Channel      Channel `json:"channel"`
	ChannelIndex int     `json:"channel_index"`
	// Attempts counts the provider attempts made, on all channels. It is
	// what was done, not the policy: the policy's version is
	// Request.Policy.Version.
	Attempts int `json:"attempts"`
	// ChannelAttempts counts the attempts on the current channel that used
	// up part of policy.attempts_per_channel (throttled ones do not).
	ChannelAttempts int `json:"channel_attempts"`
	// Duplicates counts requests that arrived again with this id.
	Duplicates    int        `json:"duplicates"`
	FirstSeen     time.Time  `json:"first_seen"`
	UpdatedAt     time.Time  `json:"updated_at"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	HoldReason    HoldReason `json:"hold_reason,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	SentAt        *time.Time `json:"sent_at,omitempty"`
	// Version grows with every change of this state, and is unique across
	// owners: its high 32 bits are at least the owner epoch (the consumer
	// group generation that assigned the partition to the writer), so a
	// state written by a later owner always has a higher version than any
	// written by an earlier one, and a zombie writer that lost its
	// partition cannot overwrite a newer owner's state (readers keep the
	// higher version: gokax.VersionedUpdate and the sink's upsert).
	Version uint64 `json:"version"`
	// IssuedAt, Cutoff and TimeoutAt describe the send command out while
	// sending (nil otherwise): when it was issued, the instant no provider
	// call for it may run past (SendCommand.Cutoff), and when its send
	// timeout fires (Cutoff plus the provider timeout plus a margin, so it
	// never overtakes a running call).
	IssuedAt  *time.Time `json:"issued_at,omitempty"`
	Cutoff    *time.Time `json:"cutoff,omitempty"`
	TimeoutAt *time.Time `json:"timeout_at,omitempty"`
	// Issue is the number of the current send command (SendCommand.Issue):
	// Commands counts the commands issued for the notification, and each
	// gets the next number, so no two commands of one notification share
	// (attempt, issue), even when an attempt is issued again after a hold.
	// Unknowns counts the current attempt's commands that ended with an
	// unknown outcome (at most MaxReissues re-issues follow).
	Issue    int `json:"issue,omitempty"`
	Commands int `json:"commands,omitempty"`
	Unknowns int `json:"unknowns,omitempty"`
	// DoubleDeliveries counts successes beyond the first: a provider that
	// delivered again for another attempt. Zero unless something went
	// wrong; the history has the details.
	DoubleDeliveries int `json:"double_deliveries,omitempty"`
	// History has one entry per provider attempt that has a result, and
	// one per send timeout. It keeps at most MaxHistory entries (the
	// oldest go first).
	History []Attempt `json:"history,omitempty"`
	// Request is the accepted request, kept for later attempts. Once the
	// notification is final (but failed) its content and the recipient's
	// addresses are dropped (HasPayload).
	Request *Request `json:"request,omitempty"`

	// Applied records, per input topic, the partition and offset of the
	// newest record applied to this state. A record at or below it is a
	// replay after a crash, not a new event.
	Applied map[string]Position `json:"applied,omitempty"`
	// LastSource is the record that produced this version, and LastEmitted
	// says whether that transition emitted anything. When the same record
	// comes again (a crash between the changelog write and the emit), the
	// dispatcher emits the same thing again instead of dropping it.
	LastSource  Position `json:"last_source"`
	LastEmitted bool     `json:"last_emitted,omitempty"`
	// Moved records, per origin topic and partition ("herald.requests/3"),
	// the newest origin offset of a record that reached this state through
	// the repartition topic. A moved record at or below it is a replay of
	// the move, not a new event.
	Moved map[string]int64 `json:"moved,omitempty"`
	// Remembered marks the compact record that replaces a final state
	// after the dispatcher's --state-retention: only ID, Status, UpdatedAt
	// (when the final state last changed) and Version are set. It is kept
	// so that a request with this id is still a duplicate, until
	// --dedup-retention after UpdatedAt, when it is deleted (a tombstone).
	// Readers that keep what a state said (the sink, the status feed) skip
	// it: it removes what the state held, it reports no change.
	Remembered bool `json:"remembered,omitempty"`
}

// HasPayload reports whether s holds a payload: the request's content or
// a recipient address. The dispatcher drops both once a notification is
// final (sent, canceled, expired, rejected; a failed one keeps them for
// an operator's retry until its retention ends), so a false answer for a
// final state means they were removed, not that they never existed.
func (s *State) HasPayload() bool {
	r := s.Request
	return r != nil && (len(r.Content) > 0 || r.Recipient.Email != "" || r.Recipient.Phone != "" || r.Recipient.PushToken != "")
}

// MaxHistory bounds State.History, so that a state always fits the
// changelog's max.message.bytes (see MaxRequestBytes).
const MaxHistory = 64

// Position is a record's place in Kafka.
type Position struct {
	Topic     string `json:"topic,omitempty"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// Attempt is one provider attempt and its result.
type Attempt struct {
	Attempt int       `json:"attempt"`
	Channel Channel   `json:"channel"`
	Outcome Outcome   `json:"outcome"`
	Error   string    `json:"error,omitempty"`
	Code    int       `json:"code,omitempty"`
	At      time.Time `json:"at"`
	// Issue is the command issue the entry answers.
	Issue int `json:"issue,omitempty"`
	// Late marks a success for an attempt the state had moved past; Double
	// marks one that delivered again after the notification was sent.
	Late   bool `json:"late,omitempty"`
	Double bool `json:"double,omitempty"`
	// Provider names the provider of a failover chain or a template that
	// answered, and ProviderMessageID its id for the message (empty when
	// the channel has one plain provider, or it gave none).
	Provider          string `json:"provider,omitempty"`
	ProviderMessageID string `json:"provider_message_id,omitempty"`
}

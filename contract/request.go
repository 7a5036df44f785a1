// Package contract owns Herald's event contract, version 1: the JSON records
// that producers publish to herald.requests, the records Herald passes between
// its own stages (send commands, send results, wake-ups, cancellations), the
// dispatcher's state as it is written to the group table's changelog, and the
// dead-letter record. docs/events.md is the prose form of this package; the
// two change together, and a change that breaks a producer is a new schema
// version, never an edit of v1.
//
// It owns every encoder, decoder and masker of them, and nothing outside it
// reads or writes their bytes: requests are JSON (Decode); the state
// (statecodec.go, with the table's Goka codec StateCodec) and Herald's own
// records (recordcodec.go) are written in a binary encoding made for the
// hot path (wire.go, internal/pb), and read in it or in the JSON of earlier
// releases; addresses are masked by mask.go.
//
// Decoding is tolerant of unknown fields, so that producers can move ahead of
// the dispatcher, and strict about everything the dispatcher relies on: every
// problem is reported once, naming its field.
package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// SchemaV1 is the schema name every v1 dispatch request carries.
const SchemaV1 = "herald.dispatch.v1"

// Channel names a delivery channel.
type Channel string

// The channels Herald knows. Each needs its own address in Recipient.
const (
	ChannelEmail Channel = "email"
	ChannelSMS   Channel = "sms"
	ChannelPush  Channel = "push"
)

// channels lists the known channels in a stable order.
var channels = [...]Channel{ChannelEmail, ChannelSMS, ChannelPush}

// Channels lists the known channels in a stable order (a fresh slice each
// call).
func Channels() []Channel { return append([]Channel(nil), channels[:]...) }

// Valid reports whether c is a known channel.
func (c Channel) Valid() bool {
	switch c {
	case ChannelEmail, ChannelSMS, ChannelPush:
		return true
	}
	return false
}

// Request is a DispatchRequest: one notification to deliver. Its Kafka key
// must equal ID.
type Request struct {
	Schema    string          `json:"schema"`
	ID        string          `json:"id"`
	Campaign  string          `json:"campaign"`
	Recipient Recipient       `json:"recipient"`
	Channels  []Channel       `json:"channels"`
	Content   json.RawMessage `json:"content"`
	Policy    Policy          `json:"policy"`
	Blackout  []Window        `json:"blackout,omitempty"`
	NotBefore *time.Time      `json:"not_before,omitempty"`
	ExpiresAt *time.Time      `json:"expires_at,omitempty"`
}

// Recipient holds the addresses of one person, and the time zone their
// blackout windows are read in.
type Recipient struct {
	Email     string `json:"email,omitempty"`
	Phone     string `json:"phone,omitempty"`
	PushToken string `json:"push_token,omitempty"`
	// TZ is an IANA zone name such as "Asia/Seoul". Empty means the
	// dispatcher's configured default zone.
	TZ string `json:"tz,omitempty"`
}

// Address returns the recipient's address for channel c, or "".
func (r Recipient) Address(c Channel) string {
	switch c {
	case ChannelEmail:
		return r.Email
	case ChannelSMS:
		return r.Phone
	case ChannelPush:
		return r.PushToken
	}
	return ""
}

// Policy is the retry policy carried in the event. Herald never looks a
// policy up: what is here is what applies.
type Policy struct {
	ID      string `json:"id,omitempty"`
	Version int    `json:"version,omitempty"`
	// AttemptsPerChannel is how many provider attempts each channel gets
	// before the next channel takes over. Default 3.
	AttemptsPerChannel int     `json:"attempts_per_channel,omitempty"`
	Backoff            Backoff `json:"backoff"`
	// FallbackOnUnknown lets an attempt whose outcome stayed unknown (after
	// MaxReissues re-issues with the same idempotency key) count as a
	// failure that can move the notification to the next channel. Off by
	// default: Herald then never delivers on a second channel because of
	// an attempt it cannot prove failed, and fails the notification
	// instead. Turning it on trades a possible double delivery (on two
	// channels) for a better chance of delivery.
	FallbackOnUnknown bool `json:"fallback_on_unknown,omitempty"`
}

// Backoff is an exponential backoff: the n-th retry on a channel waits
// Initial * Multiplier^(n-1), capped at Max, with jitter.
type Backoff struct {
	Initial    Duration `json:"initial,omitempty"`
	Multiplier float64  `json:"multiplier,omitempty"`
	Max        Duration `json:"max,omitempty"`
}

// Policy defaults, applied by Decode to fields the producer left out.
const (
	DefaultAttemptsPerChannel = 3
	DefaultBackoffInitial     = time.Second
	DefaultBackoffMultiplier  = 2.0
	DefaultBackoffMax         = 10 * time.Minute
)

// Duration is a time.Duration written as a Go duration string ("1s", "10m").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string such as "1.5s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"1s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q", s)
	}
	*d = Duration(v)
	return nil
}

// Window is a blackout window in the recipient's local time, from From up to
// (not including) To. A window whose To is earlier than its From crosses
// midnight: {"from":"22:00","to":"06:00"}.
type Window struct {
	From Clock `json:"from"`
	To   Clock `json:"to"`
}

// String returns the window as "HH:MM-HH:MM".
func (w Window) String() string { return w.From.String() + "-" + w.To.String() }

// ParseWindow reads "HH:MM-HH:MM".
func ParseWindow(s string) (Window, error) {
	from, to, ok := strings.Cut(s, "-")
	if !ok {
		return Window{}, fmt.Errorf("window %q: want HH:MM-HH:MM", s)
	}
	var w Window
	var err error
	if w.From, err = ParseClock(from); err != nil {
		return Window{}, fmt.Errorf("window %q: %w", s, err)
	}
	if w.To, err = ParseClock(to); err != nil {
		return Window{}, fmt.Errorf("window %q: %w", s, err)
	}
	if w.From == w.To {
		return Window{}, fmt.Errorf("window %q: from and to are equal", s)
	}
	return w, nil
}

// Clock is a local wall-clock time of day, in minutes after midnight.
type Clock int

// ParseClock reads "HH:MM" (00:00 to 23:59; 24:00 is accepted as a window's
// end and means midnight).
func ParseClock(s string) (Clock, error) {
	if len(s) != 5 || s[2] != ':' || !digits(s[:2]) || !digits(s[3:]) {
		return 0, fmt.Errorf("time of day %q: want HH:MM", s)
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if h == 24 && m == 0 {
		return 0, nil
	}
	if h < 0 || h > 23 || m < 0 || m > 59 {
		return 0, fmt.Errorf("time of day %q: out of range", s)
	}
	return Clock(h*60 + m), nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Hour and Minute split the clock.
func (c Clock) Hour() int   { return int(c) / 60 }
func (c Clock) Minute() int { return int(c) % 60 }

// String returns "HH:MM".
func (c Clock) String() string { return fmt.Sprintf("%02d:%02d", c.Hour(), c.Minute()) }

// MarshalJSON writes "HH:MM".
func (c Clock) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// UnmarshalJSON reads "HH:MM".
func (c *Clock) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a time of day such as \"22:00\"")
	}
	v, err := ParseClock(s)
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// UnmarshalJSON reads {"from":"HH:MM","to":"HH:MM"}; both are required, as
// a missing end is a mistake, not midnight.
func (w *Window) UnmarshalJSON(b []byte) error {
	var v struct {
		From *Clock `json:"from"`
		To   *Clock `json:"to"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v.From == nil || v.To == nil {
		return errors.New(`window: want both "from" and "to"`)
	}
	w.From, w.To = *v.From, *v.To
	return nil
}

// FieldError is one problem with one field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e FieldError) String() string { return e.Field + ": " + e.Message }

// ValidationError lists every problem found in a request, one per field.
type ValidationError struct {
	Problems []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrKeyMismatch) true when one of the problems is
// the Kafka key differing from the id.
func (e *ValidationError) Is(target error) bool {
	if target != ErrKeyMismatch {
		return false
	}
	for _, p := range e.Problems {
		if p.Field == "key" {
			return true
		}
	}
	return false
}

// ErrMalformed wraps errors for records that are not a JSON object at all.
var ErrMalformed = errors.New("malformed record")

// ErrKeyMismatch is reported (inside a ValidationError) when the Kafka key
// differs from the request's id.
var ErrKeyMismatch = errors.New("key differs from id")

// KeyProblem is the problem (field "key", so that the ValidationError is
// ErrKeyMismatch) of a record whose Kafka key is not its id, or nil when
// they agree: the one key-equals-id check of every reader of Herald's
// records (requests, send commands, results, wake-ups, controls).
func KeyProblem(key []byte, id string) *FieldError {
	if string(key) == id {
		return nil
	}
	return &FieldError{Field: "key", Message: fmt.Sprintf("Kafka key %q differs from id %q", truncate(string(key), 64), truncate(id, 64))}
}

// ErrTooLarge is reported for a request larger than MaxRequestBytes.
var ErrTooLarge = errors.New("request too large")

// MaxRequestBytes is the largest request Herald accepts, in bytes of JSON.
// The dispatcher keeps the request in its state, with at most MaxHistory
// history entries of at most MaxErrorLength bytes of error each, so every
// state stays well below the 1 MiB that Kafka's default
// max.message.bytes, and Herald's producers, allow for the changelog. A
// larger request is refused at intake (the DLQ, reason too_large) and by
// the API (413), never retried.
const MaxRequestBytes = 256 << 10

// Reason codes used in dead letters and metrics.
const (
	ReasonMalformed   = "malformed"
	ReasonInvalid     = "invalid"
	ReasonKeyMismatch = "key_mismatch"
	ReasonTooLarge    = "too_large"
	// ReasonUnknownID: a result, wake-up or cancel for an id whose state
	// did not arrive within the dispatcher's --park-for.
	ReasonUnknownID = "unknown_id"
)

// Reason classifies a Decode error as a short code for the DLQ and metrics.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrTooLarge):
		return ReasonTooLarge
	case errors.Is(err, ErrMalformed):
		return ReasonMalformed
	case errors.Is(err, ErrKeyMismatch):
		return ReasonKeyMismatch
	}
	return ReasonInvalid
}

// MaxIDLength bounds ids, which are Kafka keys and primary keys.
const MaxIDLength = 256

// Decode reads a dispatch request from a Kafka record's key and value,
// applies the policy defaults and validates it. key may be nil when the
// caller has no Kafka key (the HTTP API), in which case it is not compared.
//
// The error is either ErrMalformed (wrapped with the JSON error) or a
// *ValidationError listing every problem.
func Decode(key, value []byte) (*Request, error) {
	if len(value) > MaxRequestBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d (MaxRequestBytes)", ErrTooLarge, len(value), MaxRequestBytes)
	}
	value = bytes.TrimSpace(value)
	if len(value) == 0 {
		return nil, fmt.Errorf("%w: empty, want a JSON object", ErrMalformed)
	}
	if value[0] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object: starts with %q", ErrMalformed, validUTF8Prefix(string(value), 16))
	}
	// Fast path: a valid request, read in one pass. Anything wrong with it
	// is read again field by field, which names every problem.
	var r Request
	if json.Unmarshal(value, &r) == nil {
		r.ApplyDefaults()
		if r.Validate(key) == nil {
			if len(r.Blackout) == 0 {
				r.Blackout = nil
			}
			return &r, nil
		}
	}
	return decodeFields(key, value)
}

// ApplyDefaults fills the policy fields the producer left out.
func (r *Request) ApplyDefaults() {
	if r.Policy.AttemptsPerChannel == 0 {
		r.Policy.AttemptsPerChannel = DefaultAttemptsPerChannel
	}
	if r.Policy.Backoff.Initial == 0 {
		r.Policy.Backoff.Initial = Duration(DefaultBackoffInitial)
	}
	if r.Policy.Backoff.Multiplier == 0 {
		r.Policy.Backoff.Multiplier = DefaultBackoffMultiplier
	}
	if r.Policy.Backoff.Max == 0 {
		r.Policy.Backoff.Max = Duration(DefaultBackoffMax)
	}
}

// Validate checks r against contract v1 and returns a *ValidationError
// naming every problem, or nil. When key is not nil it must equal r.ID.
// Problems are listed in the order of the fields below.
func (r *Request) Validate(key []byte) error {
	var ps fieldErrors
	r.validateNames(&ps, key)
	r.validateChannels(&ps)
	r.validateRecipient(&ps)
	r.validatePolicy(&ps)
	r.validateTimes(&ps)
	if len(ps) > 0 {
		return &ValidationError{Problems: ps}
	}
	return nil
}

// fieldErrors collects the problems Validate finds.
type fieldErrors []FieldError

func (ps *fieldErrors) add(field, format string, args ...any) {
	*ps = append(*ps, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// validateNames checks the schema, the id (and that it is the key), the
// campaign and the policy's id.
func (r *Request) validateNames(ps *fieldErrors, key []byte) {
	switch r.Schema {
	case SchemaV1:
	case "":
		ps.add("schema", "required: %q", SchemaV1)
	default:
		ps.add("schema", "want %q, got %q", SchemaV1, truncate(r.Schema, 64))
	}
	switch {
	case r.ID == "":
		ps.add("id", "required")
	case len(r.ID) > MaxIDLength:
		ps.add("id", "longer than %d bytes", MaxIDLength)
	case ControlChar(r.ID) >= 0:
		ps.add("id", "%s", controlMessage(r.ID))
	case key != nil && KeyProblem(key, r.ID) != nil:
		*ps = append(*ps, *KeyProblem(key, r.ID))
	}
	switch {
	case r.Campaign == "":
		ps.add("campaign", "required")
	case ControlChar(r.Campaign) >= 0:
		ps.add("campaign", "%s", controlMessage(r.Campaign))
	}
	if ControlChar(r.Policy.ID) >= 0 {
		ps.add("policy.id", "%s", controlMessage(r.Policy.ID))
	}
}

// validateChannels checks that the channels are known, listed once each,
// and each has its address.
func (r *Request) validateChannels(ps *fieldErrors) {
	if len(r.Channels) == 0 {
		ps.add("channels", "must list at least one channel")
	}
	seen := map[Channel]bool{}
	for i, c := range r.Channels {
		field := fmt.Sprintf("channels[%d]", i)
		switch {
		case !c.Valid():
			ps.add(field, "unknown channel %q (want email, sms or push)", truncate(string(c), 32))
		case seen[c]:
			ps.add(field, "channel %q listed twice", c)
		case r.Recipient.Address(c) == "":
			ps.add("recipient."+addressField(c), "required by channel %q", c)
		}
		seen[c] = true
	}
}

// validateRecipient checks the recipient's email and time zone, and the
// content.
func (r *Request) validateRecipient(ps *fieldErrors) {
	if r.Recipient.Email != "" && !strings.Contains(r.Recipient.Email, "@") {
		ps.add("recipient.email", "not an email address")
	}
	if tz := r.Recipient.TZ; tz != "" {
		// "Local" would be whatever zone the dispatcher's machine is in.
		if _, err := LoadLocation(tz); err != nil || tz == "Local" {
			ps.add("recipient.tz", "unknown time zone %q (want an IANA name such as \"Asia/Seoul\")", truncate(tz, 64))
		}
	}
	switch c := bytes.TrimSpace(r.Content); {
	case len(c) == 0:
		ps.add("content", "required: a JSON object for the provider")
	case c[0] != '{':
		ps.add("content", "must be a JSON object, got %s", describeJSON(c))
	}
}

// validatePolicy checks the retry policy's bounds.
func (r *Request) validatePolicy(ps *fieldErrors) {
	p := r.Policy
	if p.AttemptsPerChannel < 1 || p.AttemptsPerChannel > 100 {
		ps.add("policy.attempts_per_channel", "must be between 1 and 100, got %d", p.AttemptsPerChannel)
	}
	if p.Version < 0 {
		ps.add("policy.version", "must not be negative")
	}
	if p.Backoff.Initial.D() <= 0 {
		ps.add("policy.backoff.initial", "must be positive")
	}
	if p.Backoff.Multiplier < 1 || p.Backoff.Multiplier > 100 {
		ps.add("policy.backoff.multiplier", "must be between 1 and 100, got %g", p.Backoff.Multiplier)
	}
	if p.Backoff.Max.D() < p.Backoff.Initial.D() {
		ps.add("policy.backoff.max", "must not be less than initial (%s), got %s", p.Backoff.Initial.D(), p.Backoff.Max.D())
	}
}

// validateTimes checks the blackout windows and that expires_at comes
// after not_before.
func (r *Request) validateTimes(ps *fieldErrors) {
	for i, w := range r.Blackout {
		if w.From == w.To {
			ps.add(fmt.Sprintf("blackout[%d]", i), "from and to are both %s: a window must be neither empty nor the whole day", w.From)
		}
	}
	if r.NotBefore != nil && r.ExpiresAt != nil && !r.ExpiresAt.After(*r.NotBefore) {
		ps.add("expires_at", "must be after not_before (%s), got %s", r.NotBefore.Format(time.RFC3339), r.ExpiresAt.Format(time.RFC3339))
	}
}

// ControlChar returns the byte index of the first control character (C0,
// DEL or C1: NUL, tab, newline, escape...) in s, or -1. Ids, campaigns and
// policy ids are text: they are Kafka keys, log fields, URL path segments
// and PostgreSQL text, which cannot hold NUL at all.
func ControlChar(s string) int {
	return strings.IndexFunc(s, unicode.IsControl)
}

func controlMessage(s string) string {
	i := ControlChar(s)
	r, _ := utf8.DecodeRuneInString(s[i:])
	return fmt.Sprintf("must not contain control characters: %U at byte %d", r, i)
}

func addressField(c Channel) string {
	switch c {
	case ChannelSMS:
		return "phone"
	case ChannelPush:
		return "push_token"
	}
	return "email"
}

// truncate shortens s to at most n bytes, on a rune boundary, marking the
// cut with an ellipsis.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return validUTF8Prefix(s, n) + "…"
}

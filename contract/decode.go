package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// The wire types mirror Request with every field left raw, so that Decode
// can read each field on its own: a field of the wrong type is reported
// with its full path ("blackout[1].to", "policy.backoff.max") and does not
// hide the problems of the fields after it, which a single json.Unmarshal
// into Request would do. Field names match as encoding/json matches them.
type wireRequest struct {
	Schema    json.RawMessage `json:"schema"`
	ID        json.RawMessage `json:"id"`
	Campaign  json.RawMessage `json:"campaign"`
	Recipient json.RawMessage `json:"recipient"`
	Channels  json.RawMessage `json:"channels"`
	Content   json.RawMessage `json:"content"`
	Policy    json.RawMessage `json:"policy"`
	Blackout  json.RawMessage `json:"blackout"`
	NotBefore json.RawMessage `json:"not_before"`
	ExpiresAt json.RawMessage `json:"expires_at"`
}

type wireRecipient struct {
	Email     json.RawMessage `json:"email"`
	Phone     json.RawMessage `json:"phone"`
	PushToken json.RawMessage `json:"push_token"`
	TZ        json.RawMessage `json:"tz"`
}

type wirePolicy struct {
	ID                 json.RawMessage `json:"id"`
	Version            json.RawMessage `json:"version"`
	AttemptsPerChannel json.RawMessage `json:"attempts_per_channel"`
	Backoff            json.RawMessage `json:"backoff"`
}

type wireBackoff struct {
	Initial    json.RawMessage `json:"initial"`
	Multiplier json.RawMessage `json:"multiplier"`
	Max        json.RawMessage `json:"max"`
}

type wireWindow struct {
	From json.RawMessage `json:"from"`
	To   json.RawMessage `json:"to"`
}

// What each kind of field wants, as the messages say it.
const (
	wantString   = "a string"
	wantObject   = "an object"
	wantInt      = "a whole number"
	wantNumber   = "a number"
	wantDuration = `a duration such as "1s" or "10m"`
	wantClock    = `a time of day "HH:MM" (00:00 to 23:59, or 24:00 as an end)`
	wantTime     = `an RFC 3339 time such as "2026-01-31T09:00:00Z"`
	wantChannels = `a list of channels such as ["email","sms"]`
	wantChannel  = "a channel name (email, sms or push)"
	wantWindows  = `a list of windows such as [{"from":"22:00","to":"06:00"}]`
	wantWindow   = `a window {"from":"HH:MM","to":"HH:MM"}`
)

// decodeFields is Decode's thorough path: it reads value field by field
// and reports every problem, a field of the wrong type once, under its
// full path, then what validation finds in the other fields.
func decodeFields(key, value []byte) (*Request, error) {
	var w wireRequest
	if err := json.Unmarshal(value, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var rd reader
	r := rd.request(&w)
	r.ApplyDefaults()
	var problems []FieldError
	if err := r.Validate(key); err != nil {
		problems = err.(*ValidationError).Problems
	}
	if ps := merge(rd.problems, problems); len(ps) > 0 {
		return nil, &ValidationError{Problems: ps}
	}
	return r, nil
}

// reader collects the type problems of one request.
type reader struct {
	problems []FieldError
}

// read decodes raw into v. An absent field or a JSON null leaves v as it
// is (validation then says whether the field is required); a value of the
// wrong type or form is reported against field.
func (rd *reader) read(field string, raw json.RawMessage, v any, want string) bool {
	if absent(raw) {
		return false
	}
	if err := json.Unmarshal(raw, v); err != nil {
		msg := "want " + want + ", got " + describeJSON(raw)
		if isNumber(raw) && (want == wantInt || want == wantNumber) && !(want == wantInt && bytes.ContainsAny(raw, ".eE")) {
			msg = "out of range: " + truncate(string(raw), 32)
		}
		rd.problems = append(rd.problems, FieldError{Field: field, Message: msg})
		return false
	}
	return true
}

func isNumber(raw json.RawMessage) bool {
	return len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9')
}

func absent(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// request reads every field of w into a Request.
func (rd *reader) request(w *wireRequest) *Request {
	r := &Request{}
	rd.read("schema", w.Schema, &r.Schema, wantString)
	rd.read("id", w.ID, &r.ID, wantString)
	rd.read("campaign", w.Campaign, &r.Campaign, wantString)

	var wr wireRecipient
	if rd.read("recipient", w.Recipient, &wr, wantObject) {
		rd.read("recipient.email", wr.Email, &r.Recipient.Email, wantString)
		rd.read("recipient.phone", wr.Phone, &r.Recipient.Phone, wantString)
		rd.read("recipient.push_token", wr.PushToken, &r.Recipient.PushToken, wantString)
		rd.read("recipient.tz", wr.TZ, &r.Recipient.TZ, `an IANA zone name such as "Asia/Seoul"`)
	}

	var chans []json.RawMessage
	if rd.read("channels", w.Channels, &chans, wantChannels) {
		r.Channels = make([]Channel, len(chans))
		for i, c := range chans {
			if !rd.read(fmt.Sprintf("channels[%d]", i), c, &r.Channels[i], wantChannel) && absent(c) {
				rd.problems = append(rd.problems, FieldError{Field: fmt.Sprintf("channels[%d]", i), Message: "want " + wantChannel + ", got null"})
			}
		}
	}

	if !absent(w.Content) {
		r.Content = w.Content
	}

	var wp wirePolicy
	if rd.read("policy", w.Policy, &wp, wantObject) {
		rd.read("policy.id", wp.ID, &r.Policy.ID, wantString)
		rd.read("policy.version", wp.Version, &r.Policy.Version, wantInt)
		rd.read("policy.attempts_per_channel", wp.AttemptsPerChannel, &r.Policy.AttemptsPerChannel, wantInt)
		var wb wireBackoff
		if rd.read("policy.backoff", wp.Backoff, &wb, wantObject) {
			rd.read("policy.backoff.initial", wb.Initial, &r.Policy.Backoff.Initial, wantDuration)
			rd.read("policy.backoff.multiplier", wb.Multiplier, &r.Policy.Backoff.Multiplier, wantNumber)
			rd.read("policy.backoff.max", wb.Max, &r.Policy.Backoff.Max, wantDuration)
		}
	}

	var wins []json.RawMessage
	if rd.read("blackout", w.Blackout, &wins, wantWindows) && len(wins) > 0 {
		r.Blackout = make([]Window, 0, len(wins))
		for i, raw := range wins {
			field := fmt.Sprintf("blackout[%d]", i)
			var ww wireWindow
			if !rd.read(field, raw, &ww, wantWindow) {
				if absent(raw) {
					rd.problems = append(rd.problems, FieldError{Field: field, Message: "want " + wantWindow + ", got null"})
				}
				r.Blackout = append(r.Blackout, Window{})
				continue
			}
			// A window with a problem is kept (zero where it is broken) so
			// that validation's indices stay those of the input; merge
			// drops what validation says about it.
			var win Window
			rd.clock(field+".from", ww.From, &win.From)
			rd.clock(field+".to", ww.To, &win.To)
			r.Blackout = append(r.Blackout, win)
		}
	}

	r.NotBefore = rd.time("not_before", w.NotBefore)
	r.ExpiresAt = rd.time("expires_at", w.ExpiresAt)
	return r
}

// clock reads a required time of day: a window without an end is not
// "until midnight", it is a mistake.
func (rd *reader) clock(field string, raw json.RawMessage, c *Clock) bool {
	if absent(raw) {
		rd.problems = append(rd.problems, FieldError{Field: field, Message: "required: " + wantClock})
		return false
	}
	return rd.read(field, raw, c, wantClock)
}

func (rd *reader) time(field string, raw json.RawMessage) *time.Time {
	var t time.Time
	if !rd.read(field, raw, &t, wantTime) {
		return nil
	}
	return &t
}

// describeJSON names what a raw JSON value is, quoting short scalars so
// that the message shows what was sent.
func describeJSON(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case 'n':
		return "null"
	case 't', 'f':
		return string(raw)
	case '"':
		return truncate(string(raw), 48)
	}
	return "the number " + truncate(string(raw), 32)
}

// covers reports whether a type problem on field a makes a validation
// problem on field b redundant: the same field, or one inside the other.
func covers(a, b string) bool {
	return a == b || within(b, a) || within(a, b)
}

func within(child, parent string) bool {
	return strings.HasPrefix(child, parent) && len(child) > len(parent) &&
		(child[len(parent)] == '.' || child[len(parent)] == '[')
}

// merge adds validation problems to type problems, leaving out those about
// a field that already has a type problem, so every field gets one message.
func merge(typeProblems, validation []FieldError) []FieldError {
	out := typeProblems
next:
	for _, v := range validation {
		for _, t := range typeProblems {
			if covers(t.Field, v.Field) {
				continue next
			}
		}
		out = append(out, v)
	}
	return out
}

// validUTF8Prefix cuts s to at most n bytes without splitting a rune.
func validUTF8Prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

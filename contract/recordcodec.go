package contract

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/herald-dispatch/herald/contract/internal/pb"
)

// The encoders and decoders of Herald's own records (herald.send,
// herald.results, herald.wakeups and the delay tiers, herald.control). Every
// stage that writes or reads one of them goes through these, never an
// encoding of its own. The encoders write the binary encoding (wire.go);
// the decoders also read the JSON of earlier releases (and of anyone who
// publishes a cancel or a retry by hand, as docs/events.md shows them). A
// decoder's error is ErrMalformed or a *ValidationError, so that the
// record's dead letter says why.

// EncodeCommand encodes a send command for herald.send (recordwire.go).
func EncodeCommand(c *SendCommand) ([]byte, error) {
	return encodeAppended("send command", c)
}

// EncodeResult encodes a send result for herald.results (recordwire.go).
func EncodeResult(r *SendResult) ([]byte, error) {
	return encodeAppended("send result", r)
}

// EncodeWakeup encodes a wake-up for herald.wakeups or a delay tier
// (recordwire.go).
func EncodeWakeup(w *Wakeup) ([]byte, error) {
	return encodeAppended("wake-up", w)
}

// EncodeCancel encodes a cancel for herald.control.
func EncodeCancel(c *Cancel) ([]byte, error) {
	return encodeRecord("cancel", &pb.Control{Kind: pb.ControlKind_CONTROL_KIND_CANCEL, Id: c.ID, Reason: c.Reason,
		RequestedAt: timePB(c.RequestedAt)}, nil)
}

// EncodeRetry encodes an operator's retry for herald.control.
func EncodeRetry(r *Retry) ([]byte, error) {
	return encodeRecord("retry", &pb.Control{Kind: pb.ControlKind_CONTROL_KIND_RETRY, Id: r.ID, Reason: r.Reason,
		RequestedAt: timePB(r.RequestedAt), AfterAttempts: int64(r.AfterAttempts)}, nil)
}

func encodeRecord(what string, m proto.Message, err error) ([]byte, error) {
	if err == nil {
		var b []byte
		if b, err = marshal(m); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("contract: encode %s: %w", what, err)
}

// decodeRecord reads value, in either encoding, into j (JSON) or m
// (binary, then converted by from).
func decodeRecord(value []byte, j any, m proto.Message, from func() error) error {
	enc, err := encodingOf(value)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if enc == encJSON {
		if err := json.Unmarshal(value, j); err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return nil
	}
	if err := unmarshalOpts.Unmarshal(value[1:], m); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := from(); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// decodeTyped reads value, in either encoding: JSON into a new T; the
// binary encoding with scan, or, where scan reports !ok (or is nil: the
// tests' reference), through protobuf's decoder into an M, converted by
// from. Errors as decodeRecord's.
func decodeTyped[T, M any, PM interface {
	*M
	proto.Message
}](value []byte, scan func([]byte) (*T, bool), from func(*M) (*T, error)) (*T, error) {
	enc, err := encodingOf(value)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if enc == encJSON {
		v := new(T)
		if err := json.Unmarshal(value, v); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return v, nil
	}
	if scan != nil {
		if v, ok := scan(value[1:]); ok {
			return v, nil
		}
	}
	var m M
	if err := unmarshalOpts.Unmarshal(value[1:], PM(&m)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	v, err := from(&m)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return v, nil
}

// DecodeCommand reads a send command and checks what the sender relies
// on: an id equal to the key, a known channel, an attempt of 1 or more.
func DecodeCommand(key, value []byte) (*SendCommand, error) {
	c, err := decodeTyped(value, scanCommand, fromCommandPB)
	return checkCommand(key, c, err)
}

func checkCommand(key []byte, c *SendCommand, err error) (*SendCommand, error) {
	if err != nil {
		return nil, err
	}
	var problems []FieldError
	switch {
	case c.ID == "":
		problems = append(problems, FieldError{Field: "id", Message: "required"})
	case KeyProblem(key, c.ID) != nil:
		problems = append(problems, *KeyProblem(key, c.ID))
	}
	if !c.Channel.Valid() {
		problems = append(problems, FieldError{Field: "channel", Message: fmt.Sprintf("unknown channel %q", c.Channel)})
	}
	if c.Attempt < 1 {
		problems = append(problems, FieldError{Field: "attempt", Message: "must be 1 or more"})
	}
	if len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	return c, nil
}

// DecodeResult reads a send result whose id must equal key.
func DecodeResult(key, value []byte) (*SendResult, error) {
	r, err := decodeTyped(value, scanResult, fromResultPB)
	return checkResult(key, r, err)
}

func checkResult(key []byte, r *SendResult, err error) (*SendResult, error) {
	if err != nil {
		return nil, err
	}
	if err := checkKey(key, r.ID); err != nil {
		return nil, err
	}
	return r, nil
}

// DecodeWakeup reads a wake-up whose id must equal key.
func DecodeWakeup(key, value []byte) (*Wakeup, error) {
	w, err := decodeTyped(value, scanWakeup, fromWakeupPB)
	return checkWakeup(key, w, err)
}

func checkWakeup(key []byte, w *Wakeup, err error) (*Wakeup, error) {
	if err != nil {
		return nil, err
	}
	if err := checkKey(key, w.ID); err != nil {
		return nil, err
	}
	return w, nil
}

// DecodeControl reads a herald.control record whose id must equal key: a
// Retry when its kind says so (the other is nil), a Cancel otherwise.
func DecodeControl(key, value []byte) (*Cancel, *Retry, error) {
	// The JSON of both; its kind tells them apart.
	var j struct {
		Retry
		Kind string `json:"kind"`
	}
	var m pb.Control
	var c *Cancel
	var r *Retry
	err := decodeRecord(value, &j, &m, func() (err error) { c, r, err = fromControlPB(&m); return err })
	if err != nil {
		return nil, nil, err
	}
	if c == nil && r == nil { // JSON
		if j.Kind == ControlRetry {
			rt := j.Retry
			rt.Kind = ControlRetry
			r = &rt
		} else {
			c = &Cancel{ID: j.ID, Reason: j.Reason, RequestedAt: j.RequestedAt}
		}
	}
	id := j.ID
	if c != nil {
		id = c.ID
	} else if r != nil {
		id = r.ID
	}
	if err := checkKey(key, id); err != nil {
		return nil, nil, err
	}
	return c, r, nil
}

func fromControlPB(m *pb.Control) (*Cancel, *Retry, error) {
	switch m.Kind {
	case pb.ControlKind_CONTROL_KIND_CANCEL:
		return &Cancel{ID: m.Id, Reason: m.Reason, RequestedAt: fromTimePB(m.RequestedAt)}, nil, nil
	case pb.ControlKind_CONTROL_KIND_RETRY:
		return nil, &Retry{Kind: ControlRetry, ID: m.Id, AfterAttempts: int(m.AfterAttempts), Reason: m.Reason,
			RequestedAt: fromTimePB(m.RequestedAt)}, nil
	}
	return nil, nil, fmt.Errorf("unknown control kind %d", m.Kind)
}

// RecordKind names what a topic of Herald's holds, for Readable.
type RecordKind int

// The kinds of Herald's own values.
const (
	KindOther   RecordKind = iota // not one of Herald's own records (a request, say)
	KindState                     // herald-dispatcher-table
	KindCommand                   // herald.send
	KindResult                    // herald.results
	KindWakeup                    // herald.wakeups, the delay tiers
	KindControl                   // herald.control
)

// Readable returns a value of the given kind as people read it (herald dlq
// show): a state or record in the binary encoding as the JSON that
// docs/events.md shows, without checking its key; anything else (JSON, a
// request, bytes that do not decode) as it is.
func Readable(kind RecordKind, value []byte) []byte {
	if len(value) == 0 || value[0] != FormatProto {
		return value
	}
	var v any
	var err error
	switch kind {
	case KindState:
		v, err = DecodeState(value)
	case KindCommand:
		var m pb.SendCommand
		if err = unmarshalOpts.Unmarshal(value[1:], &m); err == nil {
			v, err = fromCommandPB(&m)
		}
	case KindResult:
		var m pb.SendResult
		if err = unmarshalOpts.Unmarshal(value[1:], &m); err == nil {
			v, err = fromResultPB(&m)
		}
	case KindWakeup:
		var m pb.Wakeup
		if err = unmarshalOpts.Unmarshal(value[1:], &m); err == nil {
			v, err = fromWakeupPB(&m)
		}
	case KindControl:
		var m pb.Control
		if err = unmarshalOpts.Unmarshal(value[1:], &m); err == nil {
			var c *Cancel
			var r *Retry
			if c, r, err = fromControlPB(&m); c != nil {
				v = c
			} else {
				v = r
			}
		}
	default:
		return value
	}
	if err != nil {
		return value
	}
	b, err := json.Marshal(v)
	if err != nil {
		return value
	}
	return b
}

// checkKey checks that a record's id is its Kafka key.
func checkKey(key []byte, id string) error {
	if p := KeyProblem(key, id); p != nil {
		return &ValidationError{Problems: []FieldError{*p}}
	}
	return nil
}

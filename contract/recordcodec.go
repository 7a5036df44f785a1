package contract

import (
	"encoding/json"
	"fmt"
)

// The encoders and decoders of Herald's own records (herald.send,
// herald.results, herald.wakeups and the delay tiers, herald.control). Every
// stage that writes or reads one of them goes through these, never an
// encoding of its own. A decoder's error is ErrMalformed or a
// *ValidationError, so that the record's dead letter says why.

// EncodeCommand encodes a send command for herald.send.
func EncodeCommand(c *SendCommand) ([]byte, error) { return encodeRecord("send command", c) }

// EncodeResult encodes a send result for herald.results.
func EncodeResult(r *SendResult) ([]byte, error) { return encodeRecord("send result", r) }

// EncodeWakeup encodes a wake-up for herald.wakeups or a delay tier.
func EncodeWakeup(w *Wakeup) ([]byte, error) { return encodeRecord("wake-up", w) }

// EncodeCancel encodes a cancel for herald.control.
func EncodeCancel(c *Cancel) ([]byte, error) { return encodeRecord("cancel", c) }

// EncodeRetry encodes an operator's retry for herald.control; its Kind is
// set to ControlRetry.
func EncodeRetry(r *Retry) ([]byte, error) {
	c := *r
	c.Kind = ControlRetry
	return encodeRecord("retry", &c)
}

func encodeRecord(what string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("contract: encode %s: %w", what, err)
	}
	return b, nil
}

// DecodeCommand reads a send command and checks what the sender relies
// on: an id equal to the key, a known channel, an attempt of 1 or more.
func DecodeCommand(key, value []byte) (*SendCommand, error) {
	var c SendCommand
	if err := json.Unmarshal(value, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
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
	return &c, nil
}

// DecodeResult reads a send result whose id must equal key.
func DecodeResult(key, value []byte) (*SendResult, error) {
	var r SendResult
	if err := decodeInternal(key, value, &r, &r.ID); err != nil {
		return nil, err
	}
	return &r, nil
}

// DecodeWakeup reads a wake-up whose id must equal key.
func DecodeWakeup(key, value []byte) (*Wakeup, error) {
	var w Wakeup
	if err := decodeInternal(key, value, &w, &w.ID); err != nil {
		return nil, err
	}
	return &w, nil
}

// DecodeControl reads a herald.control record whose id must equal key: a
// Retry when its kind says so (the other is nil), a Cancel otherwise.
func DecodeControl(key, value []byte) (*Cancel, *Retry, error) {
	var k struct {
		Kind string `json:"kind"`
	}
	_ = json.Unmarshal(value, &k) // a malformed record fails below
	if k.Kind == ControlRetry {
		var r Retry
		if err := decodeInternal(key, value, &r, &r.ID); err != nil {
			return nil, nil, err
		}
		return nil, &r, nil
	}
	var c Cancel
	if err := decodeInternal(key, value, &c, &c.ID); err != nil {
		return nil, nil, err
	}
	return &c, nil, nil
}

// decodeInternal reads value into v and checks that its id matches key.
func decodeInternal(key, value []byte, v any, id *string) error {
	if err := json.Unmarshal(value, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if p := KeyProblem(key, *id); p != nil {
		return &ValidationError{Problems: []FieldError{*p}}
	}
	return nil
}

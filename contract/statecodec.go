package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// StateCodec is the Goka codec of the dispatcher table (Encode and Decode
// of a *State): every reader and writer of the table and its changelog
// uses it or the functions beside it, never an encoding of its own.
type StateCodec struct{}

// Encode writes a *State (EncodeState).
func (StateCodec) Encode(value any) ([]byte, error) {
	s, ok := value.(*State)
	if !ok {
		return nil, fmt.Errorf("contract: state codec: want *contract.State, got %T", value)
	}
	return EncodeState(s)
}

// Decode reads a *State (DecodeState).
func (StateCodec) Decode(data []byte) (any, error) {
	return DecodeState(data)
}

// EncodeState encodes s as the dispatcher table stores it. It does not
// escape HTML characters (<, >, &): the state is no web page, and escaping
// would let a request of MaxRequestBytes grow six-fold past the
// changelog's limit.
func EncodeState(s *State) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("contract: encode state: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// DecodeState reads a value of the dispatcher table or its changelog.
func DecodeState(b []byte) (*State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("contract: decode state: %w", err)
	}
	return &s, nil
}

// StateVersion reads only the version of an encoded State, for readers
// that keep the newest state per id (the changelog's update callback, the
// sink).
func StateVersion(b []byte) (uint64, error) {
	var v struct {
		Version uint64 `json:"version"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return 0, fmt.Errorf("contract: state version: %w", err)
	}
	return v.Version, nil
}

// Summary is the light part of a state that a scan of the whole table
// reads (the held gauge): its status and hold reason.
type Summary struct {
	Status     Status     `json:"status"`
	HoldReason HoldReason `json:"hold_reason"`
}

// DecodeSummary reads the status and hold reason of an encoded state
// without decoding the rest, which is mostly the request and the history
// (BenchmarkSummary: many times faster than a full decode).
//
// It relies on how EncodeState writes a State (see State): fields in
// declaration order, no spaces, quotes inside strings escaped. So the
// first `"version":` is the top-level key (nothing nested comes before it),
// and `"status":"` and `"hold_reason":"` before it are the top-level keys
// too: a string value cannot contain an unescaped quote. Anything else (a
// value with escapes, a missing key) falls back to json.Unmarshal.
// TestDecodeSummary checks it against json.Unmarshal, and fails if
// State's fields are reordered so that this no longer holds.
func DecodeSummary(b []byte) (Summary, error) {
	var s Summary
	if v := bytes.Index(b, []byte(`"version":`)); v > 0 {
		head := b[:v]
		status, ok1 := stringAfter(head, `"status":"`)
		reason, ok2 := stringAfter(head, `"hold_reason":"`)
		if ok1 && status != "" && (ok2 || !bytes.Contains(head, []byte(`"hold_reason":`))) {
			s.Status, s.HoldReason = Status(status), HoldReason(reason)
			return s, nil
		}
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("contract: state summary: %w", err)
	}
	return s, nil
}

// stringAfter returns the plain string (no escapes) that follows the first
// occurrence of key in b.
func stringAfter(b []byte, key string) (string, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// DecodeProgress reads where a notification stands from an encoded state,
// without the request and the history: the returned State has only ID,
// Status, HoldReason, Attempts, Issue, NextAttemptAt, TimeoutAt and
// Version set. It is what the sender's stale check and the dispatcher's
// sweep read for every command and every state.
func DecodeProgress(b []byte) (*State, error) {
	var p struct {
		ID            string     `json:"id"`
		Status        Status     `json:"status"`
		HoldReason    HoldReason `json:"hold_reason"`
		Attempts      int        `json:"attempts"`
		Issue         int        `json:"issue"`
		NextAttemptAt *time.Time `json:"next_attempt_at"`
		TimeoutAt     *time.Time `json:"timeout_at"`
		Version       uint64     `json:"version"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("contract: state progress: %w", err)
	}
	return &State{ID: p.ID, Status: p.Status, HoldReason: p.HoldReason, Attempts: p.Attempts, Issue: p.Issue,
		NextAttemptAt: p.NextAttemptAt, TimeoutAt: p.TimeoutAt, Version: p.Version}, nil
}

package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/herald-dispatch/herald/contract/internal/pb"
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

// EncodeState encodes s as the dispatcher table stores it: FormatProto
// and a pb.State (wire.go).
func EncodeState(s *State) ([]byte, error) {
	bp := encodeBufs.Get().(*[]byte)
	defer encodeBufs.Put(bp)
	b, err := appendState(append((*bp)[:0], FormatProto), s)
	if cap(b) <= maxPooledEncodeBuf {
		*bp = b
	}
	if err != nil {
		return nil, fmt.Errorf("contract: encode state %q: %w", s.ID, err)
	}
	// The value outlives this call (the producer holds it until the broker
	// has it): a copy of the exact size.
	return append(make([]byte, 0, len(b)), b...), nil
}

// encodeBufs are the scratch buffers EncodeState writes into; one larger
// than maxPooledEncodeBuf (a state with a very large content) is not kept.
var encodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooledEncodeBuf = 64 << 10

// DecodeState reads a value of the dispatcher table or its changelog, in
// the binary encoding or in the JSON of earlier releases.
func DecodeState(b []byte) (*State, error) {
	enc, err := encodingOf(b)
	if err != nil {
		return nil, fmt.Errorf("contract: decode state: %w", err)
	}
	if enc == encJSON {
		var s State
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("contract: decode state (JSON): %w", err)
		}
		s.emptyAsNil()
		return &s, nil
	}
	if s, ok := scanState(b[1:]); ok {
		return s, nil
	}
	return decodeStatePB(b)
}

// emptyAsNil makes the empty lists of a state decoded from JSON nil, as
// the binary encoding, which cannot tell the two apart, decodes them: a
// state reads the same whatever its encoding (FuzzDecodeState).
func (s *State) emptyAsNil() {
	if len(s.History) == 0 {
		s.History = nil
	}
	if r := s.Request; r != nil {
		if len(r.Channels) == 0 {
			r.Channels = nil
		}
		if len(r.Blackout) == 0 {
			r.Blackout = nil
		}
	}
}

// decodeStatePB is DecodeState through a pb.State and protobuf's decoder:
// for what scanState leaves to it (and, in the tests, to compare).
func decodeStatePB(b []byte) (*State, error) {
	var m pb.State
	if err := unmarshalOpts.Unmarshal(b[1:], &m); err != nil {
		return nil, fmt.Errorf("contract: decode state: %w", err)
	}
	s, err := fromStatePB(&m)
	if err != nil {
		return nil, fmt.Errorf("contract: decode state %q: %w", m.Id, err)
	}
	return s, nil
}

// StateVersion reads only the version of an encoded State, for readers
// that keep the newest state per id (the changelog's update callback, the
// sink).
func StateVersion(b []byte) (uint64, error) {
	enc, err := encodingOf(b)
	if err != nil {
		return 0, fmt.Errorf("contract: state version: %w", err)
	}
	if enc == encJSON {
		var v struct {
			Version uint64 `json:"version"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return 0, fmt.Errorf("contract: state version (JSON): %w", err)
		}
		return v.Version, nil
	}
	h, err := scanHead(b[1:], fieldVersion)
	if err != nil {
		return 0, fmt.Errorf("contract: state version: %w", err)
	}
	return h.Version, nil
}

// Summary is the light part of a state that a scan of the whole table
// reads (the held gauge): its status and hold reason.
type Summary struct {
	Status     Status     `json:"status"`
	HoldReason HoldReason `json:"hold_reason"`
}

// DecodeSummary reads the status and hold reason of an encoded state
// without decoding the rest, which is mostly the request and the history
// (BenchmarkDecodePartial: many times faster than a full decode). In the
// binary encoding it reads the top-level fields only (scanHead), skipping
// the request and the history entries whole.
//
// For the JSON of earlier releases it relies on how they wrote a State
// (see State): fields in declaration order, no spaces, quotes inside
// strings escaped. So the first `"version":` is the top-level key (nothing
// nested comes before it), and `"status":"` and `"hold_reason":"` before
// it are the top-level keys too: a string value cannot contain an
// unescaped quote. Anything else (a value with escapes, a missing key)
// falls back to json.Unmarshal. TestLightDecodersAgreeWithDecodeState
// checks both against the full decode.
func DecodeSummary(b []byte) (Summary, error) {
	var s Summary
	enc, err := encodingOf(b)
	if err != nil {
		return s, fmt.Errorf("contract: state summary: %w", err)
	}
	if enc == encProto {
		h, err := scanHead(b[1:], lastSummaryField)
		if err == nil {
			var perr error
			s.Status, s.HoldReason = statusEnum.from(h.Status, string(h.StatusName), &perr), holdEnum.from(h.HoldReason, string(h.HoldReasonName), &perr)
			err = perr
		}
		if err != nil {
			return Summary{}, fmt.Errorf("contract: state summary: %w", err)
		}
		return s, nil
	}
	if v := bytes.Index(b, []byte(`"version":`)); v > 0 {
		head := b[:v]
		status, ok1 := stringAfter(head, `"status":"`)
		reason, ok2 := stringAfter(head, `"hold_reason":"`)
		if ok1 && status != "" && (ok2 || !bytes.Contains(head, []byte(`"hold_reason":`))) {
			s.Status, s.HoldReason = Status(status), HoldReason(reason)
			return s, nil
		}
	}
	return summaryJSON(b)
}

// summaryJSON is DecodeSummary's slow path for JSON (apart, so that the
// fast paths' Summary stays on the stack).
func summaryJSON(b []byte) (Summary, error) {
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("contract: state summary (JSON): %w", err)
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
// Status, HoldReason, Attempts, Issue, Commands, NextAttemptAt, TimeoutAt
// and Version set. It is what the sender's stale check and the
// dispatcher's sweep read for every command and every state.
func DecodeProgress(b []byte) (*State, error) {
	enc, err := encodingOf(b)
	if err != nil {
		return nil, fmt.Errorf("contract: state progress: %w", err)
	}
	if enc == encJSON {
		var p struct {
			ID            string     `json:"id"`
			Status        Status     `json:"status"`
			HoldReason    HoldReason `json:"hold_reason"`
			Attempts      int        `json:"attempts"`
			Issue         int        `json:"issue"`
			Commands      int        `json:"commands"`
			NextAttemptAt *time.Time `json:"next_attempt_at"`
			TimeoutAt     *time.Time `json:"timeout_at"`
			Version       uint64     `json:"version"`
		}
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("contract: state progress (JSON): %w", err)
		}
		return &State{ID: p.ID, Status: p.Status, HoldReason: p.HoldReason, Attempts: p.Attempts, Issue: p.Issue,
			Commands: p.Commands, NextAttemptAt: p.NextAttemptAt, TimeoutAt: p.TimeoutAt, Version: p.Version}, nil
	}
	h, err := scanHead(b[1:], lastProgressField)
	if err != nil {
		return nil, fmt.Errorf("contract: state progress: %w", err)
	}
	s := &State{ID: string(h.ID), Status: statusEnum.from(h.Status, string(h.StatusName), &err),
		HoldReason: holdEnum.from(h.HoldReason, string(h.HoldReasonName), &err),
		Attempts:   int(h.Attempts), Issue: int(h.Issue), Commands: int(h.Commands), Version: h.Version}
	if s.NextAttemptAt, err = subTime(h.NextAttemptAt, err); err == nil {
		s.TimeoutAt, err = subTime(h.TimeoutAt, err)
	}
	if err != nil {
		return nil, fmt.Errorf("contract: state progress: %w", err)
	}
	return s, nil
}

// DecodeStatus reads what a status record tells of an encoded state
// (statusfeed.NewRecord), without the request, the history, the applied
// positions and the moves, which are most of its bytes: the returned State
// has only ID, Campaign, Status, HoldReason, Channel, Attempts, Duplicates,
// NextAttemptAt, UpdatedAt, LastError, SentAt, Version, LastSource and
// Remembered set. In the binary encoding it reads the top-level fields and
// skips the others whole by their length; the JSON of earlier releases is
// decoded in full and trimmed to the same fields.
func DecodeStatus(b []byte) (*State, error) {
	enc, err := encodingOf(b)
	if err != nil {
		return nil, fmt.Errorf("contract: state status: %w", err)
	}
	if enc == encJSON {
		s, err := DecodeState(b)
		if err != nil {
			return nil, err
		}
		return statusFields(s), nil
	}
	s, err := scanStatus(b[1:])
	if err != nil {
		return nil, fmt.Errorf("contract: state status: %w", err)
	}
	return s, nil
}

// statusFields is the part of s that DecodeStatus returns.
func statusFields(s *State) *State {
	return &State{ID: s.ID, Campaign: s.Campaign, Status: s.Status, HoldReason: s.HoldReason, Channel: s.Channel,
		Attempts: s.Attempts, Duplicates: s.Duplicates, NextAttemptAt: s.NextAttemptAt, UpdatedAt: s.UpdatedAt,
		LastError: s.LastError, SentAt: s.SentAt, Version: s.Version, LastSource: s.LastSource, Remembered: s.Remembered}
}

// The fields DecodeStatus reads besides scanHead's.
var (
	fieldCampaign    = stateFields.ByName("campaign").Number()
	fieldChannel     = stateFields.ByName("channel").Number()
	fieldChannelName = stateFields.ByName("channel_name").Number()
	fieldDuplicates  = stateFields.ByName("duplicates").Number()
	fieldLastError   = stateFields.ByName("last_error").Number()
	fieldSentAt      = stateFields.ByName("sent_at").Number()
	fieldLastSource  = stateFields.ByName("last_source").Number()
)

// scanStatus is DecodeStatus of a pb.State's bytes. A field it does not
// read is skipped whole; a field written twice keeps its last value, as
// protobuf's decoder does.
func scanStatus(b []byte) (*State, error) {
	var x statusScan
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType && x.varintField(num):
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			if n >= 0 {
				x.setVarint(num, v)
			}
		case typ == protowire.BytesType && x.bytesField(num):
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				x.setBytes(num, v)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return x.state()
}

// statusScan is what scanStatus has read of a state: the fields it keeps,
// and the enums and times it resolves at the end.
type statusScan struct {
	s                                  State
	status, hold, channel              int32
	statusName, holdName, channelName  string
	nextAt, updatedAt, sentAt, lastSrc []byte
}

// varintField reports whether num is a varint field scanStatus reads.
func (x *statusScan) varintField(num protowire.Number) bool {
	switch num {
	case fieldVersion, fieldStatus, fieldHoldReason, fieldAttempts, fieldChannel, fieldDuplicates, fieldRemembered:
		return true
	}
	return false
}

func (x *statusScan) setVarint(num protowire.Number, v uint64) {
	switch num {
	case fieldVersion:
		x.s.Version = v
	case fieldStatus:
		x.status = int32(v)
	case fieldHoldReason:
		x.hold = int32(v)
	case fieldAttempts:
		x.s.Attempts = int(int64(v))
	case fieldChannel:
		x.channel = int32(v)
	case fieldDuplicates:
		x.s.Duplicates = int(int64(v))
	case fieldRemembered:
		x.s.Remembered = v != 0
	}
}

// bytesField reports whether num is a length-delimited field scanStatus
// reads.
func (x *statusScan) bytesField(num protowire.Number) bool {
	switch num {
	case fieldID, fieldCampaign, fieldStatusName, fieldHoldName, fieldChannelName, fieldLastError, fieldNextAttempt,
		fieldUpdatedAt, fieldSentAt, fieldLastSource:
		return true
	}
	return false
}

func (x *statusScan) setBytes(num protowire.Number, v []byte) {
	switch num {
	case fieldID:
		x.s.ID = string(v)
	case fieldCampaign:
		x.s.Campaign = string(v)
	case fieldStatusName:
		x.statusName = string(v)
	case fieldHoldName:
		x.holdName = string(v)
	case fieldChannelName:
		x.channelName = string(v)
	case fieldLastError:
		x.s.LastError = string(v)
	case fieldNextAttempt:
		x.nextAt = v
	case fieldUpdatedAt:
		x.updatedAt = v
	case fieldSentAt:
		x.sentAt = v
	case fieldLastSource:
		x.lastSrc = v
	}
}

// state resolves the enums, times and last source read into the state.
func (x *statusScan) state() (*State, error) {
	s := &x.s
	var err error
	s.Status = statusEnum.from(pb.Status(x.status), x.statusName, &err)
	s.HoldReason = holdEnum.from(pb.HoldReason(x.hold), x.holdName, &err)
	s.Channel = channelEnum.from(pb.Channel(x.channel), x.channelName, &err)
	s.NextAttemptAt, err = subTime(x.nextAt, err)
	s.SentAt, err = subTime(x.sentAt, err)
	var at *time.Time
	if at, err = subTime(x.updatedAt, err); at != nil {
		s.UpdatedAt = *at
	}
	if x.lastSrc != nil && err == nil {
		var m pb.Position
		if err = unmarshalOpts.Unmarshal(x.lastSrc, &m); err == nil {
			s.LastSource = fromPositionPB(&m)
		}
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Retention is what the dispatcher's retention pass reads of a state
// (DecodeRetention): whether it is final, when it last changed, and
// whether it is already a remembered record.
type Retention struct {
	ID         string
	Status     Status
	UpdatedAt  time.Time
	Version    uint64
	Remembered bool
}

// DecodeRetention reads ID, Status, UpdatedAt, Version and Remembered of
// an encoded state, without decoding the request and the history: in the
// binary encoding it reads the top-level fields only (scanHead), skipping
// the others whole by their length.
func DecodeRetention(b []byte) (Retention, error) {
	enc, err := encodingOf(b)
	if err != nil {
		return Retention{}, fmt.Errorf("contract: state retention: %w", err)
	}
	if enc == encJSON {
		var r struct {
			ID         string    `json:"id"`
			Status     Status    `json:"status"`
			UpdatedAt  time.Time `json:"updated_at"`
			Version    uint64    `json:"version"`
			Remembered bool      `json:"remembered"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return Retention{}, fmt.Errorf("contract: state retention (JSON): %w", err)
		}
		return Retention(r), nil
	}
	h, err := scanHead(b[1:], lastRetentionField)
	r := Retention{ID: string(h.ID), Version: h.Version, Remembered: h.Remembered}
	if err == nil {
		r.Status = statusEnum.from(h.Status, string(h.StatusName), &err)
	}
	if err == nil && h.UpdatedAt != nil {
		var t *time.Time
		if t, err = subTime(h.UpdatedAt, nil); t != nil {
			r.UpdatedAt = *t
		}
	}
	if err != nil {
		return Retention{}, fmt.Errorf("contract: state retention: %w", err)
	}
	return r, nil
}

// subTime decodes the bytes of an embedded Time message, nil for none:
// with scanTime, and protobuf's decoder for anything scanTime leaves to it.
func subTime(b []byte, err error) (*time.Time, error) {
	if b == nil || err != nil {
		return nil, err
	}
	if t, ok := scanTime(b); ok {
		return &t, nil
	}
	var m pb.Time
	if err := unmarshalOpts.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return fromTimePtrPB(&m), nil
}

// stateHead holds the top-level fields of an encoded pb.State that the
// light decoders read; NextAttemptAt and TimeoutAt are the encoded Time
// messages (nil when absent).
type stateHead struct {
	Version                    uint64
	ID                         []byte
	Status                     pb.Status
	HoldReason                 pb.HoldReason
	StatusName, HoldReasonName []byte
	Attempts, Issue, Commands  int64
	NextAttemptAt, TimeoutAt   []byte
	UpdatedAt                  []byte
	Remembered                 bool
}

// The numbers of the fields scanHead reads, from herald.proto's
// descriptor, so that a change there cannot go unnoticed here. They are
// the first fields of State, and lastSummaryField and lastProgressField
// are where the summary and the progress end (TestStateFieldOrder).
var (
	stateFields      = (&pb.State{}).ProtoReflect().Descriptor().Fields()
	fieldVersion     = stateFields.ByName("version").Number()
	fieldID          = stateFields.ByName("id").Number()
	fieldStatus      = stateFields.ByName("status").Number()
	fieldHoldReason  = stateFields.ByName("hold_reason").Number()
	fieldStatusName  = stateFields.ByName("status_name").Number()
	fieldHoldName    = stateFields.ByName("hold_reason_name").Number()
	fieldAttempts    = stateFields.ByName("attempts").Number()
	fieldIssue       = stateFields.ByName("issue").Number()
	fieldNextAttempt = stateFields.ByName("next_attempt_at").Number()
	fieldTimeoutAt   = stateFields.ByName("timeout_at").Number()
	fieldUpdatedAt   = stateFields.ByName("updated_at").Number()
	fieldCommands    = stateFields.ByName("commands").Number()
	fieldRemembered  = stateFields.ByName("remembered").Number()

	lastSummaryField = max(fieldStatus, fieldHoldReason, fieldStatusName, fieldHoldName)
	// The progress reads up to commands (23), after a dozen small fields
	// and before the history and the request, which are most of a state.
	lastProgressField = max(lastSummaryField, fieldVersion, fieldID, fieldAttempts, fieldIssue, fieldNextAttempt, fieldTimeoutAt,
		fieldCommands)
	// The retention pass reads up to remembered, the last field: it skips
	// the others by their length, without decoding them.
	lastRetentionField = max(lastProgressField, fieldUpdatedAt, fieldRemembered)
)

// scanHead reads the top-level fields of an encoded pb.State that the
// light decoders need, up to field number upTo. EncodeState writes the
// fields in number order (protobuf-go's marshaller does), so it stops at
// the first field past upTo; any other field before it is skipped whole.
// The fields after are not checked: DecodeState reads those.
func scanHead(b []byte, upTo protowire.Number) (stateHead, error) {
	var h stateHead
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return h, protowire.ParseError(n)
		}
		if num > upTo {
			break
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType && (num == fieldVersion || num == fieldStatus || num == fieldHoldReason ||
			num == fieldAttempts || num == fieldIssue || num == fieldCommands || num == fieldRemembered):
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			switch num {
			case fieldVersion:
				h.Version = v
			case fieldStatus:
				h.Status = pb.Status(int32(v))
			case fieldHoldReason:
				h.HoldReason = pb.HoldReason(int32(v))
			case fieldAttempts:
				h.Attempts = int64(v)
			case fieldIssue:
				h.Issue = int64(v)
			case fieldCommands:
				h.Commands = int64(v)
			case fieldRemembered:
				h.Remembered = v != 0
			}
		case typ == protowire.BytesType && (num == fieldID || num == fieldNextAttempt || num == fieldTimeoutAt ||
			num == fieldStatusName || num == fieldHoldName || num == fieldUpdatedAt):
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			switch num {
			case fieldID:
				h.ID = v
			case fieldNextAttempt:
				h.NextAttemptAt = v
			case fieldTimeoutAt:
				h.TimeoutAt = v
			case fieldStatusName:
				h.StatusName = v
			case fieldHoldName:
				h.HoldReasonName = v
			case fieldUpdatedAt:
				h.UpdatedAt = v
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return h, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return h, nil
}

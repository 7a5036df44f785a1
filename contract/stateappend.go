package contract

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// appendState appends s as a pb.State (herald.proto) to b, written
// directly with protowire rather than through a pb.State and protobuf's
// reflection-driven marshaller: the bytes are the same as that
// marshaller's in deterministic mode (fields in number order, zero values
// left out, map keys sorted, strings checked to be UTF-8), except that the
// applied positions, a map in State, are written sorted by topic
// (TestAppendStateMatchesProtobuf). It is what EncodeState runs on every
// table write, and spends a third of the CPU and none of the intermediate
// allocations (BenchmarkEncodeState).
func appendState(b []byte, s *State) ([]byte, error) {
	e := stateEncoder{b: b}
	e.uint(1, s.Version)
	st, stName := statusEnum.pb(s.Status)
	hr, hrName := holdEnum.pb(s.HoldReason)
	e.int(2, int64(st))
	e.int(3, int64(hr))
	e.str(4, stName)
	e.str(5, hrName)
	e.str(6, s.ID)
	e.int(7, int64(s.Attempts))
	e.int(8, int64(s.Issue))
	e.timePtr(9, s.NextAttemptAt)
	e.timePtr(10, s.TimeoutAt)
	e.str(11, s.Campaign)
	ch, chName := channelEnum.pb(s.Channel)
	e.int(12, int64(ch))
	e.str(13, chName)
	e.int(14, int64(s.ChannelIndex))
	e.int(15, int64(s.ChannelAttempts))
	e.int(16, int64(s.Duplicates))
	e.timeVal(17, s.FirstSeen)
	e.timeVal(18, s.UpdatedAt)
	e.str(19, s.LastError)
	e.timePtr(20, s.SentAt)
	e.timePtr(21, s.IssuedAt)
	e.timePtr(22, s.Cutoff)
	e.int(23, int64(s.Commands))
	e.int(24, int64(s.Unknowns))
	e.int(25, int64(s.DoubleDeliveries))
	for i := range s.History {
		e.attempt(26, &s.History[i])
	}
	if s.Request != nil {
		e.request(27, s.Request)
	}
	if len(s.Applied) > 0 {
		var buf [8]Position
		ps := buf[:0]
		for topic, p := range s.Applied {
			if p.Topic != topic && e.err == nil {
				e.err = fmt.Errorf("applied[%q] holds a position of topic %q", topic, p.Topic)
			}
			ps = append(ps, p)
		}
		slices.SortFunc(ps, func(a, b Position) int { return strings.Compare(a.Topic, b.Topic) })
		for _, p := range ps {
			e.position(28, p)
		}
	}
	if s.LastSource != (Position{}) {
		e.position(29, s.LastSource)
	}
	e.bool(30, s.LastEmitted)
	if len(s.Moved) > 0 {
		keys := make([]string, 0, len(s.Moved))
		for k := range s.Moved {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			at := e.begin(31)
			e.strAlways(1, k)
			e.intAlways(2, s.Moved[k])
			e.end(at)
		}
	}
	e.bool(32, s.Remembered)
	return e.b, e.err
}

// stateEncoder appends protobuf fields to b; the first string that is not
// UTF-8 is kept in err (protobuf's marshaller refuses it too).
type stateEncoder struct {
	b   []byte
	err error
}

func (e *stateEncoder) tag(num protowire.Number, typ protowire.Type) {
	e.b = protowire.AppendTag(e.b, num, typ)
}

// int writes an int64, int32 or enum field (negative values sign-extended
// to ten bytes, as protobuf does); zero is left out.
func (e *stateEncoder) int(num protowire.Number, v int64) {
	if v != 0 {
		e.intAlways(num, v)
	}
}

func (e *stateEncoder) intAlways(num protowire.Number, v int64) {
	e.tag(num, protowire.VarintType)
	e.b = protowire.AppendVarint(e.b, uint64(v))
}

func (e *stateEncoder) uint(num protowire.Number, v uint64) {
	if v != 0 {
		e.tag(num, protowire.VarintType)
		e.b = protowire.AppendVarint(e.b, v)
	}
}

func (e *stateEncoder) bool(num protowire.Number, v bool) {
	if v {
		e.tag(num, protowire.VarintType)
		e.b = append(e.b, 1)
	}
}

func (e *stateEncoder) str(num protowire.Number, v string) {
	if v != "" {
		e.strAlways(num, v)
	}
}

func (e *stateEncoder) strAlways(num protowire.Number, v string) {
	if e.err == nil && !utf8.ValidString(v) {
		e.err = fmt.Errorf("string field %d is not valid UTF-8", num)
	}
	e.tag(num, protowire.BytesType)
	e.b = protowire.AppendString(e.b, v)
}

// begin opens an embedded message: its tag and one byte for its length,
// which end fills in (moving the message along when the length needs more
// bytes).
func (e *stateEncoder) begin(num protowire.Number) int {
	e.tag(num, protowire.BytesType)
	e.b = append(e.b, 0)
	return len(e.b)
}

func (e *stateEncoder) end(start int) {
	n := len(e.b) - start
	if n < 0x80 {
		e.b[start-1] = byte(n)
		return
	}
	k := protowire.SizeVarint(uint64(n))
	for range k - 1 {
		e.b = append(e.b, 0)
	}
	copy(e.b[start-1+k:], e.b[start:start+n])
	protowire.AppendVarint(e.b[:start-1], uint64(n))
}

// timeVal writes a Time; the zero time is left out (timeSlab.val).
func (e *stateEncoder) timeVal(num protowire.Number, t time.Time) {
	if !t.IsZero() {
		e.time(num, t)
	}
}

// timePtr writes *t; nil is left out, a zero time that is set is kept
// (timeSlab.ptr).
func (e *stateEncoder) timePtr(num protowire.Number, t *time.Time) {
	if t != nil {
		e.time(num, *t)
	}
}

func (e *stateEncoder) time(num protowire.Number, t time.Time) {
	_, off := t.Zone()
	at := e.begin(num)
	e.int(1, t.Unix())
	e.int(2, int64(int32(t.Nanosecond())))
	if off := int32(off); off != 0 {
		e.tag(3, protowire.VarintType)
		e.b = protowire.AppendVarint(e.b, protowire.EncodeZigZag(int64(off)))
	}
	e.end(at)
}

func (e *stateEncoder) position(num protowire.Number, p Position) {
	at := e.begin(num)
	e.str(1, p.Topic)
	e.int(2, int64(p.Partition))
	e.int(3, p.Offset)
	e.end(at)
}

func (e *stateEncoder) attempt(num protowire.Number, a *Attempt) {
	at := e.begin(num)
	ch, chName := channelEnum.pb(a.Channel)
	oc, ocName := outcomeEnum.pb(a.Outcome)
	e.int(1, int64(a.Attempt))
	e.int(2, int64(ch))
	e.int(3, int64(oc))
	e.str(4, a.Error)
	e.int(5, int64(a.Code))
	e.timeVal(6, a.At)
	e.int(7, int64(a.Issue))
	e.bool(8, a.Late)
	e.bool(9, a.Double)
	e.str(10, chName)
	e.str(11, ocName)
	e.str(12, a.Provider)
	e.str(13, a.ProviderMessageID)
	e.end(at)
}

func (e *stateEncoder) request(num protowire.Number, r *Request) {
	at := e.begin(num)
	e.str(1, r.Schema)
	e.str(2, r.ID)
	e.str(3, r.Campaign)
	if rc := r.Recipient; rc != (Recipient{}) {
		rat := e.begin(4)
		e.str(1, rc.Email)
		e.str(2, rc.Phone)
		e.str(3, rc.PushToken)
		e.str(4, rc.TZ)
		e.end(rat)
	}
	for _, c := range r.Channels {
		e.strAlways(5, string(c))
	}
	if len(r.Content) > 0 {
		e.tag(6, protowire.BytesType)
		e.b = protowire.AppendBytes(e.b, r.Content)
	}
	if p := r.Policy; p != (Policy{}) {
		pat := e.begin(7)
		e.str(1, p.ID)
		e.int(2, int64(p.Version))
		e.int(3, int64(p.AttemptsPerChannel))
		e.int(4, int64(p.Backoff.Initial))
		if bits := math.Float64bits(p.Backoff.Multiplier); bits != 0 {
			e.tag(5, protowire.Fixed64Type)
			e.b = protowire.AppendFixed64(e.b, bits)
		}
		e.int(6, int64(p.Backoff.Max))
		e.bool(7, p.FallbackOnUnknown)
		e.end(pat)
	}
	for _, w := range r.Blackout {
		wat := e.begin(8)
		e.int(1, int64(int32(w.From)))
		e.int(2, int64(int32(w.To)))
		e.end(wat)
	}
	e.timePtr(9, r.NotBefore)
	e.timePtr(10, r.ExpiresAt)
	e.end(at)
}

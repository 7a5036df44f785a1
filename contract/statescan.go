package contract

import (
	"encoding/json"
	"math"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/herald-dispatch/herald/contract/internal/pb"
)

// scanState decodes a pb.State's bytes (herald.proto) straight into a
// State, without the pb.State and its messages that protobuf's
// reflection-driven decoder builds first: it is DecodeState's path for
// every table read (the dispatcher's, the sink's). It reads the shape
// appendState and protobuf's marshaller write: known fields of the
// expected wire type, each singular field once, strings in UTF-8. On
// anything else (an unknown field, a field written twice, which protobuf
// merges, a wrong wire type, bytes that do not parse) it reports !ok and
// DecodeState takes protobuf's path, which decides; so the two agree on
// every input (FuzzDecodeState).
func scanState(b []byte) (s *State, ok bool) {
	s = new(State)
	d := scanner{b: b}
	var e stateEnums
	for d.next() {
		if !s.scanScalar(&d, &e) {
			s.scanNested(&d)
		}
	}
	if d.bad {
		return nil, false
	}
	var err error
	s.Status = statusEnum.from(pb.Status(e.status), e.statusName, &err)
	s.HoldReason = holdEnum.from(pb.HoldReason(e.hold), e.holdName, &err)
	s.Channel = channelEnum.from(pb.Channel(e.channel), e.channelName, &err)
	if err != nil {
		return nil, false // protobuf's path reports it
	}
	return s, true
}

// stateEnums are a state's enum fields as read: each as a number and a
// name (herald.proto writes both).
type stateEnums struct {
	status, hold, channel             int32
	statusName, holdName, channelName string
}

// scanScalar reads d's field into s or e if it is one of the state's
// scalar fields (1 to 25), and reports whether it was.
func (s *State) scanScalar(d *scanner, e *stateEnums) bool {
	switch d.num {
	case 1:
		s.Version = d.uvarint()
	case 2:
		e.status = d.int32()
	case 3:
		e.hold = d.int32()
	case 4:
		e.statusName = d.str()
	case 5:
		e.holdName = d.str()
	case 6:
		s.ID = d.str()
	case 7:
		s.Attempts = d.int()
	case 8:
		s.Issue = d.int()
	case 9:
		s.NextAttemptAt = d.timePtr()
	case 10:
		s.TimeoutAt = d.timePtr()
	case 11:
		s.Campaign = d.str()
	case 12:
		e.channel = d.int32()
	case 13:
		e.channelName = d.str()
	case 14:
		s.ChannelIndex = d.int()
	case 15:
		s.ChannelAttempts = d.int()
	case 16:
		s.Duplicates = d.int()
	case 17:
		s.FirstSeen = d.time()
	case 18:
		s.UpdatedAt = d.time()
	case 19:
		s.LastError = d.str()
	case 20:
		s.SentAt = d.timePtr()
	case 21:
		s.IssuedAt = d.timePtr()
	case 22:
		s.Cutoff = d.timePtr()
	case 23:
		s.Commands = d.int()
	case 24:
		s.Unknowns = d.int()
	case 25:
		s.DoubleDeliveries = d.int()
	default:
		return false
	}
	return true
}

// scanNested reads d's field into s: one of the state's messages and
// repeated fields (26 to 32), or anything else, which fails d.
func (s *State) scanNested(d *scanner) {
	switch d.num {
	case 26:
		d.repeated()
		if a, ok := scanAttempt(d.msg()); ok {
			s.History = append(s.History, a)
		} else {
			d.fail()
		}
	case 27:
		if r, ok := scanRequest(d.msg()); ok {
			s.Request = r
		} else {
			d.fail()
		}
	case 28:
		d.repeated()
		if p, ok := scanPosition(d.msg()); ok {
			if s.Applied == nil {
				s.Applied = make(map[string]Position, 2)
			}
			s.Applied[p.Topic] = p
		} else {
			d.fail()
		}
	case 29:
		if p, ok := scanPosition(d.msg()); ok {
			s.LastSource = p
		} else {
			d.fail()
		}
	case 30:
		s.LastEmitted = d.bool()
	case 31:
		d.repeated()
		k, v, ok := scanMoved(d.msg())
		if !ok {
			d.fail()
			break
		}
		if s.Moved == nil {
			s.Moved = make(map[string]int64, 1)
		}
		s.Moved[k] = v
	case 32:
		s.Remembered = d.bool()
	default:
		d.fail()
	}
}

func scanAttempt(b []byte, ok bool) (Attempt, bool) {
	var a Attempt
	if !ok {
		return a, false
	}
	var channel, outcome int32
	var channelName, outcomeName string
	d := scanner{b: b}
	for d.next() {
		switch d.num {
		case 1:
			a.Attempt = d.int()
		case 2:
			channel = d.int32()
		case 3:
			outcome = d.int32()
		case 4:
			a.Error = d.str()
		case 5:
			a.Code = d.int()
		case 6:
			a.At = d.time()
		case 7:
			a.Issue = d.int()
		case 8:
			a.Late = d.bool()
		case 9:
			a.Double = d.bool()
		case 10:
			channelName = d.str()
		case 11:
			outcomeName = d.str()
		case 12:
			a.Provider = d.str()
		case 13:
			a.ProviderMessageID = d.str()
		default:
			d.fail()
		}
	}
	var err error
	a.Channel = channelEnum.from(pb.Channel(channel), channelName, &err)
	a.Outcome = outcomeEnum.from(pb.Outcome(outcome), outcomeName, &err)
	return a, !d.bad && err == nil
}

func scanRequest(b []byte, ok bool) (*Request, bool) {
	if !ok {
		return nil, false
	}
	r := new(Request)
	d := scanner{b: b}
	for d.next() {
		switch d.num {
		case 1:
			r.Schema = d.str()
		case 2:
			r.ID = d.str()
		case 3:
			r.Campaign = d.str()
		case 4:
			if rc, ok := scanRecipient(d.msg()); ok {
				r.Recipient = rc
			} else {
				d.fail()
			}
		case 5:
			d.repeated()
			r.Channels = append(r.Channels, Channel(d.str()))
		case 6:
			// A copy, as protobuf's decoder makes (nil when empty).
			if v, ok := d.bytes(); ok && len(v) > 0 {
				r.Content = append(json.RawMessage(nil), v...)
			}
		case 7:
			if p, ok := scanPolicy(d.msg()); ok {
				r.Policy = p
			} else {
				d.fail()
			}
		case 8:
			d.repeated()
			if w, ok := scanWindow(d.msg()); ok {
				r.Blackout = append(r.Blackout, w)
			} else {
				d.fail()
			}
		case 9:
			r.NotBefore = d.timePtr()
		case 10:
			r.ExpiresAt = d.timePtr()
		default:
			d.fail()
		}
	}
	return r, !d.bad
}

// scanRecipient reads a pb.Recipient's bytes, as scanAttempt a
// pb.Attempt's: false when they did not parse (ok false) or do not scan.
func scanRecipient(b []byte, ok bool) (Recipient, bool) {
	var rc Recipient
	if !ok {
		return rc, false
	}
	d := scanner{b: b}
	for d.next() {
		switch d.num {
		case 1:
			rc.Email = d.str()
		case 2:
			rc.Phone = d.str()
		case 3:
			rc.PushToken = d.str()
		case 4:
			rc.TZ = d.str()
		default:
			d.fail()
		}
	}
	return rc, !d.bad
}

// scanPolicy reads a pb.Policy's bytes, as scanRecipient.
func scanPolicy(b []byte, ok bool) (Policy, bool) {
	var p Policy
	if !ok {
		return p, false
	}
	d := scanner{b: b}
	for d.next() {
		switch d.num {
		case 1:
			p.ID = d.str()
		case 2:
			p.Version = d.int()
		case 3:
			p.AttemptsPerChannel = d.int()
		case 4:
			p.Backoff.Initial = Duration(d.int64())
		case 5:
			p.Backoff.Multiplier = d.double()
		case 6:
			p.Backoff.Max = Duration(d.int64())
		case 7:
			p.FallbackOnUnknown = d.bool()
		default:
			d.fail()
		}
	}
	return p, !d.bad
}

// scanWindow reads a pb.Window's bytes, as scanRecipient.
func scanWindow(b []byte, ok bool) (Window, bool) {
	var w Window
	if !ok {
		return w, false
	}
	d := scanner{b: b}
	for d.next() {
		switch d.num {
		case 1:
			w.From = Clock(d.int32())
		case 2:
			w.To = Clock(d.int32())
		default:
			d.fail()
		}
	}
	return w, !d.bad
}

func scanPosition(b []byte, ok bool) (Position, bool) {
	var p Position
	if !ok {
		return p, false
	}
	d := scanner{b: b}
	for d.next() {
		switch d.num {
		case 1:
			p.Topic = d.str()
		case 2:
			p.Partition = d.int32()
		case 3:
			p.Offset = d.int64()
		default:
			d.fail()
		}
	}
	return p, !d.bad
}

func scanMoved(b []byte, ok bool) (string, int64, bool) {
	if !ok {
		return "", 0, false
	}
	var k string
	var v int64
	d := scanner{b: b}
	for d.next() {
		switch d.num {
		case 1:
			k = d.str()
		case 2:
			v = d.int64()
		default:
			d.fail()
		}
	}
	return k, v, !d.bad
}

// scanner walks the fields of one message. next reads a tag; the field's
// reader (uvarint, str, msg...) checks its wire type and consumes it. A
// singular field seen twice, a wrong wire type or bytes that do not parse
// set bad and end the walk.
type scanner struct {
	b    []byte
	num  protowire.Number
	typ  protowire.Type
	seen uint64 // the singular fields read so far, by number (1-63)
	rep  bool   // the current field is repeated
	bad  bool
}

func (d *scanner) next() bool {
	if d.bad || len(d.b) == 0 {
		return false
	}
	num, typ, n := protowire.ConsumeTag(d.b)
	if n < 0 || num > 63 {
		d.bad = true
		return false
	}
	d.b, d.num, d.typ, d.rep = d.b[n:], num, typ, false
	return true
}

func (d *scanner) fail() { d.bad = true }

// repeated marks the current field as repeated (it may come again).
func (d *scanner) repeated() { d.rep = true }

// once checks the current field's wire type, and that a singular field
// comes once.
func (d *scanner) once(typ protowire.Type) bool {
	if d.bad || d.typ != typ {
		d.bad = true
		return false
	}
	if !d.rep {
		bit := uint64(1) << d.num
		if d.seen&bit != 0 {
			d.bad = true
			return false
		}
		d.seen |= bit
	}
	return true
}

func (d *scanner) uvarint() uint64 {
	if !d.once(protowire.VarintType) {
		return 0
	}
	v, n := protowire.ConsumeVarint(d.b)
	if n < 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *scanner) int64() int64 { return int64(d.uvarint()) }
func (d *scanner) int() int     { return int(int64(d.uvarint())) }
func (d *scanner) int32() int32 { return int32(d.uvarint()) }
func (d *scanner) bool() bool   { return d.uvarint() != 0 }

func (d *scanner) double() float64 {
	if !d.once(protowire.Fixed64Type) {
		return 0
	}
	v, n := protowire.ConsumeFixed64(d.b)
	if n < 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return math.Float64frombits(v)
}

func (d *scanner) bytes() ([]byte, bool) {
	if !d.once(protowire.BytesType) {
		return nil, false
	}
	v, n := protowire.ConsumeBytes(d.b)
	if n < 0 {
		d.bad = true
		return nil, false
	}
	d.b = d.b[n:]
	return v, true
}

func (d *scanner) msg() ([]byte, bool) { return d.bytes() }

func (d *scanner) str() string {
	v, ok := d.bytes()
	if !ok {
		return ""
	}
	if !utf8.Valid(v) {
		d.bad = true
		return ""
	}
	return string(v)
}

// time reads a Time message (fromTimePB).
func (d *scanner) time() time.Time {
	b, ok := d.msg()
	if !ok {
		return time.Time{}
	}
	t, ok := scanTime(b)
	if !ok {
		d.bad = true
	}
	return t
}

// scanTime decodes the bytes of a Time message as fromTimePB does, or
// reports !ok for anything but the shape the encoders write.
func scanTime(b []byte) (time.Time, bool) {
	var m pb.Time
	td := scanner{b: b}
	for td.next() {
		switch td.num {
		case 1:
			m.Seconds = td.int64()
		case 2:
			m.Nanos = td.int32()
		case 3:
			m.Offset = int32(protowire.DecodeZigZag(td.uvarint() & math.MaxUint32))
		default:
			td.fail()
		}
	}
	if td.bad {
		return time.Time{}, false
	}
	return fromTimePB(&m), true
}

func (d *scanner) timePtr() *time.Time {
	t := d.time()
	if d.bad {
		return nil
	}
	return &t
}

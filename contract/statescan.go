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
	var status, hold, channel int32
	var statusName, holdName, channelName string
	for d.next() {
		switch d.num {
		case 1:
			s.Version = d.uvarint()
		case 2:
			status = d.int32()
		case 3:
			hold = d.int32()
		case 4:
			statusName = d.str()
		case 5:
			holdName = d.str()
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
			channel = d.int32()
		case 13:
			channelName = d.str()
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
	if d.bad {
		return nil, false
	}
	var err error
	s.Status = statusEnum.from(pb.Status(status), statusName, &err)
	s.HoldReason = holdEnum.from(pb.HoldReason(hold), holdName, &err)
	s.Channel = channelEnum.from(pb.Channel(channel), channelName, &err)
	if err != nil {
		return nil, false // protobuf's path reports it
	}
	return s, true
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
			rb, ok := d.msg()
			if !ok {
				break
			}
			rd := scanner{b: rb}
			for rd.next() {
				switch rd.num {
				case 1:
					r.Recipient.Email = rd.str()
				case 2:
					r.Recipient.Phone = rd.str()
				case 3:
					r.Recipient.PushToken = rd.str()
				case 4:
					r.Recipient.TZ = rd.str()
				default:
					rd.fail()
				}
			}
			if rd.bad {
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
			pbb, ok := d.msg()
			if !ok {
				break
			}
			pd := scanner{b: pbb}
			p := &r.Policy
			for pd.next() {
				switch pd.num {
				case 1:
					p.ID = pd.str()
				case 2:
					p.Version = pd.int()
				case 3:
					p.AttemptsPerChannel = pd.int()
				case 4:
					p.Backoff.Initial = Duration(pd.int64())
				case 5:
					p.Backoff.Multiplier = pd.double()
				case 6:
					p.Backoff.Max = Duration(pd.int64())
				case 7:
					p.FallbackOnUnknown = pd.bool()
				default:
					pd.fail()
				}
			}
			if pd.bad {
				d.fail()
			}
		case 8:
			d.repeated()
			wb, ok := d.msg()
			if !ok {
				break
			}
			wd := scanner{b: wb}
			var w Window
			for wd.next() {
				switch wd.num {
				case 1:
					w.From = Clock(wd.int32())
				case 2:
					w.To = Clock(wd.int32())
				default:
					wd.fail()
				}
			}
			if wd.bad {
				d.fail()
			}
			r.Blackout = append(r.Blackout, w)
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

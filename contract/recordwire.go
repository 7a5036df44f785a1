package contract

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/herald-dispatch/herald/contract/internal/pb"
)

// The send command, the send result and the wake-up, written and read
// directly with protowire, as appendState and scanState do the state:
// every send command and result, and every wake-up, passes through these
// (the dispatcher encodes the commands and wake-ups and decodes the
// results and wake-ups; the sender decodes the commands and encodes the
// results). The encoders write the bytes of protobuf's marshaller in
// deterministic mode (TestAppendRecordsMatchProtobuf); the scanners read
// the shape the encoders write and leave anything else to protobuf's
// decoder, so that a record decodes the same either way (FuzzDecodeRecords).

// encodeAppended writes FormatProto and v (a *SendCommand, *SendResult
// or *Wakeup) into a pooled buffer, and returns a copy of the exact size
// (the value outlives the call: the producer holds it until the broker
// has it).
func encodeAppended(what string, v any) ([]byte, error) {
	bp := encodeBufs.Get().(*[]byte)
	defer encodeBufs.Put(bp)
	e := stateEncoder{b: append((*bp)[:0], FormatProto)}
	switch v := v.(type) {
	case *SendCommand:
		e.command(v)
	case *SendResult:
		e.result(v)
	case *Wakeup:
		e.wakeup(v)
	default:
		panic(fmt.Sprintf("contract: encodeAppended of a %T", v))
	}
	if cap(e.b) <= maxPooledEncodeBuf {
		*bp = e.b
	}
	if e.err != nil {
		return nil, fmt.Errorf("contract: encode %s: %w", what, e.err)
	}
	return append(make([]byte, 0, len(e.b)), e.b...), nil
}

// command writes c as a pb.SendCommand (commandPB).
func (e *stateEncoder) command(c *SendCommand) {
	ch, chName := channelEnum.pb(c.Channel)
	e.str(1, c.ID)
	e.str(2, c.Campaign)
	e.int(3, int64(ch))
	e.int(4, int64(c.Attempt))
	e.str(5, c.Address)
	if len(c.Content) > 0 {
		e.tag(6, protowire.BytesType)
		e.b = protowire.AppendBytes(e.b, c.Content)
	}
	e.str(7, c.IdempotencyKey)
	e.timeVal(8, c.RequestedAt)
	e.timeVal(9, c.IssuedAt)
	e.timeVal(10, c.Deadline)
	e.timeVal(11, c.Cutoff)
	e.int(12, int64(c.Issue))
	e.str(13, chName)
	e.int(14, int64(c.CallTimeout))
}

// result writes r as a pb.SendResult (resultPB).
func (e *stateEncoder) result(r *SendResult) {
	ch, chName := channelEnum.pb(r.Channel)
	oc, ocName := outcomeEnum.pb(r.Outcome)
	e.str(1, r.ID)
	e.int(2, int64(r.Attempt))
	e.int(3, int64(r.Issue))
	e.int(4, int64(ch))
	e.int(5, int64(oc))
	e.str(6, r.Error)
	e.int(7, int64(r.Code))
	e.int(8, int64(r.RetryAfter))
	e.timeVal(9, r.At)
	e.int(10, int64(r.Latency))
	e.str(11, chName)
	e.str(12, ocName)
	e.str(13, r.Provider)
	e.str(14, r.ProviderMessageID)
}

// wakeup writes w as a pb.Wakeup (wakeupPB).
func (e *stateEncoder) wakeup(w *Wakeup) {
	k, kName := wakeupEnum.pb(w.Kind)
	e.str(1, w.ID)
	e.int(2, int64(k))
	e.timeVal(3, w.Due)
	e.int(4, int64(w.Attempt))
	e.int(5, int64(w.Issue))
	e.str(6, kName)
	e.uint(7, w.SeenVersion)
}

// scanCommand decodes a pb.SendCommand's bytes straight into a
// SendCommand, as protobuf's decoder and fromCommandPB do, or reports !ok
// for anything but the shape the encoders write (an unknown field, a
// field twice, a wrong wire type, bytes that do not parse, a channel
// number no release writes): decodeTyped then takes protobuf's path,
// which decides.
func scanCommand(b []byte) (*SendCommand, bool) {
	c := new(SendCommand)
	var channel int32
	var channelName string
	d := scanner{b: b}
	for d.next() {
		switch d.num {
		case 1:
			c.ID = d.str()
		case 2:
			c.Campaign = d.str()
		case 3:
			channel = d.int32()
		case 4:
			c.Attempt = d.int()
		case 5:
			c.Address = d.str()
		case 6:
			// A copy, as protobuf's decoder makes (nil when empty).
			if v, ok := d.bytes(); ok && len(v) > 0 {
				c.Content = append(json.RawMessage(nil), v...)
			}
		case 7:
			c.IdempotencyKey = d.strLike(c.ID)
		case 8:
			c.RequestedAt = d.time()
		case 9:
			c.IssuedAt = d.time()
		case 10:
			c.Deadline = d.time()
		case 11:
			c.Cutoff = d.time()
		case 12:
			c.Issue = d.int()
		case 13:
			channelName = d.str()
		case 14:
			c.CallTimeout = Duration(d.int64())
		default:
			d.fail()
		}
	}
	if d.bad {
		return nil, false
	}
	var err error
	c.Channel = channelEnum.from(pb.Channel(channel), channelName, &err)
	return c, err == nil
}

// scanResult decodes a pb.SendResult's bytes as scanCommand a
// pb.SendCommand's.
func scanResult(b []byte) (*SendResult, bool) {
	r := new(SendResult)
	var channel, outcome int32
	var channelName, outcomeName string
	d := scanner{b: b}
	for d.next() {
		switch d.num {
		case 1:
			r.ID = d.str()
		case 2:
			r.Attempt = d.int()
		case 3:
			r.Issue = d.int()
		case 4:
			channel = d.int32()
		case 5:
			outcome = d.int32()
		case 6:
			r.Error = d.str()
		case 7:
			r.Code = d.int()
		case 8:
			r.RetryAfter = Duration(d.int64())
		case 9:
			r.At = d.time()
		case 10:
			r.Latency = Duration(d.int64())
		case 11:
			channelName = d.str()
		case 12:
			outcomeName = d.str()
		case 13:
			r.Provider = d.str()
		case 14:
			r.ProviderMessageID = d.str()
		default:
			d.fail()
		}
	}
	if d.bad {
		return nil, false
	}
	var err error
	r.Channel = channelEnum.from(pb.Channel(channel), channelName, &err)
	r.Outcome = outcomeEnum.from(pb.Outcome(outcome), outcomeName, &err)
	return r, err == nil
}

// scanWakeup decodes a pb.Wakeup's bytes as scanCommand a
// pb.SendCommand's.
func scanWakeup(b []byte) (*Wakeup, bool) {
	w := new(Wakeup)
	var kind int32
	var kindName string
	d := scanner{b: b}
	for d.next() {
		switch d.num {
		case 1:
			w.ID = d.str()
		case 2:
			kind = d.int32()
		case 3:
			w.Due = d.time()
		case 4:
			w.Attempt = d.int()
		case 5:
			w.Issue = d.int()
		case 6:
			kindName = d.str()
		case 7:
			w.SeenVersion = d.uvarint()
		default:
			d.fail()
		}
	}
	if d.bad {
		return nil, false
	}
	var err error
	w.Kind = wakeupEnum.from(pb.WakeupKind(kind), kindName, &err)
	return w, err == nil
}

// strLike reads a string field as str does, returning like itself (no
// copy) when the field holds the same text, which is valid UTF-8 then: a command's idempotency key is
// its id.
func (d *scanner) strLike(like string) string {
	v, ok := d.bytes()
	if !ok {
		return ""
	}
	if like != "" && string(v) == like {
		return like
	}
	if !utf8.Valid(v) {
		d.bad = true
		return ""
	}
	return string(v)
}

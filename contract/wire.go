package contract

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-dispatch/herald/contract/internal/pb"
)

// Herald's state and its internal records are written in a binary
// encoding made for the hot path: FormatProto, then a protobuf message of
// contract/internal/pb/herald.proto. Earlier releases wrote JSON, and
// every decoder still reads it (a JSON value starts with '{'), so that the
// tables, changelogs and topics an upgrade finds lose nothing. This file
// converts between the Go types and the messages; statecodec.go and
// recordcodec.go use it.

// FormatProto is the first byte of every value in Herald's binary
// encoding, version 1; the protobuf message follows. A later version of
// the encoding gets another first byte, never '{' or JSON whitespace.
const FormatProto byte = 0x01

// ErrUnknownEncoding is returned (wrapped) for a value that is neither
// Herald's binary encoding nor JSON.
var ErrUnknownEncoding = errors.New("unknown encoding")

// encoding tells the two encodings apart by the first byte.
type encoding int

const (
	encProto encoding = iota
	encJSON
)

func encodingOf(b []byte) (encoding, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("%w: empty value", ErrUnknownEncoding)
	}
	if b[0] == FormatProto {
		return encProto, nil
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return encJSON, nil
	}
	return 0, fmt.Errorf("%w: first byte 0x%02x is neither Herald's binary encoding (0x%02x) nor JSON ('{')",
		ErrUnknownEncoding, b[0], FormatProto)
}

var (
	marshalOpts   = proto.MarshalOptions{Deterministic: true, UseCachedSize: true}
	unmarshalOpts = proto.UnmarshalOptions{DiscardUnknown: true}
)

// marshal writes FormatProto and m in one allocation.
func marshal(m proto.Message) ([]byte, error) {
	n := proto.Size(m) // caches the sizes that UseCachedSize reuses
	return marshalOpts.MarshalAppend(append(make([]byte, 0, 1+n), FormatProto), m)
}

// enum maps a Go string enumeration to a protobuf enum whose value i+1 is
// vals[i] and 0 is the empty string. A Go value that is not in the enum
// travels as its name instead (herald.proto: the enums are closed).
type enum[G ~string, P ~int32] struct {
	name   string
	toPB   map[G]P
	fromPB []G
}

func newEnum[G ~string, P ~int32](name string, vals ...G) enum[G, P] {
	e := enum[G, P]{name: name, toPB: map[G]P{"": 0}, fromPB: append([]G{""}, vals...)}
	for i, v := range vals {
		e.toPB[v] = P(i + 1)
	}
	return e
}

// pb returns v's number, or 0 and v's name when the enum lacks it.
func (e enum[G, P]) pb(v G) (P, string) {
	if p, ok := e.toPB[v]; ok {
		return p, ""
	}
	return 0, string(v)
}

// from returns the value of a number and its *_name companion. A number
// the enum lacks cannot have been written by any version (values are
// never given new numbers) and is an error.
func (e enum[G, P]) from(p P, name string, err *error) G {
	if name != "" {
		return G(name)
	}
	if p < 0 || int(p) >= len(e.fromPB) {
		if *err == nil {
			*err = fmt.Errorf("unknown %s %d", e.name, int32(p))
		}
		return ""
	}
	return e.fromPB[p]
}

// The enumerations, in the order of their values in herald.proto
// (TestEnumsMatchTheProto).
var (
	statusEnum = newEnum[Status, pb.Status]("status", StatusScheduled, StatusDeferred, StatusSending, StatusRetrying,
		StatusSent, StatusFailed, StatusExpired, StatusRejected, StatusCanceled)
	holdEnum    = newEnum[HoldReason, pb.HoldReason]("hold reason", HoldSchedule, HoldBlackout, HoldBackoff, HoldRateLimit)
	channelEnum = newEnum[Channel, pb.Channel]("channel", ChannelEmail, ChannelSMS, ChannelPush)
	outcomeEnum = newEnum[Outcome, pb.Outcome]("outcome", OutcomeSuccess, OutcomeTransient, OutcomePermanent,
		OutcomeThrottled, OutcomeUnknown, OutcomeNotAttempted, OutcomeRetry)
	wakeupEnum = newEnum[WakeupKind, pb.WakeupKind]("wake-up kind", WakeupHold, WakeupSendTimeout, WakeupResend)
)

// timePB encodes t; the zero time is absent.
func timePB(t time.Time) *pb.Time {
	if t.IsZero() {
		return nil
	}
	return setTime(new(pb.Time), t)
}

func setTime(m *pb.Time, t time.Time) *pb.Time {
	_, off := t.Zone()
	m.Seconds, m.Nanos, m.Offset = t.Unix(), int32(t.Nanosecond()), int32(off)
	return m
}

// timeSlab hands out the Times of one message from one allocation (an
// encode allocates per message, and a state has a dozen Times).
type timeSlab struct {
	buf []pb.Time
	n   int
}

func newTimeSlab(n int) *timeSlab { return &timeSlab{buf: make([]pb.Time, n)} }

func (ts *timeSlab) get(t time.Time) *pb.Time {
	if ts.n == len(ts.buf) {
		return setTime(new(pb.Time), t)
	}
	ts.n++
	return setTime(&ts.buf[ts.n-1], t)
}

// val encodes t; the zero time is absent.
func (ts *timeSlab) val(t time.Time) *pb.Time {
	if t.IsZero() {
		return nil
	}
	return ts.get(t)
}

// ptr encodes *t; nil is absent (a zero time that is set is kept).
func (ts *timeSlab) ptr(t *time.Time) *pb.Time {
	if t == nil {
		return nil
	}
	return ts.get(*t)
}

// fromTimePB decodes a Time; absent is the zero time. A time written in
// UTC comes back in UTC, one written with an offset in a zone of that
// offset.
func fromTimePB(m *pb.Time) time.Time {
	if m == nil {
		return time.Time{}
	}
	t := time.Unix(m.Seconds, int64(m.Nanos))
	if m.Offset == 0 {
		return t.UTC()
	}
	return t.In(time.FixedZone("", int(m.Offset)))
}

func fromTimePtrPB(m *pb.Time) *time.Time {
	if m == nil {
		return nil
	}
	t := fromTimePB(m)
	return &t
}

func statePB(s *State) (*pb.State, error) {
	var err error
	ts := newTimeSlab(9 + len(s.History)) // the state's 7, the request's 2, one per attempt
	m := &pb.State{
		Version: s.Version, Id: s.ID, Campaign: s.Campaign, ChannelIndex: int64(s.ChannelIndex),
		Attempts: int64(s.Attempts), ChannelAttempts: int64(s.ChannelAttempts), Duplicates: int64(s.Duplicates),
		FirstSeen: ts.val(s.FirstSeen), UpdatedAt: ts.val(s.UpdatedAt), NextAttemptAt: ts.ptr(s.NextAttemptAt),
		LastError: s.LastError, SentAt: ts.ptr(s.SentAt), IssuedAt: ts.ptr(s.IssuedAt),
		Cutoff: ts.ptr(s.Cutoff), TimeoutAt: ts.ptr(s.TimeoutAt),
		Issue: int64(s.Issue), Commands: int64(s.Commands), Unknowns: int64(s.Unknowns),
		DoubleDeliveries: int64(s.DoubleDeliveries), LastEmitted: s.LastEmitted, Remembered: s.Remembered,
	}
	ps := make([]pb.Position, len(s.Applied)+1) // the applied ones and the last source
	if s.LastSource != (Position{}) {
		m.LastSource = setPosition(&ps[len(s.Applied)], s.LastSource)
	}
	m.Status, m.StatusName = statusEnum.pb(s.Status)
	m.HoldReason, m.HoldReasonName = holdEnum.pb(s.HoldReason)
	m.Channel, m.ChannelName = channelEnum.pb(s.Channel)
	if len(s.History) > 0 {
		m.History = make([]*pb.Attempt, len(s.History))
		hs := make([]pb.Attempt, len(s.History))
		for i := range s.History {
			a, h := &s.History[i], &hs[i]
			h.Attempt, h.Error, h.Code, h.At = int64(a.Attempt), a.Error, int64(a.Code), ts.val(a.At)
			h.Issue, h.Late, h.Double = int64(a.Issue), a.Late, a.Double
			h.Provider, h.ProviderMessageId = a.Provider, a.ProviderMessageID
			h.Channel, h.ChannelName = channelEnum.pb(a.Channel)
			h.Outcome, h.OutcomeName = outcomeEnum.pb(a.Outcome)
			m.History[i] = h
		}
	}
	if s.Request != nil {
		m.Request = requestPB(s.Request, ts)
	}
	if len(s.Applied) > 0 {
		m.Applied = make([]*pb.Position, 0, len(s.Applied))
		i := 0
		for topic, p := range s.Applied {
			if p.Topic != topic && err == nil {
				err = fmt.Errorf("applied[%q] holds a position of topic %q", topic, p.Topic)
			}
			m.Applied = append(m.Applied, setPosition(&ps[i], p))
			i++
		}
	}
	if len(s.Moved) > 0 {
		m.Moved = s.Moved
	}
	return m, err
}

func setPosition(m *pb.Position, p Position) *pb.Position {
	m.Topic, m.Partition, m.Offset = p.Topic, p.Partition, p.Offset
	return m
}

func fromPositionPB(m *pb.Position) Position {
	return Position{Topic: m.GetTopic(), Partition: m.GetPartition(), Offset: m.GetOffset()}
}

func requestPB(r *Request, ts *timeSlab) *pb.Request {
	m := &pb.Request{Schema: r.Schema, Id: r.ID, Campaign: r.Campaign, Content: r.Content,
		NotBefore: ts.ptr(r.NotBefore), ExpiresAt: ts.ptr(r.ExpiresAt)}
	if r.Recipient != (Recipient{}) {
		m.Recipient = &pb.Recipient{Email: r.Recipient.Email, Phone: r.Recipient.Phone,
			PushToken: r.Recipient.PushToken, Tz: r.Recipient.TZ}
	}
	if r.Channels != nil {
		m.Channels = make([]string, len(r.Channels))
		for i, c := range r.Channels {
			m.Channels[i] = string(c)
		}
	}
	if p := r.Policy; p != (Policy{}) {
		m.Policy = &pb.Policy{Id: p.ID, Version: int64(p.Version), AttemptsPerChannel: int64(p.AttemptsPerChannel),
			BackoffInitial: int64(p.Backoff.Initial), BackoffMultiplier: p.Backoff.Multiplier,
			BackoffMax: int64(p.Backoff.Max), FallbackOnUnknown: p.FallbackOnUnknown}
	}
	if len(r.Blackout) > 0 {
		m.Blackout = make([]*pb.Window, len(r.Blackout))
		ws := make([]pb.Window, len(r.Blackout))
		for i, w := range r.Blackout {
			ws[i].From, ws[i].To = int32(w.From), int32(w.To)
			m.Blackout[i] = &ws[i]
		}
	}
	return m
}

func fromStatePB(m *pb.State) (*State, error) {
	var err error
	s := &State{
		ID: m.Id, Campaign: m.Campaign, Status: statusEnum.from(m.Status, m.StatusName, &err),
		Channel: channelEnum.from(m.Channel, m.ChannelName, &err), ChannelIndex: int(m.ChannelIndex),
		Attempts: int(m.Attempts), ChannelAttempts: int(m.ChannelAttempts), Duplicates: int(m.Duplicates),
		FirstSeen: fromTimePB(m.FirstSeen), UpdatedAt: fromTimePB(m.UpdatedAt), NextAttemptAt: fromTimePtrPB(m.NextAttemptAt),
		HoldReason: holdEnum.from(m.HoldReason, m.HoldReasonName, &err), LastError: m.LastError, SentAt: fromTimePtrPB(m.SentAt),
		Version: m.Version, IssuedAt: fromTimePtrPB(m.IssuedAt), Cutoff: fromTimePtrPB(m.Cutoff),
		TimeoutAt: fromTimePtrPB(m.TimeoutAt), Issue: int(m.Issue), Commands: int(m.Commands),
		Unknowns: int(m.Unknowns), DoubleDeliveries: int(m.DoubleDeliveries),
		LastEmitted: m.LastEmitted, Moved: m.Moved, Remembered: m.Remembered,
	}
	if m.LastSource != nil {
		s.LastSource = fromPositionPB(m.LastSource)
	}
	if len(m.History) > 0 {
		s.History = make([]Attempt, len(m.History))
		for i, a := range m.History {
			s.History[i] = Attempt{Attempt: int(a.Attempt), Channel: channelEnum.from(a.Channel, a.ChannelName, &err),
				Outcome: outcomeEnum.from(a.Outcome, a.OutcomeName, &err), Error: a.Error, Code: int(a.Code), At: fromTimePB(a.At),
				Issue: int(a.Issue), Late: a.Late, Double: a.Double, Provider: a.Provider, ProviderMessageID: a.ProviderMessageId}
		}
	}
	if m.Request != nil {
		s.Request = fromRequestPB(m.Request)
	}
	if len(m.Applied) > 0 {
		s.Applied = make(map[string]Position, len(m.Applied))
		for _, p := range m.Applied {
			s.Applied[p.Topic] = fromPositionPB(p)
		}
	}
	return s, err
}

func fromRequestPB(m *pb.Request) *Request {
	r := &Request{Schema: m.Schema, ID: m.Id, Campaign: m.Campaign, Content: m.Content,
		NotBefore: fromTimePtrPB(m.NotBefore), ExpiresAt: fromTimePtrPB(m.ExpiresAt)}
	if rc := m.Recipient; rc != nil {
		r.Recipient = Recipient{Email: rc.Email, Phone: rc.Phone, PushToken: rc.PushToken, TZ: rc.Tz}
	}
	if m.Channels != nil {
		r.Channels = make([]Channel, len(m.Channels))
		for i, c := range m.Channels {
			r.Channels[i] = Channel(c)
		}
	}
	if p := m.Policy; p != nil {
		r.Policy = Policy{ID: p.Id, Version: int(p.Version), AttemptsPerChannel: int(p.AttemptsPerChannel),
			Backoff:           Backoff{Initial: Duration(p.BackoffInitial), Multiplier: p.BackoffMultiplier, Max: Duration(p.BackoffMax)},
			FallbackOnUnknown: p.FallbackOnUnknown}
	}
	if len(m.Blackout) > 0 {
		r.Blackout = make([]Window, len(m.Blackout))
		for i, w := range m.Blackout {
			r.Blackout[i] = Window{From: Clock(w.From), To: Clock(w.To)}
		}
	}
	return r
}

func commandPB(c *SendCommand) *pb.SendCommand {
	ts := newTimeSlab(4)
	m := &pb.SendCommand{Id: c.ID, Campaign: c.Campaign,
		Attempt: int64(c.Attempt), Address: c.Address, Content: c.Content, IdempotencyKey: c.IdempotencyKey,
		RequestedAt: ts.val(c.RequestedAt), IssuedAt: ts.val(c.IssuedAt), Deadline: ts.val(c.Deadline),
		Cutoff: ts.val(c.Cutoff), Issue: int64(c.Issue), CallTimeout: int64(c.CallTimeout)}
	m.Channel, m.ChannelName = channelEnum.pb(c.Channel)
	return m
}

func fromCommandPB(m *pb.SendCommand) (*SendCommand, error) {
	var err error
	return &SendCommand{ID: m.Id, Campaign: m.Campaign, Channel: channelEnum.from(m.Channel, m.ChannelName, &err),
		Attempt: int(m.Attempt), Address: m.Address, Content: m.Content, IdempotencyKey: m.IdempotencyKey,
		RequestedAt: fromTimePB(m.RequestedAt), IssuedAt: fromTimePB(m.IssuedAt), Deadline: fromTimePB(m.Deadline),
		Cutoff: fromTimePB(m.Cutoff), Issue: int(m.Issue), CallTimeout: Duration(m.CallTimeout)}, err
}

func resultPB(r *SendResult) *pb.SendResult {
	m := &pb.SendResult{Id: r.ID, Attempt: int64(r.Attempt), Issue: int64(r.Issue), Error: r.Error,
		Code: int64(r.Code), RetryAfter: int64(r.RetryAfter), At: timePB(r.At), Latency: int64(r.Latency),
		Provider: r.Provider, ProviderMessageId: r.ProviderMessageID}
	m.Channel, m.ChannelName = channelEnum.pb(r.Channel)
	m.Outcome, m.OutcomeName = outcomeEnum.pb(r.Outcome)
	return m
}

func fromResultPB(m *pb.SendResult) (*SendResult, error) {
	var err error
	return &SendResult{ID: m.Id, Attempt: int(m.Attempt), Issue: int(m.Issue),
		Channel: channelEnum.from(m.Channel, m.ChannelName, &err), Outcome: outcomeEnum.from(m.Outcome, m.OutcomeName, &err),
		Error: m.Error, Code: int(m.Code), RetryAfter: Duration(m.RetryAfter), At: fromTimePB(m.At), Latency: Duration(m.Latency),
		Provider: m.Provider, ProviderMessageID: m.ProviderMessageId}, err
}

func wakeupPB(w *Wakeup) *pb.Wakeup {
	m := &pb.Wakeup{Id: w.ID, Due: timePB(w.Due), Attempt: int64(w.Attempt), Issue: int64(w.Issue), SeenVersion: w.SeenVersion}
	m.Kind, m.KindName = wakeupEnum.pb(w.Kind)
	return m
}

func fromWakeupPB(m *pb.Wakeup) (*Wakeup, error) {
	var err error
	return &Wakeup{ID: m.Id, Kind: wakeupEnum.from(m.Kind, m.KindName, &err), Due: fromTimePB(m.Due),
		Attempt: int(m.Attempt), Issue: int(m.Issue), SeenVersion: m.SeenVersion}, err
}

package dlq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
)

// Entry is one record of the DLQ topic.
type Entry struct {
	// Partition and Offset are the dead letter's place in the DLQ topic.
	Partition int32 `json:"dlq_partition"`
	Offset    int64 `json:"dlq_offset"`
	// Letter is the dead letter; Err is set instead when the record is
	// not one (written by something else).
	Letter contract.DeadLetter `json:"-"`
	Err    error               `json:"-"`
	// Replayed is the last replay of this dead letter, if any.
	Replayed *Replay `json:"replayed,omitempty"`
}

// Pos names the entry as PARTITION@OFFSET.
func (e Entry) Pos() string { return fmt.Sprintf("%d@%d", e.Partition, e.Offset) }

// Filter selects dead letters. Zero fields match everything.
type Filter struct {
	Reason string
	// Topic is the topic the original record was on.
	Topic string
	// Key is the original record's key (a request's id).
	Key string
	// Since and Until bound when the record was dead-lettered.
	Since, Until time.Time
	// At lists DLQ positions (PARTITION@OFFSET); empty: any.
	At []string
}

// Match reports whether e passes f.
func (f Filter) Match(e Entry) bool {
	d := e.Letter
	if e.Err != nil {
		return f.Reason == "" && f.Topic == "" && f.Key == "" && f.Since.IsZero() && f.Until.IsZero() && f.matchAt(e)
	}
	return (f.Reason == "" || d.Reason == f.Reason) && (f.Topic == "" || d.Topic == f.Topic) &&
		(f.Key == "" || string(d.Key) == f.Key) &&
		(f.Since.IsZero() || !d.At.Before(f.Since)) && (f.Until.IsZero() || d.At.Before(f.Until)) && f.matchAt(e)
}

// Check reports a filter that cannot be meant: a position that is not
// PARTITION@OFFSET, or a Since not before Until.
func (f Filter) Check() error {
	for _, a := range f.At {
		p, o, ok := strings.Cut(a, "@")
		if _, err := strconv.ParseInt(p, 10, 32); !ok || err != nil {
			return fmt.Errorf("at %q: want PARTITION@OFFSET of the DLQ topic, such as 0@42", a)
		}
		if n, err := strconv.ParseInt(o, 10, 64); err != nil || n < 0 {
			return fmt.Errorf("at %q: want PARTITION@OFFSET of the DLQ topic, such as 0@42", a)
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return fmt.Errorf("since %s is not before until %s", f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339))
	}
	return nil
}

// ParseWhen reads a filter's time: RFC 3339, or a duration meaning that
// long before now ("24h"). Empty is the zero time (no bound).
func ParseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time or a duration such as 24h", s)
	}
	return t, nil
}

func (f Filter) matchAt(e Entry) bool {
	if len(f.At) == 0 {
		return true
	}
	for _, a := range f.At {
		if a == e.Pos() {
			return true
		}
	}
	return false
}

// ErrNoTopic is returned when a topic to read does not exist: reading
// never creates one.
var ErrNoTopic = errors.New("topic does not exist")

// ReadTopic reads a topic from its start to the end offsets it had when
// called. cl must not consume anything yet. It never creates the topic.
func ReadTopic(ctx context.Context, opts []kgo.Opt, topic string) ([]*kgo.Record, error) {
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", topic, err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("read %s: %w", topic, ErrNoTopic)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: end offsets: %w", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	for len(want) > 0 {
		// A partition whose last offsets hold no record (a transaction
		// marker) is done when a fetch brings nothing more.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("read %s: %w", topic, err)
		}
		if fs.NumRecords() == 0 && pctx.Err() != nil {
			break
		}
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) && !errors.Is(fe.Err, context.Canceled) {
				return out, fmt.Errorf("read %s: partition %d: %w", topic, fe.Partition, fe.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok {
				if r.Offset < end {
					out = append(out, r)
				}
				if r.Offset+1 >= end {
					delete(want, r.Partition)
				}
			}
		})
	}
	return out, nil
}

// Read reads the dead letters of topic that pass f, with their replays
// from replaysTopic (which may not exist yet).
func Read(ctx context.Context, opts []kgo.Opt, topic, replaysTopic string, f Filter) ([]Entry, error) {
	recs, err := ReadTopic(ctx, opts, topic)
	if err != nil {
		return nil, err
	}
	replays, err := ReadReplays(ctx, opts, replaysTopic)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, r := range recs {
		e := Entry{Partition: r.Partition, Offset: r.Offset}
		e.Letter, e.Err = Parse(r)
		if rp, ok := replays[e.Pos()]; ok {
			e.Replayed = &rp
		}
		if f.Match(e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// Replay is the record of one dead letter published again.
type Replay struct {
	// DLQ is the dead letter's PARTITION@OFFSET.
	DLQ string `json:"dlq"`
	// ID is the request id (the key) it was published with.
	ID string `json:"id"`
	// Fixed is true when a fix-up replaced the original value.
	Fixed bool      `json:"fixed,omitempty"`
	At    time.Time `json:"at"`
	// Topic, Partition and Offset are where the request was published.
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// ReadReplays returns the replays recorded on topic by DLQ position; a
// topic that does not exist has none.
func ReadReplays(ctx context.Context, opts []kgo.Opt, topic string) (map[string]Replay, error) {
	recs, err := ReadTopic(ctx, opts, topic)
	if errors.Is(err, ErrNoTopic) {
		return map[string]Replay{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]Replay{}
	for _, r := range recs {
		var rp Replay
		if r.Value == nil || json.Unmarshal(r.Value, &rp) != nil {
			continue
		}
		out[string(r.Key)] = rp
	}
	return out, nil
}

// Actions of an Outcome.
const (
	ActionReplayed    = "replayed"
	ActionWouldReplay = "would replay" // a dry run's
	ActionSkipped     = "skipped"
)

// Outcome is what Replayer.Replay did with one entry.
type Outcome struct {
	Entry Entry
	// Action is ActionReplayed, ActionWouldReplay or ActionSkipped.
	Action string
	// Why says why an entry was skipped.
	Why string
	// Replay is set when the entry was (or would be) replayed.
	Replay *Replay
}

// Replayer publishes dead letters back to intake.
type Replayer struct {
	// Client produces with Herald's producer settings (its partitioner).
	Client *kgo.Client
	// IntakeTopic is where requests go (herald.requests); only dead
	// letters that came from it are replayed.
	IntakeTopic  string
	ReplaysTopic string
	// Fixes replaces a dead letter's value, looked up by its key; with
	// Fixes set, dead letters without a fix are skipped.
	Fixes map[string][]byte
	// Again replays dead letters that were replayed before.
	Again  bool
	DryRun bool
	Now    func() time.Time
}

// Replay publishes each entry's request (or its fix) to intake, after
// checking it against the contract, and records the replay. Intake is the
// dispatcher's usual path: a replayed id that was already dispatched is a
// duplicate, not a second send.
func (rp *Replayer) Replay(ctx context.Context, entries []Entry) ([]Outcome, error) {
	out := make([]Outcome, 0, len(entries))
	for _, e := range entries {
		o := Outcome{Entry: e, Action: ActionSkipped}
		out = append(out, o)
		d := e.Letter
		switch {
		case e.Err != nil:
			out[len(out)-1].Why = "not a dead letter: " + e.Err.Error()
			continue
		case d.Topic != rp.IntakeTopic:
			out[len(out)-1].Why = "from " + d.Topic + ": only requests are replayed"
			continue
		case e.Replayed != nil && !rp.Again:
			out[len(out)-1].Why = fmt.Sprintf("replayed already at %s as %s (--again to replay it once more)",
				e.Replayed.At.Format(time.RFC3339), e.Replayed.ID)
			continue
		}
		value, fixed := d.Value, false
		if d.Truncated > 0 && rp.Fixes == nil {
			out[len(out)-1].Why = fmt.Sprintf("its value was %d bytes and only the first %d are kept: replay it with a fix", d.Truncated, len(d.Value))
			continue
		}
		if rp.Fixes != nil {
			v, ok := rp.Fixes[string(d.Key)]
			if !ok {
				out[len(out)-1].Why = "no fix for key " + strconv.Quote(string(d.Key))
				continue
			}
			value, fixed = v, true
		}
		// The key is the id: a key mismatch is repaired by the replay.
		req, err := contract.Decode(nil, value)
		if err != nil {
			out[len(out)-1].Why = "still not a valid request: " + err.Error()
			continue
		}
		r := &Replay{DLQ: e.Pos(), ID: req.ID, Fixed: fixed, At: rp.Now().UTC(), Topic: rp.IntakeTopic}
		out[len(out)-1].Replay = r
		if rp.DryRun {
			out[len(out)-1].Action = ActionWouldReplay
			continue
		}
		res, err := rp.Client.ProduceSync(ctx, &kgo.Record{Topic: rp.IntakeTopic, Key: []byte(req.ID), Value: value}).First()
		if err != nil {
			return out, fmt.Errorf("replay %s: publish: %w", e.Pos(), err)
		}
		r.Partition, r.Offset = res.Partition, res.Offset
		b, err := json.Marshal(r)
		if err != nil {
			return out, fmt.Errorf("replay %s: %w", e.Pos(), err)
		}
		if err := rp.Client.ProduceSync(ctx, &kgo.Record{Topic: rp.ReplaysTopic, Key: []byte(e.Pos()), Value: b}).FirstErr(); err != nil {
			return out, fmt.Errorf("replay %s: published to %s@%d but not recorded: %w", e.Pos(), rp.IntakeTopic, res.Offset, err)
		}
		out[len(out)-1].Action = ActionReplayed
	}
	return out, nil
}

// ReadFixes reads a fix-up file: JSON Lines of corrected requests (blank
// lines and lines starting with # are skipped). Each fixes the dead
// letters whose key is its id.
func ReadFixes(b []byte) (map[string][]byte, error) {
	fixes := map[string][]byte{}
	for i, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		var v struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(line, &v); err != nil || v.ID == "" {
			return nil, fmt.Errorf("fix-up line %d: want a request object with its id (%v)", i+1, err)
		}
		if _, dup := fixes[v.ID]; dup {
			return nil, fmt.Errorf("fix-up line %d: id %q fixed twice", i+1, v.ID)
		}
		fixes[v.ID] = line
	}
	return fixes, nil
}

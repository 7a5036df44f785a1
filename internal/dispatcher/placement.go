package dispatcher

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lovoo/goka"
	"golang.org/x/time/rate"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/topology"
)

// Placement: any producer's partitioner works.
//
// The dispatcher keeps a notification's state on the partition Herald's key
// hash (topology.Partition, the Java client's murmur2) gives its id, and its
// own records (send commands, results, wake-ups) are placed there too. A
// producer with another partitioner (librdkafka's CRC32, Sarama's FNV-1a,
// random, an explicit partition) publishes a request, or a cancel, on some
// other partition. Such a record is moved before any state is touched: the
// dispatcher re-publishes it, unchanged, to topology.TopicRepartition (the
// group's loop stream, placed by Herald's hash) with its origin in headers,
// and handles it when it comes back on the right partition. That costs one
// produce and one consume; records that arrive well placed cost nothing.
//
// Guarantees, as enforced here and in Dispatch:
//   - No state is read or written for a misplaced record: the check is the
//     first thing Process does, and only needs the key.
//   - The move is exactly-once as far as dispatch is concerned. The origin
//     offset is committed only after the moved copy is acknowledged, in
//     record order (OrderedCommits); a crash in between moves the record
//     again. Every copy carries its origin, and the
//     state remembers, per origin topic and partition, the newest origin
//     offset it has applied (State.Moved): a copy at or below it is a replay
//     of the move, never a duplicate. Copies of one origin partition arrive
//     in origin order, because one dispatcher moves a partition's records in
//     order and a restart replays from its committed offset.
//   - A re-publish of a known id is still a duplicate whatever the two
//     producers' partitioners: both copies end on the same partition, and
//     the second has another origin (or a newer offset of the same one).
//   - A moved record that turns out malformed or invalid goes to the DLQ
//     under its origin topic, partition and offset. One for an id with no
//     state yet (a cancel before its request) is parked to its origin
//     topic, where it comes back well placed.

// Headers of a record moved to topology.TopicRepartition: where it was
// published. The record's own headers are kept beside them.
const (
	HeaderOriginTopic     = "herald-origin-topic"
	HeaderOriginPartition = "herald-origin-partition"
	HeaderOriginOffset    = "herald-origin-offset"
)

// DefaultMoveLogInterval is how often, at most, the dispatcher logs that a
// topic's records arrive misplaced.
const DefaultMoveLogInterval = time.Minute

// PlacementObserver is told about every record moved to the repartition
// topic. A DispatchObserver that implements it gets the calls.
type PlacementObserver interface {
	Moved(topic string, partition int32)
}

// Placement is how the dispatcher checks where a record arrived.
type Placement struct {
	// Partitions is the partition count of the co-partitioned topics
	// (--partitions). Required: Process fails without it.
	Partitions int
	// LogInterval is the least time between two log lines about one
	// topic's misplaced records (default DefaultMoveLogInterval).
	LogInterval time.Duration

	logs sync.Map // topic -> *moveLog
}

// moveLog rate-limits the log line of one source topic.
type moveLog struct {
	every rate.Sometimes
	moved atomic.Int64 // since the last line
}

// errPlacement reports a dispatcher built without its partition count.
var errPlacement = errors.New("dispatcher: Dispatcher.Placement.Partitions is not set")

// place is the first step of Process. For a record of a producer topic on
// the wrong partition it moves the record to the repartition topic and
// reports it handled. For a record of the repartition topic it returns the
// origin from its headers (a record without them is a dead letter, and
// handled). Otherwise the record is where it belongs, and its origin is
// src.
func (d *Dispatcher) place(ctx goka.Context, src contract.Position, raw []byte) (origin contract.Position, handled bool) {
	if src.Topic == topology.TopicRepartition {
		origin, err := originOf(ctx.Headers())
		if err != nil {
			d.deadLetter(ctx, src, raw, err, d.Now())
			return src, true
		}
		return origin, false
	}
	p := &d.Placement
	if p.Partitions <= 0 {
		ctx.Fail(errPlacement)
	}
	want := topology.Partition(ctx.Key(), p.Partitions)
	if want == src.Partition {
		return src, false
	}
	ctx.Loopback(ctx.Key(), raw, goka.WithCtxEmitHeaders(ctx.Headers().Merged(goka.Headers{
		HeaderOriginTopic:     []byte(src.Topic),
		HeaderOriginPartition: []byte(strconv.FormatInt(int64(src.Partition), 10)),
		HeaderOriginOffset:    []byte(strconv.FormatInt(src.Offset, 10)),
	})))
	if o, ok := d.Observer.(PlacementObserver); ok {
		o.Moved(src.Topic, src.Partition)
	}
	d.logMoved(src, want)
	return src, true
}

// logMoved logs, at most once per LogInterval and topic, that records of
// src.Topic arrive misplaced: a producer places keys with another
// partitioner. The key (a notification id) is not logged.
func (d *Dispatcher) logMoved(src contract.Position, want int32) {
	p := &d.Placement
	v, ok := p.logs.Load(src.Topic)
	if !ok {
		v, _ = p.logs.LoadOrStore(src.Topic, &moveLog{every: rate.Sometimes{Interval: p.LogInterval}})
	}
	l := v.(*moveLog)
	l.moved.Add(1)
	l.every.Do(func() {
		d.Log.Warn("records arrive on another partition than Herald's key hash (murmur2, the Java client's default) gives their key; "+
			"each is moved through the repartition topic, one extra hop: publish with a murmur2 partitioner to avoid it",
			"topic", src.Topic, "partition", src.Partition, "offset", src.Offset, "key_partition", want,
			"moved_since_last_line", l.moved.Swap(0), "repartition_topic", topology.TopicRepartition)
	})
}

// originOf reads the origin headers of a moved record.
func originOf(h goka.Headers) (contract.Position, error) {
	topic := string(h[HeaderOriginTopic])
	part, err1 := strconv.ParseInt(string(h[HeaderOriginPartition]), 10, 32)
	off, err2 := strconv.ParseInt(string(h[HeaderOriginOffset]), 10, 64)
	if topic == "" || err1 != nil || err2 != nil || part < 0 || off < 0 {
		return contract.Position{}, fmt.Errorf("%w: a record of %s without valid origin headers (%s=%q, %s=%q, %s=%q)",
			contract.ErrMalformed, topology.TopicRepartition, HeaderOriginTopic, topic,
			HeaderOriginPartition, h[HeaderOriginPartition], HeaderOriginOffset, h[HeaderOriginOffset])
	}
	return contract.Position{Topic: topic, Partition: int32(part), Offset: off}, nil
}

// wasMoved reports whether ev came through the repartition topic.
func wasMoved(ev Event) bool { return ev.Origin.Topic != "" && ev.Origin != ev.Source }

// movedKey is the key of State.Moved for an origin.
func movedKey(p contract.Position) string {
	return p.Topic + "/" + strconv.FormatInt(int64(p.Partition), 10)
}

// movedBefore reports whether a moved event is a replay of the move: s has
// applied a record of the same origin partition at or after its offset.
func movedBefore(s *contract.State, ev Event) bool {
	if !wasMoved(ev) {
		return false
	}
	off, ok := s.Moved[movedKey(ev.Origin)]
	return ok && ev.Origin.Offset <= off
}

// noteMoved records a moved event's origin in the new state s. The map is
// copied, never written through: s may share it with the current state.
func noteMoved(s *contract.State, ev Event) {
	if !wasMoved(ev) {
		return
	}
	m := make(map[string]int64, len(s.Moved)+1)
	for k, v := range s.Moved {
		m[k] = v
	}
	m[movedKey(ev.Origin)] = ev.Origin.Offset
	s.Moved = m
}

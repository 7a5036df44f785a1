// Package gokax holds what every Herald Goka processor and view needs from
// Goka beyond Goka itself, written once: input offsets committed in record
// order with owner epochs (OrderedCommits, Fence: commit.go), the changelog
// read back keeping the highest version (VersionedUpdate), a topic manager
// that only checks (TopicChecker), view options (table.go), the processor
// options, the slog adapter and the restart supervisor (run.go), and the
// LevelDB storage of every table and view (Storage, storage.go), which
// recovers a partition in batches with a larger write buffer and never
// stores an offset ahead of the records it covers (RecoveryStorage,
// recovery.go).
//
// It knows nothing of notifications: the dispatcher (internal/dispatcher)
// builds on it, and the views read the dispatcher's table through it.
package gokax

import (
	"context"
	"log/slog"
	"slices"
	"sort"
	"sync"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
)

// OrderedCommits wraps Goka's consumer group builder so that input offsets
// are committed in record order, and records each partition's owner epoch
// in fence.
//
// Why: Goka marks a record's offset as soon as the record has no pending
// produces, and Sarama commits the highest offset marked. A record that
// produces nothing (a stale wake-up, a duplicate) is marked the moment its
// callback returns, ahead of an earlier record of the same partition whose
// changelog write, send command or wake-up is still unacknowledged; and a
// record whose produces failed is never marked while later ones are. Either
// way the commit would pass a record whose writes never landed, and a
// restart would skip it for good.
//
// Guarantee, enforced here: per input topic-partition, an offset is
// committed only when the record at it and every earlier record handed to
// the processor in this session are marked done by Goka, that is, all
// their writes (changelog and emits, acks=all, idempotent producer) are
// acknowledged. Records that write nothing wait their turn like the rest.
// Once a record's write fails, Goka never marks it, so no later record of
// its partition is committed; the processor stops and restarts from the
// first record not acknowledged, and Dispatch recognises what it replays.
// Offsets a session handed out but never saw marked are not committed when
// the session ends (a rebalance or shutdown): the next owner replays them.
//
// Fencing: the generation of the session that assigned a partition is its
// owner epoch (Fence), which Dispatch folds into every version it writes.
// Generations only grow (the group coordinator keeps them in
// __consumer_offsets), and Kafka refuses offset commits from an older
// generation, so a process that lost its partitions neither commits for
// them nor, through its late writes, overwrites what a later owner wrote.
func OrderedCommits(inner goka.ConsumerGroupBuilder, fence *Fence, log *slog.Logger) goka.ConsumerGroupBuilder {
	return func(brokers []string, group, clientID string) (sarama.ConsumerGroup, error) {
		cg, err := inner(brokers, group, clientID)
		if err != nil {
			return nil, err
		}
		return &orderedGroup{ConsumerGroup: cg, fence: fence, log: log}, nil
	}
}

type orderedGroup struct {
	sarama.ConsumerGroup
	fence *Fence
	log   *slog.Logger
}

func (g *orderedGroup) Consume(ctx context.Context, topics []string, h sarama.ConsumerGroupHandler) error {
	return g.ConsumerGroup.Consume(ctx, topics, &orderedHandler{inner: h, fence: g.fence, log: g.log})
}

// orderedHandler wraps Goka's handler: the session it sees marks in order,
// and the claims it reads record what they hand out.
type orderedHandler struct {
	inner sarama.ConsumerGroupHandler
	fence *Fence
	log   *slog.Logger

	mu   sync.Mutex
	sess map[sarama.ConsumerGroupSession]*orderedSession
}

func (h *orderedHandler) wrap(s sarama.ConsumerGroupSession) *orderedSession {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sess == nil {
		h.sess = map[sarama.ConsumerGroupSession]*orderedSession{}
	}
	os, ok := h.sess[s]
	if !ok {
		os = &orderedSession{ConsumerGroupSession: s, queues: map[topicPart]*markQueue{}, log: h.log}
		h.sess[s] = os
	}
	return os
}

func (h *orderedHandler) Setup(s sarama.ConsumerGroupSession) error {
	if h.fence != nil {
		h.fence.assign(s.Claims(), s.GenerationID())
	}
	return h.inner.Setup(h.wrap(s))
}

func (h *orderedHandler) Cleanup(s sarama.ConsumerGroupSession) error {
	err := h.inner.Cleanup(h.wrap(s))
	if h.fence != nil {
		h.fence.release(s.GenerationID())
	}
	h.mu.Lock()
	delete(h.sess, s)
	h.mu.Unlock()
	return err
}

func (h *orderedHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	os := h.wrap(s)
	q := os.queue(c.Topic(), c.Partition())
	out := make(chan *sarama.ConsumerMessage)
	done := make(chan struct{})
	go func() {
		defer close(out)
		in := c.Messages()
		for {
			select {
			case m, ok := <-in:
				if !ok {
					return
				}
				q.handOut(m.Offset)
				select {
				case out <- m:
				case <-done:
					return
				}
			case <-done:
				return
			}
		}
	}()
	defer close(done)
	return h.inner.ConsumeClaim(os, &orderedClaim{ConsumerGroupClaim: c, out: out})
}

type orderedClaim struct {
	sarama.ConsumerGroupClaim
	out chan *sarama.ConsumerMessage
}

func (c *orderedClaim) Messages() <-chan *sarama.ConsumerMessage { return c.out }

type topicPart struct {
	topic     string
	partition int32
}

// orderedSession forwards a mark to Sarama only once every earlier record
// handed out on the same topic-partition is marked too.
type orderedSession struct {
	sarama.ConsumerGroupSession
	log    *slog.Logger
	mu     sync.Mutex
	queues map[topicPart]*markQueue
}

func (s *orderedSession) queue(topic string, partition int32) *markQueue {
	s.mu.Lock()
	defer s.mu.Unlock()
	tp := topicPart{topic, partition}
	q, ok := s.queues[tp]
	if !ok {
		q = &markQueue{}
		s.queues[tp] = q
	}
	return q
}

// MarkOffset takes Goka's mark of the record before offset (Goka marks
// offset+1, the next offset to read, like Sarama's MarkMessage).
func (s *orderedSession) MarkOffset(topic string, partition int32, offset int64, metadata string) {
	q := s.queue(topic, partition)
	if next, ok := q.done(offset - 1); ok {
		s.ConsumerGroupSession.MarkOffset(topic, partition, next, metadata)
	} else if !q.known(offset-1) && s.log != nil {
		s.log.Warn("offset marked that was never handed out; not committing it", "topic", topic, "partition", partition, "offset", offset-1)
	}
}

func (s *orderedSession) MarkMessage(m *sarama.ConsumerMessage, metadata string) {
	s.MarkOffset(m.Topic, m.Partition, m.Offset+1, metadata)
}

// markQueue holds the offsets of one topic-partition handed out and not
// yet committable, in order, with whether each is done.
type markQueue struct {
	mu      sync.Mutex
	offsets []int64
	isDone  []bool
}

func (q *markQueue) handOut(offset int64) {
	q.mu.Lock()
	q.offsets = append(q.offsets, offset)
	q.isDone = append(q.isDone, false)
	q.mu.Unlock()
}

// done marks offset done and returns the next offset to commit if the
// done prefix grew.
func (q *markQueue) done(offset int64) (next int64, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := sort.Search(len(q.offsets), func(i int) bool { return q.offsets[i] >= offset })
	if i == len(q.offsets) || q.offsets[i] != offset {
		return 0, false
	}
	q.isDone[i] = true
	n := 0
	for n < len(q.offsets) && q.isDone[n] {
		n++
	}
	if n == 0 {
		return 0, false
	}
	next = q.offsets[n-1] + 1
	q.offsets = slices.Delete(q.offsets, 0, n)
	q.isDone = slices.Delete(q.isDone, 0, n)
	return next, true
}

func (q *markQueue) known(offset int64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := slices.BinarySearch(q.offsets, offset)
	return ok
}

// Fence knows the owner epoch of each partition this process's dispatcher
// owns: the generation of the consumer group session that assigned it.
// The zero Fence owns nothing; a nil *Fence reports epoch 0 (no fencing).
type Fence struct {
	mu     sync.RWMutex
	gen    int32
	owned  map[int32]bool
	epochs map[int32]int32
}

func (f *Fence) assign(claims map[string][]int32, gen int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen = gen
	f.owned = map[int32]bool{}
	if f.epochs == nil {
		f.epochs = map[int32]int32{}
	}
	for _, ps := range claims {
		for _, p := range ps {
			f.owned[p] = true
			f.epochs[p] = gen
		}
	}
}

func (f *Fence) release(gen int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gen == gen {
		f.owned = nil
	}
}

// Epoch returns the owner epoch of partition p (0 if never assigned).
func (f *Fence) Epoch(p int32) int32 {
	if f == nil {
		return 0
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.epochs[p]
}

// Owns reports whether partition p is assigned to this process now.
func (f *Fence) Owns(p int32) bool {
	if f == nil {
		return false
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.owned[p]
}

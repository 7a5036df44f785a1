package delay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dlq"
	"github.com/herald-dispatch/herald/internal/service"
	"github.com/herald-dispatch/herald/internal/topology"
)

// Defaults of Config.
const (
	DefaultGroup        = topology.GroupDelay
	DefaultMaxBuffer    = 1000
	DefaultMaxBatch     = 1000
	DefaultFetchMaxWait = 100 * time.Millisecond
	// DefaultFetchMaxPartitionBytes bounds one fetch of one partition
	// (compressed bytes): with MaxBuffer, it bounds a partition's memory.
	DefaultFetchMaxPartitionBytes = 128 << 10
	DefaultCommitInterval         = time.Second
	DefaultShutdownGrace          = 5 * time.Second
)

// Config configures the delay stage.
type Config struct {
	// Topology names the brokers, how to connect, the client id and the
	// group timings (topology.Config.ConsumerOpts). Forwarded and hopped
	// records are placed with Herald's key hash (murmur2), so a record
	// stays on its notification's partition in every topic. Required.
	Topology topology.Config
	// Group is the consumer group of the tier topics (default
	// DefaultGroup).
	Group string
	// ClientOpts are further franz-go options, after the stage's own
	// (tests; default none).
	ClientOpts []kgo.Opt
	// Targets are the topics a delayed record may be released to
	// (required; Herald passes topology.DelayTargets()). A record naming
	// another target is rejected to the DLQ: the delay stage must not
	// become a way to write to any topic.
	Targets []string
	// DLQTopic receives contract.DeadLetters for records with missing or
	// bad headers (required).
	DLQTopic string
	// MaxBuffer is how many records one tier partition buffers in memory;
	// at that many its fetching pauses, and it resumes at half. Everything
	// beyond stays in Kafka. A fetch already under way when a partition
	// pauses still lands, so a partition holds at most MaxBuffer records
	// plus one fetch (FetchMaxPartitionBytes, compressed). Default
	// DefaultMaxBuffer.
	MaxBuffer int
	// FetchMaxPartitionBytes bounds one fetch of one partition (default
	// DefaultFetchMaxPartitionBytes).
	FetchMaxPartitionBytes int32
	// MaxBatch is how many records one partition releases in one produce
	// (default DefaultMaxBatch).
	MaxBatch int
	// FetchMaxWait bounds a fetch's long poll, and so how soon a resumed
	// partition is fetched again (default DefaultFetchMaxWait).
	FetchMaxWait time.Duration
	// CommitInterval is how often acknowledged offsets are committed
	// while running (they are committed at once on revoke and shutdown).
	// Default DefaultCommitInterval.
	CommitInterval time.Duration
	// ShutdownGrace is how long a produce already in flight may finish
	// after ctx ends, so its offsets can be committed (default
	// DefaultShutdownGrace).
	ShutdownGrace time.Duration
	// Now is the clock (default time.Now). Timers wait for durations
	// computed from it.
	Now func() time.Time
	// Log is the logger (default slog.Default()).
	Log *slog.Logger
	// Observer is told what the stage releases (default: nothing).
	Observer Observer
}

func (c Config) withDefaults() Config {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.MaxBuffer <= 0 {
		c.MaxBuffer = DefaultMaxBuffer
	}
	if c.FetchMaxPartitionBytes <= 0 {
		c.FetchMaxPartitionBytes = DefaultFetchMaxPartitionBytes
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.FetchMaxWait <= 0 {
		c.FetchMaxWait = DefaultFetchMaxWait
	}
	if c.CommitInterval <= 0 {
		c.CommitInterval = DefaultCommitInterval
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	return c
}

// Stage is the delay stage: a consumer group over every tier topic that
// releases each record when it is due. See the package doc for what it
// guarantees.
type Stage struct {
	cfg     Config
	tiers   map[string]time.Duration
	allowed map[string]bool

	running atomic.Bool
	ready   atomic.Bool
	cl      atomic.Pointer[kgo.Client]

	// produceCtx outlives the run context by ShutdownGrace, so that a
	// produce in flight at shutdown can still be acknowledged.
	produceCtx context.Context

	mu    sync.Mutex
	parts map[topicPartition]*partition

	// svc runs the sessions.
	svc service.Service
}

type topicPartition struct {
	topic     string
	partition int32
}

func (c Config) validate() error {
	switch {
	case len(c.Topology.Brokers) == 0:
		return errors.New("delay: no brokers")
	case len(c.Targets) == 0:
		return errors.New("delay: no target topics")
	case c.DLQTopic == "":
		return errors.New("delay: no DLQ topic")
	}
	for _, t := range c.Targets {
		if _, isTier := topology.TierOfTopic(t); isTier {
			return fmt.Errorf("delay: target %s is a tier topic", t)
		}
	}
	return nil
}

// New checks cfg and returns the stage; Run starts it.
func New(cfg Config) (*Stage, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Stage{cfg: cfg, tiers: map[string]time.Duration{}, allowed: map[string]bool{},
		parts: map[topicPartition]*partition{}, svc: service.Service{Name: "delay", Log: cfg.Log, Now: cfg.Now}}
	for _, d := range topology.Tiers() {
		s.tiers[topology.TierTopic(d)] = d
	}
	for _, t := range cfg.Targets {
		s.allowed[t] = true
	}
	return s, nil
}

// Ready reports whether the stage has joined its group and got its
// partitions.
func (s *Stage) Ready() bool { return s.ready.Load() }

// Run consumes the tier topics until ctx ends, then stops every partition,
// commits what was released and leaves the group. It returns nil after a
// clean stop. A Stage runs once.
func (s *Stage) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("delay: stage already ran")
	}
	produceCtx, cancelProduce := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelProduce()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.NewTimer(s.cfg.ShutdownGrace)
		defer t.Stop()
		select {
		case <-t.C:
			cancelProduce()
		case <-produceCtx.Done():
		}
	})
	defer stopGrace()
	s.produceCtx = produceCtx
	return s.svc.Run(ctx, s.session)
}

// session is one membership of the group: a client, its partitions'
// workers, and the final commit when it ends.
func (s *Stage) session(ctx context.Context) error {
	topics := make([]string, 0, len(s.tiers))
	for _, d := range topology.Tiers() {
		topics = append(topics, topology.TierTopic(d))
	}
	opts := append(s.cfg.Topology.ConsumerOpts(topology.Consumer{Name: "delay", Group: s.cfg.Group, Topics: topics,
		CommitInterval: s.cfg.CommitInterval, BlockRebalance: true,
		FetchMaxWait: s.cfg.FetchMaxWait, FetchMaxPartitionBytes: s.cfg.FetchMaxPartitionBytes}),
		kgo.OnPartitionsAssigned(s.assigned),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.lost),
	)
	opts = append(opts, s.cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return service.Permanent(fmt.Errorf("delay: client: %w", err))
	}
	s.cl.Store(cl)
	defer func() {
		s.ready.Store(false)
		cl.Close()
	}()

	for {
		fs := cl.PollRecords(ctx, 10000)
		if fs.IsClientClosed() || ctx.Err() != nil {
			cl.AllowRebalance()
			break
		}
		errs := 0
		fs.EachError(func(topic string, p int32, err error) {
			errs++
			s.cfg.Log.Warn("delay: fetch error", "topic", topic, "partition", p, "err", err)
		})
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				s.deliver(cl, p.Topic, p.Partition, p.Records)
			}
		})
		cl.AllowRebalance()
		if errs > 0 && fs.NumRecords() == 0 {
			// Only errors (brokers unreachable, say): do not spin.
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}

	// Shutdown: waiting partitions stop at once, a release in flight gets
	// ShutdownGrace to be acknowledged, then everything acknowledged is
	// committed before the group is left.
	s.stop(s.detach(nil))
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.CommitMarkedOffsets(cctx); err != nil {
		s.cfg.Log.Warn("delay: final commit failed; released records will be released again", "err", err)
	}
	return nil
}

// deliver appends fetched records to their partition's queue, pausing the
// partition when the queue is full. It never blocks on a partition.
func (s *Stage) deliver(cl *kgo.Client, topic string, part int32, recs []*kgo.Record) {
	tp := topicPartition{topic, part}
	s.mu.Lock()
	p := s.parts[tp]
	if p == nil {
		// Cannot happen with BlockRebalanceOnPoll (assignment runs before
		// a partition is fetched); be safe rather than lose the records.
		s.cfg.Log.Warn("delay: records for a partition without a worker", "topic", topic, "partition", part)
		p = s.startPartition(tp)
	}
	s.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	wasEmpty := len(p.q) == 0
	for _, r := range recs {
		if r.Offset < p.next {
			continue // already buffered (cannot happen: kgo resumes after the last polled record)
		}
		p.q = append(p.q, r)
		p.next = r.Offset + 1
	}
	p.buffered.Store(int64(len(p.q)))
	if !p.paused && len(p.q) >= s.cfg.MaxBuffer {
		cl.PauseFetchPartitions(map[string][]int32{topic: {part}})
		p.paused = true
	}
	if wasEmpty && len(p.q) > 0 {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// assigned starts a worker per new partition. Pauses survive rebalances in
// franz-go, so a partition assigned again is resumed first.
func (s *Stage) assigned(_ context.Context, cl *kgo.Client, m map[string][]int32) {
	cl.ResumeFetchPartitions(m)
	s.mu.Lock()
	for topic, ps := range m {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			if s.parts[tp] == nil {
				s.startPartition(tp)
			}
		}
	}
	n := len(s.parts)
	s.mu.Unlock()
	s.ready.Store(true)
	s.cfg.Log.Debug("delay: partitions assigned", "new", count(m), "total", n)
}

// revoked stops the revoked partitions' workers (each finishes the release
// it has in flight), commits what they released, and resumes them so a
// later assignment fetches them again.
func (s *Stage) revoked(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
	s.stop(s.detach(m))
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := cl.CommitMarkedOffsets(cctx); err != nil {
		s.cfg.Log.Warn("delay: commit on revoke failed; released records will be released again", "err", err)
	}
	cl.ResumeFetchPartitions(m)
	s.cfg.Log.Debug("delay: partitions revoked", "count", count(m))
}

// lost stops the lost partitions' workers; their offsets cannot be
// committed any more, so what they released after the last commit is
// released again by the new owner.
func (s *Stage) lost(_ context.Context, cl *kgo.Client, m map[string][]int32) {
	s.stop(s.detach(m))
	cl.ResumeFetchPartitions(m)
	s.cfg.Log.Warn("delay: partitions lost", "count", count(m))
}

func count(m map[string][]int32) int {
	n := 0
	for _, ps := range m {
		n += len(ps)
	}
	return n
}

// detach removes the workers of m (all when m is nil) from the stage.
func (s *Stage) detach(m map[string][]int32) []*partition {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*partition
	for tp, p := range s.parts {
		if m == nil || slices.Contains(m[tp.topic], tp.partition) {
			out = append(out, p)
			delete(s.parts, tp)
		}
	}
	return out
}

// stop cancels the workers and waits for them all.
func (s *Stage) stop(ps []*partition) {
	for _, p := range ps {
		p.cancel()
	}
	for _, p := range ps {
		<-p.done
	}
}

// startPartition starts the worker of tp; s.mu is held.
func (s *Stage) startPartition(tp topicPartition) *partition {
	ctx, cancel := context.WithCancel(s.produceCtx)
	p := &partition{tp: tp, tier: s.tiers[tp.topic], wake: make(chan struct{}, 1),
		cancel: cancel, done: make(chan struct{}), next: -1}
	p.committable.Store(-1)
	s.parts[tp] = p
	go s.work(ctx, p)
	return p
}

// partition is one tier partition this member owns: its buffered records
// and the worker that releases them. Only the worker removes records; only
// the poll loop adds them.
type partition struct {
	tp   topicPartition
	tier time.Duration

	mu     sync.Mutex
	q      []*kgo.Record
	next   int64 // offset after the last record buffered
	paused bool

	buffered atomic.Int64
	// committable is the offset after the last released record (-1: none yet).
	committable atomic.Int64

	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// work is a partition's worker: it releases what is due, then sleeps on one
// timer until its head may leave or a record arrives in an empty queue. A
// release that fails is retried (planned again at the time of the retry)
// until it succeeds or the stage stops.
func (s *Stage) work(ctx context.Context, p *partition) {
	defer close(p.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	backoff := service.Backoff{Min: 250 * time.Millisecond, Max: 10 * time.Second}
	for ctx.Err() == nil {
		var now, next time.Time
		var released bool
		err := service.Retry(ctx, backoff, func(context.Context) error {
			var err error
			now, next, released, err = s.releaseDue(p)
			return err
		}, func(err error, _ int, wait time.Duration) {
			s.cfg.Log.Error("delay: release failed; retrying", "topic", p.tp.topic, "partition", p.tp.partition, "err", err, "in", wait)
		})
		if err != nil {
			return
		}
		if released {
			continue
		}
		if next.IsZero() {
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
			}
			continue
		}
		timer.Reset(next.Sub(now))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-p.wake:
		}
	}
}

// releaseDue releases the records of p that may leave now (Plan) and
// reports whether there were any; when there were none, next is when its
// head may leave (zero: nothing buffered). A failure once the stage's
// produces have stopped is Permanent.
func (s *Stage) releaseDue(p *partition) (now, next time.Time, released bool, err error) {
	now = s.cfg.Now()
	p.mu.Lock()
	steps, next := Plan(p.q, p.tier, now, s.cfg.MaxBatch, s.isAllowed)
	recs := p.q[:len(steps)]
	p.mu.Unlock()
	if len(steps) == 0 {
		return now, next, false, nil
	}
	if err := s.release(p, recs, steps, now); err != nil {
		err = fmt.Errorf("release %d records: %w", len(recs), err)
		if s.produceCtx.Err() != nil {
			return now, next, false, service.Permanent(err)
		}
		return now, next, false, err
	}
	s.pop(p, recs)
	return now, next, true, nil
}

func (s *Stage) isAllowed(topic string) bool { return s.allowed[topic] }

// release publishes the records of steps (forwarded, hopped or dead
// lettered) and waits until every one is acknowledged.
func (s *Stage) release(p *partition, recs []*kgo.Record, steps []Step, now time.Time) error {
	out := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		st := steps[i]
		switch st.Action {
		case Forward, Hop:
			// Stamped with the clock the release was decided by: the next
			// tier's release time is this timestamp plus its delay, so a
			// hop's timestamp and the stage's clock must agree.
			out[i] = &kgo.Record{Topic: st.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: now}
		case Reject:
			out[i], _ = dlq.Kgo(s.cfg.DLQTopic, r, st.Err, contract.ReasonMalformed, now)
		default:
			return fmt.Errorf("delay: cannot release a record with action %s", st.Action)
		}
	}
	cl := s.cl.Load()
	if err := cl.ProduceSync(s.produceCtx, out...).FirstErr(); err != nil {
		return fmt.Errorf("delay: produce: %w", err)
	}
	acked := s.cfg.Now()
	for i, st := range steps {
		r := recs[i]
		switch st.Action {
		case Forward:
			s.cfg.Observer.Forwarded(p.tier, acked.Sub(st.Due))
		case Hop:
			to, _ := topology.TierOfTopic(st.Topic)
			s.cfg.Observer.Hopped(p.tier, to)
		case Reject:
			s.cfg.Observer.Rejected(p.tier)
			s.cfg.Log.Warn("delay: record sent to the DLQ", "topic", r.Topic, "partition", r.Partition,
				"offset", r.Offset, "reason", contract.ReasonMalformed, "error", st.Err)
		}
	}
	last := recs[len(recs)-1]
	cl.MarkCommitOffsets(map[string]map[int32]kgo.EpochOffset{
		last.Topic: {last.Partition: {Epoch: last.LeaderEpoch, Offset: last.Offset + 1}},
	})
	p.committable.Store(last.Offset + 1)
	return nil
}

// pop removes released records from the head of p's queue and resumes
// fetching when the queue has drained to half.
func (s *Stage) pop(p *partition, recs []*kgo.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.q[:len(recs)])
	p.q = p.q[len(recs):]
	if len(p.q) == 0 {
		p.q = nil // let the old backing array go
	}
	p.buffered.Store(int64(len(p.q)))
	if p.paused && len(p.q) <= s.cfg.MaxBuffer/2 {
		s.cl.Load().ResumeFetchPartitions(map[string][]int32{p.tp.topic: {p.tp.partition}})
		p.paused = false
	}
}

package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dlq"
	"github.com/herald-dispatch/herald/internal/service"
	"github.com/herald-dispatch/herald/internal/topology"
)

// Defaults of Config.
const (
	DefaultGroup         = topology.GroupSink
	DefaultRetryMin      = 100 * time.Millisecond
	DefaultRetryMax      = 10 * time.Second
	DefaultShutdownGrace = 10 * time.Second
)

// Observer is told what the sink does, for metrics (internal/metrics
// implements it). Methods must be cheap and safe for concurrent use.
type Observer interface {
	// Batch is called for every batch written, once the commit of its
	// offsets has run (from the committer's goroutine): its records
	// (tombstones and dead letters included), the time from the start of
	// its write to that commit,
	// the dispatch_status rows inserted or moved forward, the
	// dispatch_attempts rows inserted, and the states not written because
	// the table held the same or a newer version.
	Batch(records int, took time.Duration, statusRows, attemptRows, staleRows int64)
	// Retry is called for a write or dead-letter produce that failed and
	// is retried.
	Retry()
	// CommitFailed is called when an offset commit (of one or more written
	// batches) fails.
	CommitFailed()
	// DeadLetter is called for every record sent to the DLQ.
	DeadLetter(reason string)
}

type nopObserver struct{}

func (nopObserver) Batch(int, time.Duration, int64, int64, int64) {}
func (nopObserver) Retry()                                        {}
func (nopObserver) CommitFailed()                                 {}
func (nopObserver) DeadLetter(string)                             {}

// Config configures a Sink.
type Config struct {
	// Topology names the brokers, how to connect, the client id and the
	// group timings (topology.Config.ConsumerOpts). Required.
	Topology topology.Config
	// Pool is the PostgreSQL pool the sink writes through (migrated;
	// required).
	Pool *pgxpool.Pool
	// Group is the consumer group (default DefaultGroup).
	Group string
	// Topic is the changelog read (default the dispatcher table).
	Topic string
	// BatchSize and BatchInterval bound a batch when the sink is behind:
	// the most records it holds, and the longest it stays open after its
	// first record (at a backlog of BatchSize or more). BatchMinSize and
	// BatchMinInterval are the limits when nothing else waits. See
	// Batching; zero fields take DefaultBatching's.
	BatchSize, BatchMinSize         int
	BatchInterval, BatchMinInterval time.Duration
	// RetryMin and RetryMax bound the backoff between attempts at a batch
	// PostgreSQL did not take (defaults DefaultRetryMin and
	// DefaultRetryMax; RetryMax is at least RetryMin).
	RetryMin, RetryMax time.Duration
	// ShutdownGrace is how long the batch in flight when the context ends,
	// and the one waiting for it, may still take to be written and
	// committed; after it they are left to be replayed. Default
	// DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// Observer is told what the sink does (default: nothing).
	Observer Observer
	// Log is the logger (default slog.Default()).
	Log *slog.Logger
	// Now is the clock of dead letters and of the restarts (default
	// time.Now).
	Now func() time.Time
	// KgoOpts are appended to the client's options (tests; default none).
	KgoOpts []kgo.Opt
}

// Batching is the batch policy of c.
func (c Config) Batching() Batching {
	return Batching{MinSize: c.BatchMinSize, MaxSize: c.BatchSize, MinInterval: c.BatchMinInterval, MaxInterval: c.BatchInterval}
}

func (c Config) withDefaults() Config {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.Topic == "" {
		c.Topic = string(topology.TableDispatcher)
	}
	b := c.Batching().withDefaults()
	c.BatchSize, c.BatchMinSize, c.BatchInterval, c.BatchMinInterval = b.MaxSize, b.MinSize, b.MaxInterval, b.MinInterval
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(DefaultRetryMax, c.RetryMin)
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	if len(c.Topology.Brokers) == 0 {
		return errors.New("sink: no brokers")
	}
	if c.Pool == nil {
		return errors.New("sink: no PostgreSQL pool")
	}
	if err := c.Batching().Validate(); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	return nil
}

// Sink consumes the dispatcher table's changelog into PostgreSQL.
type Sink struct {
	cfg    Config
	writer *Writer
	ready  atomic.Bool
	// svc runs the sessions.
	svc service.Service

	// hook, when set (tests only), is called at named points, from the
	// collecting and the writing goroutine; an error from it stops Run at
	// once with that error, as a crash would (no further write, no
	// commit). The collector also calls it, its error ignored, with
	// "collected N" when its next batch has grown to N records and with
	// "filling" when it polls for more while the batch before is written.
	hook func(point string) error
	// commitHook, when set (tests only), commits offsets instead of
	// cl.CommitRecords.
	commitHook func(ctx context.Context, cl *kgo.Client, recs ...*kgo.Record) error
}

// New returns a Sink; Run starts it.
func New(cfg Config) (*Sink, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Sink{cfg: cfg, writer: NewWriter(cfg.Pool), svc: service.Service{Name: "sink", Log: cfg.Log, Now: cfg.Now}}, nil
}

// Ready reports whether the sink runs and its last write went through.
func (s *Sink) Ready() bool { return s.ready.Load() }

// Run consumes until ctx ends, then writes the batches in flight (within
// ShutdownGrace) and returns nil. It returns an error only when the Kafka
// client cannot be made (or a test hook simulates a crash).
func (s *Sink) Run(ctx context.Context) error { return s.svc.Run(ctx, s.session) }

// session is one membership of the group. Three goroutines share it: the
// collector (this one) polls and decodes the next batch, the writer writes
// one batch at a time to PostgreSQL, and the committer commits the written
// batches' offsets to Kafka (see the package doc, "How a batch is
// written" and "Guarantees").
func (s *Sink) session(ctx context.Context) error {
	c := s.cfg
	opts := c.Topology.ConsumerOpts(topology.Consumer{Name: "sink", Group: c.Group, Topics: []string{c.Topic}})
	cl, err := kgo.NewClient(append(opts, c.KgoOpts...)...)
	if err != nil {
		return service.Permanent(fmt.Errorf("sink: kafka client: %w", err))
	}
	defer func() {
		s.ready.Store(false)
		cl.Close()
	}()
	s.ready.Store(true)
	c.Log.Info("sink consuming", "topic", c.Topic, "group", c.Group, "batching", c.Batching())

	// After ctx ends, the batch being written, the one waiting for it and
	// the commit of their offsets get ShutdownGrace, together.
	grace, cancelGrace := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelGrace()
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(c.ShutdownGrace, cancelGrace) })
	defer stopGrace()

	pollCtx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	p := s.startPipeline(grace, cl, stopPolling)
	var (
		next    batch
		writing = idle // ends when the batch being written is written
	)
	for {
		closed := s.collect(pollCtx, cl, &next, writing)
		if len(next.recs) > 0 {
			if err := s.at("decoded"); err != nil {
				return p.stop(err)
			}
			wctx, written := context.WithCancel(context.Background())
			next.written = written
			select {
			case p.batches <- next:
				writing, next = wctx, batch{}
			case <-p.writerDone: // it stopped on an error
				written()
				return p.stop(nil)
			}
		}
		if closed || ctx.Err() != nil || pollCtx.Err() != nil {
			return p.stop(nil)
		}
	}
}

// pipeline is a session's writer and committer goroutines. The next batch
// is collected and decoded while the one before it is written: at most
// one batch is written and one collected, and the batches are written one
// after the other, in order. The committer commits what the writer wrote,
// in order, one commit at a time; a crash (crashCommits) stops it without
// a further commit.
type pipeline struct {
	s            *Sink
	batches      chan batch
	writerDone   chan struct{}
	writeErr     error // the writer's error, read after writerDone
	cm           *committer
	committed    chan struct{} // the committer's end
	crashCommits context.CancelFunc
}

// startPipeline starts the writer and the committer; a writer that stops
// (abandoned, or a simulated crash) calls stopPolling.
func (s *Sink) startPipeline(grace context.Context, cl *kgo.Client, stopPolling context.CancelFunc) *pipeline {
	commitCtx, crashCommits := context.WithCancel(grace)
	p := &pipeline{s: s, batches: make(chan batch), writerDone: make(chan struct{}), cm: newCommitter(s),
		committed: make(chan struct{}), crashCommits: crashCommits}
	go func() {
		defer close(p.committed)
		p.cm.run(commitCtx, cl)
	}()
	go func() {
		defer close(p.writerDone)
		defer stopPolling()
		for b := range p.batches {
			err := s.flush(grace, cl, b, p.cm)
			b.written()
			if err != nil {
				if !errors.Is(err, errAbandoned) {
					p.writeErr = err
				}
				return
			}
		}
	}()
	return p
}

// stop ends the writer after the batches handed to it, then the committer
// after their offsets; an error (a simulated crash) ends the session for
// good, with no further commit.
func (p *pipeline) stop(err error) error {
	close(p.batches)
	<-p.writerDone
	if err == nil {
		err = p.writeErr
	}
	if err != nil {
		p.crashCommits()
	}
	p.cm.close()
	<-p.committed
	p.crashCommits() // release the context
	if err != nil {
		return service.Permanent(err) // a simulated crash: nothing more
	}
	return nil
}

// batch is a batch being collected or written: its records and what they
// decoded to.
type batch struct {
	recs    []*kgo.Record
	changes []Change
	dead    []Rejection
	// first is when its first record arrived.
	first time.Time
	// written is called by the writer when it is done with the batch.
	written context.CancelFunc
}

// add appends recs, decoded.
func (b *batch) add(recs []*kgo.Record) {
	if len(recs) == 0 {
		return
	}
	if b.first.IsZero() {
		b.first = time.Now()
	}
	b.recs = append(b.recs, recs...)
	changes, dead := decode(recs)
	b.changes = append(b.changes, changes...)
	b.dead = append(b.dead, dead...)
}

// collect polls into b until it is complete by the Batching policy (it
// holds every record known to be waiting, within MinSize..MaxSize, or its
// wait after the first record is over) and the writer is free for it:
// while the batch before it is written (until writing ends), a complete
// batch goes on taking records, up to MaxSize, so that the next write
// starts with what arrived meanwhile. closed reports that the client or
// ctx ended.
func (s *Sink) collect(ctx context.Context, cl *kgo.Client, b *batch, writing context.Context) (closed bool) {
	c := s.cfg
	policy := c.Batching()
	// lag is, per partition read in this batch, the records after the last
	// one taken: what the batch could still take from it.
	lag := map[int32]int64{}
	size, wait := policy.MinSize, policy.MinInterval
	if len(b.recs) > 0 {
		size, wait = policy.Limits(len(b.recs), cl.BufferedFetchRecords())
	}
	for {
		complete := len(b.recs) >= size || (!b.first.IsZero() && time.Since(b.first) >= wait)
		busy := writing.Err() == nil
		pctx, cancel := ctx, context.CancelFunc(func() {})
		want := size - len(b.recs)
		switch {
		case complete && (!busy || len(b.recs) >= policy.MaxSize):
			return false
		case complete:
			// The writer is busy: take what arrives until it is free.
			if s.hook != nil {
				_ = s.hook("filling")
			}
			wctx, wcancel := context.WithCancel(ctx)
			stopWaiting := context.AfterFunc(writing, wcancel)
			pctx, cancel = wctx, func() { stopWaiting(); wcancel() }
			want = policy.MaxSize - len(b.recs)
		case !b.first.IsZero():
			pctx, cancel = context.WithDeadline(ctx, b.first.Add(wait))
		}
		fs := cl.PollRecords(pctx, want)
		cancel()
		if fs.IsClientClosed() {
			return true
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				c.Log.Warn("sink: fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		n := len(b.recs)
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if k := len(p.Records); k > 0 {
				b.add(p.Records)
				lag[p.Partition] = max(p.HighWatermark-p.Records[k-1].Offset-1, 0)
			}
		})
		if len(b.recs) > n && s.hook != nil {
			_ = s.hook(fmt.Sprintf("collected %d", len(b.recs)))
		}
		var backlog int64
		for _, l := range lag {
			backlog += l
		}
		size, wait = policy.Limits(len(b.recs), max(backlog, cl.BufferedFetchRecords()))
		if ctx.Err() != nil {
			return true
		}
		if len(b.recs) == n && b.first.IsZero() && len(fs.Errors()) > 0 {
			// Only errors: do not spin on a broken fetch.
			select {
			case <-ctx.Done():
				return true
			case <-time.After(time.Second):
			}
		}
	}
}

// errCrash wraps a test hook's error.
var errCrash = errors.New("sink: simulated crash")

// idle is the writer's state before its first batch: done.
var idle = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// errAbandoned ends a writer whose batch could not be written before the
// shutdown grace ran out: nothing after it is written or committed.
var errAbandoned = errors.New("sink: batch abandoned")

// flush writes a batch and dead-letters what cannot be written, retrying
// until it succeeds or the shutdown grace is over, then hands the batch's
// offsets to the committer. fctx is Run's context plus the shutdown grace.
func (s *Sink) flush(fctx context.Context, cl *kgo.Client, b batch, cm *committer) error {
	c := s.cfg
	start := time.Now()
	recs, changes, dead := b.recs, b.changes, b.dead
	var res WriteResult
	if err := s.retry(fctx, "write batch", func() error {
		var err error
		res, err = s.writer.Write(fctx, changes)
		return err
	}); err != nil {
		return s.abandon(err, len(recs))
	}
	dead = append(dead, res.Rejected...)
	if err := s.at("pg-committed"); err != nil {
		return err
	}
	if len(dead) > 0 {
		if err := s.retry(fctx, "dead letters", func() error { return s.deadLetter(fctx, cl, dead) }); err != nil {
			return s.abandon(err, len(recs))
		}
	}
	if err := s.at("dlq-produced"); err != nil {
		return err
	}
	written := int64(res.Rows)
	for _, r := range res.Rejected {
		if r.Reason == ReasonRejected { // the others never counted in Rows
			written--
		}
	}
	for _, d := range dead {
		c.Observer.DeadLetter(d.Reason)
	}
	c.Log.Debug("sink: batch written", "records", len(recs), "rows", res.Rows, "applied", res.Applied,
		"attempts", res.Attempts, "dead_letters", len(dead), "took", time.Since(start))
	cm.add(recs, batchReport{records: len(recs), start: start, applied: res.Applied, attempts: res.Attempts, stale: written - res.Applied})
	return nil
}

// abandon ends a flush that could not finish: a simulated crash stops Run,
// a shutdown leaves the batch uncommitted, to be replayed.
func (s *Sink) abandon(err error, n int) error {
	if errors.Is(err, errCrash) {
		return err
	}
	s.cfg.Log.Warn("sink: stopping with a batch not written; it will be replayed", "records", n, "err", err)
	return errAbandoned
}

// batchReport is a written batch as the Observer hears of it once its offsets
// are committed.
type batchReport struct {
	records                  int
	start                    time.Time
	applied, attempts, stale int64
}

// committer commits the offsets of written batches, off the writer's path:
// the writer hands it each batch once PostgreSQL (and the DLQ) has it, and
// goes on with the next batch while the commit runs. It enforces the
// offset guarantees of the package doc: one commit in flight at a time,
// each for the highest offset per partition of every batch handed to it
// so far (a batch handed while a commit runs is committed by the next
// one), so the committed offsets only move forward and never pass a
// record whose rows are not committed in PostgreSQL. A failed commit is
// counted (Observer.CommitFailed) and not retried: the next batch's commit
// covers its partitions again, and what it alone held is replayed after a
// restart or rebalance, which the version-guarded upsert makes harmless.
type committer struct {
	s    *Sink
	wake chan struct{} // a token when there is something to commit or it closed

	mu      sync.Mutex
	pending map[topicPartition]*kgo.Record // the highest record handed, per partition
	reports []batchReport
	closed  bool
}

type topicPartition struct {
	topic     string
	partition int32
}

func newCommitter(s *Sink) *committer {
	return &committer{s: s, wake: make(chan struct{}, 1), pending: map[topicPartition]*kgo.Record{}}
}

// add hands over the records of a batch whose rows PostgreSQL committed.
func (cm *committer) add(recs []*kgo.Record, w batchReport) {
	cm.mu.Lock()
	for _, r := range recs {
		tp := topicPartition{r.Topic, r.Partition}
		if at, ok := cm.pending[tp]; !ok || r.Offset > at.Offset {
			cm.pending[tp] = r
		}
	}
	cm.reports = append(cm.reports, w)
	cm.mu.Unlock()
	cm.signal()
}

// close tells run to commit what is pending and return.
func (cm *committer) close() {
	cm.mu.Lock()
	cm.closed = true
	cm.mu.Unlock()
	cm.signal()
}

func (cm *committer) signal() {
	select {
	case cm.wake <- struct{}{}:
	default:
	}
}

// run commits until close (after a last commit of what is pending) or
// ctx ends (at once: a crash, or the shutdown grace over).
func (cm *committer) run(ctx context.Context, cl *kgo.Client) {
	c := cm.s.cfg
	for {
		select {
		case <-ctx.Done():
			return
		case <-cm.wake:
		}
		cm.mu.Lock()
		recs := make([]*kgo.Record, 0, len(cm.pending))
		for tp, r := range cm.pending {
			recs = append(recs, r)
			delete(cm.pending, tp)
		}
		reports, closed := cm.reports, cm.closed
		cm.reports = nil
		cm.mu.Unlock()
		if len(recs) > 0 {
			if ctx.Err() != nil {
				return
			}
			commit := cl.CommitRecords
			if cm.s.commitHook != nil {
				commit = func(ctx context.Context, rs ...*kgo.Record) error { return cm.s.commitHook(ctx, cl, rs...) }
			}
			if err := commit(ctx, recs...); err != nil {
				// PostgreSQL has the batches: a replay of them changes nothing.
				c.Observer.CommitFailed()
				c.Log.Warn("sink: offset commit failed; its batches will be replayed unless a later commit covers them",
					"batches", len(reports), "err", err)
			}
			for _, w := range reports {
				c.Observer.Batch(w.records, time.Since(w.start), w.applied, w.attempts, w.stale)
			}
		}
		if closed {
			return
		}
	}
}

// retry runs fn until it succeeds, backing off between failures. It gives
// up only when ctx ends (or a test hook simulates a crash).
func (s *Sink) retry(ctx context.Context, what string, fn func() error) error {
	c := s.cfg
	failures := 0
	err := service.Retry(ctx, service.Backoff{Min: c.RetryMin, Max: c.RetryMax}, func(context.Context) error {
		err := fn()
		if errors.Is(err, errCrash) {
			return service.Permanent(err) // a simulated crash stops the sink
		}
		return err
	}, func(err error, n int, wait time.Duration) {
		failures = n
		s.ready.Store(false)
		c.Observer.Retry()
		c.Log.Warn("sink: "+what+" failed, retrying", "failures", n, "backoff", wait, "err", err)
	})
	if err != nil {
		return fmt.Errorf("sink: %s: %w", what, err)
	}
	if failures > 0 {
		c.Log.Info("sink: "+what+" succeeded after retries", "failures", failures)
	}
	s.ready.Store(true)
	return nil
}

func (s *Sink) at(point string) error {
	if s.hook == nil {
		return nil
	}
	if err := s.hook(point); err != nil {
		return fmt.Errorf("%w at %s: %w", errCrash, point, err)
	}
	return nil
}

// decode turns records into changes; tombstones are skipped and values
// that are not states become rejections.
func decode(recs []*kgo.Record) ([]Change, []Rejection) {
	changes := make([]Change, 0, len(recs))
	var dead []Rejection
	for _, r := range recs {
		if r.Value == nil {
			continue // a tombstone: the dispatcher deleted the state
		}
		c := Change{Source: contract.Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}, Key: r.Key, Value: r.Value}
		st, err := contract.DecodeState(r.Value)
		if err != nil {
			dead = append(dead, Rejection{Change: c, Reason: ReasonUndecodable, Err: err})
			continue
		}
		c.State = st
		changes = append(changes, c)
	}
	return changes, dead
}

// deadLetter publishes the rejections to herald.dlq and waits for the
// broker's acknowledgement.
func (s *Sink) deadLetter(ctx context.Context, cl *kgo.Client, dead []Rejection) error {
	now := s.cfg.Now().UTC()
	recs := make([]*kgo.Record, 0, len(dead))
	for _, d := range dead {
		src := d.Change.Source
		rec, dl := dlq.Kgo(topology.TopicDLQ, &kgo.Record{Topic: src.Topic, Partition: src.Partition, Offset: src.Offset,
			Key: d.Change.Key, Value: d.Change.Value}, d.Err, d.Reason, now)
		recs = append(recs, rec)
		s.cfg.Log.Warn("sink: record sent to the DLQ", "reason", d.Reason, "topic", dl.Topic, "partition", dl.Partition,
			"offset", dl.Offset, "err", d.Err)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("sink: produce dead letters: %w", err)
	}
	return nil
}

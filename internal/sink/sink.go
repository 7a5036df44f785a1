package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// Batch is called for every batch committed: its records (tombstones
	// and dead letters included), the time from complete to committed,
	// the dispatch_status rows inserted or moved forward, the
	// dispatch_attempts rows inserted, and the states not written because
	// the table held the same or a newer version.
	Batch(records int, took time.Duration, statusRows, attemptRows, staleRows int64)
	// Retry is called for a write or dead-letter produce that failed and
	// is retried.
	Retry()
	// CommitFailed is called when the offset commit after a written batch
	// fails.
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
	// commit).
	hook func(point string) error
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

// session is one membership of the group.
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

	// After ctx ends, the batch being written and the one waiting for it
	// get ShutdownGrace, together, to be written and committed.
	grace, cancelGrace := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelGrace()
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(c.ShutdownGrace, cancelGrace) })
	defer stopGrace()

	// The next batch is collected and decoded while the one before it is
	// written: at most one batch waits, and the batches are written and
	// their offsets committed one after the other, in order.
	batches := make(chan batch)
	pollCtx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	writerDone := make(chan struct{})
	var writeErr error
	go func() {
		defer close(writerDone)
		defer stopPolling() // a writer that stops (a simulated crash) stops the polling
		for b := range batches {
			if writeErr = s.flush(grace, cl, b); writeErr != nil {
				return
			}
		}
	}()
	// stop ends the writer after the batches handed to it; an error (a
	// simulated crash) ends the session for good.
	stop := func(err error) error {
		close(batches)
		<-writerDone
		if err == nil {
			err = writeErr
		}
		if err != nil {
			return service.Permanent(err) // a simulated crash: nothing more
		}
		return nil
	}
	for {
		recs, closed := s.collect(pollCtx, cl)
		if len(recs) > 0 {
			changes, dead := decode(recs)
			if err := s.at("decoded"); err != nil {
				return stop(err)
			}
			select {
			case batches <- batch{recs: recs, changes: changes, dead: dead}:
			case <-writerDone: // it stopped on an error
				return stop(nil)
			}
		}
		if closed || ctx.Err() != nil || pollCtx.Err() != nil {
			return stop(nil)
		}
	}
}

// batch is a collected batch with its records decoded.
type batch struct {
	recs    []*kgo.Record
	changes []Change
	dead    []Rejection
}

// collect polls until the batch is complete by the Batching policy: it
// holds every record known to be waiting (within MinSize..MaxSize), or its
// wait after the first record is over. closed reports that the client or
// ctx ended.
func (s *Sink) collect(ctx context.Context, cl *kgo.Client) (recs []*kgo.Record, closed bool) {
	c := s.cfg
	policy := c.Batching()
	var first time.Time
	// lag is, per partition read in this batch, the records after the last
	// one taken: what the batch could still take from it.
	lag := map[int32]int64{}
	size, wait := policy.MinSize, policy.MinInterval
	for len(recs) < size {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if !first.IsZero() {
			left := time.Until(first.Add(wait))
			if left <= 0 {
				break
			}
			pctx, cancel = context.WithTimeout(ctx, left)
		}
		fs := cl.PollRecords(pctx, size-len(recs))
		cancel()
		if fs.IsClientClosed() {
			return recs, true
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				c.Log.Warn("sink: fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		n := len(recs)
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if k := len(p.Records); k > 0 {
				recs = append(recs, p.Records...)
				lag[p.Partition] = max(p.HighWatermark-p.Records[k-1].Offset-1, 0)
			}
		})
		if first.IsZero() && len(recs) > 0 {
			first = time.Now()
		}
		var backlog int64
		for _, l := range lag {
			backlog += l
		}
		size, wait = policy.Limits(len(recs), max(backlog, cl.BufferedFetchRecords()))
		if ctx.Err() != nil {
			return recs, true
		}
		if len(recs) == n && first.IsZero() && len(fs.Errors()) > 0 {
			// Only errors: do not spin on a broken fetch.
			select {
			case <-ctx.Done():
				return recs, true
			case <-time.After(time.Second):
			}
		}
	}
	return recs, false
}

// errCrash wraps a test hook's error.
var errCrash = errors.New("sink: simulated crash")

// flush writes a batch, dead-letters what cannot be written and commits
// the offsets, retrying until it succeeds or the shutdown grace is over.
// fctx is Run's context plus the shutdown grace.
func (s *Sink) flush(fctx context.Context, cl *kgo.Client, b batch) error {
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
	if err := cl.CommitRecords(fctx, recs...); err != nil {
		// PostgreSQL has the batch: a replay of it changes nothing.
		c.Observer.CommitFailed()
		c.Log.Warn("sink: offset commit failed; the batch will be replayed", "records", len(recs), "err", err)
	}
	written := int64(res.Rows)
	for _, r := range res.Rejected {
		if r.Reason == ReasonRejected { // the others never counted in Rows
			written--
		}
	}
	c.Observer.Batch(len(recs), time.Since(start), res.Applied, res.Attempts, written-res.Applied)
	for _, d := range dead {
		c.Observer.DeadLetter(d.Reason)
	}
	c.Log.Debug("sink: batch written", "records", len(recs), "rows", res.Rows, "applied", res.Applied,
		"attempts", res.Attempts, "dead_letters", len(dead), "took", time.Since(start))
	return nil
}

// abandon ends a flush that could not finish: a simulated crash stops Run,
// a shutdown leaves the batch uncommitted, to be replayed.
func (s *Sink) abandon(err error, n int) error {
	if errors.Is(err, errCrash) {
		return err
	}
	s.cfg.Log.Warn("sink: stopping with a batch not written; it will be replayed", "records", n, "err", err)
	return nil
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

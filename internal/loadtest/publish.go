package loadtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/herald-dispatch/herald/internal/topology"
)

// Publisher plays the billing batch: it publishes the plan's records to
// herald.requests with Herald's partitioner, then, after a pause, the
// re-run block again.
type Publisher struct {
	Plan    *Plan
	Brokers []string
	// Rate limits records per second; 0 publishes as fast as the broker
	// takes them.
	Rate float64
	// RerunDelay is the pause between the last original record and the
	// re-run.
	RerunDelay time.Duration

	acked, failed atomic.Int64
	mu            sync.Mutex
	firstErr      error
	// finished is when the last record was acknowledged (Unix ns).
	finished atomic.Int64
}

// Acked counts records the broker acknowledged.
func (p *Publisher) Acked() int64 { return p.acked.Load() }

// Err returns the first produce error.
func (p *Publisher) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.firstErr
}

// Run publishes everything and waits for the acknowledgements.
func (p *Publisher) Run(ctx context.Context) error {
	opts := append([]kgo.Opt{kgo.SeedBrokers(p.Brokers...), kgo.ClientID("herald-loadtest"),
		kgo.DefaultProduceTopic(topology.TopicRequests), kgo.MaxBufferedRecords(50_000)},
		topology.KgoProducerOpts()...)
	// Herald's producers linger (topology.KgoLinger) but wait for their
	// acks, which ends the linger; this one does not wait, and a linger
	// would be counted in the end-to-end latency, measured from the hand
	// over. No linger: batches still form while requests are in flight.
	opts = append(opts, kgo.ProducerLinger(0))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("publish: client: %w", err)
	}
	defer cl.Close()
	var lim *rate.Limiter
	if p.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(p.Rate), max(1, int(p.Rate/20)))
	}
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			p.failed.Add(1)
			p.mu.Lock()
			if p.firstErr == nil {
				p.firstErr = err
			}
			p.mu.Unlock()
			return
		}
		p.acked.Add(1)
		p.finished.Store(time.Now().UnixNano())
	}
	send := func(key, value []byte) error {
		if lim != nil {
			if err := lim.Wait(ctx); err != nil {
				return err
			}
		}
		cl.Produce(ctx, &kgo.Record{Key: key, Value: value}, done)
		return ctx.Err()
	}
	for i := range p.Plan.W.N {
		if err := send(p.Plan.First(i, time.Now())); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	if len(p.Plan.Rerun) > 0 {
		select {
		case <-time.After(p.RerunDelay):
		case <-ctx.Done():
			return fmt.Errorf("publish: %w", ctx.Err())
		}
		for _, i := range p.Plan.Rerun {
			if err := send(p.Plan.Again(int(i), time.Now())); err != nil {
				return fmt.Errorf("publish: %w", err)
			}
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("publish: flush: %w", err)
	}
	if err := p.Err(); err != nil {
		return fmt.Errorf("publish: %d records failed, first: %w", p.failed.Load(), err)
	}
	return nil
}

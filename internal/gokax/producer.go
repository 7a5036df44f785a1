package gokax

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/internal/topology"
)

// KgoProducer is the producer of every Herald Goka processor: franz-go's
// idempotent producer (acks=all, Herald's key hash, KgoProducerOpts) behind
// Goka's Producer interface, in place of Goka's Sarama producer.
//
// Why: Sarama's idempotent producer loses its sequence numbers across a
// broker restart with batches in flight ("out of order sequence number",
// "message out of sequence added to a batch"; IBM/sarama#3354), fails
// those produces, and Goka then stops the processor with the states of
// the failed writes already in its local store. franz-go's idempotent
// producer retries such batches itself, in order, until they land, so a
// broker restart delays the dispatcher's writes instead of failing them.
// It is also about four times cheaper per record (docs/performance.md).
//
// Guarantees, enforced here and by franz-go:
//   - records of one partition are written in the order Emit was called,
//     once each (idempotence), and a promise is resolved only when its
//     record is acknowledged by all in-sync replicas;
//   - the local store's position moves only by reading the changelog,
//     never by this process's own writes: a promise carries no offset, so
//     Goka does not store it. A process that wrote while another owned the
//     partition too (a zombie: paused, or cut off by a broker restart while
//     the group moved on) would otherwise store a position past the other
//     owner's writes, and its next recovery would skip them, leaving its
//     table behind the changelog for good (the chaos suite's
//     broker-restart: 142 states stuck "sending", their results judged
//     stale against a version the changelog had replaced). The cost: a
//     restart or a new assignment reads again what was written since the
//     partition's last recovery (docs/performance.md, Restart to ready);
//   - a record is retried until it lands or the producer is closed; Close
//     waits up to CloseTimeout for what is buffered, then fails the rest;
//   - records are placed like every other Herald producer's
//     (topology.KgoPartitioner, the Java client's murmur2), which is what
//     Goka's views and lookups (topology.Hasher) expect.
func KgoProducer(tc topology.Config) goka.ProducerBuilder {
	return func(brokers []string, clientID string, _ func() hash.Hash32) (goka.Producer, error) {
		tc.Brokers = brokers
		opts := append(append(tc.KgoOpts(), kgo.ClientID(clientID)), topology.KgoProducerOpts()...)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return nil, fmt.Errorf("goka producer: %w", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		return &kgoProducer{cl: cl, ctx: ctx, cancel: cancel}, nil
	}
}

// CloseTimeout bounds how long a closing KgoProducer waits for its
// buffered records to be acknowledged.
const CloseTimeout = 30 * time.Second

type kgoProducer struct {
	cl     *kgo.Client
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

func (p *kgoProducer) Emit(topic, key string, value []byte) *goka.Promise {
	return p.EmitWithHeaders(topic, key, value, nil)
}

func (p *kgoProducer) EmitWithHeaders(topic, key string, value []byte, headers goka.Headers) *goka.Promise {
	promise, finish := goka.NewPromiseWithFinisher()
	r := &kgo.Record{Topic: topic, Key: []byte(key), Value: value}
	if len(headers) > 0 {
		r.Headers = make([]kgo.RecordHeader, 0, len(headers))
		for k, v := range headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: v})
		}
	}
	// The context ends only at Close: a Produce blocked on a full buffer
	// (a broker down) then gives up instead of holding Goka's shutdown.
	p.cl.Produce(p.ctx, r, func(r *kgo.Record, err error) {
		if err != nil {
			finish(nil, fmt.Errorf("produce to %s: %w", r.Topic, err))
			return
		}
		// No offset: Goka would store a table write's offset as its local
		// store's position (see KgoProducer), and a restart or a new
		// assignment would then recover only from there, skipping any
		// record another writer put before it (below).
		finish(&sarama.ProducerMessage{Topic: r.Topic, Partition: r.Partition, Timestamp: r.Timestamp}, nil)
	})
	return promise
}

// Close waits up to CloseTimeout for the buffered records, then fails
// what is left and closes the client.
func (p *kgoProducer) Close() error {
	var err error
	p.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), CloseTimeout)
		defer cancel()
		if ferr := p.cl.Flush(ctx); ferr != nil {
			err = fmt.Errorf("goka producer: flush on close: %w", ferr)
		}
		p.cancel()
		p.cl.Close()
	})
	return err
}

// Ledger counts the writes of a processor's producers that are not
// acknowledged yet and those that failed. A store whose processor stopped
// with none of either holds only what the changelog holds (Goka writes a
// state to the local store before its changelog write), and is marked
// clean (LocalStore); otherwise it may hold states the changelog never got.
type Ledger struct {
	pending atomic.Int64
	failed  atomic.Int64
}

// Clean reports whether every write counted so far was acknowledged.
func (l *Ledger) Clean() bool { return l.pending.Load() == 0 && l.failed.Load() == 0 }

// Failed is the number of writes that failed.
func (l *Ledger) Failed() int64 { return l.failed.Load() }

// Builder wraps inner so that the ledger counts every write of the
// producers it builds.
func (l *Ledger) Builder(inner goka.ProducerBuilder) goka.ProducerBuilder {
	return func(brokers []string, clientID string, hasher func() hash.Hash32) (goka.Producer, error) {
		p, err := inner(brokers, clientID, hasher)
		if err != nil {
			return nil, err
		}
		return &ledgerProducer{inner: p, l: l}, nil
	}
}

type ledgerProducer struct {
	inner goka.Producer
	l     *Ledger
}

func (p *ledgerProducer) Emit(topic, key string, value []byte) *goka.Promise {
	return p.EmitWithHeaders(topic, key, value, nil)
}

func (p *ledgerProducer) EmitWithHeaders(topic, key string, value []byte, headers goka.Headers) *goka.Promise {
	p.l.pending.Add(1)
	return p.inner.EmitWithHeaders(topic, key, value, headers).Then(func(err error) {
		if err != nil {
			p.l.failed.Add(1)
		}
		p.l.pending.Add(-1)
	})
}

func (p *ledgerProducer) Close() error { return p.inner.Close() }

// errUnclean is wrapped by a session that ends with writes not
// acknowledged.
var errUnclean = errors.New("writes not acknowledged")

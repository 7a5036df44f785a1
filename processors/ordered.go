package processors

import (
	"hash"
	"sync"

	"github.com/lovoo/goka"
)

// OrderedProducerBuilder wraps a Goka producer builder so that the promises
// of a processor's produces finish in the order the produces were made.
//
// Why: Goka marks an input record's offset as soon as that record's own
// produces (its changelog write and its emits) are acknowledged, and Sarama
// only ever moves a marked offset forward. Acknowledgements from different
// brokers (the send topic's leader and a delay tier's leader, say) can
// arrive out of order, so record 10 could be marked, and committed, while
// record 9's wake-up is still unacknowledged; a crash then would lose it.
// With this wrapper a record's promises cannot finish before those of every
// record produced earlier, so marks, and commits, follow record order: a
// commit never passes a record whose effects are not durable. The cost is
// head-of-line waiting of a few milliseconds behind the slowest
// acknowledgement in flight.
func OrderedProducerBuilder(inner goka.ProducerBuilder) goka.ProducerBuilder {
	return func(brokers []string, clientID string, hasher func() hash.Hash32) (goka.Producer, error) {
		p, err := inner(brokers, clientID, hasher)
		if err != nil {
			return nil, err
		}
		return &orderedProducer{inner: p}, nil
	}
}

type pending struct {
	done   bool
	err    error
	finish goka.PromiseFinisher
}

type orderedProducer struct {
	inner goka.Producer
	mu    sync.Mutex
	queue []*pending
}

func (o *orderedProducer) Emit(topic, key string, value []byte) *goka.Promise {
	return o.EmitWithHeaders(topic, key, value, nil)
}

func (o *orderedProducer) EmitWithHeaders(topic, key string, value []byte, headers goka.Headers) *goka.Promise {
	prom, fin := goka.NewPromiseWithFinisher()
	p := &pending{finish: fin}
	o.mu.Lock()
	o.queue = append(o.queue, p)
	o.mu.Unlock()
	o.inner.EmitWithHeaders(topic, key, value, headers).Then(func(err error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		p.done, p.err = true, err
		// Finish every leading promise that is done, in order. Finishing
		// under the lock keeps two acknowledging goroutines from
		// interleaving; the callbacks only mark offsets and count.
		i := 0
		for ; i < len(o.queue) && o.queue[i].done; i++ {
			o.queue[i].finish(nil, o.queue[i].err)
			o.queue[i] = nil
		}
		o.queue = o.queue[i:]
	})
	return prom
}

func (o *orderedProducer) Close() error { return o.inner.Close() }

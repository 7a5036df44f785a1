package processors

import (
	"errors"
	"hash"
	"sync"
	"testing"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
)

// manualProducer acknowledges produces only when the test says so.
type manualProducer struct {
	mu   sync.Mutex
	fins []goka.PromiseFinisher
}

func (m *manualProducer) Emit(topic, key string, value []byte) *goka.Promise {
	return m.EmitWithHeaders(topic, key, value, nil)
}

func (m *manualProducer) EmitWithHeaders(string, string, []byte, goka.Headers) *goka.Promise {
	p, fin := goka.NewPromiseWithFinisher()
	m.mu.Lock()
	m.fins = append(m.fins, fin)
	m.mu.Unlock()
	return p
}

func (m *manualProducer) Close() error { return nil }

func (m *manualProducer) ack(i int, err error) {
	m.mu.Lock()
	fin := m.fins[i]
	m.mu.Unlock()
	fin((*sarama.ProducerMessage)(nil), err)
}

func TestOrderedProducerFinishesInProduceOrder(t *testing.T) {
	inner := &manualProducer{}
	build := OrderedProducerBuilder(func([]string, string, func() hash.Hash32) (goka.Producer, error) { return inner, nil })
	p, err := build(nil, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	var order []int
	var errs []error
	for i := 0; i < 4; i++ {
		p.Emit("t", "k", nil).Then(func(err error) { order = append(order, i); errs = append(errs, err) })
	}
	boom := errors.New("boom")
	inner.ack(2, boom) // acknowledged out of order: nothing may finish yet
	inner.ack(1, nil)
	if len(order) != 0 {
		t.Fatalf("promises finished before the first produce was acknowledged: %v", order)
	}
	inner.ack(0, nil) // now 0, 1 and 2 finish, in order
	if want := []int{0, 1, 2}; !equal(order, want) {
		t.Fatalf("finished %v, want %v", order, want)
	}
	if errs[2] != boom || errs[0] != nil {
		t.Fatalf("errors not carried to their own promises: %v", errs)
	}
	inner.ack(3, nil)
	if want := []int{0, 1, 2, 3}; !equal(order, want) {
		t.Fatalf("finished %v, want %v", order, want)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

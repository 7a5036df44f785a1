package gokax_test

import (
	"errors"
	"fmt"
	"hash"
	"sync"
	"testing"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"

	"github.com/herald-dispatch/herald/internal/gokax"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

// KgoProducer writes each record once, in Emit's order per partition, on
// the partition Herald's hash gives its key, and resolves each promise
// with its partition but no offset (Goka would store a table write's
// offset as its local store's position; see KgoProducer).
func TestKgoProducerPlacesOrdersAndReportsOffsets(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 3})
	p, err := gokax.KgoProducer(c.Topology)(c.Topology.Brokers, "test", topology.Hasher)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	var mu sync.Mutex
	got := map[string]*sarama.ProducerMessage{}
	var wg sync.WaitGroup
	for i := range n {
		key := fmt.Sprintf("k%d", i%7)
		value := fmt.Sprint(i)
		wg.Add(1)
		p.EmitWithHeaders(topology.TopicSend, key, []byte(value), goka.Headers{"h": []byte("v")}).ThenWithMessage(func(m *sarama.ProducerMessage, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("emit %s: %v", value, err)
				return
			}
			mu.Lock()
			got[value] = m
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	recs := c.ReadAll(t, topology.TopicSend)
	if len(recs) != n {
		t.Fatalf("%d records written, want %d", len(recs), n)
	}
	last := map[string]int{}
	for _, r := range recs {
		key, value := string(r.Key), string(r.Value)
		if want := topology.Partition(key, 3); r.Partition != want {
			t.Fatalf("key %s on partition %d, want %d", key, r.Partition, want)
		}
		var i int
		fmt.Sscan(value, &i)
		if prev, ok := last[key]; ok && i < prev {
			t.Fatalf("key %s: %d written after %d", key, i, prev)
		}
		last[key] = i
		m := got[value]
		if m == nil || m.Offset != 0 || m.Partition != r.Partition {
			t.Fatalf("record %s at %d/%d, its promise said %+v", value, r.Partition, r.Offset, m)
		}
		if len(r.Headers) != 1 || r.Headers[0].Key != "h" {
			t.Fatalf("record %s headers %v", value, r.Headers)
		}
	}
}

// The Ledger is clean only when every write was acknowledged.
func TestLedgerCountsFailedAndPendingWrites(t *testing.T) {
	t.Parallel()
	fin := map[string]goka.PromiseFinisher{}
	inner := func([]string, string, func() hash.Hash32) (goka.Producer, error) { return stubProducer(fin), nil }
	l := new(gokax.Ledger)
	p, err := l.Builder(inner)(nil, "test", topology.Hasher)
	if err != nil {
		t.Fatal(err)
	}
	p.Emit("t", "ok", nil)
	p.Emit("t", "bad", nil)
	if l.Clean() {
		t.Fatal("clean with two writes pending")
	}
	fin["ok"](&sarama.ProducerMessage{}, nil)
	if l.Clean() {
		t.Fatal("clean with a write pending")
	}
	fin["bad"](nil, errors.New("not enough replicas"))
	if l.Clean() || l.Failed() != 1 {
		t.Fatalf("clean %v, failed %d after a failed write; want unclean, 1", l.Clean(), l.Failed())
	}
}

type stubProducer map[string]goka.PromiseFinisher

func (s stubProducer) Emit(topic, key string, value []byte) *goka.Promise {
	return s.EmitWithHeaders(topic, key, value, nil)
}

func (s stubProducer) EmitWithHeaders(_, key string, _ []byte, _ goka.Headers) *goka.Promise {
	p, fin := goka.NewPromiseWithFinisher()
	s[key] = fin
	return p
}

func (s stubProducer) Close() error { return nil }

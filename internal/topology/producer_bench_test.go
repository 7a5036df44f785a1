package topology_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

// The producer batching benchmarks produce b.N records (a 24-byte key, a
// 400-byte JSON value, as a send command or a result is) to a 12-partition
// topic on the in-process test broker, with Herald's producer settings and
// the batching settings varied, in the patterns Herald's producers follow:
//
//   - franz-go, slices: one goroutine produces 500 records at a time and
//     waits for their acks (ProduceSync of a slice: the delay stage, the
//     status feed, the sweep);
//   - franz-go, async: one goroutine produces every record without waiting,
//     then waits for all acks (the load test's publisher, an outside
//     producer);
//   - concurrent: 64 goroutines each produce a record and wait for its ack
//     before the next (ProduceSync of one record: the sender's results,
//     the API's ingest; for Sarama, a Goka processor's emits, each waited
//     for before its input's offset is committed);
//   - Sarama, burst: one goroutine hands every record to the async
//     producer without waiting, then waits for all acks (the dispatcher
//     emitting a backlog).
//
// Reported: records/s, the process's CPU per record (user and system,
// the broker's share included, since it runs in the same process: compare
// the settings with each other, not with a real Kafka), and for the
// concurrent pattern the p50 and p99 from produce to ack. docs/performance.md
// ("Producer batching") holds the figures and the choice made from them.

const (
	benchWorkers = 64
	benchSlice   = 500
)

var benchValue = []byte(`{"id":"bench-0000000000000000","channel":"email","attempt":1,"issue":1,"outcome":"success","code":250,` +
	`"provider_id":"mock-1f0c9a7e2b4d","at":"2026-11-29T20:00:00.000000000Z","latency_ms":1000,"error":"",` +
	`"address_hash":"9c56cc51b374c3ba189210d5b6d4bf57790d351c96c47c02190ecf1e430635ab","policy":{"id":"statements","version":7},` +
	`"campaign":"billing-2026-11","attempts":1,"channel_attempts":1,"notes":"padding to a typical record size of about 400 bytes"}`)

func benchKey(i int) []byte { return []byte(fmt.Sprintf("bench-%018d", i)) }

// measure runs fn (which produces b.N records) and reports the figures.
func measure(b *testing.B, fn func() []time.Duration) {
	b.ReportAllocs()
	cpu0, t0 := heraldtest.ProcessCPU(), time.Now()
	b.ResetTimer()
	lat := fn()
	b.StopTimer()
	took, cpu := time.Since(t0), heraldtest.ProcessCPU()-cpu0
	b.ReportMetric(float64(b.N)/took.Seconds(), "records/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/record")
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkProducerKgo is every franz-go producer of Herald (sender,
// delay, DLQ, API ingest, the sink's dead letters): topology.KgoProducerOpts
// with the linger varied (franz-go's default is 10 ms). Herald's franz-go
// producers all use ProduceSync, which stops a partition's linger once its
// records are queued, so the linger should change little.
func BenchmarkProducerKgo(b *testing.B) {
	c := heraldtest.StartKafka(b, heraldtest.Options{Partitions: 12})
	for _, linger := range []time.Duration{0, 2 * time.Millisecond, 10 * time.Millisecond} {
		opts := append(append(c.Topology.KgoOpts(), topology.KgoProducerOpts()...),
			kgo.ProducerLinger(linger), kgo.DefaultProduceTopic(topology.TopicSend))
		b.Run(fmt.Sprintf("linger=%s/slices", linger), func(b *testing.B) {
			cl := newKgo(b, opts)
			measure(b, func() []time.Duration {
				for i := 0; i < b.N; i += benchSlice {
					recs := make([]*kgo.Record, 0, benchSlice)
					for j := i; j < min(i+benchSlice, b.N); j++ {
						recs = append(recs, &kgo.Record{Key: benchKey(j), Value: benchValue})
					}
					if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
						b.Fatal(err)
					}
				}
				return nil
			})
		})
		b.Run(fmt.Sprintf("linger=%s/async", linger), func(b *testing.B) {
			cl := newKgo(b, opts)
			measure(b, func() []time.Duration {
				var failed atomic.Int64
				var wg sync.WaitGroup
				wg.Add(b.N)
				for i := 0; i < b.N; i++ {
					cl.Produce(context.Background(), &kgo.Record{Key: benchKey(i), Value: benchValue}, func(_ *kgo.Record, err error) {
						if err != nil {
							failed.Add(1)
						}
						wg.Done()
					})
				}
				wg.Wait()
				if n := failed.Load(); n > 0 {
					b.Fatalf("%d produces failed", n)
				}
				return nil
			})
		})
		b.Run(fmt.Sprintf("linger=%s/concurrent", linger), func(b *testing.B) {
			cl := newKgo(b, opts)
			measure(b, func() []time.Duration {
				return concurrently(b, func(i int) error {
					return cl.ProduceSync(context.Background(), &kgo.Record{Key: benchKey(i), Value: benchValue}).FirstErr()
				})
			})
		})
	}
}

func newKgo(b *testing.B, opts []kgo.Opt) *kgo.Client {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	// Metadata and the producer id before the clock runs.
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: benchKey(-1), Value: benchValue}).FirstErr(); err != nil {
		b.Fatal(err)
	}
	return cl
}

// concurrently produces b.N records from benchWorkers goroutines, each
// waiting for its record's ack, and returns every record's latency.
func concurrently(b *testing.B, produce func(i int) error) []time.Duration {
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < benchWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < b.N; i = int(next.Add(1) - 1) {
				t0 := time.Now()
				if err := produce(i); err != nil {
					failed.Add(1)
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d produces failed", n)
	}
	return lat
}

// BenchmarkProducerSarama is the Goka processors' producer (the
// dispatcher's emits and table writes): topology.SaramaConfig with the
// flush frequency varied (Goka's default is 100 ms; 0 is Sarama's "send
// as soon as possible", no frequency and no byte trigger).
func BenchmarkProducerSarama(b *testing.B) {
	c := heraldtest.StartKafka(b, heraldtest.Options{Partitions: 12})
	for _, freq := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond} {
		cfg := c.Topology.Sarama("bench")
		cfg.Producer.Flush.Frequency = freq
		if freq == 0 {
			// No trigger at all: Sarama sends whatever it has as soon as
			// it can (with Bytes alone it would wait for Bytes).
			cfg.Producer.Flush.Bytes = 0
		}
		cfg.Producer.Partitioner = sarama.NewCustomHashPartitioner(topology.Hasher) // as Goka's producer
		for _, pattern := range []string{"burst", "concurrent"} {
			b.Run(fmt.Sprintf("flush=%s/%s", freq, pattern), func(b *testing.B) {
				p, err := sarama.NewAsyncProducer(c.Brokers, cfg)
				if err != nil {
					b.Fatal(err)
				}
				acks := make(map[int]chan error)
				var mu sync.Mutex
				done := make(chan struct{})
				go func() { // route every ack to its waiter
					defer close(done)
					for {
						select {
						case m, ok := <-p.Successes():
							if !ok {
								return
							}
							ack(&mu, acks, m.Metadata.(int), nil)
						case e, ok := <-p.Errors():
							if !ok {
								return
							}
							ack(&mu, acks, e.Msg.Metadata.(int), e.Err)
						}
					}
				}()
				b.Cleanup(func() { p.AsyncClose(); <-done })
				send := func(i int) chan error {
					ch := make(chan error, 1)
					mu.Lock()
					acks[i] = ch
					mu.Unlock()
					p.Input() <- &sarama.ProducerMessage{Topic: topology.TopicSend, Key: sarama.ByteEncoder(benchKey(i)),
						Value: sarama.ByteEncoder(benchValue), Metadata: i}
					return ch
				}
				if err := <-send(-1); err != nil { // metadata and the producer id
					b.Fatal(err)
				}
				measure(b, func() []time.Duration {
					if pattern == "concurrent" {
						return concurrently(b, func(i int) error { return <-send(i) })
					}
					chs := make([]chan error, b.N)
					for i := range chs {
						chs[i] = send(i)
					}
					for _, ch := range chs {
						if err := <-ch; err != nil {
							b.Fatal(err)
						}
					}
					return nil
				})
			})
		}
	}
}

func ack(mu *sync.Mutex, acks map[int]chan error, i int, err error) {
	mu.Lock()
	ch := acks[i]
	delete(acks, i)
	mu.Unlock()
	if ch != nil {
		ch <- err
	}
}

package dispatcher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dispatcher"
	heralddlq "github.com/herald-dispatch/herald/internal/dlq"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/metrics"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/herald-dispatch/herald/internal/sender"
	"github.com/herald-dispatch/herald/internal/sink"
	"github.com/herald-dispatch/herald/internal/topology"
)

// partitioner is how one kind of producer places a key.
type partitioner struct {
	name string
	part func(key []byte, n int) int32
}

// kgoPlacement places keys as a franz-go partitioner does.
func kgoPlacement(p kgo.Partitioner) func([]byte, int) int32 {
	tp := p.ForTopic(topology.TopicRequests)
	return func(key []byte, n int) int32 { return int32(tp.Partition(&kgo.Record{Key: key}, n)) }
}

// producers are the partitioners of issue 13: the Java client's murmur2
// (Herald's own), librdkafka's default consistent_random (CRC32, unsigned
// modulo; franz-go documents SaramaHasher(crc32.ChecksumIEEE) as matching
// it), Sarama's FNV-1a, a random partition, and an explicit wrong one.
func producers(rng *rand.Rand) []partitioner {
	var mu sync.Mutex
	return []partitioner{
		{"murmur2", kgoPlacement(kgo.StickyKeyPartitioner(nil))},
		{"crc32", kgoPlacement(kgo.StickyKeyPartitioner(kgo.SaramaHasher(crc32.ChecksumIEEE)))},
		{"fnv1a", kgoPlacement(kgo.StickyKeyPartitioner(kgo.SaramaCompatHasher(func(b []byte) uint32 {
			h := fnv.New32a()
			h.Write(b)
			return h.Sum32()
		})))},
		{"random", func(_ []byte, n int) int32 { mu.Lock(); defer mu.Unlock(); return rng.Int32N(int32(n)) }},
		{"wrong", func(key []byte, n int) int32 { return (topology.Partition(string(key), n) + 1) % int32(n) }},
	}
}

// crashMidMove wraps the dispatcher's producer. The first producer it
// builds passes every produce to Kafka, but from its crashAt-th move to the
// repartition topic on, it reports every produce failed once Kafka has
// acknowledged it: the records are moved, their origin offsets are never
// marked, and Goka stops the processor. That is the state a crash leaves
// between the move and the origin's commit. The Supervisor starts the
// processor again from the committed offsets, and it moves those records a
// second time.
type crashMidMove struct {
	crashAt int64
	built   atomic.Int64
	crashed atomic.Int64 // produces reported failed
}

func (c *crashMidMove) builder(inner goka.ProducerBuilder) goka.ProducerBuilder {
	return func(brokers []string, clientID string, hasher func() hash.Hash32) (goka.Producer, error) {
		p, err := inner(brokers, clientID, hasher)
		if err != nil {
			return nil, err
		}
		return &crashingProducer{Producer: p, c: c, first: c.built.Add(1) == 1}, nil
	}
}

type crashingProducer struct {
	goka.Producer
	c       *crashMidMove
	first   bool
	moves   atomic.Int64
	failing atomic.Bool
}

func (p *crashingProducer) Emit(topic, key string, value []byte) *goka.Promise {
	return p.EmitWithHeaders(topic, key, value, nil)
}

func (p *crashingProducer) EmitWithHeaders(topic, key string, value []byte, h goka.Headers) *goka.Promise {
	prom := p.Producer.EmitWithHeaders(topic, key, value, h)
	if p.first && topic == topology.TopicRepartition && p.moves.Add(1) == p.c.crashAt {
		p.failing.Store(true)
	}
	if !p.failing.Load() {
		return prom
	}
	out, fin := goka.NewPromiseWithFinisher()
	prom.Then(func(err error) {
		if err == nil {
			p.c.crashed.Add(1)
			err = errors.New("test: crashed after the produce was acknowledged")
		}
		fin(nil, err)
	})
	return out
}

// TestAnyProducer is issue 13's acceptance test. The same workload is
// published by five kinds of producer (murmur2, CRC32, FNV-1a, random and a
// wrong explicit partition); a share of the ids is published again by a
// different partitioner than the first copy; held notifications are
// canceled by yet another partitioner; a malformed record arrives on the
// wrong partition. The dispatcher crashes in the middle of moving records
// through the repartition topic. Through the real dispatcher, sender (to a
// mock provider that does not deduplicate), view and sink: every id is
// delivered exactly once, its final status and duplicate count are right in
// the table and in PostgreSQL, the dead letter names the original position,
// and only misplaced records were moved.
func TestAnyProducer(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test")
	}
	const (
		parts     = 6
		perScheme = 80 // sent notifications per partitioner
		repub     = 20 // of them re-published by the next partitioner
		held      = 8  // scheduled notifications per partitioner, canceled
	)
	start := time.Now()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: parts})
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	rng := rand.New(rand.NewPCG(13, 13))
	schemes := producers(rng)

	// PostgreSQL, migrated, for the sink.
	pool := heraldtest.MigratedPool(t, heraldtest.Postgres(t))

	// The dispatcher, crashing at its 40th move; the sender, to a mock
	// provider that honours idempotency keys, as Herald requires of
	// providers: the crash makes the dispatcher issue some send commands
	// again (their records are replayed), and the provider is then asked
	// twice with the same key (docs/architecture.md, "Provider side").
	// What must not happen is a second attempt. And the sink.
	reg := prometheus.NewRegistry()
	crash := &crashMidMove{crashAt: 40}
	warnings := new(syncBuffer)
	mock, mockURL := heraldtest.MockProvider(t, provider.MockServerOptions{})
	sk, err := sink.New(sink.Config{Topology: c.Topology, Pool: pool, BatchInterval: 50 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	set := heraldtest.Providers(t, []string{"email=" + mockURL + "/email?latency=5ms", "sms=" + mockURL + "/sms?latency=5ms"},
		provider.Options{Concurrency: 200})
	snd, err := sender.New(sender.Config{Topology: c.Topology, Providers: set, Concurrency: 200, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	p := heraldtest.StartPipeline(t, c, heraldtest.PipelineOptions{
		Dispatcher: heraldtest.DispatcherOptions{Observer: metrics.NewDispatch(reg),
			Log: slog.New(slog.NewTextHandler(warnings, &slog.HandlerOptions{Level: slog.LevelWarn})),
			// The Supervisor logs the crash's errors, one per record: not here.
			SupervisorLog: slog.New(slog.DiscardHandler), MinBackoff: 100 * time.Millisecond,
			WrapProducer: crash.builder},
		WithoutDelay: true,
		Stages:       []heraldtest.Stage{{Name: "sender", Run: snd.Run}, {Name: "sink", Run: sk.Run}},
		Log:          log,
	})
	sup := p.Dispatcher

	// The workload.
	manual := c.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	type want struct {
		status     contract.Status
		duplicates int
	}
	wants := map[string]want{}
	misplaced := 0
	misplacedFrom := map[string]int{} // "topic/partition" -> records
	publish := func(p partitioner, topic, key string, value []byte) *kgo.Record {
		r := &kgo.Record{Topic: topic, Key: []byte(key), Value: value, Partition: p.part([]byte(key), parts)}
		if r.Partition != topology.Partition(key, parts) {
			misplaced++
			misplacedFrom[fmt.Sprintf("%s/%d", topic, r.Partition)]++
		}
		return r
	}
	var first, second []*kgo.Record
	for i, p := range schemes {
		next := schemes[(i+1)%len(schemes)]
		for j := 0; j < perScheme; j++ {
			id := fmt.Sprintf("%s-%03d", p.name, j)
			first = append(first, publish(p, topology.TopicRequests, id, requestJSON(id)))
			wants[id] = want{status: contract.StatusSent}
			if j < repub {
				second = append(second, publish(next, topology.TopicRequests, id, requestJSON(id)))
				wants[id] = want{status: contract.StatusSent, duplicates: 1}
			}
		}
		for j := 0; j < held; j++ {
			id := fmt.Sprintf("%s-held-%d", p.name, j)
			v := fmt.Sprintf(`{"schema":"herald.dispatch.v1","id":%q,"campaign":"c","recipient":{"email":"a@example.com"},
				"channels":["email"],"content":{},"not_before":"2030-01-01T00:00:00Z"}`, id)
			first = append(first, publish(p, topology.TopicRequests, id, []byte(v)))
			wants[id] = want{status: contract.StatusCanceled}
		}
	}
	broken := publish(schemes[4], topology.TopicRequests, "broken-1", []byte(`{"schema":"herald.dispatch.v1","id":`))
	first = append(first, broken)
	rng.Shuffle(len(first), func(i, j int) { first[i], first[j] = first[j], first[i] })
	c.Produce(t, manual, first...)
	c.Produce(t, manual, second...)

	// Cancels, by a third partitioner, once the held notifications are
	// known (a cancel before its request would be parked and come back
	// through the delay stage, which this test does not run).
	view := c.TableView(t)
	heraldtest.Settle(t, 60*time.Second, "the held notifications scheduled", func() error {
		for id, w := range wants {
			if s := view.State(id); w.status == contract.StatusCanceled && (s == nil || s.Status != contract.StatusScheduled) {
				return fmt.Errorf("%s: state %+v, want scheduled", id, s)
			}
		}
		return nil
	})
	var cancels []*kgo.Record
	for i, p := range schemes {
		by := schemes[(i+2)%len(schemes)]
		for j := 0; j < held; j++ {
			id := fmt.Sprintf("%s-held-%d", p.name, j)
			b, _ := json.Marshal(contract.Cancel{ID: id, Reason: "test", RequestedAt: time.Now()})
			cancels = append(cancels, publish(by, topology.TopicControl, id, b))
		}
	}
	c.Produce(t, manual, cancels...)

	// Every notification final in the table and in PostgreSQL.
	heraldtest.Settle(t, 60*time.Second, "every notification final in the table", func() error {
		for id, w := range wants {
			if s := view.State(id); s == nil || s.Status != w.status || s.Duplicates != w.duplicates {
				return fmt.Errorf("%s in the table: %+v, want %+v", id, s, w)
			}
		}
		return nil
	})
	rows := map[string]want{}
	heraldtest.Settle(t, 30*time.Second, "every notification final in PostgreSQL", func() error {
		r, err := pool.Query(context.Background(), `SELECT id, status, duplicates FROM dispatch_status`)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		clear(rows)
		for r.Next() {
			var id string
			var w want
			if err := r.Scan(&id, &w.status, &w.duplicates); err != nil {
				t.Fatal(err)
			}
			rows[id] = w
		}
		for id, w := range wants {
			if rows[id] != w {
				return fmt.Errorf("%s in PostgreSQL: %+v, want %+v", id, rows[id], w)
			}
		}
		return nil
	})
	time.Sleep(time.Second) // room for a wrong second delivery to show
	t.Logf("all final after %v", time.Since(start).Round(time.Millisecond))

	if crash.crashed.Load() == 0 || sup.Restarts() == 0 {
		t.Fatalf("the dispatcher did not crash mid-move (%d produces failed, %d restarts)", crash.crashed.Load(), sup.Restarts())
	}
	if len(rows) != len(wants) {
		t.Errorf("PostgreSQL has %d notifications, want %d", len(rows), len(wants))
	}
	// Exactly once at the provider.
	delivered := map[string]int{}
	for _, dl := range mock.Deliveries() {
		delivered[dl.ID]++
	}
	for id, w := range wants {
		n := delivered[id]
		if (w.status == contract.StatusSent && n != 1) || (w.status != contract.StatusSent && n != 0) {
			t.Errorf("%s (%s) delivered %d times", id, w.status, n)
		}
	}
	// Exactly once in dispatch: one attempt per notification, whatever was
	// replayed.
	for _, r := range c.Consume(t, topology.TopicSend, 10*time.Second, func(rs []*kgo.Record) bool { return len(rs) >= len(delivered) }) {
		cmd, err := contract.DecodeCommand(r.Key, r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if cmd.Attempt != 1 || cmd.Channel != contract.ChannelEmail || wants[cmd.ID].status != contract.StatusSent {
			t.Errorf("send command %s #%d on %s", cmd.ID, cmd.Attempt, cmd.Channel)
		}
	}
	dups := 0
	for _, w := range wants {
		dups += w.duplicates
	}
	if got := heraldtest.MetricSum(t, reg, "herald_duplicates_total"); int(got) != dups {
		t.Errorf("herald_duplicates_total %v, want %d", got, dups)
	}

	// Only misplaced records were moved, each with its origin; the crash
	// moved some twice.
	loop := c.Consume(t, topology.TopicRepartition, 10*time.Second, func(rs []*kgo.Record) bool { return len(rs) >= misplaced })
	time.Sleep(500 * time.Millisecond)
	loop = c.Consume(t, topology.TopicRepartition, 10*time.Second, func(rs []*kgo.Record) bool { return len(rs) >= len(loop) })
	origins := map[string]int{}
	for _, r := range loop {
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		origin := h[dispatcher.HeaderOriginTopic] + "/" + h[dispatcher.HeaderOriginPartition] + "/" + h[dispatcher.HeaderOriginOffset]
		origins[origin]++
		if fmt.Sprint(topology.Partition(string(r.Key), parts)) == h[dispatcher.HeaderOriginPartition] || r.Partition != topology.Partition(string(r.Key), parts) {
			t.Errorf("moved %s from %s to partition %d: it was well placed, or is misplaced again", r.Key, origin, r.Partition)
		}
	}
	if len(origins) != misplaced || len(loop) <= misplaced {
		t.Errorf("%d records moved from %d origins; want every one of the %d misplaced records moved, some twice (the crash)",
			len(loop), len(origins), misplaced)
	}
	// Counted by source partition (some twice: the crash), and logged once
	// per topic (the log is rate-limited to a line a minute).
	counted := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "herald_repartitioned_total" {
				l := map[string]string{}
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				counted[l["topic"]+"/"+l["partition"]] += m.GetCounter().GetValue()
			}
		}
	}
	if len(counted) != len(misplacedFrom) {
		t.Errorf("herald_repartitioned_total has %d source partitions %v, want %d %v", len(counted), counted, len(misplacedFrom), misplacedFrom)
	}
	for src, n := range misplacedFrom {
		if counted[src] < float64(n) {
			t.Errorf("herald_repartitioned_total for %s: %v, want at least %d", src, counted[src], n)
		}
	}
	perTopic := map[string]int{}
	for _, line := range strings.Split(warnings.String(), "\n") {
		if strings.Contains(line, "moved through the repartition topic") {
			for _, topic := range []string{topology.TopicRequests, topology.TopicControl} {
				if strings.Contains(line, " topic="+topic+" ") {
					perTopic[topic]++
				}
			}
		}
	}
	if perTopic[topology.TopicRequests] != 1 || perTopic[topology.TopicControl] != 1 || len(perTopic) != 2 {
		t.Errorf("log lines about moved records by topic: %v, want one for each of requests and control:\n%s", perTopic, warnings)
	}

	// The malformed record's dead letter names where it was published.
	dlq := c.Consume(t, topology.TopicDLQ, 10*time.Second, func(rs []*kgo.Record) bool { return len(rs) >= 1 })
	for _, r := range dlq {
		dl, err := heralddlq.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		if dl.Topic != topology.TopicRequests || dl.Partition != broken.Partition || dl.Offset != broken.Offset ||
			string(dl.Key) != "broken-1" || dl.Reason != contract.ReasonMalformed {
			t.Errorf("dead letter %s/%d/%d %s %s, want %s/%d/%d", dl.Topic, dl.Partition, dl.Offset, dl.Key, dl.Reason,
				topology.TopicRequests, broken.Partition, broken.Offset)
		}
	}
	t.Logf("%d records, %d misplaced, %d moves (%d after the crash), %d duplicates, %v",
		len(first)+len(second)+len(cancels), misplaced, len(loop), len(loop)-misplaced, dups, time.Since(start).Round(time.Millisecond))
}

// BenchmarkPlacement measures what a producer with another partitioner
// costs, in one run: for every request well placed and for every request
// misplaced (moved through the repartition topic), on the embedded broker
// with 12 partitions,
//   - throughput: max(b.N, HERALD_BENCH_PLACEMENT_N or 100,000) requests are
//     published first, then a dispatcher starts; the clock runs from the
//     moment it has recovered its (empty) table and starts consuming to the
//     last send command (so the processor's start is not in it);
//     it also reports the CPU time of the whole test process (dispatcher,
//     embedded broker, consumer) per request, which depends less on what
//     else the machine runs than the rate does;
//   - latency: with the dispatcher idle, 300 requests are published one at a
//     time, 10 ms apart, and each is timed from its publication to its send
//     command reaching a consumer of herald.send.
//
// Run: go test ./internal/dispatcher/ -run '^$' -bench Placement -benchtime 1x
func BenchmarkPlacement(b *testing.B) {
	for _, misplace := range []bool{false, true} {
		name := "placed"
		if misplace {
			name = "misplaced"
		}
		b.Run(name, func(b *testing.B) {
			const parts = 12
			c := heraldtest.StartKafka(b, heraldtest.Options{Partitions: parts})
			manual := c.Client(b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
			record := func(id string) *kgo.Record {
				p := topology.Partition(id, parts)
				if misplace {
					p = (p + 1) % parts
				}
				return &kgo.Record{Topic: topology.TopicRequests, Key: []byte(id), Value: requestJSON(id), Partition: p}
			}
			n := max(b.N, 100000)
			if v := os.Getenv("HERALD_BENCH_PLACEMENT_N"); v != "" {
				var err error
				if n, err = strconv.Atoi(v); err != nil || n <= 0 {
					b.Fatalf("HERALD_BENCH_PLACEMENT_N=%q", v)
				}
			}
			recs := make([]*kgo.Record, n)
			for i := range recs {
				recs[i] = record(fmt.Sprintf("bench-%07d", i))
			}
			c.Produce(b, manual, recs...)

			// Every send command that arrives, by id, with its arrival time.
			arrived := sync.Map{}
			var count atomic.Int64
			cons := c.Client(b, kgo.ConsumeTopics(topology.TopicSend), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.FetchMaxWait(10*time.Millisecond))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				for ctx.Err() == nil {
					fs := cons.PollFetches(ctx)
					now := time.Now()
					fs.EachRecord(func(r *kgo.Record) {
						arrived.Store(string(r.Key), now)
						count.Add(1)
					})
				}
			}()

			b.ResetTimer()
			d := heraldtest.StartDispatcher(b, c, heraldtest.DispatcherOptions{Log: slog.New(slog.DiscardHandler)})
			for !d.Ready() {
				time.Sleep(time.Millisecond)
			}
			start, cpu0 := time.Now(), heraldtest.ProcessCPU()
			for count.Load() < int64(n) {
				time.Sleep(time.Millisecond)
			}
			el, cpu := time.Since(start), heraldtest.ProcessCPU()-cpu0
			b.StopTimer()

			const probes = 300
			lat := make([]time.Duration, 0, probes)
			for i := 0; i < probes; i++ {
				id := fmt.Sprintf("probe-%04d", i)
				sent := time.Now()
				c.Produce(b, manual, record(id))
				deadline := time.Now().Add(10 * time.Second)
				for {
					if v, ok := arrived.Load(id); ok {
						lat = append(lat, v.(time.Time).Sub(sent))
						break
					}
					if time.Now().After(deadline) {
						b.Fatalf("no send command for %s", id)
					}
					time.Sleep(time.Millisecond)
				}
				time.Sleep(10 * time.Millisecond)
			}
			d.Stop()
			cancel()
			slices.Sort(lat)
			b.ReportMetric(float64(n)/el.Seconds(), "requests/s")
			b.ReportMetric(cpu.Seconds()*1e6/float64(n), "cpu-µs/request")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// syncBuffer is a log destination that several goroutines may write.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

package hopbench

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/internal/heraldtest"
)

// pollEvery is how often a drain looks at the hop's progress. A look is a
// counter read, or for the Goka hops one ListOffsets request to the broker:
// a cost that lands in the figures, two hundred a second against tens of
// thousands of records.
const pollEvery = 5 * time.Millisecond

// stallAfter fails a drain whose progress has not moved for this long.
const stallAfter = time.Minute

// drained is what one drain measured, from the first record the stage was
// handed to its last output.
type drained struct {
	records int64         // records handled in the window: all n
	elapsed time.Duration // wall time of the window
	cpu     time.Duration // CPU time of the process in the window
	broker  time.Duration // CPU time of the broker process in the window
	brokers bool          // whether the broker ran as a process of its own
	allocs  uint64        // heap allocations of the process in the window
	bytes   uint64        // bytes allocated
}

// drain measures one hop over n records already published to its input:
// start starts its stage; taken says how many input records the stage has
// been handed (polled from its client, or passed to its callback);
// progress how many of the n it has finished (outputs acknowledged or
// seen, or rows committed). The window opens when the stage is handed its
// first record, so that its start-up (joining the group, recovering its
// table) is left out, and closes when progress reaches n. The benchmark's
// timer runs only in the window. With a broker process (nil: none), its CPU
// time in the window is measured too. A stage that takes nothing, or whose
// progress stops, for stallAfter fails the benchmark.
func drain(b timedTB, n int, bp *brokerProcess, start func(), taken, progress func() int64) drained {
	b.Helper()
	b.StopTimer()
	runtime.GC()
	start()
	began := time.Now()
	for taken() == 0 {
		if time.Since(began) > stallAfter {
			b.Fatalf("the stage took no record %v after its start", stallAfter)
		}
		time.Sleep(100 * time.Microsecond)
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	brokerCPU := func() time.Duration {
		if bp == nil {
			return 0
		}
		return bp.cpu(b)
	}
	cpu0, broker0, t0 := heraldtest.ProcessCPU(), brokerCPU(), time.Now()
	b.ResetTimer()
	b.StartTimer()
	last, moved := int64(0), t0
	for last < int64(n) {
		time.Sleep(pollEvery)
		p := progress()
		if p > last {
			last, moved = p, time.Now()
		} else if time.Since(moved) > stallAfter {
			b.Fatalf("stalled at %d of %d records", last, n)
		}
	}
	b.StopTimer()
	d := drained{records: int64(n), elapsed: time.Since(t0), cpu: heraldtest.ProcessCPU() - cpu0, broker: brokerCPU() - broker0, brokers: bp != nil}
	runtime.ReadMemStats(&ms1)
	d.allocs, d.bytes = ms1.Mallocs-ms0.Mallocs, ms1.TotalAlloc-ms0.TotalAlloc
	if last > int64(n) {
		b.Fatalf("%d outputs for %d records", last, n)
	}
	return d
}

// timedTB is a testing.B as drain uses it (a test gives it no-op timers).
type timedTB interface {
	testing.TB
	StopTimer()
	StartTimer()
	ResetTimer()
}

// clientCounts counts, in a franz-go stage's own client (its options get
// hooks()), the records of in it was handed by a poll, and the records of
// out the brokers acknowledged: the taken and progress of a drain, read
// without asking the broker.
type clientCounts struct {
	in, out       string
	taken, output atomic.Int64
}

func (c *clientCounts) hooks() kgo.Opt { return kgo.WithHooks(c) }

func (c *clientCounts) OnFetchRecordUnbuffered(r *kgo.Record, polled bool) {
	if polled && r.Topic == c.in {
		c.taken.Add(1)
	}
}

func (c *clientCounts) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	if err == nil && r.Topic == c.out {
		c.output.Add(1)
	}
}

// report reports d per record: ns/op (and ns/record), records/s,
// cpu-ns/record, B/op and allocs/op of the benchmark's process (the stage
// and the few reads of the drain), and broker-cpu-ns/record when the
// broker ran as a process of its own.
func (d drained) report(b *testing.B) {
	b.ReportAllocs()
	n := float64(d.records)
	ns := float64(d.elapsed.Nanoseconds()) / n
	b.ReportMetric(ns, "ns/op")
	b.ReportMetric(ns, "ns/record")
	b.ReportMetric(n/d.elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(d.cpu.Nanoseconds())/n, "cpu-ns/record")
	if d.brokers {
		b.ReportMetric(float64(d.broker.Nanoseconds())/n, "broker-cpu-ns/record")
	}
	b.ReportMetric(float64(d.allocs)/n, "allocs/op")
	b.ReportMetric(float64(d.bytes)/n, "B/op")
}

// cpuLoop measures the CPU time of an in-process benchmark loop and
// reports it per op as cpu-ns/record, beside the framework's own figures.
func cpuLoop(b *testing.B, body func()) {
	b.ReportAllocs()
	cpu0 := heraldtest.ProcessCPU()
	n := 0
	for b.Loop() {
		body()
		n++
	}
	b.ReportMetric(float64((heraldtest.ProcessCPU()-cpu0).Nanoseconds())/float64(n), "cpu-ns/record")
}

// records returns a progress function: the records topic holds beyond
// base (the sum of its partitions' end offsets; the benchmarks delete
// nothing and use no transactions).
func records(b *testing.B, c *heraldtest.Cluster, topic string, base int64) func() int64 {
	adm := kadm.NewClient(c.Client(b))
	return func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			b.Fatalf("end offsets of %s: %v", topic, err)
		}
		var n int64
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		return n - base
	}
}

// waitRecords waits (untimed, in a hop's set-up) until topic holds want
// records.
func waitRecords(b *testing.B, c *heraldtest.Cluster, topic string, want int64) {
	b.Helper()
	count := records(b, c, topic, 0)
	deadline := time.Now().Add(5 * time.Minute)
	for got := count(); got < want; got = count() {
		if time.Now().After(deadline) {
			b.Fatalf("%s holds %d records, want %d", topic, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

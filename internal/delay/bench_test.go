package delay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/delay"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/metrics"
	"github.com/herald-dispatch/herald/internal/topology"
)

// childBrokersEnv, when set, makes TestHoldChild run a delay stage on those
// brokers: BenchmarkHoldMillion starts the test binary again as a child
// process, so that the memory and CPU it measures are the delay stage's
// alone and not the embedded broker's.
const childBrokersEnv = "HERALD_DELAY_BENCH_BROKERS"

// TestHoldChild is BenchmarkHoldMillion's child process; it skips unless
// started by the benchmark. It runs a delay stage with the default
// configuration and serves its metrics (plus the Go runtime's) and
// /readyz on a free port, which it prints, until SIGTERM.
func TestHoldChild(t *testing.T) {
	brokers := os.Getenv(childBrokersEnv)
	if brokers == "" {
		t.Skip("only run as BenchmarkHoldMillion's child process")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	s, err := delay.New(delay.Config{
		Topology: topology.Config{Brokers: strings.Split(brokers, ",")},
		Targets:  []string{topology.TopicWakeups},
		DLQTopic: topology.TopicDLQ,
		Log:      testLog(),
		Observer: metrics.NewDelay(reg),
	})
	if err != nil {
		t.Fatal(err)
	}
	metrics.NewDelayBacklog(reg, s)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(ln, mux)
	fmt.Printf("LISTEN %s\n", ln.Addr())
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// child is the delay stage process of the benchmark.
type child struct {
	cmd  *exec.Cmd
	addr string
}

func startChild(b *testing.B, brokers []string) *child {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldChild$", "-test.count=1", "-test.timeout=0")
	cmd.Env = append(os.Environ(), childBrokersEnv+"="+strings.Join(brokers, ","))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &child{cmd: cmd}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "LISTEN "); ok {
			c.addr = a
			break
		}
	}
	if c.addr == "" {
		b.Fatalf("child did not start: %v", sc.Err())
	}
	go func() { // drain the rest of its output
		for sc.Scan() {
		}
	}()
	heraldtest.WaitFor(b, 60*time.Second, "child ready", func() bool {
		resp, err := http.Get("http://" + c.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return c
}

// metric returns the sum of a metric's series in the child (for a
// histogram, its count), and the histogram's buckets if it is one.
func (c *child) metric(b *testing.B, name string) (float64, map[float64]uint64) {
	b.Helper()
	resp, err := http.Get("http://" + c.addr + "/metrics")
	if err != nil {
		b.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		b.Fatalf("scrape: %v", err)
	}
	mf, ok := mfs[name]
	if !ok {
		return 0, nil
	}
	sum := 0.0
	var buckets map[float64]uint64
	for _, m := range mf.GetMetric() {
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		if h := m.GetHistogram(); h != nil {
			sum += float64(h.GetSampleCount())
			buckets = map[float64]uint64{}
			for _, bk := range h.GetBucket() {
				buckets[bk.GetUpperBound()] = bk.GetCumulativeCount()
			}
		}
	}
	return sum, buckets
}

// procStatus reads VmRSS and VmHWM (bytes) of a process.
func procStatus(b *testing.B, pid int) (rss, hwm int64) {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("proc status: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// cpuTime is the user+system CPU time a process has used (the same
// figures getrusage reports, read from /proc/<pid>/stat in clock ticks).
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("proc stat: %v", err)
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 (state) on
	utime, _ := strconv.ParseInt(f[11], 10, 64)              // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64)              // field 15
	const ticks = 100                                        // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// produceMany publishes n delayed wake-ups to topic, due at due(i), as fast
// as franz-go will, and returns how long it took.
func produceMany(b *testing.B, c *heraldtest.Cluster, n int, prefix, topic string, due func(i int) time.Time) time.Duration {
	b.Helper()
	cl := c.Client(b, kgo.ProducerLinger(20*time.Millisecond), kgo.MaxBufferedRecords(200_000), kgo.ProducerBatchMaxBytes(1<<20))
	var failed atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	for i := range n {
		id := fmt.Sprintf("%s-%07d", prefix, i)
		d := due(i)
		v, _ := json.Marshal(contract.Wakeup{ID: id, Kind: contract.WakeupHold, Due: d})
		cl.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte(id), Value: v,
			Headers: []kgo.RecordHeader{
				{Key: topology.HeaderDue, Value: topology.FormatDue(d)},
				{Key: topology.HeaderTarget, Value: []byte(topology.TopicWakeups)},
			}}, func(_ *kgo.Record, err error) {
			if err != nil && failed.Add(1) == 1 {
				firstErr.Store(err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	if failed.Load() > 0 {
		b.Fatalf("%d records failed: %v", failed.Load(), firstErr.Load())
	}
	return time.Since(start)
}

func bucketQuantile(buckets map[float64]uint64, total float64, q float64) string {
	bounds := metrics.DelayLatenessBuckets()
	for _, ub := range bounds {
		if float64(buckets[ub]) >= q*total {
			return fmt.Sprintf("<=%gs", ub)
		}
	}
	return ">" + fmt.Sprint(bounds[len(bounds)-1]) + "s"
}

// BenchmarkHoldMillion holds 1,000,000 records (HERALD_BENCH_HOLD sets
// another count) in the 1h tier and measures the delay stage process while
// they wait: RSS, peak RSS and CPU over 20 s of idling. Then it publishes
// another 1,000,000 records all due at one instant a little ahead and
// measures how fast the stage releases them, with the million still held.
// The stage runs in a child process with the default configuration; the
// embedded broker (12 partitions per topic, as Herald's default) runs in
// the benchmark's process. It runs once whatever b.N is (about 3 minutes).
func BenchmarkHoldMillion(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("HERALD_BENCH_HOLD"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("HERALD_BENCH_HOLD=%q", s)
		}
		n = v
	}
	const partitions = 12
	c := heraldtest.StartKafka(b, heraldtest.Options{Partitions: partitions})
	ch := startChild(b, c.Brokers)
	pid := ch.cmd.Process.Pid
	rss0, _ := procStatus(b, pid)
	b.ResetTimer()

	// Hold: n records due in 90 minutes, in the 1h tier.
	far := time.Now().Add(90 * time.Minute)
	hold := topology.Route(far, time.Now(), topology.TopicWakeups)
	took := produceMany(b, c, n, "hold", hold, func(int) time.Time { return far })
	b.Logf("held %d records in %s: produced in %v (%.0f/s)", n, hold, took.Round(time.Millisecond), float64(n)/took.Seconds())
	heraldtest.WaitFor(b, 2*time.Minute, "all records held", func() bool {
		held, _ := ch.metric(b, "herald_delay_held_records")
		return held >= float64(n)
	})
	time.Sleep(3 * time.Second) // let the last fetches and GC settle
	buffered, _ := ch.metric(b, "herald_delay_buffered_records")
	cpu0 := cpuTime(b, pid)
	const idle = 20 * time.Second
	time.Sleep(idle)
	idleCPU := cpuTime(b, pid) - cpu0
	rss, hwm := procStatus(b, pid)
	heap, _ := ch.metric(b, "go_memstats_heap_inuse_bytes")
	goroutines, _ := ch.metric(b, "go_goroutines")
	b.Logf("holding %d: RSS %.1f MiB (%.1f MiB at start), peak %.1f MiB, heap in use %.1f MiB, %d buffered in memory, %d goroutines",
		n, mib(rss), mib(rss0), mib(hwm), heap/(1<<20), int(buffered), int(goroutines))
	b.Logf("idle CPU over %v: %v (%.2f%% of one core)", idle, idleCPU, 100*idleCPU.Seconds()/idle.Seconds())

	// Release: n more records due all at once, lead seconds after their
	// publication starts (in a tier long enough that none hops first).
	lead := max(30*time.Second, 2*took+5*time.Second)
	tiers := topology.Tiers()
	tier := tiers[len(tiers)-1]
	for _, d := range tiers {
		if d >= lead {
			tier = d
			break
		}
	}
	due := time.Now().Add(lead)
	took2 := produceMany(b, c, n, "release", topology.TierTopic(tier), func(int) time.Time { return due })
	from := due
	if published := time.Now(); published.After(due) {
		// A loaded machine: the first records went as they arrived; time
		// the release from the end of publication instead.
		b.Logf("publishing took %v, %v past the due time: release timed from the end of publication", took2, published.Sub(due))
		from = published
	}
	cpu1 := cpuTime(b, pid)
	var first, last time.Time
	var peakBuffered float64
	for {
		fw, _ := ch.metric(b, "herald_delay_forwarded_total")
		buf, _ := ch.metric(b, "herald_delay_buffered_records")
		peakBuffered = max(peakBuffered, buf)
		now := time.Now()
		if fw > 0 && first.IsZero() {
			first = now
		}
		if fw >= float64(n) {
			last = now
			break
		}
		if now.After(due.Add(10 * time.Minute)) {
			b.Fatalf("only %.0f of %d released 10 minutes after due", fw, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	releaseCPU := cpuTime(b, pid) - cpu1
	_, hwm2 := procStatus(b, pid)
	count, buckets := ch.metric(b, "herald_delay_release_lateness_seconds")
	rate := float64(n) / last.Sub(from).Seconds()
	b.Logf("released %d due at once (from %s, published in %v): first seen %v after due, all %v after due (or publication): %.0f records/s; CPU %v; peak RSS now %.1f MiB; up to %.0f records buffered",
		n, topology.TierTopic(tier), took2.Round(time.Millisecond), first.Sub(due).Round(time.Millisecond), last.Sub(from).Round(time.Millisecond),
		rate, releaseCPU.Round(time.Millisecond), mib(hwm2), peakBuffered)
	b.Logf("release lateness (delay stage, produce acknowledged): p50 %s p99 %s max %s",
		bucketQuantile(buckets, count, 0.5), bucketQuantile(buckets, count, 0.99), bucketQuantile(buckets, count, 1))
	if held, _ := ch.metric(b, "herald_delay_held_records"); held < float64(n) {
		b.Errorf("%.0f records still held, want the %d far ones", held, n)
	}
	b.StopTimer()
	b.ReportMetric(mib(rss), "idle-RSS-MiB")
	b.ReportMetric(mib(hwm2), "peak-RSS-MiB")
	b.ReportMetric(100*idleCPU.Seconds()/idle.Seconds(), "idle-CPU-%")
	b.ReportMetric(rate, "release-records/s")
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

package sender_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/herald-dispatch/herald/internal/sender"
	"github.com/herald-dispatch/herald/internal/topology"
)

// referenceRate is the reference design's throughput: 180 threads against
// a provider taking 1 s per message.
const referenceRate = 180.0

const benchN = 100000

// BenchmarkSender100kMock1s measures the sender stage alone: 100,000 send
// commands published to herald.send beforehand, an in-process mock
// provider taking 1 s per attempt, until every result is acknowledged in
// herald.results. At 1 s per attempt the ceiling is the in-flight bound
// (concurrency per second); the benchmark shows how close the stage gets.
func BenchmarkSender100kMock1s(b *testing.B) {
	for _, conc := range []int{sender.DefaultConcurrency, 5000} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchSender(b, conc)
			}
		})
	}
}

func benchSender(b *testing.B, conc int) {
	b.StopTimer()
	c := heraldtest.StartKafka(b, heraldtest.Options{Partitions: 12})
	cl := c.Client(b)
	recs := make([]*kgo.Record, 0, 10000)
	for i := 0; i < benchN; i++ {
		recs = append(recs, command(fmt.Sprintf("bench-%06d", i), contract.ChannelEmail, 1))
		if len(recs) == cap(recs) {
			c.Produce(b, cl, recs...)
			recs = recs[:0]
		}
	}
	c.Produce(b, cl, recs...)
	mock := provider.NewMock(provider.Simulation{Latency: time.Second})
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.StartTimer()
	start := time.Now()
	_, stop := runSender(b, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: mock},
		Concurrency: conc, Log: quietLog()})
	n := countRecords(b, c, topology.TopicResults, benchN, 10*time.Minute)
	el := time.Since(start)
	b.StopTimer()
	stop()
	if n != benchN || mock.Counts().Accepted != benchN {
		b.Fatalf("%d results, %d accepted, want %d", n, mock.Counts().Accepted, benchN)
	}
	rate := float64(n) / el.Seconds()
	b.ReportMetric(rate, "notifications/s")
	b.ReportMetric(rate/referenceRate, "x_reference")
	b.Logf("%d notifications at 1 s provider latency, concurrency %d: %s, %.0f/s = %.1fx the 180/s reference",
		n, conc, el.Round(time.Millisecond), rate, rate/referenceRate)
}

// BenchmarkPipeline100kMock1s measures the whole send path: 100,000
// dispatch requests through the dispatcher, the delay stage, the sender
// (default concurrency, and 5,000) and a mock provider over HTTP taking
// 1 s per email, until the provider has accepted every one. Its progress
// lines show the sender's in-flight count and the provider latency it
// observes: with the in-flight bound reached, throughput is concurrency
// divided by that latency, which CPU contention stretches beyond 1 s.
func BenchmarkPipeline100kMock1s(b *testing.B) {
	for _, conc := range []int{sender.DefaultConcurrency, 5000} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchPipeline(b, conc)
			}
		})
	}
}

func benchPipeline(b *testing.B, conc int) {
	{
		b.StopTimer()
		p := startPipeline(b, pipelineOptions{Partitions: 12, Concurrency: conc,
			Email: "latency=1s", SMS: "latency=50ms", SendTimeout: 5 * time.Minute})
		cl := p.c.Client(b)
		b.StartTimer()
		start := time.Now()
		recs := make([]*kgo.Record, 0, 10000)
		for i := 0; i < benchN; i++ {
			id := fmt.Sprintf("2026-01:acct-%06d:bill", i)
			recs = append(recs, &kgo.Record{Topic: topology.TopicRequests, Key: []byte(id), Value: request(id)})
			if len(recs) == cap(recs) {
				p.c.Produce(b, cl, recs...)
				recs = recs[:0]
			}
		}
		p.c.Produce(b, cl, recs...)
		deadline := time.Now().Add(10 * time.Minute)
		adm := kadm.NewClient(cl)
		lastLog := start
		var t10, t90 time.Duration // when 10% and 90% were accepted
		var prevN, prevNs int64
		for time.Now().Before(deadline) {
			acc := p.mock.Stats().UniqueIDs
			if acc >= benchN/10 && t10 == 0 {
				t10 = time.Since(start)
			}
			if acc >= benchN*9/10 && t90 == 0 {
				t90 = time.Since(start)
			}
			if acc >= benchN {
				break
			}
			time.Sleep(50 * time.Millisecond)
			if time.Since(lastLog) >= 10*time.Second {
				lastLog = time.Now()
				b.Logf("%4.0fs: %6d commands, %6d results, %6d accepted, %4d in flight (email limit %d, %d calls), provider latency %s",
					time.Since(start).Seconds(), topicCount(b, adm, topology.TopicSend), topicCount(b, adm, topology.TopicResults), acc,
					p.obs.inFlight.Load(), p.obs.emailLimit.Load(), p.obs.emailCalls.Load(), p.obs.meanLatency(&prevN, &prevNs).Round(time.Millisecond))
			}
		}
		el := time.Since(start)
		b.StopTimer()
		st := p.mock.Stats()
		p.Stop()
		if st.UniqueIDs != benchN || st.Duplicates != 0 {
			b.Fatalf("provider accepted %d ids (%d duplicates), want %d", st.UniqueIDs, st.Duplicates, benchN)
		}
		rate := float64(benchN) / el.Seconds()
		steady := float64(benchN*8/10) / (t90 - t10).Seconds()
		b.ReportMetric(rate, "notifications/s")
		b.ReportMetric(rate/referenceRate, "x_reference")
		b.ReportMetric(steady, "steady/s")
		b.Logf("%d notifications end to end at 1 s provider latency, concurrency %d: %s, %.0f/s = %.1fx the 180/s reference "+
			"(from start-up to the last acceptance); %.0f/s between the 10%% and 90%% marks",
			benchN, conc, el.Round(time.Millisecond), rate, rate/referenceRate, steady)
	}
}

// countRecords counts a topic's records from the start until want arrived
// or timeout passed.
func countRecords(b *testing.B, c *heraldtest.Cluster, topic string, want int, timeout time.Duration) int {
	cl := c.Client(b, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	n := 0
	for n < want && ctx.Err() == nil {
		n += cl.PollFetches(ctx).NumRecords()
	}
	return n
}

// topicCount sums a topic's end offsets.
func topicCount(b *testing.B, adm *kadm.Client, topic string) int64 {
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// BenchmarkSenderRecall measures what a start costs the sender for reading
// its answered memory back (recall): herald.results holds 200,000 results
// (the default memory) over 12 partitions, and the sender, assigned all
// 12, reads each partition's newest 200,000/12 before it handles a
// command; one command per partition, published beforehand, is answered
// once the read is done.
func BenchmarkSenderRecall(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c := heraldtest.StartKafka(b, heraldtest.Options{Partitions: 12})
		cl := c.Client(b)
		recs := make([]*kgo.Record, 0, 10000)
		for j := 0; j < sender.DefaultAnsweredMemory; j++ {
			id := fmt.Sprintf("old-%06d", j)
			v, err := contract.EncodeResult(&contract.SendResult{ID: id, Attempt: 1, Channel: contract.ChannelEmail,
				Outcome: contract.OutcomeSuccess, Code: 200, At: time.Now(), Latency: contract.Duration(time.Second)})
			if err != nil {
				b.Fatal(err)
			}
			recs = append(recs, &kgo.Record{Topic: topology.TopicResults, Key: []byte(id), Value: v})
			if len(recs) == cap(recs) {
				c.Produce(b, cl, recs...)
				recs = recs[:0]
			}
		}
		c.Produce(b, cl, recs...)
		markers := map[int32]bool{}
		for j := 0; len(markers) < 12; j++ {
			id := fmt.Sprintf("marker-%d", j)
			if p := topology.Partition(id, 12); !markers[p] {
				markers[p] = true
				c.Produce(b, cl, command(id, contract.ChannelEmail, 1))
			}
		}
		b.StartTimer()
		start := time.Now()
		_, stop := runSender(b, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: provider.NewMock(provider.Simulation{})},
			Log: quietLog()})
		want := int64(sender.DefaultAnsweredMemory + 12)
		for c.Count(b, topology.TopicResults) < want {
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(start)
		b.StopTimer()
		stop()
		b.ReportMetric(float64(took.Milliseconds()), "ms-to-first-answers")
		b.ReportMetric(float64(sender.DefaultAnsweredMemory)/took.Seconds(), "results-read/s")
	}
}

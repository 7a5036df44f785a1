// Package heraldtest is Herald's one package of test helpers, in the manner
// of River's rivertest: the embedded broker with every Herald topic created
// and helpers to produce, consume and count with Herald's partitioning
// (kafka.go), a view of the dispatcher's table (view.go), the dispatcher
// under its supervisor (dispatcher.go), the delay stage (delay.go), the
// send path around the stages a test passes in, provider sets and a mock
// provider (pipeline.go), a fresh PostgreSQL database per test and a pool
// on it with Herald's schema (postgres.go), TLS files (tls.go), a clock
// that can be moved (clock.go), the sum of a metric (metrics.go), the
// process's CPU time (cpu.go), and waiting for a condition and running a
// stage in the background (run.go). Product code never imports it.
//
// It imports what it starts (dispatcher, delay, provider, migrations), so
// their in-package tests cannot use it. It must not import the sender,
// the sink, views or statusfeed, whose in-package tests use it (the
// compiler refuses the cycle): a test passes those in as Stages of its
// pipeline.
package heraldtest

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/internal/broker"
	"github.com/herald-dispatch/herald/internal/topology"
)

// Cluster is a running test broker.
type Cluster struct {
	Broker   *broker.Broker
	Brokers  []string
	Topology topology.Config
	// DataDir is the broker's data dir, under the test's temp dir.
	DataDir string
}

// Options tune StartKafka.
type Options struct {
	// Partitions of every co-partitioned topic (default 4).
	Partitions int
	// DataDir persists the broker; empty uses a fresh temp dir.
	DataDir string
	// Addr to listen on (default 127.0.0.1:0, a free port).
	Addr string
	// TLS and SASL secure the broker (see broker.Config); Security is how
	// the cluster's clients connect to it then.
	TLS      *tls.Config
	SASL     []broker.SASLUser
	Security *topology.Security
}

// StartKafka starts a broker with Herald's topics and stops it when the test
// ends.
func StartKafka(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Partitions == 0 {
		o.Partitions = 4
	}
	if o.DataDir == "" {
		o.DataDir = filepath.Join(t.TempDir(), "kafka")
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	b, err := broker.Start(broker.Config{Addr: o.Addr, DataDir: o.DataDir, Partitions: o.Partitions, TLS: o.TLS, SASL: o.SASL})
	if err != nil {
		t.Fatalf("heraldtest: %v", err)
	}
	c := &Cluster{Broker: b, Brokers: b.Addrs(), DataDir: o.DataDir}
	t.Cleanup(func() { c.Broker.Close() })
	c.Topology = topology.Config{Brokers: c.Brokers, Partitions: o.Partitions, ClientID: "herald-test", Security: o.Security}.WithDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := topology.WaitForBrokers(ctx, c.Brokers, o.Security.KgoOpts()...); err != nil {
		t.Fatalf("heraldtest: %v", err)
	}
	if err := topology.EnsureTopics(ctx, c.Topology); err != nil {
		t.Fatalf("heraldtest: %v", err)
	}
	return c
}

// Client returns a franz-go client with Herald's producer settings, closed
// when the test ends. Extra options are appended.
func (c *Cluster) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	all := append(c.Topology.KgoOpts(), topology.KgoProducerOpts()...)
	cl, err := kgo.NewClient(append(all, opts...)...)
	if err != nil {
		t.Fatalf("heraldtest: client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Produce publishes records synchronously and fails the test on error.
func (c *Cluster) Produce(t testing.TB, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("heraldtest: produce: %v", err)
	}
}

// Consume reads topic from the start until pred returns true for the
// records read so far or timeout passes; it returns what it read.
func (c *Cluster) Consume(t testing.TB, topic string, timeout time.Duration, pred func([]*kgo.Record) bool) []*kgo.Record {
	t.Helper()
	cl := c.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for !pred(out) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return out
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// Count is the number of records topic holds: the sum of its partitions'
// end offsets (Herald's tests delete nothing and use no transactions).
func (c *Cluster) Count(t testing.TB, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(c.Topology.KgoOpts()...)
	if err != nil {
		t.Fatalf("heraldtest: client: %v", err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("heraldtest: end offsets of %s: %v", topic, err)
	}
	n := int64(0)
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// ReadAll reads every record topic holds now: from the start of each
// partition to its end offset at the call.
func (c *Cluster) ReadAll(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	want := c.Count(t, topic)
	return c.Consume(t, topic, 30*time.Second, func(rs []*kgo.Record) bool { return int64(len(rs)) >= want })
}

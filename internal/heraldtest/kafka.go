// Package heraldtest is Herald's one package of test helpers, in the manner
// of River's rivertest: the embedded broker with every Herald topic created
// and helpers to produce and consume with Herald's partitioning (kafka.go),
// a view of the dispatcher's table (view.go), a fresh PostgreSQL database
// per test (postgres.go), TLS files (tls.go), a clock that can be moved
// (clock.go), and waiting for a condition (wait.go). Product code never
// imports it.
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
		t.Fatalf("kafkatest: %v", err)
	}
	c := &Cluster{Broker: b, Brokers: b.Addrs(), DataDir: o.DataDir}
	t.Cleanup(func() { c.Broker.Close() })
	c.Topology = topology.Config{Brokers: c.Brokers, Partitions: o.Partitions, ClientID: "herald-test", Security: o.Security}.WithDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := topology.WaitForBrokers(ctx, c.Brokers, o.Security.KgoOpts()...); err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	if err := topology.EnsureTopics(ctx, c.Topology); err != nil {
		t.Fatalf("kafkatest: %v", err)
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
		t.Fatalf("kafkatest: client: %v", err)
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
		t.Fatalf("kafkatest: produce: %v", err)
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

// ReadAll reads every record topic holds now: from the start of each
// partition to its end offset at the call.
func (c *Cluster) ReadAll(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(c.Client(t)).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("kafkatest: end offsets of %s: %v", topic, err)
	}
	want := int64(0)
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	return c.Consume(t, topic, 30*time.Second, func(rs []*kgo.Record) bool { return int64(len(rs)) >= want })
}

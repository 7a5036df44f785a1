package broker

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/internal/topology"
)

// kfake applies retention.ms to every topic, compacted ones included
// (Kafka does not), and the embedded broker's log.retention.ms is 7
// days: without a retention.ms of its own, the dispatcher's changelog
// would lose every state unchanged for a week at the broker's next
// cleaning pass, and a process recovering the table (a new instance, a
// rebalance) would take a known id for a new one. A stream topic's old
// record goes, which shows the pass ran.
func TestCompactedTopicsKeepOldRecords(t *testing.T) {
	b, err := Start(Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tc := topology.Config{Brokers: b.Addrs(), Partitions: 1}.WithDefaults()
	if err := topology.EnsureTopics(ctx, tc); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(tc.KgoOpts(), topology.KgoProducerOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	old := time.Now().Add(-30 * 24 * time.Hour)
	topics := []string{string(topology.TableDispatcher), topology.TopicDLQReplays, topology.TopicRequests}
	for _, topic := range topics {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("a"), Value: []byte("v"), Timestamp: old}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	b.c.ApplyRetention()
	b.c.Compact()
	for _, topic := range topics {
		rc, err := kgo.NewClient(append(tc.KgoOpts(), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
		if err != nil {
			t.Fatal(err)
		}
		fctx, fcancel := context.WithTimeout(ctx, 3*time.Second)
		fs := rc.PollFetches(fctx)
		fcancel()
		n := len(fs.Records())
		rc.Close()
		want := 1
		if topic == topology.TopicRequests {
			want = 0 // older than its retention.ms
		}
		if n != want {
			t.Errorf("%s: %d records of 30 days ago after the broker's cleaning, want %d", topic, n, want)
		}
	}
}

package topology

import (
	"fmt"
	"testing"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/delay"
)

// Every producer of Herald must place a key where Sarama's default hash
// partitioner (Goka's) places it, or co-partitioning breaks.
func TestPartitionersAgreeWithSarama(t *testing.T) {
	for _, parts := range []int{1, 4, 12, 24, 7} {
		sp := sarama.NewHashPartitioner(TopicRequests)
		kp := KgoPartitioner().ForTopic(TopicRequests)
		for i := 0; i < 5000; i++ {
			key := fmt.Sprintf("2026-01:user-%d:bill", i)
			want, err := sp.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, int32(parts))
			if err != nil {
				t.Fatal(err)
			}
			if got := Partition(key, parts); got != want {
				t.Fatalf("Partition(%q, %d) = %d, Sarama says %d", key, parts, got, want)
			}
			if got := kp.Partition(&kgo.Record{Key: []byte(key)}, parts); int32(got) != want {
				t.Fatalf("franz-go partitioner put %q on %d of %d, Sarama says %d", key, got, parts, want)
			}
		}
	}
}

func TestTopicsAreCopartitionedAndConfigured(t *testing.T) {
	c := Config{Partitions: 6}.WithDefaults()
	specs := map[string]TopicSpec{}
	for _, s := range c.Topics() {
		specs[s.Name] = s
	}
	want := append([]string{TopicRequests, TopicSend, TopicResults, TopicWakeups, TopicControl, string(TableDispatcher)}, delay.TierTopics()...)
	for _, name := range want {
		s, ok := specs[name]
		if !ok {
			t.Fatalf("topic %s missing", name)
		}
		if !s.Copartitioned || s.Partitions != 6 {
			t.Errorf("%s: copartitioned=%v partitions=%d, want co-partitioned with 6", name, s.Copartitioned, s.Partitions)
		}
	}
	if p := specs[string(TableDispatcher)].Configs["cleanup.policy"]; p != "compact" {
		t.Errorf("the changelog's cleanup.policy is %q, want compact", p)
	}
	if r := specs[TopicRequests].Configs["retention.ms"]; r != "604800000" {
		t.Errorf("stream retention %s ms, want 7 days", r)
	}
	// Retention must outlast the longest delay tier, with room for an outage.
	if max := delay.Tiers[len(delay.Tiers)-1]; c.Retention < 3*max {
		t.Errorf("retention %v is not well beyond the longest tier %v", c.Retention, max)
	}
	if _, ok := specs[TopicDLQ]; !ok {
		t.Error("no DLQ topic")
	}
	if s, ok := specs[TopicStatus]; !ok || s.Partitions != 6 || s.Configs["retention.ms"] != "604800000" {
		t.Errorf("status stream %+v", s)
	}
}

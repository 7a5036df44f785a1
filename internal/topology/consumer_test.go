package topology

import (
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestConsumerOpts(t *testing.T) {
	t.Parallel()
	c := Config{Brokers: []string{"127.0.0.1:1"}, ClientID: "h", SessionTimeout: 7 * time.Second, HeartbeatInterval: 2 * time.Second}
	for _, tc := range []struct {
		name string
		g    Consumer
	}{
		{"marks", Consumer{Name: "delay", Group: "g1", Topics: []string{"a", "b"}, CommitInterval: 3 * time.Second,
			BlockRebalance: true, FetchMaxWait: 50 * time.Millisecond, FetchMaxPartitionBytes: 4096}},
		{"manual", Consumer{Name: "sink", Group: "g2", Topics: []string{"t"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := kgo.NewClient(c.ConsumerOpts(tc.g)...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			get := func(opt any) any { return cl.OptValue(opt) }
			if got := get(kgo.ClientID); got != "h-"+tc.g.Name {
				t.Errorf("client id %v", got)
			}
			if got := get(kgo.ConsumerGroup); got != tc.g.Group {
				t.Errorf("group %v", got)
			}
			topics, _ := get(kgo.ConsumeTopics).([]string)
			slices.Sort(topics)
			if !slices.Equal(topics, tc.g.Topics) {
				t.Errorf("topics %v, want %v", topics, tc.g.Topics)
			}
			if get(kgo.SessionTimeout) != 7*time.Second || get(kgo.HeartbeatInterval) != 2*time.Second {
				t.Errorf("session %v heartbeat %v, want the Config's", get(kgo.SessionTimeout), get(kgo.HeartbeatInterval))
			}
			if get(kgo.RequiredAcks) != kgo.AllISRAcks() {
				t.Errorf("acks %v, want all in-sync replicas", get(kgo.RequiredAcks))
			}
			if get(kgo.ConsumeResetOffset) != kgo.NewOffset().AtStart() {
				t.Errorf("reset offset %v, want the start", get(kgo.ConsumeResetOffset))
			}
			marks, _ := get(kgo.AutoCommitMarks).(bool)
			disabled, _ := get(kgo.DisableAutoCommit).(bool)
			if marks != (tc.g.CommitInterval > 0) || disabled != (tc.g.CommitInterval == 0) {
				t.Errorf("autocommit marks %v disabled %v", marks, disabled)
			}
			if tc.g.CommitInterval > 0 && get(kgo.AutoCommitInterval) != tc.g.CommitInterval {
				t.Errorf("commit interval %v", get(kgo.AutoCommitInterval))
			}
			if block, _ := get(kgo.BlockRebalanceOnPoll).(bool); block != tc.g.BlockRebalance {
				t.Errorf("block rebalance %v", block)
			}
			wantPart := tc.g.FetchMaxPartitionBytes
			if wantPart == 0 {
				wantPart = FetchMaxPartitionBytes
			}
			if get(kgo.FetchMaxPartitionBytes) != wantPart || get(kgo.FetchMaxBytes) != fetchMaxBytes(len(tc.g.Topics)*c.WithDefaults().Partitions, wantPart) {
				t.Errorf("fetch partition bytes %v, max bytes %v", get(kgo.FetchMaxPartitionBytes), get(kgo.FetchMaxBytes))
			}
			if tc.g.FetchMaxWait > 0 && get(kgo.FetchMaxWait) != tc.g.FetchMaxWait {
				t.Errorf("fetch max wait %v", get(kgo.FetchMaxWait))
			}
		})
	}
}

// A fetch has room for every partition it asks for: a smaller limit
// starved the partitions the broker filled last.
func TestFetchHasRoomForEveryPartition(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		partitions int
		part       int32
		want       int32
	}{
		{12, 256 << 10, 4 << 20},       // the sender, the sink: 3 MiB fit in the default
		{48, 256 << 10, 12 << 20},      // more partitions: room for each
		{18 * 12, 128 << 10, 27 << 20}, // the delay stage's tiers
	} {
		if got := fetchMaxBytes(tc.partitions, tc.part); got != tc.want || int64(got) < int64(tc.partitions)*int64(tc.part) {
			t.Errorf("%d partitions of %d bytes: fetch of %d, want %d", tc.partitions, tc.part, got, tc.want)
		}
	}
}

package topology

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Consumer describes one of Herald's franz-go consumer-group members (the
// delay stage, the sender, the sink, the status feed).
type Consumer struct {
	// Name ends the client id: Config.ClientID + "-" + Name.
	Name string
	// Group is the consumer group; Topics are the topics it consumes.
	Group  string
	Topics []string
	// CommitInterval, when positive, commits the offsets the stage marks
	// (MarkCommitOffsets) that often in the background (AutoCommitMarks).
	// Zero: the stage commits every offset itself (DisableAutoCommit).
	CommitInterval time.Duration
	// BlockRebalance holds a rebalance between a poll and the stage's
	// AllowRebalance (BlockRebalanceOnPoll), so that partitions are never
	// revoked from under records being handed out.
	BlockRebalance bool
	// FetchMaxWait bounds a fetch's long poll (zero: franz-go's default);
	// FetchMaxPartitionBytes bounds one fetch of one partition (zero: the
	// package's FetchMaxPartitionBytes).
	FetchMaxWait           time.Duration
	FetchMaxPartitionBytes int32
}

// ConsumerOpts are the franz-go options of a Herald consumer-group member,
// the one place they are assembled: the brokers and security of c
// (KgoOpts), the client id, Herald's producer settings for what the member
// publishes (KgoProducerOpts), the group with c's session timeout and
// heartbeat interval, fetches with room for every partition (fetchMaxBytes), a partition
// without a committed offset read from its start, and offsets committed
// only as the stage marks or commits them, never for a record merely
// polled. A stage appends its rebalance
// callbacks (and tests their options) after these.
func (c Config) ConsumerOpts(g Consumer) []kgo.Opt {
	c = c.WithDefaults()
	opts := append(c.KgoOpts(),
		kgo.ClientID(c.ClientID+"-"+g.Name),
		kgo.ConsumerGroup(g.Group),
		kgo.ConsumeTopics(g.Topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(c.SessionTimeout),
		kgo.HeartbeatInterval(c.HeartbeatInterval),
	)
	opts = append(opts, KgoProducerOpts()...)
	if g.CommitInterval > 0 {
		opts = append(opts, kgo.AutoCommitMarks(), kgo.AutoCommitInterval(g.CommitInterval))
	} else {
		opts = append(opts, kgo.DisableAutoCommit())
	}
	if g.BlockRebalance {
		opts = append(opts, kgo.BlockRebalanceOnPoll())
	}
	if g.FetchMaxWait > 0 {
		opts = append(opts, kgo.FetchMaxWait(g.FetchMaxWait))
	}
	if g.FetchMaxPartitionBytes <= 0 {
		g.FetchMaxPartitionBytes = FetchMaxPartitionBytes
	}
	opts = append(opts, kgo.FetchMaxPartitionBytes(g.FetchMaxPartitionBytes),
		kgo.FetchMaxBytes(fetchMaxBytes(len(g.Topics)*c.Partitions, g.FetchMaxPartitionBytes)))
	return opts
}

// fetchMaxBytes is the byte limit of a fetch over partitions partitions
// of at most partBytes each: FetchMaxBytes, or room for every partition
// when that is more (see FetchMaxBytes: a smaller limit starves some).
func fetchMaxBytes(partitions int, partBytes int32) int32 {
	return int32(max(int64(FetchMaxBytes), int64(partitions)*int64(partBytes)))
}

// Package topology owns Herald's Kafka layout: the topic names and their
// configs, how topics are created, the client settings every Herald
// producer and consumer uses (acks, idempotence, the key hash, and how it
// connects: TLS and SASL, security.go) and the names of the delay tier
// topics (tiers.go). The dispatcher's group graph is internal/dispatcher's;
// the codecs of the records and of the table are contract's.
//
// Co-partitioning: herald.requests, herald.send, herald.results,
// herald.wakeups, herald.control, the delay tiers and the dispatcher table
// all have the same partition count, and every Herald producer places keys
// the way the Java client's default partitioner does (murmur2, see hash.go).
// A notification id therefore lives on the same partition number in every
// topic, which is what lets one processor instance own all of a
// notification's events without locks. Producers outside Herald may use any
// partitioner: the dispatcher moves a record that arrived on another
// partition through TopicRepartition first (internal/dispatcher/placement.go). Topics are created by Herald at
// start (never by the broker's auto-creation, which would pick its own
// partition count); a topic that exists with the wrong count stops Herald
// with an error instead of silently splitting a notification's events.
package topology

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Topic names.
const (
	// TopicRequests carries DispatchRequests from producers, keyed by id.
	TopicRequests = "herald.requests"
	// TopicSend carries SendCommands from the dispatcher to the sender.
	TopicSend = "herald.send"
	// TopicResults carries SendResults from the sender to the dispatcher.
	TopicResults = "herald.results"
	// TopicWakeups carries due Wakeups from the delay stage to the dispatcher.
	TopicWakeups = "herald.wakeups"
	// TopicControl carries Cancels from the API to the dispatcher.
	TopicControl = "herald.control"
	// TopicDLQ carries DeadLetters: every record Herald could not use.
	TopicDLQ = "herald.dlq"
	// TopicStatus is the public status stream: a statusfeed.Record per
	// change of a notification's state, keyed by id, for producers to
	// consume outcomes instead of polling.
	TopicStatus = "herald.status"
	// TopicDLQReplays records which dead letters `herald dlq replay` has
	// published again (compacted, keyed by the dead letter's position).
	TopicDLQReplays = "herald.dlq.replays"
	// TopicRepartition carries records that arrived on a partition other
	// than the one Herald's key hash gives their key (a producer with
	// another partitioner), moved there by the dispatcher with their origin
	// in headers. It is the dispatcher group's Goka loop stream, so its
	// name is Goka's: the group name plus "-loop".
	TopicRepartition = string(GroupDispatcher) + "-loop"
)

// DelayTargets returns the topics the delay stage releases records to: the
// dispatcher's wake-ups, and the results and cancels it parks while their
// id has no state yet (a fresh slice each call).
func DelayTargets() []string { return []string{TopicWakeups, TopicResults, TopicControl} }

// The consumer groups of Herald's stages. Each stage's DefaultGroup is one
// of these, and metrics.DefaultLagGroups lists them all.
const (
	// GroupDispatcher is the dispatcher's Goka group. Its table, keyed by
	// notification id, is the topic GroupDispatcher + "-table".
	GroupDispatcher goka.Group = "herald-dispatcher"
	// GroupDelay is the delay stage's group (every tier topic).
	GroupDelay = "herald-delay"
	// GroupSender is the sender's group (TopicSend).
	GroupSender = "herald-sender"
	// GroupSink is the sink's group (the dispatcher's table).
	GroupSink = "herald-sink"
	// GroupStatus is the status feed's group (the dispatcher's table).
	GroupStatus = "herald-status"
)

// TableDispatcher is the dispatcher's group table (a compacted topic), as
// goka.GroupTable(GroupDispatcher) names it.
const TableDispatcher = goka.Table(GroupDispatcher + "-table")

// Config describes the cluster and how Herald's topics are laid out on it.
type Config struct {
	Brokers []string
	// Partitions is the partition count of every co-partitioned topic.
	Partitions int
	// Replication is the replication factor of every topic Herald creates.
	Replication int
	// Retention is how long stream topics keep records. It must be longer
	// than the longest delay tier and any consumer outage to survive.
	Retention time.Duration
	// DLQRetention is how long herald.dlq keeps records.
	DLQRetention time.Duration
	// ClientID names Herald's clients to the brokers.
	ClientID string
	// SessionTimeout is the consumer group session timeout of every
	// consumer Herald builds (Goka's Sarama groups and the franz-go
	// stages): how long the coordinator waits for a silent member (a
	// process killed or paused) before moving its partitions to the
	// others. Default 10 s.
	SessionTimeout time.Duration
	// HeartbeatInterval is how often every consumer heartbeats; it must be
	// well below SessionTimeout (at most a third). Default 1 s.
	HeartbeatInterval time.Duration
	// Security is how every client connects (TLS, SASL); nil: plaintext.
	Security *Security
}

// Defaults for Config.
const (
	DefaultPartitions   = 12
	DefaultReplication  = 1
	DefaultRetention    = 7 * 24 * time.Hour
	DefaultDLQRetention = 30 * 24 * time.Hour
	// DefaultSessionTimeout moves a dead instance's partitions in about
	// 10 s (Kafka's and franz-go's default, 45 s, stalls them that long).
	DefaultSessionTimeout    = 10 * time.Second
	DefaultHeartbeatInterval = time.Second
)

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.Partitions <= 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Replication <= 0 {
		c.Replication = DefaultReplication
	}
	if c.Retention <= 0 {
		c.Retention = DefaultRetention
	}
	if c.DLQRetention <= 0 {
		c.DLQRetention = DefaultDLQRetention
	}
	if c.ClientID == "" {
		c.ClientID = "herald"
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	return c
}

// Validate refuses settings Kafka would refuse later, or that cannot work.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if c.HeartbeatInterval*3 > c.SessionTimeout {
		return fmt.Errorf("--heartbeat-interval (%s) must be at most a third of --session-timeout (%s)", c.HeartbeatInterval, c.SessionTimeout)
	}
	if c.SessionTimeout < 6*time.Second {
		return fmt.Errorf("--session-timeout (%s) must be at least 6s, Kafka's group.min.session.timeout.ms", c.SessionTimeout)
	}
	return nil
}

// Sarama is SaramaConfig with the group timings and the security of c:
// the configuration of every Goka processor, view and topic checker.
func (c Config) Sarama(clientID string) *sarama.Config {
	c = c.WithDefaults()
	cfg := SaramaConfig(clientID)
	cfg.Consumer.Group.Session.Timeout = c.SessionTimeout
	cfg.Consumer.Group.Heartbeat.Interval = c.HeartbeatInterval
	c.Security.ApplySarama(cfg)
	return cfg
}

// Fetch sizes of every franz-go consumer. franz-go buffers one fetch per
// broker until it is polled, decompressed; with its default of 50 MiB a
// fetch, the four consumers of a process behind a burst held 135 MiB of
// fetched records (heap profile of a 100,000-notification run). A stage
// handles a few thousand records between polls, so a few MiB a fetch keep
// it busy.
//
// Fairness: a fetch must have room for every partition it asks for. A
// broker fills a fetch partition by partition up to its byte limit, so a
// fetch of 4 MiB over twelve partitions with 1 MiB each served four of
// them while the others waited: in a 1,000,000 burst the sender handled a
// starved partition's commands 97 s after the first ones (a load test
// run). ConsumerOpts therefore makes a fetch's limit at least every
// subscribed partition times FetchMaxPartitionBytes.
const (
	FetchMaxBytes          = 4 << 20
	FetchMaxPartitionBytes = 256 << 10
)

// TopicSpec is one topic Herald creates.
type TopicSpec struct {
	Name       string
	Partitions int
	Configs    map[string]string
	// Copartitioned topics must have exactly Config.Partitions partitions.
	Copartitioned bool
}

// Topics lists every topic Herald needs, with its configs.
func (c Config) Topics() []TopicSpec {
	c = c.WithDefaults()
	stream := map[string]string{
		"cleanup.policy": "delete",
		"retention.ms":   strconv.FormatInt(c.Retention.Milliseconds(), 10),
	}
	var ts []TopicSpec
	for _, name := range append([]string{TopicRequests, TopicSend, TopicResults, TopicWakeups, TopicControl, TopicRepartition}, TierTopics()...) {
		ts = append(ts, TopicSpec{Name: name, Partitions: c.Partitions, Configs: stream, Copartitioned: true})
	}
	ts = append(ts,
		TopicSpec{Name: string(TableDispatcher), Partitions: c.Partitions, Copartitioned: true,
			Configs: map[string]string{"cleanup.policy": "compact"}},
		TopicSpec{Name: TopicDLQ, Partitions: c.Partitions, Configs: map[string]string{
			"cleanup.policy": "delete",
			"retention.ms":   strconv.FormatInt(c.DLQRetention.Milliseconds(), 10),
		}},
		// Keyed by id like the rest, so a notification's changes keep
		// their order; not co-partitioned (no processor joins it).
		TopicSpec{Name: TopicStatus, Partitions: c.Partitions, Configs: stream},
		ReplaysTopic(),
	)
	return ts
}

// ReplaysTopic is the spec of TopicDLQReplays.
func ReplaysTopic() TopicSpec {
	return TopicSpec{Name: TopicDLQReplays, Partitions: 1, Configs: map[string]string{"cleanup.policy": "compact"}}
}

// ErrPartitionMismatch is returned when a co-partitioned topic exists with
// another partition count.
var ErrPartitionMismatch = errors.New("topic partition count mismatch")

// EnsureTopics creates the topics that are missing and checks the partition
// counts of those that exist. It is safe to call from several processes at
// once.
func EnsureTopics(ctx context.Context, c Config) error {
	return EnsureSpecs(ctx, c, c.Topics()...)
}

// EnsureSpecs is EnsureTopics for the given topics only.
func EnsureSpecs(ctx context.Context, c Config, specs ...TopicSpec) error {
	c = c.WithDefaults()
	cl, err := kgo.NewClient(append(c.KgoOpts(), kgo.ClientID(c.ClientID+"-admin"))...)
	if err != nil {
		return fmt.Errorf("topology: admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	existing, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("topology: list topics: %w", err)
	}
	for _, s := range specs {
		if d, ok := existing[s.Name]; ok && d.Err == nil {
			if s.Copartitioned && len(d.Partitions) != s.Partitions {
				return fmt.Errorf("topology: %w: %s has %d partitions, want %d (co-partitioned topics must match --partitions)",
					ErrPartitionMismatch, s.Name, len(d.Partitions), s.Partitions)
			}
			continue
		}
		cfgs := make(map[string]*string, len(s.Configs))
		for k, v := range s.Configs {
			cfgs[k] = kadm.StringPtr(v)
		}
		resp, err := adm.CreateTopic(ctx, int32(s.Partitions), int16(c.Replication), cfgs, s.Name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("topology: create topic %s: %w", s.Name, err)
		}
	}
	return nil
}

// Producer batching of every producer Herald owns, in this one place:
// KgoLinger for the franz-go producers (KgoProducerOpts), and the flush
// settings of Goka's Sarama producer (SaramaConfig). Measured, not guessed:
// BenchmarkProducerKgo and BenchmarkProducerSarama (`make bench`), figures
// in docs/performance.md ("Producer batching").
const (
	// KgoLinger is how long a franz-go producer waits for more records of
	// a partition before it sends a batch: franz-go's default, 10 ms.
	// Every Herald franz-go producer waits for its acks (ProduceSync),
	// which cuts a partition's linger short once its records are queued,
	// so the linger costs no latency where a producer waits alone.
	// Measured against none and 2 ms: 10 ms spends the least CPU per
	// record on slices of records (the delay stage, the status feed: 1.2
	// µs against 1.6 with none), and for single records from many
	// goroutines (the sender's results) it is within the noise of none
	// (p99 3-4 ms), where 2 ms was the worst (p99 11 ms).
	KgoLinger = 10 * time.Millisecond
	// SaramaFlushFrequency and SaramaFlushBytes: Goka's producer sends
	// what it has this often, or sooner when this much is buffered (Goka's
	// default frequency is 100 ms). Measured against 0, 5 ms and 20 ms:
	// 1 ms costs no more CPU per record than 5 ms and a third of its
	// latency per hop.
	SaramaFlushFrequency = time.Millisecond
	SaramaFlushBytes     = 256 * 1024
)

// KgoProducerOpts are the franz-go options for Herald's producers: acks from
// all in-sync replicas, idempotent writes (franz-go's default with acks=all),
// the Java client's key placement (murmur2) and the linger KgoLinger.
func KgoProducerOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(KgoPartitioner()),
		kgo.ProducerLinger(KgoLinger),
		kgo.ProducerBatchCompression(kgo.SnappyCompression(), kgo.NoCompression()),
	}
}

// SaramaConfig is the Sarama configuration of Herald's Goka processors and
// views. Compared with Goka's defaults it:
//   - waits for all in-sync replicas (acks=all) and makes the producer
//     idempotent, so a retried produce cannot write a record twice and
//     records of one partition stay in order;
//   - flushes every SaramaFlushFrequency instead of 100 ms, for latency;
//   - starts a new group at the oldest offset, so requests published before
//     the first start are not skipped.
func SaramaConfig(clientID string) *sarama.Config {
	cfg := goka.DefaultConfig()
	cfg.ClientID = clientID
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Retry.Max = 10
	cfg.Producer.Retry.Backoff = 250 * time.Millisecond
	cfg.Producer.Compression = sarama.CompressionSnappy
	// Consumer buffers: Goka's processor and view read four inputs and the
	// changelog on every partition, each buffering a fetch of
	// Fetch.Default bytes and ChannelBufferSize messages; Sarama's 1 MiB
	// and 256 held 50 MiB of fetched records during a 100,000 burst (heap
	// profile), for no throughput: the callback is the bottleneck.
	cfg.Consumer.Fetch.Default = 256 << 10
	cfg.ChannelBufferSize = 64
	cfg.Producer.Flush.Frequency = SaramaFlushFrequency
	cfg.Producer.Flush.Bytes = SaramaFlushBytes
	cfg.Producer.MaxMessageBytes = 1 << 20
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Interval = time.Second
	cfg.Metadata.AllowAutoTopicCreation = false
	return cfg
}

// TopicManagerConfig is Goka's topic manager configuration for Herald:
// Herald creates its topics itself (EnsureTopics), so Goka only checks them,
// and fails on a partition or config mismatch instead of warning.
func (c Config) TopicManagerConfig() *goka.TopicManagerConfig {
	c = c.WithDefaults()
	tm := goka.NewTopicManagerConfig()
	tm.NoCreate = true
	tm.Table.Replication = c.Replication
	tm.Stream.Replication = c.Replication
	tm.Stream.Retention = c.Retention
	tm.MismatchBehavior = goka.TMConfigMismatchBehaviorFail
	return tm
}

// WaitForBrokers retries a metadata request until a broker answers or ctx
// ends. Useful right after starting an embedded broker or a compose stack.
// opts are extra client options, such as Security.KgoOpts.
func WaitForBrokers(ctx context.Context, brokers []string, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return fmt.Errorf("topology: client: %w", err)
	}
	defer cl.Close()
	for {
		err := cl.Ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topology: brokers %v not reachable: %w", brokers, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

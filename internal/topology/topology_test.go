package topology

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"testing"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Kafka's own test vectors for murmur2 (UtilsTest.testMurmur2 in the Java
// client), as signed 32-bit values before the sign bit is cleared.
var kafkaMurmur2Vectors = []struct {
	key  string
	hash int32
}{
	{"21", -973932308},
	{"foobar", -790332482},
	{"a-little-bit-long-string", -985981536},
	{"a-little-bit-longer-string", -1486304829},
	{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
	{"abc", 479470107},
}

// javaPartition is the Java client's DefaultPartitioner for a keyed record:
// Utils.toPositive(hash) % numPartitions.
func javaPartition(hash int32, n int) int32 { return (hash & 0x7fffffff) % int32(n) }

// gokaPartition is Goka's arithmetic (Processor.hash and View.hash in
// goka v1.1.17): the hasher's Sum32 as an int32, negated if negative,
// modulo the partition count.
func gokaPartition(key string, n int) int32 {
	h := Hasher()
	h.Write([]byte(key))
	v := int32(h.Sum32())
	if v < 0 {
		v = -v
	}
	return v % int32(n)
}

func TestMurmur2MatchesKafka(t *testing.T) {
	t.Parallel()
	for _, v := range kafkaMurmur2Vectors {
		if got := int32(murmur2([]byte(v.key))); got != v.hash {
			t.Errorf("murmur2(%q) = %d, Kafka says %d", v.key, got, v.hash)
		}
		h := Hasher()
		h.Write([]byte(v.key))
		if got, want := h.Sum32(), uint32(v.hash)&0x7fffffff; got != want {
			t.Errorf("Hasher(%q) = %d, Kafka's murmur2 with the sign bit cleared is %d", v.key, got, want)
		}
		for _, n := range []int{1, 3, 12, 100} {
			if got, want := Partition(v.key, n), javaPartition(v.hash, n); got != want {
				t.Errorf("Partition(%q, %d) = %d, the Java client says %d", v.key, n, got, want)
			}
		}
	}
	// Several writes hash like one; Reset starts again.
	h := Hasher()
	h.Write([]byte("foo"))
	h.Write([]byte("bar"))
	if got, want := h.Sum32(), uint32(kafkaMurmur2Vectors[1].hash)&0x7fffffff; got != want {
		t.Errorf("foo+bar: %d, want foobar's %d", got, want)
	}
	h.Reset()
	h.Write([]byte("abc"))
	if got := h.Sum32(); got != 479470107 {
		t.Errorf("after Reset: %d, want 479470107", got)
	}
}

// Every client that places Herald's keys must put a key on the partition
// the Java client does: franz-go's default partitioner (Herald's franz-go
// producers), Goka's arithmetic over Hasher (the processor's and the
// views' lookups) and Sarama's custom hash partitioner over Hasher (what
// Goka's producer uses for ctx.Emit and the loop stream).
func TestPartitionersAgreeWithJava(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"", "a", "ab", "abc", "abcd", "2026-01:user-123:bill", "ü-ñ-漢字"}
	for i := 0; i < 3000; i++ {
		keys = append(keys, fmt.Sprintf("2026-01:user-%d:bill", i))
		b := make([]byte, rng.IntN(40))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		keys = append(keys, string(b))
	}
	counts := []int{1, 2, 3, 4, 7, 12, 16, 24, 31, 64, 100, 257, 1000}
	negative := 0
	for _, n := range counts {
		sp := sarama.NewCustomHashPartitioner(Hasher)(TopicRequests)
		kp := KgoPartitioner().ForTopic(TopicRequests)
		// The Java client's placement, from franz-go's copy of it.
		java := kgo.StickyKeyPartitioner(kgo.KafkaHasher(func(b []byte) uint32 {
			h := Hasher()
			h.Write(b)
			return h.Sum32()
		})).ForTopic(TopicRequests)
		for _, key := range keys {
			want := Partition(key, n)
			if got := int32(java.Partition(&kgo.Record{Key: []byte(key)}, n)); got != want {
				t.Fatalf("Partition(%q, %d) = %d, Java's arithmetic says %d", key, n, want, got)
			}
			if got := int32(kp.Partition(&kgo.Record{Key: []byte(key)}, n)); got != want {
				t.Fatalf("franz-go's default partitioner put %q on %d of %d, Herald says %d", key, got, n, want)
			}
			if got := gokaPartition(key, n); got != want {
				t.Fatalf("Goka puts %q on %d of %d, Herald says %d", key, got, n, want)
			}
			got, err := sp.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, int32(n))
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("Sarama (Goka's producer) put %q on %d of %d, Herald says %d", key, got, n, want)
			}
		}
	}
	// Keys whose raw murmur2 is negative are where Goka's and Sarama's sign
	// handling would differ from Java's: they must be well represented.
	for _, key := range keys {
		if int32(murmur2([]byte(key))) < 0 {
			negative++
		}
	}
	if negative < len(keys)/3 {
		t.Fatalf("only %d of %d keys have a negative murmur2; the sign handling is not exercised", negative, len(keys))
	}
}

func TestTopicsAreCopartitionedAndConfigured(t *testing.T) {
	t.Parallel()
	c := Config{Partitions: 6}.WithDefaults()
	specs := map[string]TopicSpec{}
	for _, s := range c.Topics() {
		specs[s.Name] = s
	}
	want := append([]string{TopicRequests, TopicSend, TopicResults, TopicWakeups, TopicControl, TopicRepartition, string(TableDispatcher)}, TierTopics()...)
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
	if max := tiers[len(tiers)-1]; c.Retention < 3*max {
		t.Errorf("retention %v is not well beyond the longest tier %v", c.Retention, max)
	}
	if _, ok := specs[TopicDLQ]; !ok {
		t.Error("no DLQ topic")
	}
	if s, ok := specs[TopicStatus]; !ok || s.Partitions != 6 || s.Configs["retention.ms"] != "604800000" {
		t.Errorf("status stream %+v", s)
	}
}

// BenchmarkPartition is the cost of placing one key (a 21-byte id), the
// price of the placement check every dispatcher input pays: murmur2 as
// Herald computes it, and FNV-1a (Sarama's default) for comparison.
func BenchmarkPartition(b *testing.B) {
	key := "2026-01:user-123:bill"
	b.Run("murmur2", func(b *testing.B) {
		for b.Loop() {
			Partition(key, 12)
		}
	})
	b.Run("fnv1a", func(b *testing.B) {
		for b.Loop() {
			h := fnv.New32a()
			h.Write([]byte(key))
			_ = int32(h.Sum32()) % 12
		}
	})
}

func TestTableDispatcherIsGokasName(t *testing.T) {
	t.Parallel()
	if want := goka.GroupTable(GroupDispatcher); TableDispatcher != want {
		t.Fatalf("TableDispatcher = %q, want Goka's %q", TableDispatcher, want)
	}
}

package topology

import (
	"encoding/binary"
	"hash"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Herald's key hash is the Java client's default partitioner: murmur2 of the
// key bytes, with the sign bit cleared, modulo the partition count. Kafka
// Streams, Spring Kafka, franz-go's default and librdkafka's murmur2
// partitioners place keys the same way, so their records arrive where the
// dispatcher keeps their state and cost no extra hop (see
// internal/dispatcher/placement.go for the others).
//
// Three clients place Herald's keys, and all three agree with the Java
// client for every key and partition count (TestPartitionersAgreeWithJava):
//   - franz-go: kgo.StickyKeyPartitioner(nil), its own copy of the Java
//     client's murmur2 and arithmetic;
//   - Goka's processor, view and table lookups: Hasher, and
//   - Goka's Sarama producer: sarama.NewCustomHashPartitioner(Hasher).
//
// Goka and Sarama compute int32(Sum32()) % n and negate a negative result,
// which differs from Java's (hash & 0x7fffffff) % n for half the hashes.
// Hasher therefore clears the sign bit itself: its Sum32 is never negative
// as an int32, Goka and Sarama never negate, and their modulo is Java's.

// Hasher is the key hash of Herald's Goka processors, views and Sarama
// producers: murmur2 of the key, sign bit cleared.
func Hasher() hash.Hash32 { return new(murmur2Hash) }

// Partition returns the partition of key among partitions, as the Java
// client's default partitioner and every Herald producer place it.
func Partition(key string, partitions int) int32 {
	return int32(positiveMurmur2([]byte(key)) % uint32(partitions))
}

// KgoPartitioner is the franz-go partitioner of every Herald producer:
// franz-go's default, which hashes keys like the Java client.
func KgoPartitioner() kgo.Partitioner { return kgo.StickyKeyPartitioner(nil) }

// murmur2Hash buffers the key: murmur2 is computed over the whole input.
type murmur2Hash struct{ b []byte }

func (h *murmur2Hash) Write(p []byte) (int, error) { h.b = append(h.b, p...); return len(p), nil }
func (h *murmur2Hash) Sum32() uint32               { return positiveMurmur2(h.b) }
func (h *murmur2Hash) Reset()                      { h.b = h.b[:0] }
func (h *murmur2Hash) Size() int                   { return 4 }
func (h *murmur2Hash) BlockSize() int              { return 4 }
func (h *murmur2Hash) Sum(b []byte) []byte         { return binary.BigEndian.AppendUint32(b, h.Sum32()) }

// positiveMurmur2 is Kafka's Utils.toPositive(Utils.murmur2(key)).
func positiveMurmur2(b []byte) uint32 { return murmur2(b) & 0x7fffffff }

// murmur2 is Kafka's Utils.murmur2: the 32-bit MurmurHash2 with Kafka's
// seed. franz-go has the same function but does not export it; the tests
// check this one against Kafka's own test vectors and franz-go's placement.
func murmur2(b []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	h := seed ^ uint32(len(b))
	for ; len(b) >= 4; b = b[4:] {
		k := binary.LittleEndian.Uint32(b)
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch len(b) {
	case 3:
		h ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

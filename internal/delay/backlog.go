package delay

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/herald-dispatch/herald/internal/topology"
)

// Observer is told what the delay stage releases, for metrics
// (internal/metrics implements it). Methods must be cheap and safe for
// concurrent use.
type Observer interface {
	// Forwarded is called for every record released to its target, with
	// its tier and how long after its due time the target acknowledged it.
	Forwarded(tier, late time.Duration)
	// Hopped is called for every record moved on to the shorter tier to.
	Hopped(tier, to time.Duration)
	// Rejected is called for every record sent to the DLQ.
	Rejected(tier time.Duration)
}

type nopObserver struct{}

func (nopObserver) Forwarded(time.Duration, time.Duration) {}
func (nopObserver) Hopped(time.Duration, time.Duration)    {}
func (nopObserver) Rejected(time.Duration)                 {}

// Buffered is how many delayed records the stage holds in memory.
func (s *Stage) Buffered() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, p := range s.parts {
		n += p.buffered.Load()
	}
	return n
}

// Held is, per tier, how many records wait in the tier partitions the
// stage owns: for each, from the oldest one not yet released to the
// partition's end offset. It asks the brokers for the end offsets, so it
// costs a request; nil when the stage owns no partition.
func (s *Stage) Held(ctx context.Context) (map[time.Duration]int64, error) {
	cl := s.cl.Load()
	if cl == nil {
		return nil, nil
	}
	// The oldest unreleased offset of each owned partition, or -1 when the
	// partition has not been read yet.
	heads := map[topicPartition]int64{}
	s.mu.Lock()
	for tp, p := range s.parts {
		heads[tp] = p.head()
	}
	s.mu.Unlock()
	if len(heads) == 0 {
		return nil, nil
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topology.TierTopics()...)
	if err != nil {
		return nil, fmt.Errorf("delay: held records: end offsets: %w", err)
	}
	held := map[time.Duration]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		h, ok := heads[topicPartition{o.Topic, o.Partition}]
		if !ok || h < 0 || o.Err != nil {
			return
		}
		if n := o.Offset - h; n > 0 {
			held[s.tiers[o.Topic]] += n
		}
	})
	return held, nil
}

// head returns the offset of the oldest record not yet released.
func (p *partition) head() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.q) > 0 {
		return p.q[0].Offset
	}
	if c := p.committable.Load(); c >= 0 {
		return max(c, p.next)
	}
	return p.next
}

package sink

import (
	"fmt"
	"time"
)

// Defaults of Batching.
const (
	DefaultBatchMinSize     = 100
	DefaultBatchSize        = 5000
	DefaultBatchMinInterval = 20 * time.Millisecond
	DefaultBatchInterval    = 200 * time.Millisecond
)

// Batching is how the sink sizes its batches: it adapts both limits of the
// batch being collected to the backlog, the changelog records known to be
// waiting behind it (the consumer lag of the partitions the batch read
// from, at least the records the client has fetched and not yet handed
// out).
//
//   - Caught up (no backlog): the batch closes MinInterval after its first
//     record, or at MinSize records. A status reaches PostgreSQL within
//     about MinInterval plus one write of the dispatcher writing it.
//   - Behind: the batch grows to take the backlog, up to MaxSize records,
//     and may wait longer for it, up to MaxInterval at a backlog of MaxSize
//     or more. Large batches cost less per record (one transaction, and the
//     versions of one notification in the batch collapse into one row).
//
// Batching is pure (no clock, no I/O): Limits is a function of its
// arguments.
type Batching struct {
	// MinSize is the smallest size limit; MaxSize the largest (and the
	// most records a batch ever holds).
	MinSize, MaxSize int
	// MinInterval is the wait after a batch's first record when nothing
	// else waits; MaxInterval the longest wait, at a backlog of MaxSize.
	MinInterval, MaxInterval time.Duration
}

// DefaultBatching is the sink's default policy.
func DefaultBatching() Batching {
	return Batching{MinSize: DefaultBatchMinSize, MaxSize: DefaultBatchSize,
		MinInterval: DefaultBatchMinInterval, MaxInterval: DefaultBatchInterval}
}

// withDefaults fills zero fields from DefaultBatching.
func (b Batching) withDefaults() Batching {
	d := DefaultBatching()
	if b.MaxSize <= 0 {
		b.MaxSize = d.MaxSize
	}
	if b.MinSize <= 0 {
		b.MinSize = min(d.MinSize, b.MaxSize)
	}
	if b.MaxInterval <= 0 {
		b.MaxInterval = d.MaxInterval
	}
	if b.MinInterval <= 0 {
		b.MinInterval = min(d.MinInterval, b.MaxInterval)
	}
	return b
}

// Validate refuses bounds that are not positive or not in order.
func (b Batching) Validate() error {
	switch {
	case b.MinSize <= 0 || b.MaxSize <= 0:
		return fmt.Errorf("sink batch sizes must be positive (min %d, max %d)", b.MinSize, b.MaxSize)
	case b.MinSize > b.MaxSize:
		return fmt.Errorf("sink batch min size %d is above the max size %d", b.MinSize, b.MaxSize)
	case b.MinInterval <= 0 || b.MaxInterval <= 0:
		return fmt.Errorf("sink batch intervals must be positive (min %s, max %s)", b.MinInterval, b.MaxInterval)
	case b.MinInterval > b.MaxInterval:
		return fmt.Errorf("sink batch min interval %s is above the max interval %s", b.MinInterval, b.MaxInterval)
	}
	return nil
}

// Limits returns, for a batch that holds collected records with backlog
// more known to be waiting, the size at which it closes and how long after
// its first record it may stay open. The size takes the whole backlog,
// within [MinSize, MaxSize]; the wait grows linearly with the backlog from
// MinInterval (none) to MaxInterval (MaxSize or more).
func (b Batching) Limits(collected int, backlog int64) (size int, wait time.Duration) {
	backlog = max(backlog, 0)
	want := int64(collected) + backlog
	size = int(min(max(want, int64(b.MinSize)), int64(b.MaxSize)))
	frac := min(float64(backlog)/float64(b.MaxSize), 1)
	wait = b.MinInterval + time.Duration(frac*float64(b.MaxInterval-b.MinInterval))
	return size, wait
}

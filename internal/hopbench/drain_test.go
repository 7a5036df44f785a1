package hopbench

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// untimed is a test with the timer methods of a benchmark, doing nothing.
type untimed struct{ *testing.T }

func (untimed) StopTimer()  {}
func (untimed) StartTimer() {}
func (untimed) ResetTimer() {}

// TestDrainLeavesOutStartUp: a stage that takes its first record only
// after a long start-up, and then finishes at once, is measured from that
// record on: the window is shorter than the start-up, and counts every
// record.
func TestDrainLeavesOutStartUp(t *testing.T) {
	const n, startUp = 500, 300 * time.Millisecond
	var taken, done atomic.Int64
	d := drain(untimed{t}, n, nil, func() {
		go func() {
			time.Sleep(startUp)
			taken.Store(n)
			done.Store(n)
		}()
	}, taken.Load, done.Load)
	if d.records != n {
		t.Errorf("%d records measured, want %d", d.records, n)
	}
	if d.elapsed <= 0 || d.elapsed >= startUp {
		t.Errorf("window of %v: want more than nothing and less than the %v start-up", d.elapsed, startUp)
	}
}

// TestClientCountsFilter: only records polled from the input topic are
// taken, and only records of the output topic acknowledged without error
// are output.
func TestClientCountsFilter(t *testing.T) {
	c := &clientCounts{in: "in", out: "out"}
	c.OnFetchRecordUnbuffered(&kgo.Record{Topic: "in"}, true)
	c.OnFetchRecordUnbuffered(&kgo.Record{Topic: "in"}, false)   // dropped, not polled
	c.OnFetchRecordUnbuffered(&kgo.Record{Topic: "other"}, true) // another topic
	c.OnProduceRecordUnbuffered(&kgo.Record{Topic: "out"}, nil)
	c.OnProduceRecordUnbuffered(&kgo.Record{Topic: "out"}, kgo.ErrRecordTimeout)
	c.OnProduceRecordUnbuffered(&kgo.Record{Topic: "herald.dlq"}, nil)
	if got := c.taken.Load(); got != 1 {
		t.Errorf("taken %d, want 1", got)
	}
	if got := c.output.Load(); got != 1 {
		t.Errorf("output %d, want 1", got)
	}
}

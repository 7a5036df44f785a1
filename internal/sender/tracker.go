package sender

import (
	"context"
	"sort"
	"sync"
	"time"
)

// partitionTracker follows the records of one assigned partition from poll
// to completion and yields the offset that may be committed: one past the
// longest prefix of polled records that are all complete. A record that is
// still in flight holds back the commit of every later one, so a crash
// re-reads at most the records that were in flight and never skips one.
//
// Records are begun in offset order (the poll loop sees a partition's
// records in order) and complete in any order.
type partitionTracker struct {
	// ctx ends when the partition is revoked or lost (before the drain)
	// or the session stops: attempts still waiting for their gate give up
	// then; calls already made go on (stop).
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	pending  []pendingRecord // begun, not yet part of the committable prefix; by offset
	head     int             // pending[:head] is spent
	next     int64           // commit offset: every record below it is complete
	epoch    int32           // leader epoch of the record before next
	hasNext  bool
	running  int // goroutines begun and not released
	idle     chan struct{}
	released bool // revoked or lost: completions no longer move next
}

type pendingRecord struct {
	offset int64
	epoch  int32
	done   bool
}

func newPartitionTracker(parent context.Context) *partitionTracker {
	ctx, cancel := context.WithCancel(parent)
	return &partitionTracker{ctx: ctx, cancel: cancel}
}

// begin registers a polled record. Offsets must grow from call to call.
func (t *partitionTracker) begin(offset int64, epoch int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending = append(t.pending, pendingRecord{offset: offset, epoch: epoch})
	t.running++
}

// complete marks a record done: its result is acknowledged (or it needed
// none). It returns the new commit offset and whether it moved.
func (t *partitionTracker) complete(offset int64) (next int64, epoch int32, moved bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	live := t.pending[t.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].offset >= offset })
	if i == len(live) || live[i].offset != offset {
		return t.next, t.epoch, false
	}
	live[i].done = true
	if i != 0 {
		return t.next, t.epoch, false
	}
	for t.head < len(t.pending) && t.pending[t.head].done {
		r := t.pending[t.head]
		t.next, t.epoch, t.hasNext = r.offset+1, r.epoch, true
		t.head++
	}
	if t.head > 1024 && t.head*2 > len(t.pending) {
		t.pending = append(t.pending[:0:0], t.pending[t.head:]...)
		t.head = 0
	}
	return t.next, t.epoch, !t.released
}

// release ends one begun record's goroutine, completed or abandoned.
func (t *partitionTracker) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.running--
	if t.running == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
}

// commitOffset returns the offset to commit and its leader epoch; ok is
// false while nothing has completed.
func (t *partitionTracker) commitOffset() (next int64, epoch int32, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.next, t.epoch, t.hasNext
}

// inFlight counts begun records not yet part of the committed prefix.
func (t *partitionTracker) inFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending) - t.head
}

// stop cancels the attempts still waiting to start (for a channel slot, a
// rate token or their attempt's in-flight slot), then waits up to timeout
// for the calls already made to be answered and published. It reports
// whether they all ended in time. After stop, completions no longer report
// movement: the partition is no longer ours to commit.
//
// Waiting attempts are cut first: a revoked partition is held back from
// its next owner until stop returns, and a backlog waiting for slots
// behind a slow provider would hold it for the whole drain time (the
// chaos suite's broker-restart saw 1,003 attempts hold a partition 10 s at
// each rebalance). A cut attempt with an earlier offset than attempts that
// complete holds the commit back, so the next owner reads those again; it
// answers them from herald.results (the answered memory, rebuilt at
// assignment from the results published before the revoke completed),
// without calling the provider.
func (t *partitionTracker) stop(timeout time.Duration) bool {
	t.cancel()
	ok := t.wait(timeout)
	t.mu.Lock()
	t.released = true
	t.mu.Unlock()
	return ok
}

// wait waits up to timeout for running to reach zero.
func (t *partitionTracker) wait(timeout time.Duration) bool {
	t.mu.Lock()
	if t.running == 0 {
		t.mu.Unlock()
		return true
	}
	if t.idle == nil {
		t.idle = make(chan struct{})
	}
	idle := t.idle
	t.mu.Unlock()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-idle:
		return true
	case <-timer.C:
		return false
	}
}

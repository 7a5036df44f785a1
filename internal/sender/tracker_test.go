package sender

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

func TestTrackerCommitsOnlyTheCompletedPrefix(t *testing.T) {
	t.Parallel()
	tr := newPartitionTracker(context.Background())
	if _, _, ok := tr.commitOffset(); ok {
		t.Fatal("commit offset before anything completed")
	}
	for _, off := range []int64{10, 11, 15, 16, 20} { // gaps, as compaction or control records leave
		tr.begin(off, 3)
	}
	steps := []struct {
		complete  int64
		wantNext  int64
		wantMoved bool
	}{
		{11, 0, false}, // 10 still in flight
		{16, 0, false},
		{10, 12, true},  // 10 and 11 done: commit up to the gap before 15
		{10, 12, false}, // twice: no change
		{99, 12, false}, // unknown offset
		{20, 12, false},
		{15, 21, true}, // everything done
	}
	for _, s := range steps {
		next, epoch, moved := tr.complete(s.complete)
		if moved != s.wantMoved || (s.wantNext != 0 && next != s.wantNext) {
			t.Fatalf("complete(%d): next %d moved %v, want %d %v", s.complete, next, moved, s.wantNext, s.wantMoved)
		}
		if moved && epoch != 3 {
			t.Fatalf("epoch %d", epoch)
		}
	}
	if next, _, ok := tr.commitOffset(); !ok || next != 21 {
		t.Fatalf("commitOffset = %d %v", next, ok)
	}
	if n := tr.inFlight(); n != 0 {
		t.Fatalf("inFlight = %d", n)
	}
}

// TestTrackerRandomOrder checks, against a brute-force model, that the
// commit offset is always the first offset not yet completed, over many
// records completing in random order (exercising the slice compaction).
func TestTrackerRandomOrder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	tr := newPartitionTracker(context.Background())
	const n = 20000
	offsets := make([]int64, n)
	off := int64(100)
	for i := range offsets {
		off += 1 + int64(rng.IntN(3))
		offsets[i] = off
		tr.begin(off, 0)
	}
	done := make([]bool, n)
	// Complete in a mostly-forward random order, as concurrent sends do:
	// shuffled within windows of 64.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	for w := 0; w < n; w += 64 {
		end := min(w+64, n)
		rng.Shuffle(end-w, func(i, j int) { order[w+i], order[w+j] = order[w+j], order[w+i] })
	}
	first := 0
	for _, i := range order {
		done[i] = true
		next, _, _ := tr.complete(offsets[i])
		for first < n && done[first] {
			first++
		}
		want := int64(0)
		if first > 0 {
			want = offsets[first-1] + 1
		}
		if next != want {
			t.Fatalf("after completing offset %d: next %d, want %d", offsets[i], next, want)
		}
	}
	if len(tr.pending) > 2048 {
		t.Errorf("pending slice kept %d entries after everything completed", len(tr.pending))
	}
}

func TestTrackerStopWaitsForRunningAttempts(t *testing.T) {
	t.Parallel()
	tr := newPartitionTracker(context.Background())
	tr.begin(1, 0)
	tr.begin(2, 0)
	canceledEarly := make(chan bool, 1)
	go func() {
		time.Sleep(30 * time.Millisecond)
		// Waiting attempts give up at once: the context ends before the
		// drain, which waits only for the calls already made.
		canceledEarly <- tr.ctx.Err() != nil
		tr.complete(1)
		tr.release()
		tr.release() // 2 abandoned: released, never completed
	}()
	start := time.Now()
	if !tr.stop(5 * time.Second) {
		t.Fatal("stop timed out")
	}
	if el := time.Since(start); el < 25*time.Millisecond {
		t.Errorf("stop returned after %s, before the attempts ended", el)
	}
	if !<-canceledEarly {
		t.Error("waiting attempts could still start during the drain: a backlog behind a slow provider holds the partition from its next owner")
	}
	if tr.ctx.Err() == nil {
		t.Error("stop did not cancel the partition's context")
	}
	if next, _, ok := tr.commitOffset(); !ok || next != 2 {
		t.Errorf("commit offset %d %v, want 2 (offset 2 was abandoned)", next, ok)
	}
	// After stop the partition is not ours: completions do not move.
	if _, _, moved := tr.complete(2); moved {
		t.Error("completion after stop reported movement")
	}

	stuck := newPartitionTracker(context.Background())
	stuck.begin(1, 0)
	if stuck.stop(20 * time.Millisecond) {
		t.Error("stop reported idle with an attempt still running")
	}
}

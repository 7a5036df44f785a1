package sender

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/topology"
)

// A process that was paused past half its session timeout calls no
// provider for what it polled before, and ends its session.
func TestPauseWatchdog(t *testing.T) {
	t.Parallel()
	s := &Sender{cfg: Config{Topology: topology.Config{SessionTimeout: 2 * time.Second}}}
	ss := &session{s: s, stopPoll: func() {}}
	ss.lastTick.Store(time.Now().UnixNano())
	if ss.frozen() {
		t.Fatal("frozen right after a tick")
	}
	// The clock jumps as it does after SIGCONT: the last tick is old.
	ss.lastTick.Store(time.Now().Add(-3 * time.Second).UnixNano())
	if !ss.frozen() {
		t.Fatal("not frozen after a pause longer than half the session timeout")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ss.watch(ctx)
	if err := ss.failure(); err == nil || !strings.Contains(err.Error(), "paused") {
		t.Fatalf("session error %v, want the pause", err)
	}
	if !ss.frozen() {
		t.Fatal("a session found paused calls providers again")
	}
}

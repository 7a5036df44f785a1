package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/heraldtest"
)

// The flags and plumbing the command tests share.

// brokersFlag is the --brokers flag of c for herald's commands.
func brokersFlag(c *heraldtest.Cluster) []string {
	return []string{"--brokers", strings.Join(c.Brokers, ",")}
}

// sendFile runs `herald send` on the file path without its progress bar,
// with extra flags.
func sendFile(ctx context.Context, path string, extra ...string) error {
	return runSend(ctx, append([]string{"--file", path, "--progress=false"}, extra...))
}

// heraldRun is `herald run` running in a test.
type heraldRun struct {
	t       *testing.T
	stopped chan struct{} // closed when runPipeline has returned err
	err     error
}

// startRun runs `herald run` (runPipeline) on c, with c's brokers and
// partitions and a fresh data dir, then extra, until the test ends; an
// error it returns then fails the test.
func startRun(t *testing.T, c *heraldtest.Cluster, extra ...string) *heraldRun {
	t.Helper()
	args := append(brokersFlag(c), "--partitions", strconv.Itoa(c.Topology.Partitions), "--data-dir", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	r := &heraldRun{t: t, stopped: make(chan struct{})}
	go func() {
		defer close(r.stopped)
		r.err = runPipeline(ctx, "run", append(args, extra...), "all")
	}()
	t.Cleanup(func() {
		cancel()
		<-r.stopped
		if r.err != nil {
			t.Errorf("run: %v", r.err)
		}
	})
	return r
}

// waitFor waits until cond holds, and fails the test when timeout passes
// first or herald stops.
func (r *heraldRun) waitFor(timeout time.Duration, what string, cond func() bool) {
	r.t.Helper()
	heraldtest.WaitFor(r.t, timeout, what, func() bool {
		select {
		case <-r.stopped:
			r.t.Fatalf("run stopped waiting for %s: %v", what, r.err)
		default:
		}
		return cond()
	})
}

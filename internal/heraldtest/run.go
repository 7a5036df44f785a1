package heraldtest

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// pollEvery is how often WaitFor and Settle look again.
const pollEvery = 20 * time.Millisecond

// WaitFor polls cond until it holds, and fails the test, naming what, when
// timeout passes first.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(pollEvery)
	}
}

// Settle polls check until it returns nil, and fails the test with what
// and check's last error when timeout passes first.
func Settle(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not settled after %v: %v", what, timeout, err)
		}
		time.Sleep(pollEvery)
	}
}

// Background runs fn in a goroutine until stop is called or the test ends;
// an error fn returns fails the test, prefixed with name. stop cancels
// fn's context, waits for fn to return and says how long that took; it
// may be called more than once.
func Background(t testing.TB, name string, fn func(context.Context) error) (stop func() time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(ctx); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}()
	var once sync.Once
	var took time.Duration
	stop = func() time.Duration {
		once.Do(func() { start := time.Now(); cancel(); <-done; took = time.Since(start) })
		return took
	}
	t.Cleanup(func() { stop() })
	return stop
}

// QuietLog logs warnings and errors to stderr: the default logger of the
// stages the helpers start.
func QuietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

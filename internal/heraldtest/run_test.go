package heraldtest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeTB records what a helper reports; Fatalf ends the calling goroutine
// as testing's does.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	errors   []string
	fatal    string
	cleanups []func()
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

// run calls fn with f in a goroutine of its own and waits for it.
func (f *fakeTB) run(fn func(testing.TB)) {
	done := make(chan struct{})
	go func() { defer close(done); fn(f) }()
	<-done
}

func TestWaitFor(t *testing.T) {
	f := &fakeTB{}
	n := 0
	f.run(func(tb testing.TB) { WaitFor(tb, time.Minute, "three looks", func() bool { n++; return n == 3 }) })
	if f.fatal != "" || n != 3 {
		t.Errorf("a condition that holds at the third look: %d looks, %q", n, f.fatal)
	}
	f = &fakeTB{}
	f.run(func(tb testing.TB) { WaitFor(tb, 100*time.Millisecond, "never", func() bool { return false }) })
	if !strings.Contains(f.fatal, "waiting for never") {
		t.Errorf("a condition that never holds: %q", f.fatal)
	}
}

func TestSettle(t *testing.T) {
	f := &fakeTB{}
	n := 0
	f.run(func(tb testing.TB) {
		Settle(tb, 100*time.Millisecond, "the count", func() error { n++; return fmt.Errorf("look %d", n) })
	})
	if !strings.HasPrefix(f.fatal, "the count: ") || !strings.HasSuffix(f.fatal, fmt.Sprintf("look %d", n)) || n < 2 {
		t.Errorf("after %d looks: %q, want the last complaint", n, f.fatal)
	}
	f = &fakeTB{}
	f.run(func(tb testing.TB) { Settle(tb, time.Minute, "at once", func() error { return nil }) })
	if f.fatal != "" {
		t.Errorf("a check that passes: %q", f.fatal)
	}
}

func TestBackground(t *testing.T) {
	f := &fakeTB{}
	var ran atomic.Bool
	stop := Background(f, "stage", func(ctx context.Context) error {
		ran.Store(true)
		<-ctx.Done()
		return errors.New("boom")
	})
	WaitFor(t, 10*time.Second, "the stage to run", ran.Load)
	stop()
	stop() // again: no second cancel or wait
	if len(f.errors) != 1 || f.errors[0] != "stage: boom" {
		t.Errorf("errors %q, want the stage's one", f.errors)
	}
	if len(f.cleanups) != 1 {
		t.Fatalf("%d cleanups, want one (stop)", len(f.cleanups))
	}

	// Stopped by the test's end when nobody calls stop.
	f = &fakeTB{}
	stopped := make(chan struct{})
	Background(f, "stage", func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil })
	f.cleanups[0]()
	select {
	case <-stopped:
	default:
		t.Error("the cleanup did not stop the stage")
	}
	if len(f.errors) != 0 {
		t.Errorf("errors %q for a clean stop", f.errors)
	}
}

package service

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// fakeClock advances by step on every reading.
type fakeClock struct {
	t    time.Time
	step time.Duration
}

func (c *fakeClock) now() time.Time { c.t = c.t.Add(c.step); return c.t }

// run runs a service whose session fails fails times, then waits for ctx,
// and returns the waits between sessions.
func run(t *testing.T, s *Service, fails int, err error) []time.Duration {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waits []time.Duration
	s.sleep = func(ctx context.Context, d time.Duration) bool { waits = append(waits, d); return ctx.Err() == nil }
	calls := 0
	got := s.Run(ctx, func(ctx context.Context) error {
		calls++
		if calls <= fails {
			return err
		}
		cancel()
		return context.Canceled
	})
	if got != nil {
		t.Fatalf("Run = %v, want nil after its context ended", got)
	}
	if calls != fails+1 || s.Restarts() != int64(fails) {
		t.Fatalf("%d sessions, %d restarts; want %d and %d", calls, s.Restarts(), fails+1, fails)
	}
	return waits
}

func TestRestartBacksOff(t *testing.T) {
	t.Parallel()
	s := &Service{Name: "t", MinBackoff: time.Second, MaxBackoff: 5 * time.Second}
	waits := run(t, s, 5, errors.New("boom"))
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if !slices.Equal(waits, want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
}

// A session that returns nil before its context ended failed too.
func TestEarlyReturnIsAFailure(t *testing.T) {
	t.Parallel()
	s := &Service{}
	waits := run(t, s, 2, nil)
	if !slices.Equal(waits, []time.Duration{DefaultMinBackoff, 2 * DefaultMinBackoff}) {
		t.Fatalf("waits %v", waits)
	}
}

// After a session that ran Healthy, the wait starts at MinBackoff again.
func TestHealthyRunResetsBackoff(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Unix(0, 0), step: time.Minute}
	s := &Service{MinBackoff: time.Second, Healthy: time.Minute, Now: clock.now}
	waits := run(t, s, 3, errors.New("boom"))
	if !slices.Equal(waits, []time.Duration{time.Second, time.Second, time.Second}) {
		t.Fatalf("waits %v, want MinBackoff after every healthy session", waits)
	}
}

// A session that says it had become healthy (WasHealthy) is restarted
// after MinBackoff however short it was: a broker restart fails every
// consumer's session, and one that had recovered must not wait longer at
// each restart (the chaos suite's broker-restart saw 1, 2, 4, 8, 16 s).
func TestWasHealthyResetsBackoff(t *testing.T) {
	t.Parallel()
	s := &Service{MinBackoff: time.Second, MaxBackoff: time.Minute}
	waits := run(t, s, 4, WasHealthy(errors.New("consumer group: EOF")))
	if !slices.Equal(waits, []time.Duration{time.Second, time.Second, time.Second, time.Second}) {
		t.Fatalf("waits %v, want MinBackoff after every session that had become healthy", waits)
	}
	if err := WasHealthy(nil); err == nil {
		t.Fatal("WasHealthy(nil) is nil: an early return would not count as a failure")
	}
}

func TestPermanentStops(t *testing.T) {
	t.Parallel()
	bad := errors.New("bad option")
	s := &Service{}
	calls := 0
	err := s.Run(context.Background(), func(context.Context) error { calls++; return Permanent(bad) })
	if !errors.Is(err, bad) || calls != 1 || s.Restarts() != 0 {
		t.Fatalf("Run = %v after %d sessions, %d restarts; want the permanent error after one", err, calls, s.Restarts())
	}
	if Permanent(nil) != nil {
		t.Fatal("Permanent(nil) is not nil")
	}
}

// A context that ends during the wait ends Run without another session.
func TestStopsWithContextDuringWait(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{MinBackoff: time.Hour}
	calls := 0
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Run(ctx, func(context.Context) error {
			calls++
			close(started) // a second session would panic here
			return errors.New("boom")
		})
	}()
	<-started
	cancel()
	select {
	case err := <-done:
		if err != nil || calls != 1 {
			t.Fatalf("Run = %v after %d sessions, want nil after one", err, calls)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	b := Backoff{Min: 100 * time.Millisecond, Max: 300 * time.Millisecond}
	var got []time.Duration
	for range 4 {
		got = append(got, b.Next())
	}
	b.Reset()
	got = append(got, b.Next())
	want := []time.Duration{100, 200, 300, 300, 100}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if !slices.Equal(got, want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
}

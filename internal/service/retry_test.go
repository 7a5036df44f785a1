package service

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

var errFlaky = errors.New("flaky")

func TestRetryBacksOffUntilSuccess(t *testing.T) {
	t.Parallel()
	b := Backoff{Min: time.Millisecond, Max: 4 * time.Millisecond}
	tries := 0
	var waits []time.Duration
	var counts []int
	err := Retry(context.Background(), b, func(context.Context) error {
		tries++
		if tries <= 5 {
			return errFlaky
		}
		return nil
	}, func(err error, failures int, wait time.Duration) {
		if !errors.Is(err, errFlaky) {
			t.Errorf("failed heard %v, want the try's error", err)
		}
		counts = append(counts, failures)
		waits = append(waits, wait)
	})
	if err != nil {
		t.Fatalf("Retry = %v, want nil after a success", err)
	}
	if tries != 6 {
		t.Fatalf("%d tries, want 6", tries)
	}
	ms := time.Millisecond
	if want := []time.Duration{ms, 2 * ms, 4 * ms, 4 * ms, 4 * ms}; !slices.Equal(waits, want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	if want := []int{1, 2, 3, 4, 5}; !slices.Equal(counts, want) {
		t.Fatalf("failure counts %v, want %v", counts, want)
	}
}

func TestRetryReturnsPermanentAtOnce(t *testing.T) {
	t.Parallel()
	tries := 0
	err := Retry(context.Background(), Backoff{Min: time.Millisecond}, func(context.Context) error {
		tries++
		return Permanent(errFlaky)
	}, func(error, int, time.Duration) { t.Error("a permanent error was retried") })
	if tries != 1 || err != errFlaky {
		t.Fatalf("%d tries, Retry = %v; want 1 try and the error Permanent was given", tries, err)
	}
}

// Retry stops with its context: during the wait, and after a try that
// failed because the context ended; the last error and the cause survive.
func TestRetryStopsWithItsContext(t *testing.T) {
	t.Parallel()
	cause := errors.New("shutting down")
	t.Run("during the wait", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		tries := 0
		err := Retry(ctx, Backoff{Min: time.Hour, Max: time.Hour}, func(context.Context) error {
			tries++
			return errFlaky
		}, func(error, int, time.Duration) { cancel(cause) })
		if tries != 1 {
			t.Fatalf("%d tries after the context ended, want 1", tries)
		}
		if !errors.Is(err, errFlaky) || !errors.Is(err, cause) {
			t.Fatalf("Retry = %v, want it to wrap the try's error and the cause", err)
		}
	})
	t.Run("in the try", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		tries := 0
		err := Retry(ctx, Backoff{Min: time.Millisecond}, func(ctx context.Context) error {
			tries++
			cancel()
			return ctx.Err()
		}, func(error, int, time.Duration) { t.Error("failed called after the context ended") })
		if tries != 1 || !errors.Is(err, context.Canceled) {
			t.Fatalf("%d tries, Retry = %v; want 1 and context.Canceled", tries, err)
		}
	})
	t.Run("ended before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		tries := 0
		err := Retry(ctx, Backoff{Min: time.Millisecond}, func(context.Context) error { tries++; return errFlaky }, nil)
		if tries != 1 || !errors.Is(err, errFlaky) || !errors.Is(err, context.Canceled) {
			t.Fatalf("%d tries, Retry = %v; want one try and both errors", tries, err)
		}
	})
}

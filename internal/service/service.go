// Package service is the one base Herald's long-running parts run on (in
// the manner of River's baseservice): a name, a logger, a clock, and Run,
// which runs a session of the part until its context ends and starts a new
// session after one fails. Backoff is the wait policy of that restart, and
// of Retry (retry.go), the one retry loop of Herald's parts (a release, a
// batch write, a publish).
//
// Guarantees, as enforced here:
//   - Run stops with its context: it returns once ctx has ended and the
//     session running then has returned. It never starts a session after
//     ctx ended.
//   - A failed session (an error, or a return before ctx ended) is started
//     again after a wait that doubles from MinBackoff up to MaxBackoff. A
//     session that ran for at least Healthy before failing, or that said
//     it had become healthy (its error wraps WasHealthy: a processor that
//     recovered its table), resets the wait to MinBackoff: only a part
//     that keeps failing waits long. (A broker restart fails every
//     consumer's session; one that had recovered starts again at once,
//     instead of waiting longer at each restart.)
//   - An error marked Permanent is not retried: Run returns it.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// Defaults of Service.
const (
	// DefaultMinBackoff is the default of Service.MinBackoff.
	DefaultMinBackoff = time.Second
	// DefaultMaxBackoff is the default of Service.MaxBackoff.
	DefaultMaxBackoff = 30 * time.Second
	// DefaultHealthy is the default of Service.Healthy.
	DefaultHealthy = time.Minute
)

// Service runs the sessions of one long-running part. The zero value is
// ready to use; set the fields before Run.
type Service struct {
	// Name names the part in logs (default "service").
	Name string
	// Log receives the restarts (default slog.Default()).
	Log *slog.Logger
	// Now is the clock that times sessions (default time.Now).
	Now func() time.Time
	// MinBackoff is the first wait before a restart (default
	// DefaultMinBackoff).
	MinBackoff time.Duration
	// MaxBackoff bounds the wait before a restart (default
	// DefaultMaxBackoff).
	MaxBackoff time.Duration
	// Healthy is how long a session must have run for the wait after its
	// failure to start at MinBackoff again (default DefaultHealthy).
	Healthy time.Duration

	restarts atomic.Int64
	// sleep waits between sessions (Sleep; tests record the waits).
	sleep func(context.Context, time.Duration) bool
}

// settings are a Service's fields with the defaults applied.
type settings struct {
	Name                            string
	Log                             *slog.Logger
	Now                             func() time.Time
	MinBackoff, MaxBackoff, Healthy time.Duration
}

func (s *Service) withDefaults() settings {
	c := settings{Name: s.Name, Log: s.Log, Now: s.Now, MinBackoff: s.MinBackoff, MaxBackoff: s.MaxBackoff, Healthy: s.Healthy}
	if c.Name == "" {
		c.Name = "service"
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.Healthy <= 0 {
		c.Healthy = DefaultHealthy
	}
	return c
}

// Restarts counts the sessions started again after a failure.
func (s *Service) Restarts() int64 { return s.restarts.Load() }

// Run calls session until ctx ends, again after each failure (see the
// package doc). It returns nil once ctx has ended, or the error of a
// session that failed with a Permanent error.
func (s *Service) Run(ctx context.Context, session func(context.Context) error) error {
	c := s.withDefaults()
	b := Backoff{Min: c.MinBackoff, Max: c.MaxBackoff}
	for ctx.Err() == nil {
		start := c.Now()
		err := session(ctx)
		if ctx.Err() != nil {
			if err != nil && !errors.Is(err, context.Canceled) {
				c.Log.Warn(c.Name+" stopped with an error during shutdown", "service", c.Name, "err", err)
			}
			return nil
		}
		var perm permanent
		if errors.As(err, &perm) {
			return perm.err
		}
		if c.Now().Sub(start) >= c.Healthy || errors.Is(err, errWasHealthy) {
			b.Reset()
		}
		wait := b.Next()
		if err == nil {
			err = errors.New("session ended before its context")
		}
		c.Log.Error(c.Name+" failed; restarting", "service", c.Name, "err", err, "in", wait)
		s.restarts.Add(1)
		sleep := s.sleep
		if sleep == nil {
			sleep = Sleep
		}
		if !sleep(ctx, wait) {
			return nil
		}
	}
	return nil
}

// WasHealthy marks the error of a session that had become healthy before
// it failed: Run restarts it after MinBackoff, as if it had run for
// Healthy. WasHealthy(nil) is an error too (a session must not end before
// its context).
func WasHealthy(err error) error {
	if err == nil {
		err = errors.New("session ended before its context")
	}
	return fmt.Errorf("%w (%w)", err, errWasHealthy)
}

var errWasHealthy = errors.New("after it had become healthy")

// Permanent marks err as one a new session cannot cure (a configuration
// the client refuses): Run returns err instead of restarting. Permanent(nil)
// is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Backoff is a wait that doubles from Min up to Max. The zero value waits
// Min (0) every time; set Min and Max.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration
}

// Next returns the wait before the next try and doubles the one after it.
func (b *Backoff) Next() time.Duration {
	d := max(b.next, b.Min)
	b.next = min(2*d, max(b.Max, b.Min))
	return d
}

// Reset makes the next wait Min again (after a success).
func (b *Backoff) Reset() { b.next = 0 }

// Sleep waits d or until ctx ends, and reports whether it waited d.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

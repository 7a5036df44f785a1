package service

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Retry calls try until it succeeds, waiting between failures as b does
// (b.Min, doubling up to b.Max). It is the one retry loop of Herald's
// parts: a release, a batch write, a publish, the migrations.
//
// Guarantees, as enforced here:
//   - It tries at least once, and never waits or tries again after ctx
//     has ended: it stops with its context.
//   - It returns nil once try has returned nil.
//   - A try that fails with an error marked Permanent is not retried:
//     Retry returns the error Permanent was given.
//   - Once ctx has ended it returns the last try's error wrapped with the
//     context's cause and the number of tries (errors.Is finds both).
//
// failed, when not nil, hears of each failure that will be retried, before
// the wait: the error, the failures so far (1 for the first) and the wait.
// It is where a caller logs or counts a failure, or prepares the next try.
func Retry(ctx context.Context, b Backoff, try func(context.Context) error, failed func(err error, failures int, wait time.Duration)) error {
	for failures := 1; ; failures++ {
		err := try(ctx)
		if err == nil {
			return nil
		}
		var perm permanent
		if errors.As(err, &perm) {
			return perm.err
		}
		if ctx.Err() != nil {
			return stopped(ctx, err, failures)
		}
		wait := b.Next()
		if failed != nil {
			failed(err, failures, wait)
		}
		if !Sleep(ctx, wait) {
			return stopped(ctx, err, failures)
		}
	}
}

func stopped(ctx context.Context, err error, tries int) error {
	return fmt.Errorf("%w (stopped after %d tries: %w)", err, tries, context.Cause(ctx))
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/herald-dispatch/herald/internal/metrics"
	"github.com/herald-dispatch/herald/internal/migrations"
	"github.com/herald-dispatch/herald/internal/service"
	"github.com/herald-dispatch/herald/internal/sink"
)

type sinkOptions struct {
	batchSize, batchMinSize         int
	batchInterval, batchMinInterval time.Duration
	retryMax                        time.Duration
}

// register registers the sink stage's flags on fs.
func (f *sinkOptions) register(fs *flag.FlagSet) {
	cli.Int(fs, &f.batchSize, "sink-batch-size", sink.DefaultBatchSize, "the most changelog records in a sink batch (taken when the sink is that far behind)")
	cli.Int(fs, &f.batchMinSize, "sink-batch-min-size", sink.DefaultBatchMinSize, "a sink batch that holds everything waiting is written at this many records at the latest")
	cli.Duration(fs, &f.batchInterval, "sink-batch-interval", sink.DefaultBatchInterval, "the longest a sink batch waits after its first record (when --sink-batch-size records or more are behind it)")
	cli.Duration(fs, &f.batchMinInterval, "sink-batch-min-interval", sink.DefaultBatchMinInterval, "how long a sink batch waits after its first record when nothing else is waiting")
	cli.Duration(fs, &f.retryMax, "sink-retry-max", sink.DefaultRetryMax, "longest wait between attempts at a batch PostgreSQL did not take")
}

// startSink resolves the pipeline's database (starting the local Postgres
// if needed) and returns the sink's loop: migrate, then consume.
func startSink(ctx context.Context, env *runEnv, f *sinkOptions) (stageLoop, error) {
	batching := sink.Batching{MinSize: f.batchMinSize, MaxSize: f.batchSize, MinInterval: f.batchMinInterval, MaxInterval: f.batchInterval}
	if err := batching.Validate(); err != nil {
		return nil, fmt.Errorf("--sink-batch-min-size, --sink-batch-size, --sink-batch-min-interval, --sink-batch-interval: %w", err)
	}
	if f.retryMax <= 0 {
		return nil, fmt.Errorf("--sink-retry-max must be positive")
	}
	log := env.Log.With("stage", "sink")
	db, err := env.Database(ctx)
	if err != nil {
		return nil, err
	}
	s, err := sink.New(sink.Config{
		Topology:         env.Topology,
		Pool:             db.Pool,
		BatchSize:        f.batchSize,
		BatchMinSize:     f.batchMinSize,
		BatchInterval:    f.batchInterval,
		BatchMinInterval: f.batchMinInterval,
		RetryMax:         f.retryMax,
		Observer:         metrics.NewSink(env.Registry),
		Log:              log,
	})
	if err != nil {
		return nil, err
	}
	env.AddReady("sink", s.Ready)
	return func(ctx context.Context) error {
		// The schema first: an unreachable PostgreSQL is waited for, not a
		// reason to exit (a process that exits and is restarted joins and
		// leaves the consumer groups again and again, and keeps them
		// rebalancing); the other stages run meanwhile.
		if err := migrateWhenReachable(ctx, db.URL, log); err != nil {
			return err
		}
		return s.Run(ctx)
	}, nil
}

// migrateWhenReachable applies the migrations, waiting (with a backoff up
// to 10 s, until ctx ends) while PostgreSQL cannot be reached. Any other
// error stops it.
func migrateWhenReachable(ctx context.Context, url string, log *slog.Logger) error {
	backoff := service.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second}
	err := service.Retry(ctx, backoff, func(ctx context.Context) error {
		mctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		_, err := migrations.Migrate(mctx, url, log)
		var connErr *pgconn.ConnectError
		if err != nil && !errors.As(err, &connErr) {
			return service.Permanent(err)
		}
		return err
	}, func(err error, _ int, wait time.Duration) {
		log.Warn("PostgreSQL is not reachable; the sink waits for it (the other stages run)", "err", err, "retry_in", wait)
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

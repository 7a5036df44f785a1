package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-dispatch/herald/internal/metrics"
	"github.com/herald-dispatch/herald/internal/migrations"
	"github.com/herald-dispatch/herald/internal/service"
	"github.com/herald-dispatch/herald/internal/sink"
)

var sinkFlags struct {
	batchSize     int
	batchInterval time.Duration
	retryMax      time.Duration
	pgPort        int
}

func init() {
	addStage(stage{
		name:  "sink",
		order: 50, // before the api, which reads env.DatabaseURL
		flags: func(fs *flag.FlagSet) {
			f := &sinkFlags
			cli.Int(fs, &f.batchSize, "sink-batch-size", sink.DefaultBatchSize, "the sink writes a batch when it has this many changelog records...")
			cli.Duration(fs, &f.batchInterval, "sink-batch-interval", sink.DefaultBatchInterval, "...or when this long has passed since the batch's first record")
			cli.Duration(fs, &f.retryMax, "sink-retry-max", sink.DefaultRetryMax, "longest wait between attempts at a batch PostgreSQL did not take")
			pgPortFlag(fs, &f.pgPort)
		},
		start: startSink,
	})
}

func pgPortFlag(fs *flag.FlagSet, p *int) {
	cli.Int(fs, p, "pg-port", 0, "port of the local Postgres started when --database-url is empty (0: a free port)")
}

// startSink resolves the database (starting the local Postgres if needed),
// migrates it, and returns the sink's consume loop.
func startSink(ctx context.Context, env *runEnv) (func(context.Context) error, error) {
	f := &sinkFlags
	if f.batchSize <= 0 || f.batchInterval <= 0 || f.retryMax <= 0 {
		return nil, fmt.Errorf("--sink-batch-size, --sink-batch-interval and --sink-retry-max must be positive")
	}
	log := env.Log.With("stage", "sink")
	pool, err := pipelinePool(ctx, env)
	if err != nil {
		return nil, err
	}
	s, err := sink.New(sink.Config{
		Topology:      env.Topology,
		Pool:          pool,
		BatchSize:     f.batchSize,
		BatchInterval: f.batchInterval,
		RetryMax:      f.retryMax,
		Observer:      metrics.NewSink(env.Registry),
		Log:           log,
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
		if err := migrateWhenReachable(ctx, env.DatabaseURL, log); err != nil {
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
	for {
		mctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		_, err := migrations.Migrate(mctx, url, log)
		cancel()
		var connErr *pgconn.ConnectError
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return nil
		case !errors.As(err, &connErr):
			return err
		}
		wait := backoff.Next()
		log.Warn("PostgreSQL is not reachable; the sink waits for it (the other stages run)", "err", err, "retry_in", wait)
		if !service.Sleep(ctx, wait) {
			return nil
		}
	}
}

// pipelineDB is the pipeline's PostgreSQL, resolved once per runEnv.
var pipelineDB struct {
	mu    sync.Mutex
	pools map[*runEnv]*pgxpool.Pool
}

// pipelinePool returns the pipeline's PostgreSQL pool: --database-url, or
// else the local Postgres in <data-dir>/postgres, started now and stopped
// when herald stops. The pool connects lazily; the sink migrates the
// database before it writes (migrateWhenReachable). env.DatabaseURL is set
// so that the stages started after this one (the api) use it too.
func pipelinePool(ctx context.Context, env *runEnv) (*pgxpool.Pool, error) {
	pipelineDB.mu.Lock()
	defer pipelineDB.mu.Unlock()
	if p := pipelineDB.pools[env]; p != nil {
		return p, nil
	}
	if env.DatabaseURL == "" {
		url, stop, err := localDatabase(ctx, env.Log, env.DataDir, sinkFlags.pgPort, false)
		if err != nil {
			return nil, err
		}
		env.OnClose(stop)
		env.DatabaseURL = url
		env.Log.Info("local postgres ready", "url", url)
	}
	pool, err := pgxpool.New(ctx, env.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	env.OnClose(pool.Close)
	if pipelineDB.pools == nil {
		pipelineDB.pools = map[*runEnv]*pgxpool.Pool{}
	}
	pipelineDB.pools[env] = pool
	return pool, nil
}

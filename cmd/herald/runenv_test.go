package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
)

// The pipeline's database is resolved once and shared; without a URL and
// without the sink in this process there is none (no local Postgres is
// started for the API alone).
func TestRunEnvDatabase(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	none := &runEnv{Log: log, DataDir: t.TempDir()}
	if db, err := none.Database(ctx); db != nil || err != nil {
		t.Fatalf("no URL, no sink: %+v %v, want no database", db, err)
	}

	env := &runEnv{Log: log, db: database{url: "postgres://herald@127.0.0.1:1/herald"}}
	a, err := env.Database(ctx)
	if err != nil || a == nil || a.URL != env.db.url {
		t.Fatalf("%+v %v", a, err)
	}
	b, _ := env.Database(ctx)
	if a != b || a.Pool != b.Pool {
		t.Fatal("a second stage got another database")
	}
	if len(env.closers) != 1 {
		t.Fatalf("%d closers, want the one pool's", len(env.closers))
	}
	env.closers[0]()
}

// A stage that fails to start stops the loops of the stages started before
// it: they have returned when run does, before the cleanups close what
// they use.
func TestRunStopsStartedStagesWhenOneFailsToStart(t *testing.T) {
	env := &runEnv{Log: slog.New(slog.DiscardHandler), stages: map[string]bool{"all": true}, HTTPAddr: "off"}
	stopped := make(chan struct{})
	stages := []stage{
		{name: "first", start: func(context.Context, *runEnv) (stageLoop, error) {
			return func(ctx context.Context) error {
				<-ctx.Done()
				close(stopped)
				return nil
			}, nil
		}},
		{name: "second", start: func(context.Context, *runEnv) (stageLoop, error) {
			return nil, errors.New("no way")
		}},
	}
	err := env.run(context.Background(), stages)
	if err == nil || err.Error() != "stage second: no way" {
		t.Fatalf("err = %v, want the second stage's", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("the first stage's loop still runs after run returned")
	}
}

package main

import (
	"context"
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

package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/heraldtest"
)

// An unreachable PostgreSQL is waited for, not a reason to exit; it is
// migrated once it is there. A URL that cannot work is an error at once.
func TestMigrateWhenReachable(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := migrateWhenReachable(ctx, "postgres://herald@127.0.0.1:1/herald?connect_timeout=1", log); err != nil {
		t.Fatalf("unreachable: %v, want a wait until the context ends", err)
	}
	if time.Since(start) < time.Second {
		t.Fatalf("gave up after %s", time.Since(start))
	}
	if err := migrateWhenReachable(context.Background(), "no-such-scheme://x", log); err == nil {
		t.Fatal("a URL that cannot be parsed was waited for")
	}
	if err := migrateWhenReachable(context.Background(), heraldtest.Postgres(t), log); err != nil {
		t.Fatalf("reachable: %v", err)
	}
}

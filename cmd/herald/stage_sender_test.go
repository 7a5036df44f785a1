package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-dispatch/herald/internal/cli"
	"github.com/herald-dispatch/herald/internal/topology"
)

// startSenderWith parses args into the sender's flags and starts (without
// running) the sender stage, as runPipeline does.
func startSenderWith(t *testing.T, args ...string) error {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	senderFlags.register(fs)
	if err := cli.Parse(fs, append(args, "--send-stale-check=false")); err != nil {
		t.Fatal(err)
	}
	env := &runEnv{Log: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), given: map[string]bool{}, ready: map[string]func() bool{},
		Topology: topology.Config{Brokers: []string{"127.0.0.1:1"}}.WithDefaults()}
	fs.Visit(func(f *flag.Flag) { env.given[f.Name] = true })
	defer func() {
		for _, c := range env.closers {
			c()
		}
	}()
	_, err := startSender(context.Background(), env)
	return err
}

// A ceiling below the default floor lowers the floor, unless the floor
// was set too: then the two disagree and start-up says so.
func TestSendConcurrencyFloorFollowsCeiling(t *testing.T) {
	if err := startSenderWith(t, "--send-concurrency", "20"); err != nil {
		t.Fatalf("--send-concurrency 20 alone: %v", err)
	}
	t.Setenv("HERALD_SEND_CONCURRENCY", "10")
	if err := startSenderWith(t); err != nil {
		t.Fatalf("HERALD_SEND_CONCURRENCY=10 alone: %v", err)
	}
	if err := startSenderWith(t, "--send-concurrency-min", "30"); err == nil || !strings.Contains(err.Error(), "above the ceiling") {
		t.Fatalf("a floor of 30 set above a ceiling of 10: %v", err)
	}
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/herald-dispatch/herald/internal/provider"
)

func init() {
	register(command{name: "mock-provider",
		summary: "serve a simulated provider over HTTP: a webhook target that counts deliveries and duplicates",
		run:     runMockProvider})
}

// runMockProvider serves provider.MockServer until ctx ends. The
// simulation flags are the server's defaults; a request URL's query (the
// same keys as mock://) overrides them per request, so one server can
// play several providers: --provider email=http://127.0.0.1:9090/email?latency=1s.
func runMockProvider(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("herald mock-provider", flag.ContinueOnError)
	var addr, latency, jitter, fail, permanent, throttle, retryAfter, seed string
	var ignoreIdem bool
	cli.String(fs, &addr, "addr", "127.0.0.1:9090", "address to listen on")
	cli.String(fs, &latency, "latency", "0s", "time each attempt takes")
	cli.String(fs, &jitter, "jitter", "0s", "uniform jitter around --latency (+/-)")
	cli.String(fs, &fail, "fail", "0", "fraction of attempts answered 503 (transient)")
	cli.String(fs, &permanent, "permanent", "0", "fraction of ids answered 422 on every attempt (permanent)")
	cli.String(fs, &throttle, "throttle", "0", "fraction of attempts answered 429 (throttled)")
	cli.String(fs, &retryAfter, "retry-after", "1s", "Retry-After sent with a 429")
	cli.String(fs, &seed, "seed", "", "varies which ids and attempts fail; the same seed repeats a run")
	cli.Bool(fs, &ignoreIdem, "ignore-idempotency", false, "deliver every success, even with a known Idempotency-Key (shows duplicates)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	sim, err := provider.ParseSimulation(url.Values{
		"latency": {latency}, "jitter": {jitter}, "fail": {fail}, "permanent": {permanent},
		"throttle": {throttle}, "retry_after": {retryAfter}, "seed": {seed},
	})
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	mock := provider.NewMockServer(provider.MockServerOptions{Simulation: sim, IgnoreIdempotency: ignoreIdem})
	srv := &http.Server{Handler: mock, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	log.Info("mock provider listening", "addr", ln.Addr().String(), "latency", sim.Latency, "jitter", sim.Jitter,
		"fail", sim.Fail, "permanent", sim.Permanent, "throttle", sim.Throttle, "honour_idempotency", !ignoreIdem)
	if err := serveUntil(ctx, srv, ln); err != nil {
		return fmt.Errorf("mock provider: %w", err)
	}
	st, _ := json.Marshal(mock.Stats())
	log.Info("mock provider stopped", "stats", string(st))
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/herald-dispatch/herald/internal/cli"
)

func init() {
	register(command{name: "healthcheck", summary: "exit 0 when the herald at --http-addr answers /readyz with ready (for container healthchecks)",
		run: func(ctx context.Context, args []string) error { return runHealthcheck(ctx, os.Stdout, args) }})
}

// runHealthcheck asks /readyz of the herald at --http-addr. The image has
// no curl: this is the compose file's healthcheck.
func runHealthcheck(ctx context.Context, out io.Writer, args []string) error {
	fs := flag.NewFlagSet("herald healthcheck", flag.ContinueOnError)
	var addr string
	var timeout time.Duration
	cli.String(fs, &addr, "http-addr", "127.0.0.1:8080", "address herald run serves HTTP on (a wildcard host is asked on loopback)")
	cli.Duration(fs, &timeout, "healthcheck-timeout", 3*time.Second, "how long to wait for the answer")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--http-addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status     string   `json:"status"`
		WaitingFor []string `json:"waiting_for"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err := json.Unmarshal(b, &body); err != nil || resp.StatusCode != http.StatusOK || body.Status != "ready" {
		return fmt.Errorf("not ready: HTTP %d %s", resp.StatusCode, b)
	}
	fmt.Fprintln(out, "ready")
	return nil
}

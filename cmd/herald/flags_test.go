package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/cli"
)

func testFlagSet() (*flag.FlagSet, *struct {
	brokers, db string
	parts       int
	wait        time.Duration
	dry         bool
	providers   cli.List
}) {
	v := &struct {
		brokers, db string
		parts       int
		wait        time.Duration
		dry         bool
		providers   cli.List
	}{}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	cli.String(fs, &v.brokers, "brokers", "", "")
	cli.String(fs, &v.db, "database-url", "", "")
	cli.Int(fs, &v.parts, "partitions", 12, "")
	cli.Duration(fs, &v.wait, "wait", time.Second, "")
	cli.Bool(fs, &v.dry, "dry-run", false, "")
	cli.ListVar(fs, &v.providers, "provider", "")
	return fs, v
}

func TestFlagsPrecedence(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "herald.conf")
	os.WriteFile(cfg, []byte("# a comment\npartitions 24\nbrokers file:9092\nwait 5s\nprovider email=mock://\nunknown-elsewhere 1\n"), 0o600)
	t.Setenv("HERALD_CONFIG", cfg)
	t.Setenv("HERALD_BROKERS", "env:9092")
	t.Setenv("HERALD_DRY_RUN", "true")
	t.Setenv("HERALD_PROVIDER", "email=mock://?latency=1s, sms=mock://")
	t.Setenv("DATABASE_URL", "postgres://from-database-url")

	fs, v := testFlagSet()
	if err := cli.Parse(fs, []string{"--wait", "7s"}); err != nil {
		t.Fatal(err)
	}
	if v.wait != 7*time.Second || v.brokers != "env:9092" || v.parts != 24 || !v.dry || v.db != "postgres://from-database-url" {
		t.Errorf("got wait %s brokers %q partitions %d dry %v db %q; want the command line, then the variables, then the file",
			v.wait, v.brokers, v.parts, v.dry, v.db)
	}
	if got := strings.Join(v.providers.Vals, " "); got != "email=mock://?latency=1s sms=mock://" {
		t.Errorf("providers from the variable = %q, want the comma-separated list", got)
	}

	// Repeated flags on the command line are one value each (a comma in
	// a URL stays), and win over the variable.
	fs, v = testFlagSet()
	t.Setenv("HERALD_DATABASE_URL", "postgres://herald-wins")
	if err := cli.Parse(fs, []string{"--provider", "email=https://x/?a=1,2", "--provider", "sms=mock://"}); err != nil {
		t.Fatal(err)
	}
	if len(v.providers.Vals) != 2 || v.providers.Vals[0] != "email=https://x/?a=1,2" {
		t.Errorf("providers from the command line = %q", v.providers.Vals)
	}
	if v.db != "postgres://herald-wins" {
		t.Errorf("database url = %q, want HERALD_DATABASE_URL over DATABASE_URL", v.db)
	}
}

func TestFlagsBadValuesNameTheirSource(t *testing.T) {
	for _, tc := range []struct {
		env, file, want string
	}{
		{env: "HERALD_PARTITIONS=abc", want: `environment variable "HERALD_PARTITIONS"`},
		{env: "HERALD_WAIT=5", want: `environment variable "HERALD_WAIT"`},
		{env: "HERALD_DRY_RUN=yes please", want: `environment variable "HERALD_DRY_RUN"`},
		{file: "partitions twelve\n", want: `flag "partitions" from config file`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if tc.env != "" {
				k, v, _ := strings.Cut(tc.env, "=")
				t.Setenv(k, v)
			}
			if tc.file != "" {
				p := filepath.Join(t.TempDir(), "c")
				os.WriteFile(p, []byte(tc.file), 0o600)
				t.Setenv("HERALD_CONFIG", p)
			}
			fs, _ := testFlagSet()
			err := cli.Parse(fs, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %s", err, tc.want)
			}
		})
	}
	t.Run("missing config file", func(t *testing.T) {
		fs, _ := testFlagSet()
		if err := cli.Parse(fs, []string{"--config", filepath.Join(t.TempDir(), "nope")}); err == nil {
			t.Fatal("a config file that does not exist was accepted")
		}
	})
}

func TestBadVariableStopsRun(t *testing.T) {
	t.Setenv("HERALD_PARTITIONS", "abc")
	dir := filepath.Join(t.TempDir(), "data")
	err := runPipeline(context.Background(), "run", []string{"--data-dir", dir}, "all")
	if err == nil || !strings.Contains(err.Error(), "HERALD_PARTITIONS") {
		t.Fatalf("err = %v, want one naming HERALD_PARTITIONS", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data dir was created before the configuration was read: %v", err)
	}
}

// A number out of its range stops start-up with an error naming the flag,
// before anything is created; none is replaced by its default.
func TestOutOfRangeNumbersStopRun(t *testing.T) {
	for _, tc := range []struct{ env, value, flag string }{
		{"HERALD_PARTITIONS", "0", "--partitions"},
		{"HERALD_PARTITIONS", "-3", "--partitions"},
		{"HERALD_REPLICATION", "0", "--replication"},
		{"HERALD_PG_PORT", "70000", "--pg-port"},
		{"HERALD_RETENTION", "-1h", "--retention"},
		{"HERALD_SESSION_TIMEOUT", "0s", "--session-timeout"},
		{"HERALD_HEARTBEAT_INTERVAL", "-1s", "--heartbeat-interval"},
		{"HERALD_HELD_SCAN_INTERVAL", "0s", "--held-scan-interval"},
		{"HERALD_LAG_INTERVAL", "0s", "--lag-interval"},
		{"HERALD_DELAY_COMMIT_INTERVAL", "0s", "--delay-commit-interval"},
		{"HERALD_KAFKA_CHECK_TIMEOUT", "0s", "--kafka-check-timeout"},
	} {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			t.Setenv(tc.env, tc.value)
			dir := filepath.Join(t.TempDir(), "data")
			err := runPipeline(context.Background(), "run", []string{"--data-dir", dir, "--brokers", "127.0.0.1:1"}, "all")
			if err == nil || !strings.Contains(err.Error(), tc.flag) {
				t.Fatalf("err = %v, want one naming %s", err, tc.flag)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the data dir was created: %v", err)
			}
		})
	}
	if err := runBroker(context.Background(), []string{"--partitions", "0"}); err == nil || !strings.Contains(err.Error(), "--partitions") {
		t.Errorf("herald broker --partitions 0: %v", err)
	}
}

func TestVersion(t *testing.T) {
	var b bytes.Buffer
	printVersion(&b)
	out := b.String()
	for _, want := range []string{"herald ", "commit ", "go " + runtime.Version()} {
		if !strings.Contains(out, want) {
			t.Errorf("version output %q lacks %q", out, want)
		}
	}
	version, commit = "v9.9.9", "abc123"
	defer func() { version, commit = "", "" }()
	b.Reset()
	printVersion(&b)
	if !strings.Contains(b.String(), "herald v9.9.9\ncommit abc123\n") {
		t.Errorf("version with ldflags = %q", b.String())
	}
}

// Read-only commands against a data dir with no local Postgres fail and
// leave the directory as it was.
func TestReadOnlyCommandsCreateNothing(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"migrate", "--status", "--data-dir", dir},
		{"report", "--campaign", "c", "--data-dir", dir},
	} {
		err := commands[args[0]].run(context.Background(), args[1:])
		if err == nil || !strings.Contains(err.Error(), "no local Postgres") {
			t.Errorf("%v: err = %v, want no local Postgres", args, err)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 0 {
			t.Fatalf("%v created %v", args, ents)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	log := slog.New(slog.DiscardHandler)
	for _, bad := range []string{"lots", "-1MiB", "0"} {
		if err := applyMemoryLimit(bad, log); err == nil || !strings.Contains(err.Error(), "--memory-limit") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if err := applyMemoryLimit("384MiB", log); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 384<<20 {
		t.Fatalf("limit %d, want %d", got, 384<<20)
	}
	dir := filepath.Join(t.TempDir(), "data")
	if err := runPipeline(context.Background(), "run", []string{"--data-dir", dir, "--memory-limit", "much"}, "all"); err == nil ||
		!strings.Contains(err.Error(), "--memory-limit") {
		t.Fatalf("run with a bad limit: %v", err)
	}
}

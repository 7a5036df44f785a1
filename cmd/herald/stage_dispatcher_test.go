package main

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/cli"
	"github.com/herald-dispatch/herald/internal/dispatcher"
)

// parseDispatcherFlags registers the dispatcher's flags afresh, parses
// args, and builds its configuration.
func parseDispatcherFlags(t *testing.T, args ...string) (dispatcher.DispatchConfig, error) {
	t.Helper()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	var f dispatcherOptions
	var shared sharedFlags
	f.register(fs)
	shared.register(fs)
	if err := cli.Parse(fs, args); err != nil {
		return dispatcher.DispatchConfig{}, err
	}
	return f.config(shared.providerTimeout)
}

func TestRetentionFlags(t *testing.T) {
	cfg, err := parseDispatcherFlags(t)
	if err != nil || cfg.StateRetention != 35*24*time.Hour || cfg.DedupRetention != 395*24*time.Hour {
		t.Fatalf("defaults: %s / %s, %v; want 35 days and 395 days", cfg.StateRetention, cfg.DedupRetention, err)
	}
	cfg, err = parseDispatcherFlags(t, "--state-retention", "40d", "--dedup-retention", "9600h")
	if err != nil || cfg.StateRetention != 40*24*time.Hour || cfg.DedupRetention != 400*24*time.Hour {
		t.Fatalf("flags: %s / %s, %v", cfg.StateRetention, cfg.DedupRetention, err)
	}
	t.Setenv("HERALD_STATE_RETENTION", "60d")
	t.Setenv("HERALD_DEDUP_RETENTION", "500d")
	cfg, err = parseDispatcherFlags(t)
	if err != nil || cfg.StateRetention != 60*24*time.Hour || cfg.DedupRetention != 500*24*time.Hour {
		t.Fatalf("variables: %s / %s, %v", cfg.StateRetention, cfg.DedupRetention, err)
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--state-retention", "40d", "--dedup-retention", "30d"}, "at least --state-retention"},
		{[]string{"--state-retention", "0d"}, "must be positive"},
		{[]string{"--dedup-retention", "-1h"}, "must be positive"},
		{[]string{"--state-retention", "a month"}, "whole days"},
		{[]string{"--dedup-retention", "13mo"}, "whole days"},
	} {
		if _, err := parseDispatcherFlags(t, bad.args...); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: %v, want an error saying %q", bad.args, err, bad.want)
		}
	}
}

// --provider-timeout, a shared setting, reaches the dispatcher's
// configuration: a send timeout not longer than it is refused.
func TestProviderTimeoutReachesDispatcher(t *testing.T) {
	cfg, err := parseDispatcherFlags(t, "--provider-timeout", "20s")
	if err != nil || cfg.ProviderTimeout != 20*time.Second {
		t.Fatalf("--provider-timeout 20s: %s, %v", cfg.ProviderTimeout, err)
	}
	_, err = parseDispatcherFlags(t, "--provider-timeout", "2m", "--send-timeout", "1m")
	if err == nil || !strings.Contains(err.Error(), "longer than --provider-timeout (2m0s)") {
		t.Fatalf("a send timeout shorter than the provider timeout: %v", err)
	}
}

// The sweep's and the retention pass's settings: their defaults, an
// environment variable, and a value that is not positive refused.
func TestSweepFlags(t *testing.T) {
	parse := func(args ...string) (*dispatcherOptions, error) {
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		fs.SetOutput(new(bytes.Buffer))
		f := new(dispatcherOptions)
		f.register(fs)
		if err := cli.Parse(fs, args); err != nil {
			return nil, err
		}
		return f, f.checkSweep(time.Minute)
	}
	f, err := parse()
	if err != nil || f.sweepEvery != time.Minute || f.retireEvery != time.Hour || f.retireBatch != 100_000 {
		t.Fatalf("defaults: %+v, %v", f, err)
	}
	t.Setenv("HERALD_RETIRE_INTERVAL", "6h")
	if f, err = parse("--retire-batch", "5000"); err != nil || f.retireEvery != 6*time.Hour || f.retireBatch != 5000 {
		t.Fatalf("HERALD_RETIRE_INTERVAL=6h --retire-batch 5000: %+v, %v", f, err)
	}
	for _, bad := range [][]string{{"--retire-interval", "0s"}, {"--retire-batch", "-1"}, {"--sweep-interval", "0s"}} {
		if _, err := parse(bad...); err == nil || !strings.Contains(err.Error(), "must be positive") {
			t.Errorf("%v: %v, want a refusal", bad, err)
		}
	}
}

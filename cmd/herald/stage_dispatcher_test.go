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

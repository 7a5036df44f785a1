package main

import (
	"bytes"
	"flag"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/cli"
	"github.com/herald-dispatch/herald/internal/sender"
	"github.com/herald-dispatch/herald/internal/topology"
)

// startSenderWith parses args into the sender's flags and starts (without
// running) the sender stage, as runPipeline does.
func startSenderWith(t *testing.T, args ...string) error {
	t.Helper()
	_, err := startSenderLogged(t, args...)
	return err
}

// startSenderLogged is startSenderWith, returning the stage's log too.
func startSenderLogged(t *testing.T, args ...string) (string, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f senderOptions
	var shared sharedFlags
	f.register(fs)
	shared.register(fs)
	if err := cli.Parse(fs, append(args, "--send-stale-check=false")); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	env := &runEnv{Log: slog.New(slog.NewTextHandler(&logs, nil)), Registry: prometheus.NewRegistry(), given: map[string]bool{}, ready: map[string]func() bool{},
		Topology: topology.Config{Brokers: []string{"127.0.0.1:1"}}.WithDefaults()}
	fs.Visit(func(fl *flag.Flag) { env.given[fl.Name] = true })
	defer func() {
		for _, c := range env.closers {
			c()
		}
	}()
	_, err := startSender(env, &f, shared)
	return logs.String(), err
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
	// The start (default 50) follows a ceiling of 10 down unless set.
	if err := startSenderWith(t, "--send-concurrency-min", "5"); err != nil {
		t.Fatalf("a floor of 5 and the default start under a ceiling of 10: %v", err)
	}
	if err := startSenderWith(t, "--send-concurrency-start", "30"); err == nil || !strings.Contains(err.Error(), "start (30) is outside [10, 10]") {
		t.Fatalf("a start of 30 set above a ceiling of 10: %v", err)
	}
}

// A channel with no provider is warned about at start-up, and the API of a
// process that knows the providers is given the channels to check.
func TestChannelWithoutProvider(t *testing.T) {
	logs, err := startSenderLogged(t, "--provider", "email=mock://")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "no provider for these channels") || !strings.Contains(logs, "channels=\"[sms push]\"") {
		t.Errorf("start-up log lacks the warning naming sms and push:\n%s", logs)
	}
	for _, tc := range []struct {
		stages    string
		providers []string
		want      []contract.Channel
	}{
		{"all", nil, []contract.Channel{contract.ChannelEmail, contract.ChannelSMS}},
		{"sender", []string{"email=mock://"}, []contract.Channel{contract.ChannelEmail}},
		{"api", []string{"push=mock://", "sms=mock://"}, []contract.Channel{contract.ChannelPush, contract.ChannelSMS}},
		{"api", nil, nil}, // an API alone does not know the providers: nothing checked
	} {
		env := &runEnv{stages: map[string]bool{tc.stages: true}}
		got, err := providerChannels(tc.providers, env.Runs("sender"))
		if err != nil || !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("stages %s, providers %v: %v %v, want %v", tc.stages, tc.providers, got, err, tc.want)
		}
	}
}

// --rate takes a channel's rate and a chained provider's, by name; a
// provider that is not in its channel's chain stops start-up, naming the
// chain's providers; the chain's providers' series are on the registry.
func TestRateOfAProvider(t *testing.T) {
	if err := startSenderWith(t, "--provider", "sms=mock://", "--provider", "sms=mock://?latency=1ms",
		"--rate", "sms=50/s", "--rate", "sms/mock#2=20/s"); err != nil {
		t.Fatalf("a channel's and a chained provider's rate: %v", err)
	}
	err := startSenderWith(t, "--provider", "sms=mock://", "--provider", "sms=mock://", "--rate", "sms/twilio=20/s")
	if err == nil || !strings.Contains(err.Error(), `no provider named "twilio"`) || !strings.Contains(err.Error(), "mock#2") {
		t.Fatalf("a rate for a provider not in the chain: %v", err)
	}
	if err := startSenderWith(t, "--provider", "sms=mock://", "--rate", "sms/=20/s"); err == nil || !strings.Contains(err.Error(), "--rate") {
		t.Fatalf("a rate naming no provider: %v", err)
	}
	rates, providerRates, err := parseRates([]string{"sms=50/s", "sms/mock#2=20/s", "email=60/m"})
	if err != nil || rates[contract.ChannelSMS] != 50 || rates[contract.ChannelEmail] != 1 || len(providerRates) != 1 ||
		providerRates[sender.RateTarget{Channel: contract.ChannelSMS, Provider: "mock#2"}] != 20 {
		t.Fatalf("parseRates: %v %v %v", rates, providerRates, err)
	}
}

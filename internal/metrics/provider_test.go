package metrics_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/metrics"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/herald-dispatch/herald/internal/sender"
	"github.com/herald-dispatch/herald/internal/topology"
)

// Every provider of a chain has its circuit gauge from the start (0,
// closed), and the gauge follows the circuit.
func TestCircuitGauge(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := metrics.NewCircuits(reg)
	set, err := provider.OpenSet([]string{"sms=http://127.0.0.1:1/a", "sms=mock://"},
		provider.Options{Chain: provider.ChainOptions{Observer: c}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if n := testutil.CollectAndCount(reg, "herald_provider_circuit_state"); n != 2 {
		t.Fatalf("%d circuit series, want 2 (one per provider of the chain)", n)
	}
	c.CircuitState(contract.ChannelSMS, "127.0.0.1:1", provider.CircuitOpen)
	if err := testutil.GatherAndCompare(reg, stringsReader(`
# HELP herald_provider_circuit_state Circuit breaker of each provider of a channel's failover chain: 0 closed, 1 half-open (one probe), 2 open (skipped), by channel and provider.
# TYPE herald_provider_circuit_state gauge
herald_provider_circuit_state{channel="sms",provider="127.0.0.1:1"} 2
herald_provider_circuit_state{channel="sms",provider="mock"} 0
`), "herald_provider_circuit_state"); err != nil {
		t.Error(err)
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

// Every provider of a chain has its sender series from the start, at 0:
// its concurrency limit (then its start), calls in flight, rate share
// and throttle pauses.
func TestProviderSenderSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.NewSender(reg)
	set, err := provider.OpenSet([]string{"sms=mock://", "sms=mock://"}, provider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if _, err := sender.New(sender.Config{Topology: topology.Config{Brokers: []string{"127.0.0.1:1"}}, Providers: set,
		ProviderRates: map[sender.RateTarget]float64{{Channel: contract.ChannelSMS, Provider: "mock#2"}: 20},
		Limit:         sender.LimitConfig{Min: 7, Start: 9}, Observer: m, ProviderObserver: m}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"herald_provider_concurrency_limit": 2, "herald_provider_in_flight": 2,
		"herald_provider_rate_share": 2, "herald_provider_throttle_pauses_total": 2} {
		if n := testutil.CollectAndCount(reg, name); n != want {
			t.Errorf("%s: %d series, want %d (one per provider of the chain)", name, n, want)
		}
	}
	if err := testutil.GatherAndCompare(reg, stringsReader(`
# HELP herald_provider_rate_share Attempts per second a provider of a channel's failover chain may take from this process: its --rate CHANNEL/PROVIDER divided by the sender group's members (0: unlimited), by channel and provider.
# TYPE herald_provider_rate_share gauge
herald_provider_rate_share{channel="sms",provider="mock"} 0
herald_provider_rate_share{channel="sms",provider="mock#2"} 20
# HELP herald_provider_concurrency_limit Calls a provider of a channel's failover chain may have in flight in this process: its own adaptive concurrency limit, by channel and provider.
# TYPE herald_provider_concurrency_limit gauge
herald_provider_concurrency_limit{channel="sms",provider="mock"} 9
herald_provider_concurrency_limit{channel="sms",provider="mock#2"} 9
`), "herald_provider_rate_share", "herald_provider_concurrency_limit"); err != nil {
		t.Error(err)
	}
	m.ProviderPaused(contract.ChannelSMS, "mock", time.Second)
	if err := testutil.GatherAndCompare(reg, stringsReader(`
# HELP herald_provider_throttle_pauses_total Times a 429 paused a provider of a channel's failover chain (its other providers take the calls meanwhile), by channel and provider.
# TYPE herald_provider_throttle_pauses_total counter
herald_provider_throttle_pauses_total{channel="sms",provider="mock"} 1
herald_provider_throttle_pauses_total{channel="sms",provider="mock#2"} 0
`), "herald_provider_throttle_pauses_total"); err != nil {
		t.Error(err)
	}
}

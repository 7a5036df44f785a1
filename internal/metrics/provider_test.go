package metrics_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/metrics"
	"github.com/herald-dispatch/herald/internal/provider"
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

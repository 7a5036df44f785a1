package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/provider"
)

// Circuits implements provider.CircuitObserver: the circuit state of each
// provider of a failover chain (a channel with more than one provider).
type Circuits struct {
	state *prometheus.GaugeVec
}

var _ provider.CircuitObserver = (*Circuits)(nil)

// NewCircuits registers the providers' circuit gauge on reg. A chain
// reports each provider's circuit (closed, 0) when it is built, so every
// configured provider is present from the start.
func NewCircuits(reg prometheus.Registerer) *Circuits {
	c := &Circuits{state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_provider_circuit_state",
		Help: "Circuit breaker of each provider of a channel's failover chain: 0 closed, 1 half-open (one probe), 2 open (skipped), by channel and provider.",
	}, []string{"channel", "provider"})}
	reg.MustRegister(c.state)
	return c
}

// CircuitState sets a provider's circuit state.
func (c *Circuits) CircuitState(ch contract.Channel, p string, s provider.CircuitState) {
	c.state.WithLabelValues(string(ch), p).Set(float64(s))
}

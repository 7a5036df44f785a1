package heraldtest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// MetricSum adds up every series of the counter or gauge name that g
// gathers (0 when it has none).
func MetricSum(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

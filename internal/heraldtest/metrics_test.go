package heraldtest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricSum(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total"}, []string{"l"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})
	reg.MustRegister(c, g)
	c.WithLabelValues("a").Add(2)
	c.WithLabelValues("b").Add(3)
	g.Set(7)
	for name, want := range map[string]float64{"c_total": 5, "g": 7, "none": 0} {
		if got := MetricSum(t, reg, name); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}

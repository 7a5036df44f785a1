package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// API implements views.Observer with Prometheus metrics.
type API struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	items    *prometheus.CounterVec
	cancels  *prometheus.CounterVec
}

// NewAPI registers the HTTP API's metrics on reg.
func NewAPI(reg prometheus.Registerer) *API {
	a := &API{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_api_requests_total",
			Help: "HTTP API requests, by route pattern (\"none\" when no route was reached, e.g. a 401) and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_api_request_duration_seconds",
			Help:    "HTTP API request latency, by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9), // 0.5 ms .. 33 s
		}, []string{"route"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_api_ingested_items_total",
			Help: "Dispatch requests posted to the API, by result: accepted (published), duplicate, rejected (invalid), failed (publish error).",
		}, []string{"result"}),
		cancels: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_api_cancels_total",
			Help: "Cancel requests, by outcome: requested, canceled (seen with ?wait), conflict (sending or final), unknown.",
		}, []string{"outcome"}),
	}
	reg.MustRegister(a.requests, a.duration, a.items, a.cancels)
	// Present at 0 from the start, so that a rate() or an alert sees the
	// series before its first event.
	for _, r := range []string{"accepted", "duplicate", "rejected", "failed"} {
		a.items.WithLabelValues(r)
	}
	for _, o := range []string{"requested", "canceled", "conflict", "unknown"} {
		a.cancels.WithLabelValues(o)
	}
	return a
}

func routeLabel(route string) string {
	if route == "" {
		return "none"
	}
	return route
}

// Request counts one HTTP request.
func (a *API) Request(route string, code int, elapsed time.Duration) {
	route = routeLabel(route)
	a.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	a.duration.WithLabelValues(route).Observe(elapsed.Seconds())
}

// Items counts ingested items.
func (a *API) Items(result string, n int) {
	a.items.WithLabelValues(result).Add(float64(n))
}

// Cancel counts a cancel request.
func (a *API) Cancel(outcome string) {
	a.cancels.WithLabelValues(outcome).Inc()
}

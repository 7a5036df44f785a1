package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-dispatch/herald/internal/delay"
	"github.com/herald-dispatch/herald/internal/topology"
)

// DelayLatenessBuckets returns the buckets of
// herald_delay_release_lateness_seconds (a fresh slice each call).
func DelayLatenessBuckets() []float64 {
	return []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
}

// Delay implements delay.Observer with Prometheus metrics.
type Delay struct {
	forwards *prometheus.CounterVec
	hops     *prometheus.CounterVec
	rejects  *prometheus.CounterVec
	lateness prometheus.Histogram
}

var _ delay.Observer = (*Delay)(nil)

// NewDelay registers the delay stage's counters on reg.
func NewDelay(reg prometheus.Registerer) *Delay {
	d := &Delay{
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_delay_forwarded_total",
			Help: "Delayed records released to their target topic, by the tier they left.",
		}, []string{"tier"}),
		hops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_delay_hops_total",
			Help: "Delayed records moved on to a shorter tier, by the tier they left and the tier they went to.",
		}, []string{"tier", "to"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_delay_dead_letters_total",
			Help: "Delayed records sent to the DLQ for missing or bad headers, by tier.",
		}, []string{"tier"}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_delay_release_lateness_seconds",
			Help:    "How long after its due time a delayed record was acknowledged by its target topic.",
			Buckets: DelayLatenessBuckets(),
		}),
	}
	reg.MustRegister(d.forwards, d.hops, d.rejects, d.lateness)
	for _, tier := range topology.Tiers() {
		d.rejects.WithLabelValues(topology.TierLabel(tier)) // present at 0 from the start
	}
	return d
}

// Forwarded counts a release and its lateness.
func (d *Delay) Forwarded(tier, late time.Duration) {
	d.forwards.WithLabelValues(topology.TierLabel(tier)).Inc()
	d.lateness.Observe(late.Seconds())
}

// Hopped counts a move to a shorter tier.
func (d *Delay) Hopped(tier, to time.Duration) {
	d.hops.WithLabelValues(topology.TierLabel(tier), topology.TierLabel(to)).Inc()
}

// Rejected counts a dead letter.
func (d *Delay) Rejected(tier time.Duration) {
	d.rejects.WithLabelValues(topology.TierLabel(tier)).Inc()
}

// DelayBacklog is what the delay stage holds, read at scrape time
// (*delay.Stage).
type DelayBacklog interface {
	// Buffered is how many records the stage holds in memory.
	Buffered() int64
	// Held is, per tier, how many records wait in the tier partitions the
	// stage owns; nil when it owns none.
	Held(ctx context.Context) (map[time.Duration]int64, error)
}

// NewDelayBacklog registers herald_delay_buffered_records and
// herald_delay_held_records on reg, read from b at scrape time. The held
// records cost the stage one request for the end offsets per scrape, so
// an idle stage does no work for them.
func NewDelayBacklog(reg prometheus.Registerer, b DelayBacklog) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_delay_buffered_records",
			Help: "Delayed records this instance holds in memory (at most --delay-max-buffer per tier partition).",
		}, func() float64 { return float64(b.Buffered()) }),
		heldRecords{b},
	)
}

// heldRecords reports herald_delay_held_records.
type heldRecords struct{ b DelayBacklog }

var heldRecordsDesc = prometheus.NewDesc("herald_delay_held_records",
	"Delayed records waiting in the tier partitions this instance owns (end offset minus the oldest unreleased record), by tier.",
	[]string{"tier"}, nil)

func (c heldRecords) Describe(ch chan<- *prometheus.Desc) { ch <- heldRecordsDesc }

func (c heldRecords) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	held, err := c.b.Held(ctx)
	if err != nil || held == nil {
		return
	}
	for _, d := range topology.Tiers() {
		ch <- prometheus.MustNewConstMetric(heldRecordsDesc, prometheus.GaugeValue, float64(held[d]), topology.TierLabel(d))
	}
}

package delay

import (
	"context"
	"fmt"
	"time"

	"github.com/herald-dispatch/herald/internal/topology"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
)

// stageMetrics are the delay stage's Prometheus metrics. They exist even
// without a registerer, so the stage never checks.
type stageMetrics struct {
	forwards  *prometheus.CounterVec
	hops      *prometheus.CounterVec
	rejects   *prometheus.CounterVec
	lateness  prometheus.Histogram
	tierNames map[time.Duration]string
}

// LatenessBuckets are the buckets of herald_delay_release_lateness_seconds.
var LatenessBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

func newStageMetrics(reg prometheus.Registerer, s *Stage) (*stageMetrics, error) {
	m := &stageMetrics{
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
			Buckets: LatenessBuckets,
		}),
		tierNames: map[time.Duration]string{},
	}
	for _, d := range topology.Tiers {
		m.tierNames[d] = topology.TierLabel(d)
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.forwards, m.hops, m.rejects, m.lateness,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_delay_buffered_records",
			Help: "Delayed records this instance holds in memory (at most --delay-max-buffer per tier partition).",
		}, func() float64 { return float64(s.bufferedRecords()) }),
		heldCollector{s},
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("delay: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *stageMetrics) forwarded(tier, late time.Duration) {
	m.forwards.WithLabelValues(m.tierNames[tier]).Inc()
	m.lateness.Observe(late.Seconds())
}

func (m *stageMetrics) hopped(tier time.Duration, to string) {
	toTier, _ := TierOfTopic(to)
	m.hops.WithLabelValues(m.tierNames[tier], m.tierNames[toTier]).Inc()
}

func (m *stageMetrics) rejected(tier time.Duration) {
	m.rejects.WithLabelValues(m.tierNames[tier]).Inc()
}

func (s *Stage) bufferedRecords() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, p := range s.parts {
		n += p.buffered.Load()
	}
	return n
}

// heldCollector reports herald_delay_held_records: for every tier partition
// this instance owns, the records from the oldest one not yet released to
// the partition's end offset. It asks the brokers for the end offsets at
// scrape time only, so an idle stage does no work for it.
type heldCollector struct{ s *Stage }

var heldDesc = prometheus.NewDesc("herald_delay_held_records",
	"Delayed records waiting in the tier partitions this instance owns (end offset minus the oldest unreleased record), by tier.",
	[]string{"tier"}, nil)

func (c heldCollector) Describe(ch chan<- *prometheus.Desc) { ch <- heldDesc }

func (c heldCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	cl := s.cl.Load()
	if cl == nil {
		return
	}
	// The oldest unreleased offset of each owned partition, or -1 when the
	// partition has not been read yet.
	heads := map[topicPartition]int64{}
	s.mu.Lock()
	for tp, p := range s.parts {
		heads[tp] = p.head()
	}
	s.mu.Unlock()
	if len(heads) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topology.TierTopics()...)
	if err != nil {
		s.cfg.Log.Debug("delay: held records: end offsets", "err", err)
		return
	}
	held := map[time.Duration]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		h, ok := heads[topicPartition{o.Topic, o.Partition}]
		if !ok || h < 0 || o.Err != nil {
			return
		}
		if n := o.Offset - h; n > 0 {
			held[s.tiers[o.Topic]] += n
		}
	})
	for _, d := range topology.Tiers {
		ch <- prometheus.MustNewConstMetric(heldDesc, prometheus.GaugeValue, float64(held[d]), topology.TierLabel(d))
	}
}

// head returns the offset of the oldest record not yet released.
func (p *partition) head() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.q) > 0 {
		return p.q[0].Offset
	}
	if c := p.committable.Load(); c >= 0 {
		return max(c, p.next)
	}
	return p.next
}

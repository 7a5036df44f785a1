package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-dispatch/herald/contract"
)

// Sender implements sender.Observer with Prometheus metrics.
type Sender struct {
	sends       *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	endToEnd    *prometheus.HistogramVec
	inFlight    prometheus.Gauge
	skipped     *prometheus.CounterVec
	pauses      *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	limit       *prometheus.GaugeVec
	calls       *prometheus.GaugeVec
	rateShare   *prometheus.GaugeVec
	members     prometheus.Gauge

	// Each provider of a failover chain (sender.ProviderObserver).
	providerLimit, providerCalls, providerRate *prometheus.GaugeVec
	providerPauses                             *prometheus.CounterVec
}

// NewSender registers the sender's metrics on reg.
func NewSender(reg prometheus.Registerer) *Sender {
	s := &Sender{
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_sends_total",
			Help: "Provider attempts, by channel and outcome (success, transient, permanent, throttled).",
		}, []string{"channel", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_provider_latency_seconds",
			Help:    "How long a provider took to answer one attempt, by channel.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 1.5, 2, 3, 5, 10, 30},
		}, []string{"channel"}),
		endToEnd: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herald_delivery_latency_seconds",
			Help: "From the dispatcher first seeing a request to a provider accepting it, by channel " +
				"(includes holds for schedules, blackouts and retries).",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600},
		}, []string{"channel"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_sender_in_flight",
			Help: "Send commands between poll and acknowledged result in this process.",
		}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_sender_skipped_stale_total",
			Help: "Send commands not sent because the dispatcher's state had moved past their attempt, by channel.",
		}, []string{"channel"}),
		pauses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_sender_throttle_pauses_total",
			Help: "Times a provider's 429 paused a channel, by channel.",
		}, []string{"channel"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_sender_dlq_records_total",
			Help: "Send commands the sender could not decode and sent to herald.dlq, by reason.",
		}, []string{"reason"}),
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_sender_concurrency_limit",
			Help: "Provider calls a channel may have in flight in this process: its adaptive concurrency limit, by channel.",
		}, []string{"channel"}),
		calls: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_sender_provider_in_flight",
			Help: "Provider calls holding a slot under their channel's concurrency limit in this process, by channel.",
		}, []string{"channel"}),
		rateShare: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_sender_rate_share",
			Help: "Attempts per second a channel may make in this process: its --rate divided by the sender group's members (0: unlimited), by channel.",
		}, []string{"channel"}),
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_sender_group_members",
			Help: "Members of the sender's consumer group that the rates are divided by.",
		}),
	}
	s.newProviderMetrics()
	reg.MustRegister(s.sends, s.latency, s.endToEnd, s.inFlight, s.skipped, s.pauses, s.deadLetters,
		s.limit, s.calls, s.rateShare, s.members, s.providerLimit, s.providerCalls, s.providerRate, s.providerPauses)
	s.presentAtZero()
	return s
}

// newProviderMetrics makes the metrics of each provider of a failover
// chain (sender.ProviderObserver).
func (s *Sender) newProviderMetrics() {
	s.providerLimit = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_provider_concurrency_limit",
		Help: "Calls a provider of a channel's failover chain may have in flight in this process: its own adaptive concurrency limit, by channel and provider.",
	}, []string{"channel", "provider"})
	s.providerCalls = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_provider_in_flight",
		Help: "Calls holding a slot under the concurrency limit of a provider of a channel's failover chain in this process, by channel and provider.",
	}, []string{"channel", "provider"})
	s.providerRate = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_provider_rate_share",
		Help: "Attempts per second a provider of a channel's failover chain may take from this process: its --rate CHANNEL/PROVIDER divided by the sender group's members (0: unlimited), by channel and provider.",
	}, []string{"channel", "provider"})
	s.providerPauses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_provider_throttle_pauses_total",
		Help: "Times a 429 paused a provider of a channel's failover chain (its other providers take the calls meanwhile), by channel and provider.",
	}, []string{"channel", "provider"})
}

// presentAtZero makes the labelled series present at 0 from the start: by
// the reasons a command that does not decode is dead-lettered for, per
// channel and outcome.
func (s *Sender) presentAtZero() {
	for _, r := range []string{contract.ReasonMalformed, contract.ReasonInvalid, contract.ReasonKeyMismatch} {
		s.deadLetters.WithLabelValues(r)
	}
	for _, ch := range contract.Channels() {
		for _, o := range []contract.Outcome{contract.OutcomeSuccess, contract.OutcomeTransient, contract.OutcomePermanent, contract.OutcomeThrottled} {
			s.sends.WithLabelValues(string(ch), string(o))
		}
		s.skipped.WithLabelValues(string(ch))
		s.pauses.WithLabelValues(string(ch))
		s.calls.WithLabelValues(string(ch))
	}
}

// Attempt counts a provider answer and its latency.
func (s *Sender) Attempt(ch contract.Channel, o contract.Outcome, latency time.Duration) {
	s.sends.WithLabelValues(string(ch), string(o)).Inc()
	s.latency.WithLabelValues(string(ch)).Observe(latency.Seconds())
}

// Delivered records the end-to-end latency of a success.
func (s *Sender) Delivered(ch contract.Channel, endToEnd time.Duration) {
	s.endToEnd.WithLabelValues(string(ch)).Observe(endToEnd.Seconds())
}

// Skipped counts a stale command.
func (s *Sender) Skipped(ch contract.Channel) { s.skipped.WithLabelValues(string(ch)).Inc() }

// InFlight moves the in-flight gauge.
func (s *Sender) InFlight(delta int) { s.inFlight.Add(float64(delta)) }

// Paused counts a throttle pause.
func (s *Sender) Paused(ch contract.Channel, _ time.Duration) {
	s.pauses.WithLabelValues(string(ch)).Inc()
}

// DeadLetter counts a DLQ record.
func (s *Sender) DeadLetter(reason string) { s.deadLetters.WithLabelValues(reason).Inc() }

// ConcurrencyLimit sets a channel's concurrency limit.
func (s *Sender) ConcurrencyLimit(ch contract.Channel, limit int) {
	s.limit.WithLabelValues(string(ch)).Set(float64(limit))
}

// ProviderInFlight moves a channel's calls in flight.
func (s *Sender) ProviderInFlight(ch contract.Channel, delta int) {
	s.calls.WithLabelValues(string(ch)).Add(float64(delta))
}

// RateShare sets a channel's rate in this process and the group's members.
func (s *Sender) RateShare(ch contract.Channel, perSecond float64, members int) {
	s.rateShare.WithLabelValues(string(ch)).Set(perSecond)
	s.members.Set(float64(members))
}

// ProviderAdded makes a chained provider's series, at 0 until told
// otherwise.
func (s *Sender) ProviderAdded(ch contract.Channel, p string) {
	s.providerLimit.WithLabelValues(string(ch), p)
	s.providerCalls.WithLabelValues(string(ch), p)
	s.providerRate.WithLabelValues(string(ch), p)
	s.providerPauses.WithLabelValues(string(ch), p)
}

// ProviderLimit sets a chained provider's concurrency limit.
func (s *Sender) ProviderLimit(ch contract.Channel, p string, limit int) {
	s.providerLimit.WithLabelValues(string(ch), p).Set(float64(limit))
}

// ProviderCalls moves a chained provider's calls in flight.
func (s *Sender) ProviderCalls(ch contract.Channel, p string, delta int) {
	s.providerCalls.WithLabelValues(string(ch), p).Add(float64(delta))
}

// ProviderRateShare sets a chained provider's rate in this process.
func (s *Sender) ProviderRateShare(ch contract.Channel, p string, perSecond float64) {
	s.providerRate.WithLabelValues(string(ch), p).Set(perSecond)
}

// ProviderPaused counts a chained provider's throttle pause.
func (s *Sender) ProviderPaused(ch contract.Channel, p string, _ time.Duration) {
	s.providerPauses.WithLabelValues(string(ch), p).Inc()
}

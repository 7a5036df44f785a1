package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dispatcher"
)

// Dispatch implements dispatcher.DispatchObserver and
// dispatcher.PlacementObserver with Prometheus counters.
type Dispatch struct {
	events      *prometheus.CounterVec
	requests    prometheus.Counter
	duplicates  prometheus.Counter
	transitions *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	moved       *prometheus.CounterVec
	swept       prometheus.Counter
}

// NewDispatch registers the dispatcher's metrics on reg.
func NewDispatch(reg prometheus.Registerer) *Dispatch {
	d := &Dispatch{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_dispatcher_events_total",
			Help: "Input records the dispatcher handled, by topic and verdict (applied, duplicate, replay, stale, unknown, early).",
		}, []string{"topic", "verdict"}),
		requests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_requests_accepted_total",
			Help: "Valid dispatch requests for new ids: notifications accepted.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_duplicates_total",
			Help: "Dispatch requests dropped because their id was already known.",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_transitions_total",
			Help: "Status changes of notifications, by from and to status (from is \"new\" for a new notification).",
		}, []string{"from", "to"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_dlq_records_total",
			Help: "Records sent to herald.dlq, by source topic and reason.",
		}, []string{"topic", "reason"}),
		moved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_repartitioned_total",
			Help: "Records that arrived on another partition than Herald's key hash (murmur2) gives their key, moved through the repartition topic, by source topic and partition. Non-zero means a producer places keys with another partitioner; each costs one extra produce and consume.",
		}, []string{"topic", "partition"}),
	}
	d.swept = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "herald_dispatcher_swept_wakeups_total",
		Help: "Wake-ups the dispatcher's sweep made again for states whose wake-up was overdue (lost).",
	})
	reg.MustRegister(d.events, d.requests, d.duplicates, d.transitions, d.deadLetters, d.moved, d.swept)
	// Present at 0 from the start (a rate() or an alert sees the series
	// before its first event): every transition the dashboard sums, every
	// input topic's verdicts, every dead-letter reason.
	// (failed is a from too: an operator's retry leaves it.)
	for _, from := range append([]string{"new", string(contract.StatusFailed)}, nonFinal()...) {
		for _, to := range contract.Statuses() {
			d.transitions.WithLabelValues(from, string(to))
		}
	}
	for _, topic := range dispatcher.Inputs() {
		for _, v := range []dispatcher.Verdict{dispatcher.VerdictApplied, dispatcher.VerdictDuplicate, dispatcher.VerdictReplay,
			dispatcher.VerdictStale, dispatcher.VerdictUnknown, dispatcher.VerdictEarly, dispatcher.VerdictHealed,
			dispatcher.VerdictRemembered, dispatcher.VerdictDeleted} {
			d.events.WithLabelValues(topic, string(v))
		}
		for _, r := range []string{contract.ReasonMalformed, contract.ReasonInvalid, contract.ReasonKeyMismatch} {
			d.deadLetters.WithLabelValues(topic, r)
		}
	}
	return d
}

func nonFinal() []string {
	var out []string
	for _, s := range contract.Statuses() {
		if !s.Final() {
			out = append(out, string(s))
		}
	}
	return out
}

// Event counts an input record.
func (d *Dispatch) Event(topic string, v dispatcher.Verdict) {
	d.events.WithLabelValues(topic, string(v)).Inc()
	if v == dispatcher.VerdictDuplicate {
		d.duplicates.Inc()
	}
}

// Transition counts a status change.
func (d *Dispatch) Transition(from, to contract.Status, _ *contract.State) {
	f := string(from)
	if from == "" {
		f = "new"
		d.requests.Inc()
	}
	d.transitions.WithLabelValues(f, string(to)).Inc()
}

// DeadLetter counts a DLQ record.
func (d *Dispatch) DeadLetter(topic, reason string) {
	d.deadLetters.WithLabelValues(topic, reason).Inc()
}

// Swept counts the wake-ups one sweep made again (dispatcher.Sweeper's
// Observe).
func (d *Dispatch) Swept(n int) { d.swept.Add(float64(n)) }

// Moved counts a record moved to the repartition topic.
func (d *Dispatch) Moved(topic string, partition int32) {
	d.moved.WithLabelValues(topic, strconv.Itoa(int(partition))).Inc()
}

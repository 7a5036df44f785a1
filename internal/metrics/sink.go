package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-dispatch/herald/internal/sink"
)

// Sink implements sink.Observer with Prometheus metrics.
type Sink struct {
	records     prometheus.Counter
	batchSize   prometheus.Histogram
	batchTime   prometheus.Histogram
	rows        *prometheus.CounterVec
	stale       prometheus.Counter
	retries     prometheus.Counter
	deadLetters *prometheus.CounterVec
	commitErrs  prometheus.Counter
}

var _ sink.Observer = (*Sink)(nil)

// NewSink registers the sink's metrics on reg.
func NewSink(reg prometheus.Registerer) *Sink {
	m := &Sink{
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_sink_records_total",
			Help: "Changelog records the sink consumed and committed (tombstones and dead letters included).",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_sink_batch_records",
			Help:    "Records per sink batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9), // 1 .. 65536
		}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_sink_batch_seconds",
			Help:    "Time from a batch being complete to its Kafka offsets being committed, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14), // 1ms .. ~150s
		}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_sink_rows_written_total",
			Help: "Rows the sink inserted or updated, by table.",
		}, []string{"table"}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_sink_stale_rows_total",
			Help: "States not written because dispatch_status already held the same or a newer version (replays, reordering).",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_sink_retries_total",
			Help: "Batch writes (or dead-letter produces) that failed and were retried after a backoff.",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_sink_dead_letters_total",
			Help: "Changelog records the sink sent to herald.dlq, by reason.",
		}, []string{"reason"}),
		commitErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_sink_commit_errors_total",
			Help: "Kafka offset commits that failed after PostgreSQL committed (the batch is replayed, harmlessly).",
		}),
	}
	reg.MustRegister(m.records, m.batchSize, m.batchTime, m.rows, m.stale, m.retries, m.deadLetters, m.commitErrs)
	for _, table := range []string{"dispatch_status", "dispatch_attempts"} {
		m.rows.WithLabelValues(table) // present at 0 from the start
	}
	for _, r := range []string{sink.ReasonUndecodable, sink.ReasonInvalid, sink.ReasonRejected} {
		m.deadLetters.WithLabelValues(r)
	}
	return m
}

// Batch counts a committed batch: its records, the time it took and the
// rows it wrote.
func (m *Sink) Batch(records int, took time.Duration, statusRows, attemptRows, staleRows int64) {
	m.records.Add(float64(records))
	m.batchSize.Observe(float64(records))
	m.batchTime.Observe(took.Seconds())
	m.rows.WithLabelValues("dispatch_status").Add(float64(statusRows))
	m.rows.WithLabelValues("dispatch_attempts").Add(float64(attemptRows))
	m.stale.Add(float64(staleRows))
}

// Retry counts a failed write or dead-letter produce that is retried.
func (m *Sink) Retry() { m.retries.Inc() }

// CommitFailed counts an offset commit that failed.
func (m *Sink) CommitFailed() { m.commitErrs.Inc() }

// DeadLetter counts a record sent to the DLQ.
func (m *Sink) DeadLetter(reason string) { m.deadLetters.WithLabelValues(reason).Inc() }

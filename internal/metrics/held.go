package metrics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-dispatch/herald/contract"
)

// Scanner walks every notification's status (tableview.StateView).
type Scanner interface {
	Scan(ctx context.Context, fn func(contract.Summary)) error
}

// Counter is a Scanner that also keeps the counts a scan would make
// (tableview.StateView.Counts, from the index it keeps as it stores each
// state); Held then reads them instead of scanning.
type Counter interface {
	Counts() (map[contract.Status]int, map[contract.HoldReason]int)
}

// DefaultHeldInterval is how often Held scans the view.
const DefaultHeldInterval = 15 * time.Second

// Held exports how many notifications are in each status, and how many are
// held for each reason, from the view of the dispatcher table.
//
// Why not counters fed by transitions: the counts must be right after a
// restart or a rebalance, and a hold's reason can change without a status
// change (backoff to rate_limit). The view's own counts (Counter) are
// right by construction: they are kept from what the view stores, and
// rebuilt from its local store when it opens, whoever owns the partitions.
// A Scanner without them is scanned: it reads only the start of each
// state (contract.DecodeSummary, under 1 µs a state), so its cost is
// mostly LevelDB's iteration: about 2.6 s of one core per million
// notifications on an idle development machine (BenchmarkScan), several
// times that while the pipeline is busy, and a table keeps a year of
// notifications. Either way it runs in the background every interval
// rather than on each scrape, and herald_view_scan_duration_seconds shows
// what it costs. Every API instance holds the whole view, so every
// instance exports the same numbers: aggregate with max(), not sum().
type Held struct {
	scanner Scanner

	statusDesc, heldDesc, ageDesc, durDesc *prometheus.Desc

	mu       sync.Mutex
	scanned  bool
	status   map[contract.Status]int
	held     map[contract.HoldReason]int
	at       time.Time
	duration time.Duration
}

// HoldReasons lists the hold reasons the gauge always exports (a fresh
// slice each call).
func HoldReasons() []contract.HoldReason {
	return []contract.HoldReason{contract.HoldSchedule, contract.HoldBlackout, contract.HoldBackoff, contract.HoldRateLimit}
}

// NewHeld registers the gauges on reg. Nothing is exported before the first
// Refresh.
func NewHeld(reg prometheus.Registerer, s Scanner) *Held {
	h := &Held{
		scanner: s,
		statusDesc: prometheus.NewDesc("herald_notifications",
			"Notifications in the dispatcher table by status, from the latest scan of the view.", []string{"status"}, nil),
		heldDesc: prometheus.NewDesc("herald_held_notifications",
			"Held notifications (scheduled, deferred, retrying) by hold reason: schedule, blackout, backoff, rate_limit.", []string{"reason"}, nil),
		ageDesc: prometheus.NewDesc("herald_view_scan_timestamp_seconds",
			"When the latest scan of the view finished (Unix seconds).", nil, nil),
		durDesc: prometheus.NewDesc("herald_view_scan_duration_seconds",
			"How long the latest scan of the view took.", nil, nil),
	}
	reg.MustRegister(h)
	return h
}

// Refresh counts the view once (Counter's counts, or a scan) and
// replaces the exported counts.
func (h *Held) Refresh(ctx context.Context) error {
	start := time.Now()
	var status map[contract.Status]int
	var held map[contract.HoldReason]int
	if c, ok := h.scanner.(Counter); ok {
		status, held = c.Counts()
	} else {
		status, held = map[contract.Status]int{}, map[contract.HoldReason]int{}
		err := h.scanner.Scan(ctx, func(s contract.Summary) {
			status[s.Status]++
			if s.Status.Held() {
				held[s.HoldReason]++
			}
		})
		if err != nil {
			return err
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.scanned, h.status, h.held = true, status, held
	h.at, h.duration = time.Now(), time.Since(start)
	return nil
}

// Run refreshes every interval until ctx ends, once ready says the view has
// recovered. A scan that takes long (a big table on a busy machine) spaces
// the next one out to at least four times its duration, so the scan never
// takes more than a fifth of a core.
func (h *Held) Run(ctx context.Context, interval time.Duration, ready func() bool, log *slog.Logger) error {
	if interval <= 0 {
		interval = DefaultHeldInterval
	}
	for {
		wait := interval
		if ready == nil || ready() {
			start := time.Now()
			if err := h.Refresh(ctx); err != nil && ctx.Err() == nil && log != nil {
				log.Warn("held gauge: scan of the view failed", "err", err)
			}
			wait = max(interval, 4*time.Since(start))
		} else {
			wait = min(interval, time.Second)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Describe implements prometheus.Collector.
func (h *Held) Describe(ch chan<- *prometheus.Desc) {
	ch <- h.statusDesc
	ch <- h.heldDesc
	ch <- h.ageDesc
	ch <- h.durDesc
}

// Collect implements prometheus.Collector.
func (h *Held) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.scanned {
		return
	}
	for _, s := range contract.Statuses() {
		ch <- prometheus.MustNewConstMetric(h.statusDesc, prometheus.GaugeValue, float64(h.status[s]), string(s))
	}
	for _, r := range HoldReasons() {
		ch <- prometheus.MustNewConstMetric(h.heldDesc, prometheus.GaugeValue, float64(h.held[r]), string(r))
	}
	ch <- prometheus.MustNewConstMetric(h.ageDesc, prometheus.GaugeValue, float64(h.at.UnixNano())/1e9)
	ch <- prometheus.MustNewConstMetric(h.durDesc, prometheus.GaugeValue, h.duration.Seconds())
}

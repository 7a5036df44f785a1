package loadtest

import (
	"math"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histograms record microseconds from 1 µs to 2 h, to three
// significant digits.
const (
	histMin    = 1
	histMax    = int64(2 * time.Hour / time.Microsecond)
	histDigits = 3
)

// NewHistogram returns an empty latency histogram (microseconds).
func NewHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// RecordDuration adds d to h, clamped to the histogram's range.
func RecordDuration(h *hdrhistogram.Histogram, d time.Duration) {
	us := d.Microseconds()
	h.RecordValue(min(max(us, histMin), histMax))
}

// Latency summarises a histogram.
type Latency struct {
	Count int64         `json:"count"`
	Mean  time.Duration `json:"mean"`
	P50   time.Duration `json:"p50"`
	P95   time.Duration `json:"p95"`
	P99   time.Duration `json:"p99"`
	P999  time.Duration `json:"p999"`
	Max   time.Duration `json:"max"`
}

// Summarize reads the percentiles of h.
func Summarize(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	return Latency{
		Count: h.TotalCount(),
		Mean:  time.Duration(h.Mean() * float64(time.Microsecond)),
		P50:   us(h.ValueAtQuantile(50)),
		P95:   us(h.ValueAtQuantile(95)),
		P99:   us(h.ValueAtQuantile(99)),
		P999:  us(h.ValueAtQuantile(99.9)),
		Max:   us(h.Max()),
	}
}

// Latencies are the two distributions a run measures.
type Latencies struct {
	// EndToEnd is publish to first provider call, for notifications that
	// were not held (no blackout, no not_before, and window_queued ones
	// called before their window opened).
	EndToEnd *hdrhistogram.Histogram
	// Lateness is release instant (window end or not_before) to first
	// provider call, for held notifications (window_queued ones whose
	// window opened before their first call included).
	Lateness *hdrhistogram.Histogram
	// Early counts held notifications called before their release
	// (the checks fail on them); NeverCalled counts valid notifications
	// with no call at all.
	Early, NeverCalled int
}

// Measure computes the latencies of a run from the plan's publish times
// and the provider's first calls.
func Measure(p *Plan, firstCall []int64) Latencies {
	l := Latencies{EndToEnd: NewHistogram(), Lateness: NewHistogram()}
	for i, k := range p.Kinds {
		pub := p.Published[i].Load()
		if k == KindMalformed || pub == 0 {
			continue
		}
		t := firstCall[i]
		if t == 0 {
			l.NeverCalled++
			continue
		}
		switch {
		case k.Held(), k == KindWindowQueued && t >= p.Window[i]+int64(p.W.CutoffTransit):
			late := t - p.Release[i]
			if late < 0 {
				l.Early++
				late = 0
			}
			RecordDuration(l.Lateness, time.Duration(late))
		default:
			RecordDuration(l.EndToEnd, time.Duration(t-pub))
		}
	}
	return l
}

// StatusBehindTarget is issue 15's goal for the status in PostgreSQL behind
// the provider's answer, at p99. The report shows it next to the figure; a
// run does not fail on it.
const StatusBehindTarget = 2 * time.Second

// StatusBehind is how far the status in PostgreSQL trails the provider.
type StatusBehind struct {
	// Latency is, per notification final in PostgreSQL as sent or failed,
	// the time from the provider's last answer for it to its final status
	// being written (dispatch_status.status_synced_at).
	Latency Latency `json:"latency"`
	// AnsweredAfter counts notifications whose final status was written
	// before their last answer (a call still under way when the
	// notification ended, such as one Herald gave up on): not measured.
	AnsweredAfter int `json:"answered_after,omitempty"`
	// Unmeasured counts final sent or failed rows with no answer or no
	// status_synced_at.
	Unmeasured int `json:"unmeasured,omitempty"`
}

// Met reports whether the p99 is within StatusBehindTarget.
func (s StatusBehind) Met() bool { return s.Latency.Count > 0 && s.Latency.P99 <= StatusBehindTarget }

// MeasureStatusBehind computes StatusBehind from the provider's last
// answer per record index and the time each index's final status was
// written (Unix ns; 0: none), for the indexes in final.
func MeasureStatusBehind(answered []int64, final map[int]int64) (StatusBehind, *hdrhistogram.Histogram) {
	h := NewHistogram()
	var s StatusBehind
	for i, synced := range final {
		var ans int64
		if i >= 0 && i < len(answered) {
			ans = answered[i]
		}
		switch {
		case ans == 0 || synced == 0:
			s.Unmeasured++
		case synced < ans:
			s.AnsweredAfter++
		default:
			RecordDuration(h, time.Duration(synced-ans))
		}
	}
	s.Latency = Summarize(h)
	return s, h
}

// Sample is one second of a run, as the monitor saw it.
type Sample struct {
	// At is the time since the first publication.
	At time.Duration `json:"at"`
	// Cumulative counts: records acknowledged by the broker, provider
	// calls, deliveries accepted, notifications final in PostgreSQL.
	Published int64 `json:"published"`
	Calls     int64 `json:"calls"`
	Delivered int64 `json:"delivered"`
	Completed int64 `json:"completed"`
	// Lag is each consumer group's total lag.
	Lag map[string]int64 `json:"lag,omitempty"`
	// CPU is each process's CPU seconds so far, RSS its resident set.
	CPU map[string]float64 `json:"cpu,omitempty"`
	RSS map[string]int64   `json:"rss,omitempty"`
	// SendLimit is each channel's adaptive concurrency limit in the
	// sender, SendCalls its provider calls in flight, summed over the
	// herald processes.
	SendLimit map[string]int64 `json:"send_limit,omitempty"`
	SendCalls map[string]int64 `json:"send_calls,omitempty"`
}

// TotalLag sums the groups' lag, the delay stage's groups excepted: their
// "lag" is mostly wake-ups waiting for their due time in the delay tiers
// (every send's timeout, every hold), not work behind.
func (s Sample) TotalLag() int64 {
	var n int64
	for g, v := range s.Lag {
		if !IsDelayGroup(g) {
			n += max(v, 0)
		}
	}
	return n
}

// IsDelayGroup reports whether a consumer group is the delay stage's.
func IsDelayGroup(g string) bool { return strings.Contains(g, "delay") }

// Rate is a counter's per-second rate.
type Rate struct {
	// Mean is the rate while the counter went from 10% to 90% of its
	// final value (the steady part of the run: no start-up, no tail of
	// held notifications); Peak is the highest over any window of the
	// given width.
	Mean, Peak float64
}

// Rates computes the steady and the peak rate of a cumulative counter.
func Rates(samples []Sample, get func(Sample) int64, width int) Rate {
	if len(samples) < 2 {
		return Rate{}
	}
	r := Rate{Mean: SteadyRate(samples, get, get(samples[len(samples)-1]), 0.1, 0.9)}
	width = max(width, 1)
	for i := width; i < len(samples); i++ {
		dt := (samples[i].At - samples[i-width].At).Seconds()
		if dt <= 0 {
			continue
		}
		r.Peak = math.Max(r.Peak, float64(get(samples[i])-get(samples[i-width]))/dt)
	}
	return r
}

// SteadyRate is the rate at which a cumulative counter went from lo to hi
// of total (fractions), interpolating between samples.
func SteadyRate(samples []Sample, get func(Sample) int64, total int64, lo, hi float64) float64 {
	at := func(frac float64) (time.Duration, bool) {
		target := float64(total) * frac
		for i, s := range samples {
			v := float64(get(s))
			if v < target {
				continue
			}
			if i == 0 {
				return s.At, true
			}
			pv := float64(get(samples[i-1]))
			f := (target - pv) / (v - pv)
			return samples[i-1].At + time.Duration(f*float64(s.At-samples[i-1].At)), true
		}
		return 0, false
	}
	t0, ok0 := at(lo)
	t1, ok1 := at(hi)
	if !ok0 || !ok1 || t1 <= t0 {
		return 0
	}
	return float64(total) * (hi - lo) / (t1 - t0).Seconds()
}

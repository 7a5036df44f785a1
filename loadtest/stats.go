package loadtest

import (
	"math"
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
	// were not held (no blackout, no not_before).
	EndToEnd *hdrhistogram.Histogram
	// Lateness is release instant (window end or not_before) to first
	// provider call, for held notifications.
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
		case k.Held():
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
}

// TotalLag sums the groups' lag.
func (s Sample) TotalLag() int64 {
	var n int64
	for _, v := range s.Lag {
		n += max(v, 0)
	}
	return n
}

// Rate is a per-second rate over a window of samples.
type Rate struct {
	// Mean is over the active span (first to last change), Peak the
	// highest over any window of the given width.
	Mean, Peak float64
}

// Rates computes the mean and the peak rate of a cumulative counter. The
// mean runs from the first sample where the counter moved to the first
// where it reached its final value; the peak is the best window of width
// samples.
func Rates(samples []Sample, get func(Sample) int64, width int) Rate {
	if len(samples) < 2 {
		return Rate{}
	}
	final := get(samples[len(samples)-1])
	start, end := -1, -1
	for i, s := range samples {
		v := get(s)
		if start < 0 && v > get(samples[0]) {
			start = max(i-1, 0)
		}
		if v == final {
			end = i
			break
		}
	}
	var r Rate
	if start >= 0 && end > start {
		dt := (samples[end].At - samples[start].At).Seconds()
		if dt > 0 {
			r.Mean = float64(get(samples[end])-get(samples[start])) / dt
		}
	}
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

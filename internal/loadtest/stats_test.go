package loadtest

import (
	"math"
	"testing"
	"time"
)

func TestSummarizePercentiles(t *testing.T) {
	h := NewHistogram()
	// 1..1000 ms, one each.
	for i := 1; i <= 1000; i++ {
		RecordDuration(h, time.Duration(i)*time.Millisecond)
	}
	l := Summarize(h)
	near := func(name string, got, want time.Duration) {
		t.Helper()
		if math.Abs(float64(got-want)) > 0.002*float64(want) { // three significant digits
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	if l.Count != 1000 {
		t.Errorf("count %d", l.Count)
	}
	near("p50", l.P50, 500*time.Millisecond)
	near("p95", l.P95, 950*time.Millisecond)
	near("p99", l.P99, 990*time.Millisecond)
	near("max", l.Max, 1000*time.Millisecond)
	near("mean", l.Mean, 500500*time.Microsecond)
	if (Summarize(NewHistogram()) != Latency{}) {
		t.Error("empty histogram has figures")
	}
}

func TestMeasureSplitsHeldFromUnheld(t *testing.T) {
	p, o := world(t)
	l := Measure(p, o.FirstCall)
	held := p.Count(KindBlackout) + p.Count(KindNotBefore)
	normal := p.Valid() - held // window_queued ones are called before their window opens
	if l.EndToEnd.TotalCount() != int64(normal) || l.Lateness.TotalCount() != int64(held) {
		t.Fatalf("end-to-end %d (want %d), lateness %d (want %d)", l.EndToEnd.TotalCount(), normal, l.Lateness.TotalCount(), held)
	}
	// world calls unheld ones 20 ms after publication, held ones 5 ms late.
	// (to the histogram's three significant digits).
	if e := Summarize(l.EndToEnd); e.P50 < 20*time.Millisecond || e.Max > 20040*time.Microsecond {
		t.Errorf("end-to-end %+v, want 20 ms", e)
	}
	if e := Summarize(l.Lateness); e.P99 < 5*time.Millisecond || e.P99 > 5010*time.Microsecond {
		t.Errorf("lateness %+v, want 5 ms", e)
	}
	o.FirstCall[firstIndex(p, KindNotBefore)] = p.Release[firstIndex(p, KindNotBefore)] - 1
	o.FirstCall[firstIndex(p, KindNormal)] = 0
	l = Measure(p, o.FirstCall)
	if l.Early != 1 || l.NeverCalled != 1 {
		t.Errorf("early %d never called %d, want 1 and 1", l.Early, l.NeverCalled)
	}
	// A window_queued notification held to its window's end is late from
	// the end, not from its publication.
	i := firstIndex(p, KindWindowQueued)
	o.FirstCall[i] = p.Release[i] + int64(7*time.Millisecond)
	l = Measure(p, o.FirstCall)
	if m := Summarize(l.Lateness).Max; l.Lateness.TotalCount() != int64(held)+1 || m < 7*time.Millisecond {
		t.Errorf("lateness %d values up to %s, want %d with the window_queued one 7 ms late", l.Lateness.TotalCount(), m, held+1)
	}
}

func samplesOf(vals ...int64) []Sample {
	out := make([]Sample, len(vals))
	for i, v := range vals {
		out[i] = Sample{At: time.Duration(i) * time.Second, Completed: v}
	}
	return out
}

func TestRates(t *testing.T) {
	get := func(s Sample) int64 { return s.Completed }
	// Idle 2 s, then 100/s for 4 s, then a burst of 300, then flat.
	ss := samplesOf(0, 0, 0, 100, 200, 300, 400, 700, 700, 700)
	r := Rates(ss, get, 1)
	if r.Peak != 300 {
		t.Errorf("peak %g, want 300", r.Peak)
	}
	// 10% (70) at t=2.7, 90% (630) at t=6.77: 560 in 4.0667 s.
	if math.Abs(r.Mean-560/(6+230.0/300-2.7)) > 1e-6 {
		t.Errorf("mean %g, want %g", r.Mean, 560/(6+230.0/300-2.7))
	}
	if r := Rates(ss, get, 2); r.Peak != 200 {
		t.Errorf("2-sample peak %g, want 200", r.Peak)
	}
}

func TestSteadyRate(t *testing.T) {
	get := func(s Sample) int64 { return s.Completed }
	// 1000 notifications: 100/s from t=1 to t=10, then a held tail of 100
	// that only completes at t=60.
	var vals []int64
	for i := 0; i <= 10; i++ {
		vals = append(vals, int64(max(0, i-1))*100)
	}
	for len(vals) < 60 {
		vals = append(vals, 900)
	}
	vals = append(vals, 1000)
	got := SteadyRate(samplesOf(vals...), get, 1000, 0.1, 0.9)
	if math.Abs(got-100) > 1e-9 {
		t.Fatalf("steady %g, want 100 (the tail excluded)", got)
	}
	if SteadyRate(samplesOf(0, 10), get, 1000, 0.1, 0.9) != 0 {
		t.Fatal("unfinished run has a steady rate")
	}
}

func TestTotalLagLeavesOutDelayGroups(t *testing.T) {
	s := Sample{Lag: map[string]int64{"herald-dispatcher": 10, "herald-sink": 5, "herald-delay": 1000, "herald-sender": -1}}
	if got := s.TotalLag(); got != 15 {
		t.Fatalf("total lag %d, want 15 (delay group and negative lag left out)", got)
	}
}

func TestTo90IgnoresTheTailAndSinkBursts(t *testing.T) {
	// 1000 notifications: nothing final for 9 s (the sink lagging), then
	// 900 at once at t=10, the held tail at t=60.
	vals := make([]int64, 61)
	for i := 10; i < 60; i++ {
		vals[i] = 900
	}
	vals[60] = 1000
	th := throughputOf(samplesOf(vals...), 1000)
	// 90% final after 10 s (interpolated between t=9 and t=10).
	if math.Abs(th.To90-90) > 1e-9 {
		t.Fatalf("to-90 rate %g, want 90", th.To90)
	}
}

// The status in PostgreSQL behind the answer: measured from the last
// answer to the status write; answers after the write and rows without an
// answer or a write time are counted apart, not measured.
func TestMeasureStatusBehind(t *testing.T) {
	base := time.Now().UnixNano()
	answered := []int64{base, base, base, 0, base + int64(time.Second), base}
	final := map[int]int64{
		0: base + int64(100*time.Millisecond),
		1: base + int64(3*time.Second),
		2: base + int64(500*time.Millisecond),
		3: base,                               // never answered
		4: base + int64(500*time.Millisecond), // answered after its final status
		5: 0,                                  // no write time
	}
	sb, h := MeasureStatusBehind(answered, final)
	if sb.Latency.Count != 3 || h.TotalCount() != 3 || sb.AnsweredAfter != 1 || sb.Unmeasured != 2 {
		t.Fatalf("%+v", sb)
	}
	if sb.Latency.Max < 2990*time.Millisecond || sb.Latency.Max > 3010*time.Millisecond {
		t.Errorf("max %s, want 3s", sb.Latency.Max)
	}
	if sb.Met() {
		t.Errorf("p99 %s counted as within the %s target", sb.Latency.P99, StatusBehindTarget)
	}
	delete(final, 1)
	if sb, _ = MeasureStatusBehind(answered, final); !sb.Met() || sb.Latency.P99 > 510*time.Millisecond {
		t.Errorf("p99 %s: want 500 ms, met", sb.Latency.P99)
	}
	if (StatusBehind{}).Met() {
		t.Error("nothing measured counts as met")
	}
}

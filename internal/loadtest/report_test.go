package loadtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A report of a Herald run and a baseline run renders its tables, the
// ratio and the charts.
func TestReportWrite(t *testing.T) {
	p, o := world(t)
	mk := func(name string, conc int, perSec int64) *Result {
		r := &Result{Name: name, Concurrency: conc, Valid: p.Valid(), N: p.W.N, Records: p.Records(),
			Kinds: map[string]int{"normal": p.Count(KindNormal)}, Complete: true,
			Procs: map[string]ProcUsage{"postgres": {CPU: 1}, "herald-1": {CPU: 4, PeakRSS: 1 << 30}}}
		for i := 0; i <= 30; i++ {
			done := min(int64(p.Valid()), int64(i)*perSec)
			r.Samples = append(r.Samples, Sample{At: time.Duration(i) * time.Second, Published: int64(p.Records()),
				Calls: done, Delivered: done, Completed: done, Lag: map[string]int64{"herald-dispatcher": int64(p.Valid()) - done},
				CPU: map[string]float64{"herald-1": float64(i) / 2}})
		}
		r.Checks = Check(p, o)
		l := Measure(p, o.FirstCall)
		r.endToEndHist, r.latenessHist = l.EndToEnd, l.Lateness
		r.EndToEnd, r.Lateness = Summarize(l.EndToEnd), Summarize(l.Lateness)
		r.Throughput = throughputOf(r.Samples, int64(p.Valid()))
		return r
	}
	herald := mk("p12-i1", 0, 200)
	herald.Partitions, herald.Instances = 12, 1
	herald.StatusBehind = &StatusBehind{Latency: Latency{Count: 90, P50: 300 * time.Millisecond, P99: 2500 * time.Millisecond, Max: 3 * time.Second}, AnsweredAfter: 2}
	rep := &Report{Command: "herald-loadtest", Generated: time.Now(), Host: ThisHost(),
		Runs: []*Result{herald}, Baselines: []*Result{mk("baseline-c180", 180, 100)}}
	dir := t.TempDir()
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Overall: **PASS**", "| baseline-c180 |", "| 2.0 |", "exactly once at the provider", "p12-i1/latency.svg"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, f := range []string{"summary.json", "p12-i1/throughput.svg", "p12-i1/throughput.png", "p12-i1/progress.svg", "p12-i1/lag.svg",
		"p12-i1/latency.svg", "p12-i1/cpu.svg", "baseline-c180/latency.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s missing or empty: %v", f, err)
		}
	}
	for _, want := range []string{"provider answer→final status in PostgreSQL, sent or failed (90): p50 300 ms  p99 2500 ms  max 3000 ms  (target p99 ≤ 2s: missed); not measured: 2 answered after"} {
		if !strings.Contains(string(md), want) || !strings.Contains(rep.Summary(), want) {
			t.Errorf("report.md or the summary lacks %q", want)
		}
	}
	if !strings.Contains(rep.Summary(), "ratio 2.0×") {
		t.Errorf("summary lacks the ratio:\n%s", rep.Summary())
	}
}

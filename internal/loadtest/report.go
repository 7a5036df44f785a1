package loadtest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// Report is everything one `herald-loadtest` invocation measured.
type Report struct {
	Command   string    `json:"command"`
	Generated time.Time `json:"generated"`
	Host      Host      `json:"host"`
	// Runs are Herald's runs (one, or one per sweep point).
	Runs []*Result `json:"runs"`
	// Baselines are the row-lock baseline's runs.
	Baselines      []*Result       `json:"baselines,omitempty"`
	Recommendation *Recommendation `json:"recommendation,omitempty"`
}

// Host describes the machine.
type Host struct {
	CPUs     int    `json:"cpus"`
	MemTotal int64  `json:"mem_total_bytes"`
	Go       string `json:"go"`
	Model    string `json:"cpu_model,omitempty"`
}

// ThisHost reads the machine's description.
func ThisHost() Host {
	h := Host{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if mi, err := fs.Meminfo(); err == nil && mi.MemTotal != nil {
			h.MemTotal = int64(*mi.MemTotal) * 1024
		}
		if ci, err := fs.CPUInfo(); err == nil && len(ci) > 0 {
			h.Model = ci[0].ModelName
		}
	}
	return h
}

// Passed reports whether every run passed.
func (r *Report) Passed() bool {
	for _, x := range append(append([]*Result(nil), r.Runs...), r.Baselines...) {
		if !x.Passed() {
			return false
		}
	}
	return true
}

// Write writes report.md, summary.json and the charts into dir.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	all := append(append([]*Result(nil), r.Runs...), r.Baselines...)
	for _, x := range all {
		cd := filepath.Join(dir, x.Name)
		if err := os.MkdirAll(cd, 0o755); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if err := writeCharts(cd, x); err != nil {
			return err
		}
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), js, 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.Markdown()), 0o644)
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "–"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < 10*time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(100 * time.Millisecond).String()
}

func passMark(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// Summary is the terminal's closing text: the figures and the checks.
func (r *Report) Summary() string {
	var b strings.Builder
	for _, x := range r.Runs {
		writeRunSummary(&b, x)
	}
	for _, x := range r.Baselines {
		writeRunSummary(&b, x)
	}
	if cmp := r.comparison(); cmp != "" {
		b.WriteString(cmp)
	}
	b.WriteString(HistoryComparison(r.Runs))
	if r.Recommendation != nil {
		b.WriteString("\nRecommendation for " + r.Recommendation.Target.String() + ":\n")
		rc := r.Recommendation
		fmt.Fprintf(&b, "  partitions %d, instances %d, sender concurrency %d per process\n",
			rc.Partitions, rc.Instances, rc.ConcurrencyPerProcess)
		for _, s := range rc.Steps {
			b.WriteString("  - " + s + "\n")
		}
	}
	fmt.Fprintf(&b, "\nOverall: %s\n", passMark(r.Passed()))
	return b.String()
}

func writeRunSummary(b *strings.Builder, x *Result) {
	fmt.Fprintf(b, "\n== %s: %s ==\n", x.Name, passMark(x.Passed()))
	fmt.Fprintf(b, "  workload     %d records (%d valid: %d normal, %d blackout, %d not_before, %d window_queued, %d expiring, %d slow_provider; %d malformed; %d re-published duplicates)\n",
		x.Records, x.Valid, x.Kinds["normal"], x.Kinds["blackout"], x.Kinds["not_before"], x.Kinds["window_queued"],
		x.Kinds["expiring"], x.Kinds["slow_provider"], x.Kinds["malformed"], x.Duplicates)
	if x.Partitions > 0 {
		fmt.Fprintf(b, "  pipeline     %d partitions, %d herald process(es), sender concurrency %s\n", x.Partitions, x.Instances, concLabel(x.Concurrency))
	} else {
		fmt.Fprintf(b, "  baseline     row-lock design, %d concurrent sends\n", x.Concurrency)
	}
	fmt.Fprintf(b, "  provider     %s\n", x.Provider)
	fmt.Fprintf(b, "  elapsed      %s to all final (publish took %s)%s\n", x.Elapsed.Round(100*time.Millisecond),
		x.PublishTook.Round(100*time.Millisecond), map[bool]string{false: " — INCOMPLETE", true: ""}[x.Complete])
	t := x.Throughput
	fmt.Fprintf(b, "  throughput   in %.0f records/s (peak %.0f)  out %.0f calls/s (peak %.0f)  delivered %.0f/s  completed %.0f/s (90%% final after %s)\n",
		t.In.Mean, t.In.Peak, t.Out.Mean, t.Out.Peak, t.Delivered.Mean, t.To90, to90Time(x))
	e := x.EndToEnd
	fmt.Fprintf(b, "  latency      publish→provider call, not held (%d): p50 %s  p95 %s  p99 %s  max %s\n",
		e.Count, ms(e.P50), ms(e.P95), ms(e.P99), ms(e.Max))
	l := x.Lateness
	fmt.Fprintf(b, "  lateness     release→provider call, held (%d): p50 %s  p95 %s  p99 %s  max %s\n",
		l.Count, ms(l.P50), ms(l.P95), ms(l.P99), ms(l.Max))
	if line := sendLimitLine(x.Samples); line != "" {
		fmt.Fprintf(b, "  send limit   %s (adaptive concurrency, all processes)\n", line)
	}
	if sb := x.StatusBehind; sb != nil {
		fmt.Fprintf(b, "  status lag   %s\n", statusBehindLine(sb))
	} else if x.Partitions > 0 {
		b.WriteString("  status lag   not measured: dispatch_status has no status_synced_at (a herald binary from before migration 00005)\n")
	}
	if x.Partitions > 0 {
		fmt.Fprintf(b, "  peak lag     %d records behind (each group's peak: %s; delay groups hold wake-ups until due)\n", x.PeakLag, groupLags(x.PeakLagByGroup))
	}
	for _, name := range sortedKeys(x.Procs) {
		u := x.Procs[name]
		fmt.Fprintf(b, "  process      %-28s cpu %7.1f s  peak rss %s", name, u.CPU, mib(u.PeakRSS))
		if before := x.CPUBefore[name]; before >= 1 {
			fmt.Fprintf(b, "  (cpu %.1f s of it before the first record)", before)
		}
		b.WriteString("\n")
	}
	writeHistorySummary(b, x)
	if bs := x.Baseline; bs != nil {
		fmt.Fprintf(b, "  baseline     %d claims (%d rows), %d sends, %d stale results, %d rescued\n",
			bs.Claims, bs.Claimed, bs.Sends, bs.Stale, bs.Rescued)
	}
	for _, c := range x.Checks {
		fmt.Fprintf(b, "  check %s  %s: %s\n", passMark(c.Pass), c.Name, c.Detail)
		if !c.Pass {
			for _, ex := range c.Examples {
				fmt.Fprintf(b, "              %s\n", ex)
			}
		}
	}
	for _, e := range x.Errors {
		fmt.Fprintf(b, "  error        %s\n", e)
	}
}

// statusBehindLine is the status in PostgreSQL behind the provider's
// answer, with the target.
func statusBehindLine(sb *StatusBehind) string {
	l := sb.Latency
	verdict := "missed"
	if sb.Met() {
		verdict = "met"
	}
	line := fmt.Sprintf("provider answer→final status in PostgreSQL, sent or failed (%d): p50 %s  p99 %s  max %s  (target p99 ≤ %s: %s)",
		l.Count, ms(l.P50), ms(l.P99), ms(l.Max), StatusBehindTarget, verdict)
	if sb.AnsweredAfter > 0 || sb.Unmeasured > 0 {
		line += fmt.Sprintf("; not measured: %d answered after their final status, %d without an answer or a write time", sb.AnsweredAfter, sb.Unmeasured)
	}
	return line
}

func concLabel(c int) string {
	if c == 0 {
		return "default"
	}
	return fmt.Sprint(c)
}

func groupLags(m map[string]int64) string {
	var parts []string
	for _, g := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", g, m[g]))
	}
	return strings.Join(parts, ", ")
}

// comparison is Herald against the baselines: steady completion rates and
// their ratios, measured in this invocation.
func (r *Report) comparison() string {
	if len(r.Runs) == 0 || len(r.Baselines) == 0 {
		return ""
	}
	best := r.bestRun()
	var b strings.Builder
	fmt.Fprintf(&b, "\nHerald (%s) against the row-lock baseline, same provider, same machine:\n", best.Name)
	hc, hpg := cpuPerNotification(best)
	for _, bl := range r.Baselines {
		ratio := 0.0
		if bl.Throughput.To90 > 0 {
			ratio = best.Throughput.To90 / bl.Throughput.To90
		}
		bc, bpg := cpuPerNotification(bl)
		fmt.Fprintf(&b, "  %-16s %6.0f/s vs Herald %6.0f/s: ratio %.1f×; p99 %s vs %s; CPU/notification %.2f vs %.2f ms (PostgreSQL %.2f vs %.2f ms)\n",
			bl.Name, bl.Throughput.To90, best.Throughput.To90, ratio, ms(bl.EndToEnd.P99), ms(best.EndToEnd.P99),
			bc, hc, bpg, hpg)
	}
	return b.String()
}

// bestRun is Herald's run with the highest completion rate.
func (r *Report) bestRun() *Result {
	best := r.Runs[0]
	for _, x := range r.Runs {
		if x.Throughput.To90 > best.Throughput.To90 {
			best = x
		}
	}
	return best
}

// cpuPerNotification is the CPU milliseconds per valid notification of
// every process of a run, and of PostgreSQL alone.
func cpuPerNotification(x *Result) (all, postgres float64) {
	n := float64(max(x.Valid, 1))
	for name, u := range x.Procs {
		all += u.CPU
		if name == "postgres" {
			postgres = u.CPU
		}
	}
	return 1000 * all / n, 1000 * postgres / n
}

// Markdown renders the report.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Herald load test\n\n")
	fmt.Fprintf(&b, "Generated %s on %d CPUs (%s), %s RAM, %s. Command:\n\n```\n%s\n```\n\n",
		r.Generated.Format(time.RFC3339), r.Host.CPUs, r.Host.Model, mib(r.Host.MemTotal), r.Host.Go, r.Command)
	fmt.Fprintf(&b, "Overall: **%s**\n\n", passMark(r.Passed()))

	if len(r.Runs) > 1 {
		b.WriteString("## Capacity sweep\n\n")
		b.WriteString("| partitions | instances | completed/s (to 90%) | delivered/s | peak calls/s | p50 | p99 | status in PostgreSQL behind the answer, p99 | peak lag | herald CPU s | CPU ms/notification | peak RSS | checks |\n")
		b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, x := range r.Runs {
			cpu, rss := x.HeraldCPU()
			behind := "–"
			if x.StatusBehind != nil {
				behind = ms(x.StatusBehind.Latency.P99)
			}
			fmt.Fprintf(&b, "| %d | %d | %.0f | %.0f | %.0f | %s | %s | %s | %d | %.1f | %.2f | %s | %s |\n",
				x.Partitions, x.Instances, x.Throughput.To90, x.Throughput.Delivered.Mean, x.Throughput.Out.Peak, ms(x.EndToEnd.P50),
				ms(x.EndToEnd.P99), behind, x.PeakLag, cpu, 1000*cpu/float64(max(x.Valid, 1)), mib(rss), passMark(x.Passed()))
		}
		b.WriteString("\n")
	}
	if rc := r.Recommendation; rc != nil {
		fmt.Fprintf(&b, "## Recommendation for %s\n\n", rc.Target)
		fmt.Fprintf(&b, "**%d partitions, %d instances, sender concurrency %d per process.**\n\n", rc.Partitions, rc.Instances, rc.ConcurrencyPerProcess)
		for _, s := range rc.Steps {
			b.WriteString("1. " + s + "\n")
		}
		b.WriteString("\n")
	}
	if cmp := r.comparison(); cmp != "" {
		b.WriteString("## Herald against the row-lock baseline\n\n")
		b.WriteString("| run | notifications | concurrency | completed/s (to 90%) | Herald ÷ run | p50 | p99 | CPU ms/notification (all processes) | PostgreSQL CPU ms/notification | checks |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		best := r.bestRun()
		for _, x := range append([]*Result{best}, r.Baselines...) {
			ratio := 0.0
			if x.Throughput.To90 > 0 {
				ratio = best.Throughput.To90 / x.Throughput.To90
			}
			name := x.Name
			if x == best {
				name = "Herald " + x.Name
			}
			all, pg := cpuPerNotification(x)
			fmt.Fprintf(&b, "| %s | %d | %s | %.0f | %.1f | %s | %s | %.2f | %.2f | %s |\n", name, x.Valid, concLabel(x.Concurrency),
				x.Throughput.To90, ratio, ms(x.EndToEnd.P50), ms(x.EndToEnd.P99), all, pg, passMark(x.Passed()))
		}
		b.WriteString("\nCompleted/s: 90% of the valid notifications divided by the time from the first record until they were final in PostgreSQL (start-up included, the held notifications' wait at the end excluded). Both designs call the same mock provider through the same webhook client, on the same machine, in the same invocation.\n\n")
	}
	for _, x := range append(append([]*Result(nil), r.Runs...), r.Baselines...) {
		writeRunMarkdown(&b, x)
	}
	return b.String()
}

func writeRunMarkdown(b *strings.Builder, x *Result) {
	fmt.Fprintf(b, "## Run %s: %s\n\n", x.Name, passMark(x.Passed()))
	b.WriteString("```\n")
	var s strings.Builder
	writeRunSummary(&s, x)
	b.WriteString(strings.TrimLeft(s.String(), "\n"))
	b.WriteString("```\n\n")
	b.WriteString("| check | result | detail |\n|---|---|---|\n")
	for _, c := range x.Checks {
		detail := c.Detail
		if !c.Pass && len(c.Examples) > 0 {
			detail += " — e.g. " + strings.Join(c.Examples, "; ")
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", c.Name, passMark(c.Pass), strings.ReplaceAll(detail, "|", "/"))
	}
	b.WriteString("\n")
	fmt.Fprintf(b, "![progress](%s/%s)\n\n![throughput](%s/%s)\n\n![consumer lag](%s/%s)\n\n![latency](%s/%s)\n\n![cpu](%s/%s)\n\n",
		x.Name, chartProgress, x.Name, chartThroughput, x.Name, chartLag, x.Name, chartLatency, x.Name, chartCPU)
}

// to90Time is when 90% of the valid notifications were final.
func to90Time(x *Result) string {
	if x.Throughput.To90 <= 0 {
		return "–"
	}
	return time.Duration(0.9 * float64(x.Valid) / x.Throughput.To90 * float64(time.Second)).Round(100 * time.Millisecond).String()
}

package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Summary renders the runs as a Markdown table, then each run's faults,
// failed assertions and offending ids.
func Summary(w io.Writer, results []*Result) {
	fmt.Fprintln(w, "| run | instances | provider | notifications | faults | lost | duplicated (extra deliveries) | calls in flight at kills | PG not final / differs | all-final after last fault | verdict |")
	fmt.Fprintln(w, "|-----|-----------|----------|---------------|--------|------|-------------------------------|--------------------------|------------------------|----------------------------|---------|")
	for _, r := range results {
		v := r.Verdict
		mode := "honours key"
		if !r.Honour {
			mode = "ignores key"
		}
		final := "not reached (waited " + r.Waited.Round(time.Second).String() + ")"
		if r.AllFinal {
			final = r.ToAllFinal.Round(100 * time.Millisecond).String()
		}
		verdict := "PASS"
		if !r.Passed() {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "| %s | %d | %s | %d | %d | %d | %d (%d) | %d | %d / %d | %s | %s |\n",
			r.Name, r.Instances, mode, v.Valid, len(r.Faults), len(v.Lost), len(v.Duplicated), v.Extra,
			v.InFlightAtKills, len(v.NotFinal), len(v.Differs), final, verdict)
	}
	for _, r := range results {
		fmt.Fprintf(w, "\n### %s\n\n", r.Name)
		fmt.Fprintf(w, "Started %s, %d provider calls (%d answered from an earlier delivery by key), session timeout %s, data and logs in %s.\n\n",
			r.Started.UTC().Format(time.RFC3339), r.Calls, r.Replays, r.SessionTimeout, r.Dir)
		if len(r.Outcomes) > 0 {
			var parts []string
			for _, o := range []string{OutcomeDelivered, OutcomeReplay, OutcomeFailed, OutcomeOutage, OutcomeAbandoned, OutcomeBad} {
				if n := r.Outcomes[o]; n > 0 {
					parts = append(parts, fmt.Sprintf("%d %s", n, o))
				}
			}
			fmt.Fprintf(w, "Provider calls by outcome: %s.\n\n", strings.Join(parts, ", "))
		}
		if r.Load != "" {
			fmt.Fprintf(w, "Load: %s.\n\n", r.Load)
		}
		fmt.Fprintln(w, "Faults (t+ is from the first publication):")
		for _, f := range r.Faults {
			fmt.Fprintf(w, "- %s, %d provider calls open", f.String(r.Started), f.OpenCalls)
			if f.Target() != "" {
				fmt.Fprintf(w, " (%d from %s)", f.TargetOpen, f.Target())
			}
			fmt.Fprintln(w)
		}
		for _, u := range r.Unexpected {
			fmt.Fprintf(w, "- unexpected exit: %s\n", u)
		}
		if len(r.EndState) > 0 {
			fmt.Fprintf(w, "\nWhen the run stopped waiting: %s.\n", strings.Join(r.EndState, "; "))
		}
		if len(r.LogSignals) > 0 {
			fmt.Fprintln(w, "\nInstances' log lines:")
			for _, s := range logSignals {
				if n := r.LogSignals[s]; n > 0 {
					fmt.Fprintf(w, "- %q: %d\n", s, n)
				}
			}
		}
		v := r.Verdict
		if v.RecallBound > 0 {
			fmt.Fprintf(w, "\nWithout idempotency, %d notifications were delivered more than once: at most %d allowed (the send concurrency times the instances hit by kills) and at most the %d calls in flight at the kills.\n",
				len(v.Duplicated), v.RecallBound, v.InFlightAtKills)
		}
		fmt.Fprintf(w, "\n%d valid: %d delivered once, %d legitimately failed, %d lost, %d duplicated (%d of them with no call in flight at a kill), %d not final, %d differ.\n",
			v.Valid, v.DeliveredOnce, v.Failed, len(v.Lost), len(v.Duplicated), len(v.UnexplainedDuplicates), len(v.NotFinal), len(v.Differs))
		if len(v.Failures) > 0 {
			fmt.Fprintln(w, "\nFailed assertions:")
			for _, f := range v.Failures {
				fmt.Fprintf(w, "- %s\n", f)
			}
		}
		if len(v.Details) > 0 {
			fmt.Fprintln(w, "\nOffending ids (and the tail, the ids last to be final):\n\n```")
			for _, d := range v.Details {
				fmt.Fprintln(w, d)
			}
			fmt.Fprintln(w, "```")
		}
	}
}

// WriteReport writes the summary to dir/summary.md and the results to
// dir/results.json, and returns the summary's path.
func WriteReport(dir string, results []*Result) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	var b strings.Builder
	Summary(&b, results)
	path := filepath.Join(dir, "summary.md")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	js, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), js, 0o644); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	return path, nil
}

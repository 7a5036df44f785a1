package loadtest

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/topology"
)

// StoreBytes is one herald process's local storage on disk after the
// run: its processors' stores (the dispatcher table's partitions it owns,
// and the other stages' state) and its view of the whole table.
type StoreBytes struct {
	Processors int64 `json:"processors"`
	View       int64 `json:"view"`
}

// Lookups per kind of id GET /v1/messages/{id} is measured on.
const lookupsPerKind = 1000

// seedHistory writes rc.History into the changelog and moves the groups
// that follow it to its end, before any herald starts.
func (s *runState) seedHistory(ctx context.Context) error {
	h := s.rc.History
	h.Partitions = s.rc.Partitions
	tc := topology.Config{Brokers: s.brokers, Partitions: s.rc.Partitions}
	s.logf("seeding %d final states (%s of history) into %s", h.States, h.WithDefaults().Span, topology.TableDispatcher)
	st, err := h.Seed(ctx, tc, func(n int) { s.logf("history: %d of %d states written", n, h.States) })
	if err != nil {
		return err
	}
	if err := CommitTableEnd(ctx, tc, TableFollowers()...); err != nil {
		return err
	}
	s.history = &st
	s.logf("history seeded: %d remembered, %d shed final, %d MB of values, in %s", st.Remembered, st.Final,
		st.ValueBytes>>20, st.Took.Round(time.Second))
	return nil
}

// measureLookups times GET /v1/messages/{id} on the first herald process
// (one request at a time) for burst ids and, with a history, for
// remembered and shed history ids, spread over the whole of each.
func (s *runState) measureLookups(ctx context.Context) (map[string]Latency, error) {
	if len(s.apiURLs) == 0 {
		return nil, nil
	}
	base, dataDir := s.apiURLs[0], filepath.Join(s.dir, "herald-1")
	tok, err := os.ReadFile(filepath.Join(dataDir, "api-token"))
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("lookups: %w", err)
	}
	token := strings.TrimSpace(string(tok))
	ids := map[string][]string{}
	valid := []int{}
	for i, k := range s.plan.Kinds {
		if k != KindMalformed {
			valid = append(valid, i)
		}
	}
	for j := range min(lookupsPerKind, len(valid)) {
		ids["burst"] = append(ids["burst"], s.plan.ID(valid[j*len(valid)/min(lookupsPerKind, len(valid))]))
	}
	if hs := s.history; hs != nil {
		h := s.rc.History
		h.Partitions = s.rc.Partitions
		h = h.WithDefaults()
		for j := range min(lookupsPerKind, hs.Remembered) {
			ids["history-remembered"] = append(ids["history-remembered"], h.ID(j*hs.Remembered/min(lookupsPerKind, hs.Remembered)))
		}
		for j := range min(lookupsPerKind, hs.Final) {
			ids["history-final"] = append(ids["history-final"], h.ID(hs.Remembered+j*hs.Final/min(lookupsPerKind, hs.Final)))
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	out := map[string]Latency{}
	for kind, list := range ids {
		hist := hdrhistogram.New(1, 60_000_000, 3)
		for _, id := range list {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/messages/"+id, nil)
			if err != nil {
				return nil, err
			}
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				return nil, fmt.Errorf("lookups: GET %s: %w", id, err)
			}
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr != nil {
				return nil, fmt.Errorf("lookups: GET %s: %w", id, rerr)
			}
			took := time.Since(start)
			if resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("lookups: GET /v1/messages/%s: %d %s", id, resp.StatusCode, string(body))
			}
			if !strings.Contains(string(body), `"`+string(contract.StatusSent)+`"`) && kind != "burst" {
				return nil, fmt.Errorf("lookups: GET /v1/messages/%s: not sent: %s", id, string(body))
			}
			_ = hist.RecordValue(max(1, took.Microseconds()))
		}
		out[kind] = Summarize(hist)
	}
	return out, nil
}

// measureDisk reads, once every process has stopped, the changelog's
// bytes in the broker's data dir and each herald's local storage.
func (s *runState) measureDisk() {
	if s.broker != nil {
		parts := filepath.Join(s.dir, "broker", "kafka", "partitions") // herald broker keeps kfake in <data-dir>/kafka
		entries, _ := os.ReadDir(parts)
		var n int64
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), string(topology.TableDispatcher)+"-") {
				n += dirBytes(filepath.Join(parts, e.Name()))
			}
		}
		s.res.ChangelogBytes = n
	}
	s.res.Stores = map[string]StoreBytes{}
	for _, c := range s.heralds {
		goka := filepath.Join(s.dir, c.name, "goka")
		view := dirBytes(filepath.Join(goka, "views"))
		s.res.Stores[c.name] = StoreBytes{Processors: dirBytes(goka) - view, View: view}
	}
}

// dirBytes is the size of the files under dir (0 if it does not exist).
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			n += info.Size()
		}
		return nil
	})
	return n
}

// writeHistorySummary writes what a run measured of the table: the
// history under it, readiness, lookups and sizes on disk.
func writeHistorySummary(b *strings.Builder, x *Result) {
	if h := x.History; h != nil {
		fmt.Fprintf(b, "  history      %d final states seeded in %s: %d remembered, %d shed final, %s of values\n",
			h.States, h.Took.Round(time.Second), h.Remembered, h.Final, mib(h.ValueBytes))
	} else if x.Partitions > 0 {
		b.WriteString("  history      none (an empty table)\n")
	}
	for _, name := range sortedKeys(x.Ready) {
		fmt.Fprintf(b, "  ready        %-28s %s after its start\n", name, x.Ready[name].Round(100*time.Millisecond))
	}
	for _, kind := range sortedKeys(x.Lookups) {
		l := x.Lookups[kind]
		fmt.Fprintf(b, "  lookup       GET /v1/messages/{id}, %s ids (%d): p50 %s  p99 %s  max %s\n",
			kind, l.Count, ms(l.P50), ms(l.P99), ms(l.Max))
	}
	if x.ChangelogBytes > 0 {
		fmt.Fprintf(b, "  changelog    %s on the broker's disk\n", mib(x.ChangelogBytes))
	}
	for _, name := range sortedKeys(x.Stores) {
		st := x.Stores[name]
		fmt.Fprintf(b, "  store        %-28s processors %s  view %s\n", name, mib(st.Processors), mib(st.View))
	}
}

// Issue 23's targets for a burst on a year of history, against the same
// burst on an empty table.
const (
	HistoryThroughputTarget = 0.90 // at least 90% of the empty table's rate
	HistoryRSSTarget        = 1.20 // at most 120% of the empty table's peak RSS
	HistoryReadyTarget      = 60 * time.Second
)

// HistoryComparison compares each run with a history against the run
// before it on an empty table with the same partitions and instances:
// the burst's rate (to 90% final), the herald processes' peak RSS and
// readiness, against issue 23's targets. Empty when there is no pair.
func HistoryComparison(runs []*Result) string {
	var b strings.Builder
	for i, x := range runs {
		if x.History == nil || i == 0 {
			continue
		}
		e := runs[i-1]
		if e.History != nil || e.Partitions != x.Partitions || e.Instances != x.Instances {
			continue
		}
		verdict := func(ok bool) string { return map[bool]string{true: "met", false: "MISSED"}[ok] }
		fmt.Fprintf(&b, "\nHistory %s against %s:\n", x.Name, e.Name)
		if e.Throughput.To90 > 0 {
			r := x.Throughput.To90 / e.Throughput.To90
			fmt.Fprintf(&b, "  burst rate   %.0f/s against %.0f/s: %.2f× (target ≥ %.2f×: %s)\n",
				x.Throughput.To90, e.Throughput.To90, r, HistoryThroughputTarget, verdict(r >= HistoryThroughputTarget))
		}
		_, xr := x.HeraldCPU()
		_, er := e.HeraldCPU()
		if er > 0 {
			r := float64(xr) / float64(er)
			fmt.Fprintf(&b, "  peak RSS     %s against %s: %.2f× (target ≤ %.2f×: %s)\n", mib(xr), mib(er), r,
				HistoryRSSTarget, verdict(r <= HistoryRSSTarget))
		}
		var slowest time.Duration
		for _, d := range x.Ready {
			slowest = max(slowest, d)
		}
		fmt.Fprintf(&b, "  ready        slowest process %s (target < %s: %s)\n", slowest.Round(100*time.Millisecond),
			HistoryReadyTarget, verdict(slowest < HistoryReadyTarget))
	}
	return b.String()
}

package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The sender's gauges the load test follows, by channel.
const (
	metricSendLimit = "herald_sender_concurrency_limit"
	metricSendCalls = "herald_sender_provider_in_flight"
)

// senderGauges reads every herald process's /metrics for the sender's
// adaptive concurrency limit and its provider calls in flight, by channel
// and summed over the processes.
type senderGauges struct {
	urls   []string
	client *http.Client
}

// read scrapes every process. A process that does not answer is left
// out; an error only when none answered.
func (g senderGauges) read(ctx context.Context) (limit, calls map[string]int64, err error) {
	limit, calls = map[string]int64{}, map[string]int64{}
	var errs []error
	for _, u := range g.urls {
		if err := g.scrape(ctx, u, limit, calls); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(g.urls) && len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return limit, calls, nil
}

func (g senderGauges) scrape(ctx context.Context, url string, limit, calls map[string]int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("sender metrics: %w", err)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("sender metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("sender metrics: %s: %s", url, resp.Status)
	}
	return addSenderGauges(resp.Body, limit, calls)
}

// addSenderGauges adds the gauges of one /metrics page to limit and
// calls.
func addSenderGauges(r io.Reader, limit, calls map[string]int64) error {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		return fmt.Errorf("sender metrics: %w", err)
	}
	for name, into := range map[string]map[string]int64{metricSendLimit: limit, metricSendCalls: calls} {
		for _, m := range mfs[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "channel" {
					into[l.GetValue()] += int64(m.GetGauge().GetValue())
				}
			}
		}
	}
	return nil
}

// SendLimit is one channel's concurrency limit over a run, summed over
// the herald processes: its least, its most and its last value, and the
// most provider calls seen in flight.
type SendLimit struct {
	Min       int64 `json:"min"`
	Max       int64 `json:"max"`
	Final     int64 `json:"final"`
	PeakCalls int64 `json:"peak_calls"`
}

// SendLimits summarises the samples' concurrency limits, for the
// channels that had calls in flight.
func SendLimits(samples []Sample) map[string]SendLimit {
	out := map[string]SendLimit{}
	for _, s := range samples {
		for ch, l := range s.SendLimit {
			sl, seen := out[ch]
			if !seen {
				sl.Min = l
			}
			sl.Min, sl.Max, sl.Final = min(sl.Min, l), max(sl.Max, l), l
			sl.PeakCalls = max(sl.PeakCalls, s.SendCalls[ch])
			out[ch] = sl
		}
	}
	for ch, sl := range out {
		if sl.PeakCalls == 0 {
			delete(out, ch)
		}
	}
	return out
}

// sendLimitLine renders SendLimits for the summary ("" without any).
func sendLimitLine(samples []Sample) string {
	ls := SendLimits(samples)
	chs := sortedKeys(ls)
	parts := make([]string, len(chs))
	for i, ch := range chs {
		l := ls[ch]
		parts[i] = fmt.Sprintf("%s min %d max %d final %d, peak %d calls in flight", ch, l.Min, l.Max, l.Final, l.PeakCalls)
	}
	return strings.Join(parts, "; ")
}

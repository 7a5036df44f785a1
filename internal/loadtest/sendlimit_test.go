package loadtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/metrics"
)

// The senders' gauges are read from every process's /metrics and summed
// by channel; a process that does not answer is left out.
func TestSenderGaugesRead(t *testing.T) {
	var urls []string
	for _, limit := range []int{300, 1200} {
		reg := prometheus.NewRegistry()
		m := metrics.NewSender(reg)
		m.ConcurrencyLimit(contract.ChannelEmail, limit)
		m.ConcurrencyLimit(contract.ChannelSMS, 50)
		m.ProviderInFlight(contract.ChannelEmail, limit-10)
		m.ProviderInFlight(contract.ChannelSMS, 3)
		srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	gone := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(gone.Close)
	g := senderGauges{urls: append(urls, gone.URL), client: &http.Client{Timeout: 2 * time.Second}}
	limit, calls, err := g.read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if limit["email"] != 1500 || limit["sms"] != 100 || calls["email"] != 1480 || calls["sms"] != 6 || calls["push"] != 0 {
		t.Errorf("limit %v, calls %v", limit, calls)
	}
	if _, _, err := (senderGauges{urls: []string{gone.URL}, client: http.DefaultClient}).read(context.Background()); err == nil {
		t.Error("no process answered, and no error")
	}
}

// The summary gives each channel's least, most and last limit and its
// peak calls in flight; channels without calls are left out.
func TestSendLimitsSummary(t *testing.T) {
	samples := []Sample{
		{},
		{SendLimit: map[string]int64{"email": 50, "push": 50}, SendCalls: map[string]int64{"email": 50}},
		{SendLimit: map[string]int64{"email": 400, "push": 50}, SendCalls: map[string]int64{"email": 390}},
		{SendLimit: map[string]int64{"email": 2000, "push": 50}, SendCalls: map[string]int64{"email": 1990}},
		{SendLimit: map[string]int64{"email": 1000, "push": 50}, SendCalls: map[string]int64{"email": 12}},
	}
	got := SendLimits(samples)
	if len(got) != 1 || got["email"] != (SendLimit{Min: 50, Max: 2000, Final: 1000, PeakCalls: 1990}) {
		t.Fatalf("SendLimits = %+v", got)
	}
	r := &Result{Name: "p12-i1", Partitions: 12, Instances: 1, Samples: samples}
	want := "send limit   email min 50 max 2000 final 1000, peak 1990 calls in flight"
	if s := (&Report{Runs: []*Result{r}}).Summary(); !strings.Contains(s, want) {
		t.Errorf("summary lacks %q:\n%s", want, s)
	}
	if s := sendLimitLine(nil); s != "" {
		t.Errorf("no samples: %q", s)
	}
}

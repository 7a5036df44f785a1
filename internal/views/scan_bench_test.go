package views_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
	"github.com/herald-dispatch/herald/internal/views"
)

// benchState is a typical state: a request with content, two attempts.
func benchState() []byte {
	now := time.Now().UTC()
	var req contract.Request
	if err := json.Unmarshal(request("2026-01:user-123456:statement", nil), &req); err != nil {
		panic(err)
	}
	req.ApplyDefaults()
	st := contract.State{ID: req.ID, Campaign: req.Campaign, Status: contract.StatusRetrying, Channel: "email",
		Attempts: 2, ChannelAttempts: 2, FirstSeen: now, UpdatedAt: now, NextAttemptAt: &now, HoldReason: contract.HoldBackoff,
		LastError: "email attempt 2: transient (503): service unavailable", Version: 5, Request: &req,
		History: []contract.Attempt{{Attempt: 1, Channel: "email", Outcome: "transient", Error: "timeout", At: now},
			{Attempt: 2, Channel: "email", Outcome: "transient", Code: 503, Error: "service unavailable", At: now}},
		Applied: map[string]contract.Position{"herald.requests": {Topic: "herald.requests", Partition: 3, Offset: 123456},
			"herald.results": {Topic: "herald.results", Partition: 3, Offset: 654321}},
		LastSource: contract.Position{Topic: "herald.results", Partition: 3, Offset: 654321}}
	b, _ := json.Marshal(st)
	return b
}

// BenchmarkSummary compares what the held gauge's scan decodes per state
// (views.DecodeSummary) with a full decode of the state.
func BenchmarkSummary(b *testing.B) {
	raw := benchState()
	b.Run("summary", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			s, err := views.DecodeSummary(raw)
			if err != nil || s.HoldReason != contract.HoldBackoff {
				b.Fatal(s, err)
			}
		}
	})
	b.Run("unmarshal-two-fields", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			var s views.Summary
			if err := json.Unmarshal(raw, &s); err != nil || s.HoldReason != contract.HoldBackoff {
				b.Fatal(err)
			}
		}
	})
	b.Run("full-state", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			var s contract.State
			if err := json.Unmarshal(raw, &s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestDecodeSummary checks the fast path against json.Unmarshal, for every
// status and reason, and for content and ids that try to fool it.
func TestDecodeSummary(t *testing.T) {
	now := time.Now().UTC()
	var cases []*contract.State
	for _, st := range contract.Statuses {
		for _, r := range append(metricsReasons(), "") {
			var req contract.Request
			json.Unmarshal(request("x", nil), &req)
			req.Content = json.RawMessage(`{"status":"sent","hold_reason":"blackout","version":9}`)
			s := &contract.State{ID: `id "status":"sent"`, Campaign: `c\"status\":\"sent\"`, Status: st, HoldReason: r,
				Request: &req, LastError: `"hold_reason":"backoff"`, FirstSeen: now, Version: 3,
				History: []contract.Attempt{{Error: `"status":"failed"`}}}
			if st.Held() {
				s.NextAttemptAt = &now
			}
			cases = append(cases, s)
		}
	}
	cases = append(cases, &contract.State{ID: "bare", Status: contract.StatusSent})
	for _, s := range cases {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var want views.Summary
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		got, err := views.DecodeSummary(b)
		if err != nil || got != want || got.Status != s.Status || got.HoldReason != s.HoldReason {
			t.Errorf("%s: got %+v, %v; want %+v", b, got, err, want)
		}
	}
	// Not the dispatcher's encoding: the fallback still answers right.
	got, err := views.DecodeSummary([]byte(`{"version": 1, "hold_reason": "schedule", "status": "scheduled"}`))
	if err != nil || got.Status != contract.StatusScheduled || got.HoldReason != contract.HoldSchedule {
		t.Errorf("reordered: %+v %v", got, err)
	}
	got, err = views.DecodeSummary([]byte(`{"status":"sch\u0065duled","version":1}`))
	if err != nil || got.Status != contract.StatusScheduled {
		t.Errorf("escaped: %+v %v", got, err)
	}
	if _, err := views.DecodeSummary([]byte(`not json`)); err == nil {
		t.Error("no error for a broken state")
	}
}

func metricsReasons() []contract.HoldReason {
	return []contract.HoldReason{contract.HoldSchedule, contract.HoldBlackout, contract.HoldBackoff, contract.HoldRateLimit}
}

// BenchmarkScan scans a recovered view of 50,000 states (what the held
// gauge does every --held-scan-interval), per state.
func BenchmarkScan(b *testing.B) {
	const n = 50000
	c := heraldtest.StartKafka(b, heraldtest.Options{Partitions: 4})
	cl := c.Client(b)
	raw := benchState()
	recs := make([]*kgo.Record, 0, 5000)
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: string(topology.TableDispatcher), Key: []byte(fmt.Sprint("bench-", i)), Value: raw})
		if len(recs) == cap(recs) {
			c.Produce(b, cl, recs...)
			recs = recs[:0]
		}
	}
	view, err := views.NewStateView(c.Topology, b.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- view.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for !view.Recovered() {
		time.Sleep(50 * time.Millisecond)
	}
	b.ResetTimer()
	for b.Loop() {
		count := 0
		if err := view.Scan(ctx, func(views.Summary) { count++ }); err != nil || count != n {
			b.Fatal(count, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/state")
}

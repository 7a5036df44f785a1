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
	"github.com/herald-dispatch/herald/internal/tableview"
	"github.com/herald-dispatch/herald/internal/topology"
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
	b, err := contract.EncodeState(&st)
	if err != nil {
		panic(err)
	}
	return b
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
	view, err := tableview.NewStateView(c.Topology, b.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- view.Run(ctx) }()
	defer func() { cancel(); <-done }()
	heraldtest.WaitFor(b, 60*time.Second, "the view to recover", view.Recovered)
	b.ResetTimer()
	for b.Loop() {
		count := 0
		if err := view.Scan(ctx, func(contract.Summary) { count++ }); err != nil || count != n {
			b.Fatal(count, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/state")
}

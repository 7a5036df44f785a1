package metrics_test

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/metrics"
)

// scanner counts by scanning its summaries.
type scanner []contract.Summary

func (s scanner) Scan(_ context.Context, fn func(contract.Summary)) error {
	for _, x := range s {
		fn(x)
	}
	return nil
}

// counter keeps its counts and refuses to be scanned.
type counter struct {
	status map[contract.Status]int
	held   map[contract.HoldReason]int
}

func (counter) Scan(context.Context, func(contract.Summary)) error {
	return errors.New("a counter is not scanned")
}
func (c counter) Counts() (map[contract.Status]int, map[contract.HoldReason]int) {
	return c.status, c.held
}

// Held exports a Counter's counts without scanning it, and scans a plain
// Scanner; both give the same gauges.
func TestHeldCountsOrScans(t *testing.T) {
	t.Parallel()
	sums := scanner{{Status: contract.StatusSent}, {Status: contract.StatusSent},
		{Status: contract.StatusRetrying, HoldReason: contract.HoldBackoff}, {Status: contract.StatusDeferred, HoldReason: contract.HoldBlackout}}
	cnt := counter{status: map[contract.Status]int{contract.StatusSent: 2, contract.StatusRetrying: 1, contract.StatusDeferred: 1},
		held: map[contract.HoldReason]int{contract.HoldBackoff: 1, contract.HoldBlackout: 1}}
	for name, src := range map[string]metrics.Scanner{"scanner": sums, "counter": cnt} {
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			h := metrics.NewHeld(reg, src)
			if err := h.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := heraldtest.MetricSum(t, reg, "herald_notifications"); got != 4 {
				t.Errorf("herald_notifications sums to %v, want 4", got)
			}
			if got := heraldtest.MetricSum(t, reg, "herald_held_notifications"); got != 2 {
				t.Errorf("herald_held_notifications sums to %v, want 2", got)
			}
		})
	}
}

package schedule

import (
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// BenchmarkRelease measures the blackout evaluation the dispatcher does for
// every new request, retry and wake-up: a per-message window in the
// recipient's zone and a global window in UTC. "free" is the common case (no
// window holds the instant), "held" finds a window end, "chained" moves
// through both rules, "dst-overlap" is near an offset change, where the
// windows are placed by their wall clocks.
func BenchmarkRelease(b *testing.B) {
	rs := []Rule{
		{Windows: windows(b, "22:00-06:00"), Loc: zone(b, "America/New_York")},
		{Windows: windows(b, "10:00-12:00"), Loc: zone(b, "UTC")},
	}
	for _, bc := range []struct{ name, at string }{
		{"free", "2026-01-15T15:00:00-05:00"},
		{"held", "2026-01-15T06:30:00-05:00"},    // in the global window only
		{"chained", "2026-01-15T23:00:00-05:00"}, // 06:00 EST is 11:00 UTC, in the global window
		{"dst-overlap", "2026-11-01T01:45:00-04:00"},
	} {
		at := instant(b, bc.at)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Release(at, rs...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBackoff measures one retry's wait.
func BenchmarkBackoff(b *testing.B) {
	bo := contract.Backoff{Initial: contract.Duration(time.Second), Multiplier: 2, Max: contract.Duration(10 * time.Minute)}
	b.ReportAllocs()
	for b.Loop() {
		_ = Backoff(bo, 3, "2026-01:user-123:bill")
	}
}

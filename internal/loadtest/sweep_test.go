package loadtest

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseSweep(t *testing.T) {
	s, err := ParseSweep([]string{"partitions=24,4,12", "instances=1,2,3"}, 12, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Partitions, []int{4, 12, 24}) || !reflect.DeepEqual(s.Instances, []int{1, 2, 3}) {
		t.Fatalf("%+v", s)
	}
	pts := s.Points()
	if len(pts) != 9 || pts[0] != (Point{4, 1}) || pts[8] != (Point{24, 3}) {
		t.Fatalf("points %v", pts)
	}
	s, _ = ParseSweep([]string{"instances=1,3"}, 2, 1)
	if pts := s.Points(); !reflect.DeepEqual(pts, []Point{{2, 1}}) {
		t.Fatalf("instances above partitions not skipped: %v", pts)
	}
	for _, bad := range []string{"partitions", "nodes=1", "partitions=0", "instances=a"} {
		if _, err := ParseSweep([]string{bad}, 12, 1); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseTarget(t *testing.T) {
	tg, err := ParseTarget("1000000/2h")
	if err != nil || tg.Count != 1_000_000 || tg.Window != 2*time.Hour {
		t.Fatalf("%+v %v", tg, err)
	}
	if math.Abs(tg.Rate()-138.888) > 0.001 {
		t.Fatalf("rate %g", tg.Rate())
	}
	for _, bad := range []string{"1000000", "x/2h", "10/0s", "-5/1h"} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCallsPerNotification(t *testing.T) {
	// No failures: one email call of 1 s.
	m := ProviderModel{EmailLatency: time.Second, SMSLatency: 50 * time.Millisecond, AttemptsPerChannel: 3}
	if c, b := m.CallsPerNotification(); c != 1 || b != time.Second {
		t.Fatalf("no failures: %g calls %s", c, b)
	}
	// Every id permanent on email: one email call plus one SMS.
	m.Permanent = 1
	if c, b := m.CallsPerNotification(); c != 2 || b != 1050*time.Millisecond {
		t.Fatalf("all permanent: %g calls %s", c, b)
	}
	// 50% transient, 3 attempts: 1 + 0.5 + 0.25 email calls, and the 1/8
	// that fail all three fall back to SMS.
	m.Permanent, m.Transient = 0, 0.5
	c, b := m.CallsPerNotification()
	if math.Abs(c-(1.75+0.125)) > 1e-9 || math.Abs(b.Seconds()-(1.75+0.125*0.05)) > 1e-6 {
		t.Fatalf("half transient: %g calls %s", c, b)
	}
}

func TestRecommendLittlesLaw(t *testing.T) {
	in := PlanInputs{
		Target:           Target{Count: 1_000_000, Window: 2 * time.Hour},
		Provider:         ProviderModel{EmailLatency: time.Second, SMSLatency: 50 * time.Millisecond, AttemptsPerChannel: 3},
		Headroom:         2,
		CoresPerInstance: 1,
		MinInstances:     2,
	}
	pts := []PointResult{
		{Point: Point{4, 1}, Rate: 200, CPUPerNotification: 0.002, Passed: true},
		{Point: Point{12, 1}, Rate: 400, CPUPerNotification: 0.004, Passed: true},
		{Point: Point{24, 1}, Rate: 900, CPUPerNotification: 0.003, Passed: true},
		{Point: Point{48, 1}, Rate: 5000, CPUPerNotification: 0.5, Passed: false}, // failed: ignored
	}
	r := Recommend(in, pts)
	planned := 1_000_000.0 / 7200 * 2
	if math.Abs(r.PlannedRate-planned) > 1e-6 {
		t.Fatalf("planned %g, want %g", r.PlannedRate, planned)
	}
	// Little's law: 277.8/s × 1 s in the provider.
	if math.Abs(r.InFlight-planned) > 1e-6 {
		t.Fatalf("in flight %g, want %g", r.InFlight, planned)
	}
	// Median CPU 3 ms → 0.83 cores → 1 instance, raised to 2 for
	// availability; the other carries all 278 in flight → 300.
	if math.Abs(r.CoresNeeded-planned*0.003) > 1e-6 || r.Instances != 2 || r.ConcurrencyPerProcess != 300 {
		t.Fatalf("cores %g instances %d concurrency %d", r.CoresNeeded, r.Instances, r.ConcurrencyPerProcess)
	}
	// 12 partitions were the smallest to reach 277.8/s.
	if r.Partitions != 12 || !r.Met || r.BestMeasured != 900 {
		t.Fatalf("partitions %d met %v best %g", r.Partitions, r.Met, r.BestMeasured)
	}
	if len(r.Steps) < 6 || !strings.Contains(strings.Join(r.Steps, "\n"), "Little's law") {
		t.Fatalf("steps do not explain: %q", r.Steps)
	}

	// A target beyond every point: the best point's partitions, not met.
	in.Target = Target{Count: 10_000_000, Window: time.Hour}
	r = Recommend(in, pts)
	if r.Met || r.Partitions < 24 {
		t.Fatalf("unreachable target: met %v partitions %d", r.Met, r.Partitions)
	}
	// Many cores needed: instances follow, partitions at least twice them.
	if r.Instances != int(math.Ceil(r.CoresNeeded)) || r.Partitions < 2*r.Instances {
		t.Fatalf("instances %d for %g cores, partitions %d", r.Instances, r.CoresNeeded, r.Partitions)
	}
}

func TestBaselineN(t *testing.T) {
	for _, tc := range []struct {
		n, c int
		want int
	}{
		{100_000, 180, 21_600},   // 180/s × 120 s
		{100_000, 2000, 100_000}, // fits: the same run as Herald's
		{500, 180, 500},
	} {
		if got := BaselineN(tc.n, tc.c, time.Second, 2*time.Minute); got != tc.want {
			t.Errorf("BaselineN(%d, %d) = %d, want %d", tc.n, tc.c, got, tc.want)
		}
	}
}

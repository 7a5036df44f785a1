package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The chaos runs start real processes and take minutes: TestChaosSmoke is
// the small one `make test` runs (skipped with -short), TestChaos the full
// suite `make chaos` runs (HERALD_CHAOS=1). Settings:
//
//	HERALD_CHAOS_BIN     a herald binary to use (default: built once into <HERALD_CHAOS_DIR>/bin)
//	HERALD_CHAOS_DIR     where runs keep their data and logs (default <repo>/data/chaos)
//	HERALD_CHAOS_N       notifications per full run (default 20000)
//	HERALD_CHAOS_RUNS    full runs to do, e.g. "i2-honour,i3-ignore" (default all four)
//	HERALD_CHAOS_STRICT  true (the default): a duplicate without a call in flight at a kill fails the run; false: only the count bound

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// repoRoot is the module's root (the test runs in internal/chaos/).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// heraldBinary builds herald once per test binary, into the runs' dir.
func heraldBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("HERALD_CHAOS_BIN"); b != "" {
		return b
	}
	binOnce.Do(func() {
		binPath = filepath.Join(runsDir(t), "bin", "herald") // replaced by every build, kept with the runs' logs
		if binErr = os.MkdirAll(filepath.Dir(binPath), 0o755); binErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/herald")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func runsDir(t *testing.T) string {
	if d := os.Getenv("HERALD_CHAOS_DIR"); d != "" {
		return d
	}
	return filepath.Join(repoRoot(t), "data", "chaos")
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// report prints the summary, writes it beside the runs and fails the test
// for every run that did not pass.
func report(t *testing.T, name string, results []*Result) {
	t.Helper()
	var b strings.Builder
	Summary(&b, results)
	t.Log("\n" + b.String())
	path, err := WriteReport(filepath.Join(runsDir(t), name+"-report"), results)
	if err != nil {
		t.Error(err)
	} else {
		t.Logf("report written to %s", path)
	}
	for _, r := range results {
		if !r.Passed() {
			t.Errorf("%s failed: %s", r.Name, strings.Join(r.Verdict.Failures, "; "))
		}
	}
}

// TestChaosSmoke is the chaos run of `make test`: 2 instances, 3,000
// notifications over 20 s, one kill -9 of an instance and a kill -9 and
// restart of the broker, with a provider that honours Idempotency-Key.
func TestChaosSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker, PostgreSQL and two herald processes")
	}
	ctx := context.Background()
	res, err := Run(ctx, Config{
		Name: "smoke", Binary: heraldBinary(t), Dir: filepath.Join(runsDir(t), "smoke"),
		Instances: 2, N: 3000, PublishFor: 20 * time.Second, Duplicates: 0.02, Honour: true,
		Faults: []Fault{
			{Kind: KillInstance, At: 6 * time.Second, Instance: 1},
			{Kind: KillBroker, At: 12 * time.Second},
		},
		FinalTimeout: 75 * time.Second, Log: testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	report(t, "smoke", []*Result{res})
}

// FullFaults is the fault schedule of a `make chaos` run over a minute of
// publishing: every kind of fault, each while work is in flight.
func FullFaults(instances int) []Fault {
	last := 1
	if instances > 2 {
		last = 2
	}
	return []Fault{
		{Kind: KillInstance, At: 6 * time.Second, Instance: 1},
		{Kind: ProviderOutage, At: 12 * time.Second, For: 20 * time.Second},
		{Kind: KillBroker, At: 18 * time.Second, For: 3 * time.Second},
		{Kind: StopPostgres, At: 26 * time.Second, For: 30 * time.Second},
		{Kind: PauseInstance, At: 34 * time.Second, Instance: 0},
		// During the PostgreSQL outage: the restarted instance must start
		// without PostgreSQL (it crash-looped before c3ecc1d).
		{Kind: KillInstance, At: 44 * time.Second, Instance: last},
	}
}

// TestChaos is `make chaos`: 2 and 3 instances, each with a provider that
// honours Idempotency-Key and one that does not.
func TestChaos(t *testing.T) {
	on, err := strconv.ParseBool(os.Getenv("HERALD_CHAOS"))
	if err != nil && os.Getenv("HERALD_CHAOS") != "" {
		t.Fatalf("HERALD_CHAOS=%q: want a boolean", os.Getenv("HERALD_CHAOS"))
	}
	if !on {
		t.Skip("the full chaos suite runs with HERALD_CHAOS=1 (make chaos)")
	}
	n := 20000
	if s := os.Getenv("HERALD_CHAOS_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			t.Fatalf("HERALD_CHAOS_N=%q: want a positive integer", s)
		}
		n = v
	}
	want := map[string]bool{}
	for _, s := range strings.Split(os.Getenv("HERALD_CHAOS_RUNS"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			want[s] = true
		}
	}
	strict := true
	if v := os.Getenv("HERALD_CHAOS_STRICT"); v != "" {
		var err error
		if strict, err = strconv.ParseBool(v); err != nil {
			t.Fatalf("HERALD_CHAOS_STRICT=%q: want a boolean", v)
		}
	}
	bin := heraldBinary(t)
	var results []*Result
	for _, instances := range []int{2, 3} {
		for _, honour := range []bool{true, false} {
			cfg := Config{Binary: bin, Instances: instances, N: n, PublishFor: time.Minute, Duplicates: 0.02,
				Honour: honour, Faults: FullFaults(instances), Strict: strict, Log: testLog(t)}
			cfg = cfg.withDefaults()
			if len(want) > 0 && !want[cfg.Name] {
				continue
			}
			cfg.Dir = filepath.Join(runsDir(t), cfg.Name)
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatalf("%s: %v", cfg.Name, err)
			}
			results = append(results, res)
		}
	}
	if len(want) > 0 && len(results) == 0 {
		t.Fatalf("HERALD_CHAOS_RUNS=%q names no run (have i2-honour, i2-ignore, i3-honour, i3-ignore)", os.Getenv("HERALD_CHAOS_RUNS"))
	}
	report(t, "chaos", results)
}

package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
//	HERALD_CHAOS_N       notifications per full run (default 20000; burst-kill publishes half of it)
//	HERALD_CHAOS_RUNS    full runs to do, e.g. "i2-honour,broker-restart" (default all six)
//	HERALD_CHAOS_STRICT  true (the default): a duplicate without a call in flight at a kill fails the run; false: only the count bound
//	HERALD_CHAOS_HOG     cores the CPU hog of broker-restart spins on (default DefaultHogCores, 1; 0 for none)

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

// BrokerRestartFaults is the fault schedule of the broker-restart run: the
// broker killed with kill -9 four times, 12 s apart, each time started
// again 3 s later on the same data dir, while requests are published and
// the producers of both instances have batches in flight (issue 21,
// findings 1 and 2: Sarama's idempotent producer after a broker restart).
// The last restart ends about 7 s before the publishing does.
func BrokerRestartFaults() []Fault {
	var out []Fault
	for _, at := range []time.Duration{14, 26, 38, 50} {
		out = append(out, Fault{Kind: KillBroker, At: at * time.Second, For: 3 * time.Second})
	}
	return out
}

// DefaultHogCores is how many cores broker-restart's CPU hog spins on:
// one of the two of the machines Herald's chaos runs are sized for. On
// both, the two instances, the broker, PostgreSQL, the provider and the
// harness share what the hog leaves of the scheduler, and the run
// measures the machine rather than Herald: with the fixes of issue 21,
// a run there lost nothing and delivered nothing twice, and was still
// 6.5 s over the 30 s bound, every late id queued behind the slow
// provider, none stuck. (On one core, since the sender's limit halves
// on a lost call, the runs were all final 17-25 s after the last
// restart; docs/operations.md.)
const DefaultHogCores = 1

// BrokerRestart is the broker-restart run: 2 instances, n requests over a
// minute, the broker killed four times (BrokerRestartFaults), a CPU hog on
// hogCores cores beside the run, and a key-honouring provider slow to
// accept connections (listen backlog 5, 2 ms before each accept, every
// 4th answer closing its connection) behind a 3 s --provider-timeout,
// so that calls time out and are retried. The send timeout is a minute,
// so it rescues nothing inside the bound: every state must be final
// within 30 s of the last restart on Herald's own. The run waits up to
// 90 s all the same, so that the report tells late (rescued by the send
// timeout) from stuck for good.
func BrokerRestart(n, hogCores int) Config {
	return Config{Name: "broker-restart", Instances: 2, N: n, PublishFor: time.Minute, Duplicates: 0.02, Honour: true,
		Faults: BrokerRestartFaults(), CPUHog: hogCores, Accept: Accept{Backlog: 5, Delay: 2 * time.Millisecond, CloseEvery: 4},
		ProviderTimeout: 3 * time.Second, SendTimeout: time.Minute, FinalTimeout: 30 * time.Second, FinalWait: 90 * time.Second}
}

// BurstKill is the burst-kill run: 2 instances with --send-concurrency 100
// (a fixed limit), n requests published over 2 s (a backlog the senders
// take seconds to send: 100 calls of about 100 ms at once per instance,
// some 2,000 a second together), and a kill -9 of instance 1 from t+1 s,
// once it has 50 provider calls open, with a provider that ignores
// Idempotency-Key. Only the calls in flight at the kill may be
// made again: at most 100 notifications delivered twice, and no more than
// the calls in flight at the kill. A kill that finds fewer than 50 calls
// open fails the run (busyFailures): with 5,000 requests and a kill at
// t+3 s, two runs of three found the burst already sent.
func BurstKill(n int) Config {
	return Config{Name: "burst-kill", Instances: 2, N: n, PublishFor: 2 * time.Second, Honour: false, SendConcurrency: 100,
		Faults: []Fault{{Kind: KillInstance, At: time.Second, Instance: 0, WhenBusy: 50}}}
}

// TestChaos is `make chaos`: 2 and 3 instances under every kind of fault,
// each with a provider that honours Idempotency-Key and one that does not,
// then broker-restart and burst-kill.
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
	hogCores := DefaultHogCores
	if s := os.Getenv("HERALD_CHAOS_HOG"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			t.Fatalf("HERALD_CHAOS_HOG=%q: want a number of cores, 0 or more", s)
		}
		hogCores = v
	}
	var runs []Config
	for _, instances := range []int{2, 3} {
		for _, honour := range []bool{true, false} {
			runs = append(runs, Config{Instances: instances, N: n, PublishFor: time.Minute, Duplicates: 0.02,
				Honour: honour, Faults: FullFaults(instances)})
		}
	}
	runs = append(runs, BrokerRestart(n, hogCores), BurstKill(max(n/2, 1)))
	var names []string
	for i := range runs {
		runs[i] = runs[i].withDefaults()
		names = append(names, runs[i].Name)
	}
	for s := range want {
		if !slices.Contains(names, s) {
			t.Fatalf("HERALD_CHAOS_RUNS names %q: no such run (have %s)", s, strings.Join(names, ", "))
		}
	}
	bin := heraldBinary(t)
	var results []*Result
	for _, cfg := range runs {
		if len(want) > 0 && !want[cfg.Name] {
			continue
		}
		cfg.Binary, cfg.Strict, cfg.Log = bin, strict, testLog(t)
		cfg.Dir = filepath.Join(runsDir(t), cfg.Name)
		res, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatalf("%s: %v", cfg.Name, err)
		}
		results = append(results, res)
	}
	report(t, "chaos", results)
}

// The new runs inject what issue 21 asks for: broker-restart's kills all
// fall while requests are published, and its send timeout cannot rescue a
// lost command inside the 30 s bound (Herald must recover it itself);
// burst-kill's kill waits for a send burst and its bound is the fixed
// send concurrency.
func TestScenarios(t *testing.T) {
	b := BrokerRestart(20000, DefaultHogCores).withDefaults()
	kills := 0
	for _, f := range b.Faults {
		if f.Kind == KillBroker && f.At+f.For < b.PublishFor {
			kills++
		}
	}
	if kills < 2 || kills != len(b.Faults) {
		t.Fatalf("broker-restart: %d of %d faults are broker kills while publishing", kills, len(b.Faults))
	}
	if b.FinalTimeout != 30*time.Second || !b.Honour || b.Instances != 2 || b.CPUHog != DefaultHogCores || b.CPUHog < 1 {
		t.Fatalf("broker-restart: %+v", b)
	}
	if rescue := b.SendTimeout + b.ProviderTimeout; rescue <= b.FinalTimeout {
		t.Fatalf("broker-restart: the send timeout rescues a lost command %s after issue, inside the %s bound", rescue, b.FinalTimeout)
	}
	if a := b.Accept; a.Backlog == 0 || a.Backlog > 8 || a.Delay == 0 || a.CloseEvery == 0 || b.ProviderTimeout == 0 {
		t.Fatalf("broker-restart: provider not slow to accept: %+v, --provider-timeout %s", a, b.ProviderTimeout)
	}
	k := BurstKill(5000).withDefaults()
	if k.Honour || k.SendConcurrency <= 0 || len(k.Faults) != 1 || k.Faults[0].Kind != KillInstance || k.Faults[0].WhenBusy <= 0 ||
		k.Faults[0].WhenBusy > k.SendConcurrency {
		t.Fatalf("burst-kill: %+v", k)
	}
	for _, name := range []string{b.Name, k.Name} {
		if strings.Contains(name, ",") || name == "" {
			t.Fatalf("run name %q cannot be named in HERALD_CHAOS_RUNS", name)
		}
	}
}

// A fault that waits for a send burst and strikes without one fails the
// run; one that found its calls, or does not wait for any, does not.
func TestBusyFailures(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	kill := Fault{Kind: KillInstance, At: time.Second, Instance: 0, WhenBusy: 50}
	events := []FaultEvent{
		{Fault: kill, Start: t0.Add(11 * time.Second), TargetOpen: 0},
		{Fault: kill, Start: t0.Add(2 * time.Second), TargetOpen: 73},
		{Fault: Fault{Kind: KillBroker, At: 5 * time.Second}, Start: t0.Add(5 * time.Second)},
	}
	got := busyFailures(events, t0)
	if len(got) != 1 || !strings.Contains(got[0], "0 provider calls open") || !strings.Contains(got[0], "tested nothing") {
		t.Fatalf("busyFailures: %q, want one failure, for the kill that found no call open", got)
	}
}

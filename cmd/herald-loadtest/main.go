// Command herald-loadtest drives a generated billing run through the whole
// pipeline (a broker, `herald run` processes, PostgreSQL and a simulated
// provider), checks every guarantee on it, compares it with the row-lock
// baseline on the same workload, and writes a report with a capacity
// recommendation (internal/loadtest). It is not part of the product binary:
// it starts the herald binary it is given (--herald-bin, default the herald
// beside this one, then the one on PATH).
//
// Every flag has an environment variable beside it, as in herald.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/herald-dispatch/herald/internal/loadtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

type loadtestFlags struct {
	n, baselineN, partitions, instances, concurrency   int
	seed                                               int
	rate, dupShare, blackoutShare, nbShare, badShare   float64
	headroom, instanceCores                            float64
	blackoutFor, nbMin, nbMax                          time.Duration
	timeout, rerunDelay, settle, quiet, baselineBudget time.Duration
	emailSim, smsSim, target, reportDir, workDir       string
	databaseURL, bin, baselineConc, logLevel           string
	herald, baseline, keep, honourIdem, pgEphemeral    bool
	sweep, runArgs                                     cli.List
	// Issue 12's shares: windows opening and expiries falling while the
	// commands queue, and a provider slower than the provider timeout.
	windowShare, expiringShare, slowShare                        float64
	windowAfter, windowLength, expireAfter, slowLatency, transit time.Duration
	providerTimeout                                              time.Duration
	// Issue 23: a year of history under the burst, and API-only processes.
	history, apiOnly int
	historySpan      time.Duration
	historyEmpty     bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "herald-loadtest: %v\n", err)
		os.Exit(1)
	}
}

// heraldBinary finds the herald binary: beside this one, then on PATH.
func heraldBinary() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "herald")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("herald")
	if err != nil {
		return "", fmt.Errorf("--herald-bin: no herald beside herald-loadtest nor on PATH (build it with make build): %w", err)
	}
	return p, nil
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("herald-loadtest", flag.ContinueOnError)
	var f loadtestFlags
	cli.Int(fs, &f.n, "notifications", loadtest.DefaultN, "distinct records of the generated billing run (malformed ones included; duplicates come on top)")
	cli.Float(fs, &f.rate, "publish-rate", 0, "records per second the batch publishes; 0 publishes as fast as the broker takes them")
	cli.Float(fs, &f.dupShare, "duplicate-share", loadtest.DefaultDuplicates, "share re-published by a re-run of the batch")
	cli.Float(fs, &f.blackoutShare, "blackout-share", loadtest.DefaultBlackout, "share with a blackout window open at publication")
	cli.Float(fs, &f.nbShare, "not-before-share", loadtest.DefaultNotBefore, "share with not_before in the near future")
	cli.Float(fs, &f.badShare, "malformed-share", loadtest.DefaultMalformed, "share of malformed records (must reach herald.dlq)")
	cli.Duration(fs, &f.blackoutFor, "blackout-for", loadtest.DefaultBlackoutFor, "least hold of a blackout notification (its window ends at the next whole minute after this)")
	cli.Duration(fs, &f.nbMin, "not-before-min", loadtest.DefaultNotBeforeMin, "least not_before after publication")
	cli.Duration(fs, &f.nbMax, "not-before-max", loadtest.DefaultNotBeforeMax, "most not_before after publication")
	cli.Float(fs, &f.windowShare, "window-queued-share", loadtest.DefaultWindowQueued, "share whose blackout window opens shortly after publication, while the send commands may still queue")
	cli.Float(fs, &f.expiringShare, "expiring-share", loadtest.DefaultExpiring, "share whose expires_at falls shortly after publication, inside the backlog")
	cli.Float(fs, &f.slowShare, "slow-provider-share", loadtest.DefaultSlowProvider, "share whose email provider is slower than --provider-timeout (one attempt per channel, email then SMS)")
	cli.Duration(fs, &f.windowAfter, "window-after", loadtest.DefaultWindowAfter, "a window-queued notification's window opens at the first whole minute at least this long after publication")
	cli.Duration(fs, &f.windowLength, "window-length", loadtest.DefaultWindowLength, "how long a window-queued notification's window stays open (whole minutes)")
	cli.Duration(fs, &f.expireAfter, "expire-after", loadtest.DefaultExpireAfter, "expires_at of an expiring notification, after publication")
	cli.Duration(fs, &f.slowLatency, "slow-latency", loadtest.DefaultSlowLatency, "how long the slow email provider takes (must exceed --provider-timeout); it delivers even when the caller gave up")
	cli.Duration(fs, &f.transit, "cutoff-transit", loadtest.DefaultCutoffTransit, "a call arriving at the provider this soon after a window's opening or an expiry counts as started before it")
	cli.Duration(fs, &f.providerTimeout, "provider-timeout", contract.DefaultProviderTimeout, "--provider-timeout of every herald run")
	cli.Int(fs, &f.seed, "seed", 1, "seed of the generated run")
	cli.String(fs, &f.emailSim, "email-provider", "latency=1s&fail=0.01&permanent=0.001", "email simulation, as the mock provider's query (latency, jitter, fail, permanent, throttle)")
	cli.String(fs, &f.smsSim, "sms-provider", "latency=50ms", "SMS simulation, as the mock provider's query")
	cli.Bool(fs, &f.honourIdem, "provider-idempotency", false, "let the mock provider honour Idempotency-Key (off: every second delivery counts as a duplicate)")
	cli.Int(fs, &f.partitions, "partitions", topology.DefaultPartitions, "partitions of Herald's topics")
	cli.Int(fs, &f.instances, "instances", 1, "herald run processes")
	cli.Int(fs, &f.concurrency, "send-concurrency", 0, "sender in-flight limit per process; 0 keeps the sender's default")
	cli.ListVar(fs, &f.sweep, "sweep", "capacity sweep dimension: partitions=4,12,24 or instances=1,2,3")
	cli.String(fs, &f.target, "target", "1000000/2h", "volume the capacity recommendation plans for, COUNT/DURATION")
	cli.Float(fs, &f.headroom, "headroom", 2, "the recommendation plans for this multiple of the target rate")
	cli.Float(fs, &f.instanceCores, "instance-cores", 1, "CPU cores each production instance gets, for the recommendation")
	cli.Bool(fs, &f.herald, "herald", true, "run Herald (false: only the baseline)")
	cli.Bool(fs, &f.baseline, "baseline", true, "also run the row-lock baseline on the same workload")
	cli.Int(fs, &f.baselineN, "baseline-notifications", 0, "distinct records of each baseline run; 0: the same as Herald's, or as many as fit in --baseline-budget at that concurrency")
	cli.Duration(fs, &f.baselineBudget, "baseline-budget", loadtest.DefaultBaselineBudget, "the longest a baseline run sized automatically should take")
	cli.String(fs, &f.baselineConc, "baseline-concurrency", "180,herald", "the baseline's concurrent sends, comma-separated; 'herald' is Herald's own (instances × sender concurrency)")
	cli.String(fs, &f.reportDir, "report-dir", "./loadtest-report", "where report.md, summary.json and the charts go")
	cli.String(fs, &f.workDir, "work-dir", "", "data of the broker, the processes and PostgreSQL (default: a temp dir, removed afterwards)")
	cli.Bool(fs, &f.keep, "keep", false, "keep the work dir (logs, data) after the run")
	cli.String(fs, &f.databaseURL, "database-url", "", "an existing PostgreSQL to use (a database per run is created on it); empty starts a local one in the work dir")
	cli.Bool(fs, &f.pgEphemeral, "pg-ephemeral", false, "run the local PostgreSQL without fsync (faster, not what production pays)")
	cli.String(fs, &f.bin, "herald-bin", "", "the herald binary to run (default: the herald beside herald-loadtest, then the one on PATH)")
	cli.ListVar(fs, &f.runArgs, "run-arg", "extra flag for every `herald run`, e.g. --run-arg=--log-level=info")
	cli.Duration(fs, &f.timeout, "timeout", loadtest.DefaultTimeout, "give up on a run after this long")
	cli.Duration(fs, &f.rerunDelay, "rerun-delay", loadtest.DefaultRerunDelay, "pause between the batch and its re-run")
	cli.Duration(fs, &f.settle, "settle", 0, "pause between the processes being ready and the first record (0: 2 s, 8 s with several instances)")
	cli.Duration(fs, &f.quiet, "quiet", loadtest.DefaultQuiet, "watch this long for late provider calls after the last notification is final")
	cli.String(fs, &f.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	cli.Int(fs, &f.history, "history", 0, "final states seeded straight into the dispatcher's changelog before each run (12000000: a year at 1,000,000 a month), the older than --state-retention as remembered records; 0: an empty table")
	cli.Duration(fs, &f.historySpan, "history-span", loadtest.DefaultHistorySpan, "how far back the --history states' last changes go (below --dedup-retention)")
	cli.Bool(fs, &f.historyEmpty, "history-empty", true, "with --history, run each point on an empty table first, for comparison")
	cli.Int(fs, &f.apiOnly, "api-only", 0, "extra API-only processes (herald run --stages api) beside the --instances")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	log, err := cli.NewLogger(f.logLevel, "text")
	if err != nil {
		return err
	}
	email, err := loadtest.ParseProviderQuery(f.emailSim)
	if err != nil {
		return fmt.Errorf("--email-provider: %w", err)
	}
	sms, err := loadtest.ParseProviderQuery(f.smsSim)
	if err != nil {
		return fmt.Errorf("--sms-provider: %w", err)
	}
	spec := loadtest.ProviderSpec{Email: email, SMS: sms, HonourIdempotency: f.honourIdem}
	sweep, err := loadtest.ParseSweep(f.sweep.Vals, f.partitions, f.instances)
	if err != nil {
		return err
	}
	target, err := loadtest.ParseTarget(f.target)
	if err != nil {
		return err
	}
	wl := loadtest.Workload{N: f.n, Duplicates: f.dupShare, Blackout: f.blackoutShare, NotBefore: f.nbShare,
		Malformed: f.badShare, BlackoutFor: f.blackoutFor, NotBeforeMin: f.nbMin, NotBeforeMax: f.nbMax,
		WindowQueued: f.windowShare, Expiring: f.expiringShare, SlowProvider: f.slowShare, WindowAfter: f.windowAfter,
		WindowLength: f.windowLength, ExpireAfter: f.expireAfter, SlowLatency: f.slowLatency, CutoffTransit: f.transit,
		Campaign: "bill-" + time.Now().UTC().Format("20060102-150405"), Seed: uint64(f.seed)}
	if _, err := loadtest.NewPlan(wl); err != nil {
		return err
	}
	bin := f.bin
	if bin == "" {
		if bin, err = heraldBinary(); err != nil {
			return err
		}
	}
	workDir := f.workDir
	if workDir == "" {
		if workDir, err = os.MkdirTemp("", "herald-loadtest-"); err != nil {
			return err
		}
		if !f.keep {
			defer os.RemoveAll(workDir)
		}
	} else if err := os.MkdirAll(workDir, 0o755); err != nil {
		return fmt.Errorf("--work-dir: %w", err)
	}
	// PostgreSQL runs as the postgres user when we are root: it must be
	// able to reach its data dir.
	if err := os.Chmod(workDir, 0o755); err != nil {
		return err
	}
	env, err := loadtest.NewEnv(ctx, loadtest.EnvConfig{Binary: bin, WorkDir: workDir, DatabaseURL: f.databaseURL,
		PGEphemeral: f.pgEphemeral, Log: log, Progress: os.Stderr})
	if err != nil {
		return err
	}
	defer env.Close()

	rep := &loadtest.Report{Command: "herald-loadtest " + strings.Join(args, " "), Generated: time.Now(), Host: loadtest.ThisHost()}
	var runErr error
	points := sweep.Points()
	if len(points) == 0 {
		return errors.New("--sweep: no point has instances <= partitions")
	}
	if f.history < 0 || f.apiOnly < 0 {
		return errors.New("--history and --api-only must not be negative")
	}
	hist := loadtest.History{States: f.history, Span: f.historySpan}
	if f.history > 0 {
		if err := hist.Validate(0); err != nil {
			return fmt.Errorf("--history: %w", err)
		}
	}
	for _, pt := range points {
		if !f.herald || ctx.Err() != nil {
			break
		}
		rc := loadtest.RunConfig{Workload: wl, Rate: f.rate, Provider: spec,
			Partitions: pt.Partitions, Instances: pt.Instances, Concurrency: f.concurrency, ProviderTimeout: f.providerTimeout,
			RunArgs: f.runArgs.Vals, Timeout: f.timeout, Settle: f.settle, RerunDelay: f.rerunDelay, Quiet: f.quiet,
			APIOnly: f.apiOnly}
		rc.Name = fmt.Sprintf("p%d-i%d", pt.Partitions, pt.Instances)
		if f.apiOnly > 0 {
			rc.Name += fmt.Sprintf("-api%d", f.apiOnly)
		}
		cfgs := []loadtest.RunConfig{rc}
		if f.history > 0 {
			withHist := rc
			withHist.History = hist
			withHist.Name += "-history"
			cfgs = []loadtest.RunConfig{withHist}
			if f.historyEmpty {
				cfgs = []loadtest.RunConfig{rc, withHist}
			}
		}
		for _, rc := range cfgs {
			res, err := env.Run(ctx, rc)
			if res != nil {
				rep.Runs = append(rep.Runs, res)
			}
			if err != nil {
				runErr = errors.Join(runErr, fmt.Errorf("run %s: %w", rc.Name, err))
				if ctx.Err() != nil {
					break
				}
			}
		}
	}
	if f.baseline && ctx.Err() == nil {
		emailSim, _ := spec.EmailSimulation()
		for _, c := range cli.SplitList(f.baselineConc) {
			conc := 0
			if c == "herald" {
				conc = f.instances * env.SenderConcurrency(f.concurrency)
				if len(points) > 1 {
					conc = points[len(points)-1].Instances * env.SenderConcurrency(f.concurrency)
				}
			} else if conc, err = strconv.Atoi(c); err != nil || conc < 1 {
				return fmt.Errorf("--baseline-concurrency: %q is neither a positive integer nor 'herald'", c)
			}
			if conc <= 0 {
				runErr = errors.Join(runErr, errors.New("baseline: Herald's sender concurrency is unknown; pass --send-concurrency"))
				continue
			}
			bw := wl
			bw.N = f.baselineN
			if bw.N <= 0 {
				bw.N = loadtest.BaselineN(wl.N, conc, emailSim.Latency, f.baselineBudget)
			}
			res, err := env.RunBaseline(ctx, loadtest.BaselineConfig{Name: fmt.Sprintf("baseline-c%d", conc), Workload: bw,
				Rate: f.rate, Provider: spec, Concurrency: conc, Timeout: f.timeout, RerunDelay: f.rerunDelay, Quiet: f.quiet})
			if res != nil {
				rep.Baselines = append(rep.Baselines, res)
			}
			if err != nil {
				runErr = errors.Join(runErr, fmt.Errorf("baseline c%d: %w", conc, err))
			}
		}
	}
	if len(points) > 1 || len(f.sweep.Vals) > 0 {
		rec := loadtest.RecommendFromRuns(target, spec, f.headroom, f.instanceCores, rep.Runs)
		rep.Recommendation = &rec
	}
	if len(rep.Runs)+len(rep.Baselines) > 0 {
		dir, _ := filepath.Abs(f.reportDir)
		if err := rep.Write(dir); err != nil {
			runErr = errors.Join(runErr, err)
		}
		fmt.Fprint(os.Stdout, rep.Summary())
		fmt.Fprintf(os.Stdout, "Report: %s\n", filepath.Join(dir, "report.md"))
		if f.keep {
			fmt.Fprintf(os.Stdout, "Work dir (logs, data): %s\n", workDir)
		}
	}
	if runErr != nil {
		return runErr
	}
	if !rep.Passed() {
		return errors.New("load test FAILED: see the failed checks above")
	}
	return nil
}

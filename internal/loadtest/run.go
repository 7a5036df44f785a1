package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/loadtest/baseline"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/herald-dispatch/herald/internal/topology"
)

// RunConfig is one run of the pipeline: a workload through a number of
// `herald run` processes on a fresh broker and a fresh database.
type RunConfig struct {
	// Name labels the run (report, databases, data dirs).
	Name     string
	Workload Workload
	// Rate is records per second offered; 0 is as fast as the broker takes
	// them.
	Rate     float64
	Provider ProviderSpec
	// Partitions of Herald's topics; Instances is the number of
	// `herald run` processes.
	Partitions, Instances int
	// Concurrency is the sender's in-flight limit per process (0: the
	// sender's default).
	Concurrency int
	// ProviderTimeout is every `herald run`'s --provider-timeout (0:
	// contract.DefaultProviderTimeout). The slow_provider share's email calls
	// (Workload.SlowLatency) must take longer.
	ProviderTimeout time.Duration
	// Brokers is an existing Kafka; empty starts `herald broker` with a
	// fresh data dir for the run. With an existing Kafka, the topics must
	// not hold an earlier run's records.
	Brokers []string
	// RunArgs are extra flags for every `herald run`.
	RunArgs []string
	// Timeout bounds the run from the first publication.
	Timeout time.Duration
	// Settle is the pause between every process being ready and the first
	// publication (consumer groups finish rebalancing).
	Settle time.Duration
	// RerunDelay is the pause before the batch's re-run.
	RerunDelay time.Duration
	// Quiet is how long the run watches for late provider calls after the
	// last notification became final.
	Quiet time.Duration
	// History, when its States is set, is seeded into the dispatcher's
	// changelog before any herald starts (history.go): the run's burst
	// then lands on a table that has lived that long. Its Partitions are
	// the run's.
	History History
	// APIOnly is the number of extra `herald run --stages api` processes
	// (an API-only replica: a view of the table and the HTTP API, no
	// processor), started beside the Instances.
	APIOnly int
}

// Run defaults.
const (
	DefaultTimeout    = 30 * time.Minute
	DefaultRerunDelay = 10 * time.Second
	DefaultQuiet      = 5 * time.Second
)

func (rc RunConfig) withDefaults() RunConfig {
	rc.Workload = rc.Workload.WithDefaults()
	if rc.Partitions <= 0 {
		rc.Partitions = topology.DefaultPartitions
	}
	if rc.Instances <= 0 {
		rc.Instances = 1
	}
	if rc.Timeout <= 0 {
		rc.Timeout = DefaultTimeout
	}
	if rc.Settle <= 0 {
		rc.Settle = 2 * time.Second
		if rc.Instances > 1 {
			rc.Settle = 8 * time.Second
		}
	}
	if rc.RerunDelay <= 0 {
		rc.RerunDelay = DefaultRerunDelay
	}
	if rc.Quiet <= 0 {
		rc.Quiet = DefaultQuiet
	}
	if rc.Name == "" {
		rc.Name = fmt.Sprintf("p%d-i%d", rc.Partitions, rc.Instances)
	}
	if rc.Provider.Email == nil {
		rc.Provider = DefaultProviderSpec()
	}
	if rc.ProviderTimeout <= 0 {
		rc.ProviderTimeout = contract.DefaultProviderTimeout
	}
	return rc
}

// validate refuses a run whose slow provider would not be slow.
func (rc RunConfig) validate() error {
	if w := rc.Workload; w.SlowProvider > 0 && w.SlowLatency <= rc.ProviderTimeout {
		return fmt.Errorf("slow provider latency %s must be longer than the provider timeout %s, or the slow_provider share tests nothing", w.SlowLatency, rc.ProviderTimeout)
	}
	return nil
}

// Throughput is a run's rates, per second.
type Throughput struct {
	// In is records acknowledged by the broker, Out provider calls,
	// Delivered deliveries the provider accepted, Completed notifications
	// final in PostgreSQL.
	In, Out, Delivered, Completed Rate
	// To90 is the rate from the first publication until 90% of the valid
	// notifications were final in PostgreSQL: what the batch's owner sees,
	// start-up included, the held notifications' wait at the end excluded,
	// and not fooled by the sink writing in bursts. The capacity sweep and
	// the baseline comparison use it.
	To90 float64
}

// Result is everything a run measured.
type Result struct {
	Name        string         `json:"name"`
	Partitions  int            `json:"partitions"`
	Instances   int            `json:"instances"`
	Concurrency int            `json:"concurrency"`
	Rate        float64        `json:"offered_rate"`
	N           int            `json:"n"`
	Records     int            `json:"records"`
	Valid       int            `json:"valid"`
	Kinds       map[string]int `json:"kinds"`
	Duplicates  int            `json:"duplicates"`
	Provider    string         `json:"provider"`
	Started     time.Time      `json:"started"`
	// PublishTook is the first to the last acknowledged record (re-run
	// included); Elapsed is the first publication to the last
	// notification final (Complete), or to the timeout.
	PublishTook time.Duration `json:"publish_took"`
	Elapsed     time.Duration `json:"elapsed"`
	Complete    bool          `json:"complete"`
	Throughput  Throughput    `json:"throughput"`
	EndToEnd    Latency       `json:"end_to_end"`
	Lateness    Latency       `json:"lateness"`
	// StatusBehind is the status in PostgreSQL behind the provider's
	// answer (Herald's runs; nil for the baseline, which writes the status
	// in the call's own transaction).
	StatusBehind *StatusBehind `json:"status_behind,omitempty"`
	// PeakLag is the highest total lag of the groups that do work (the
	// delay stage's groups excepted, see Sample.TotalLag).
	PeakLag int64 `json:"peak_lag"`
	// PeakLagByGroup is each group's own peak.
	PeakLagByGroup map[string]int64 `json:"peak_lag_by_group"`
	// Procs is each process's CPU and memory, read when the run completed.
	Procs         map[string]ProcUsage `json:"procs"`
	ProviderStats provider.Stats       `json:"provider_stats"`
	Checks        []CheckResult        `json:"checks"`
	Samples       []Sample             `json:"samples"`
	Errors        []string             `json:"errors,omitempty"`
	// Baseline holds the baseline's own counters (baseline runs only).
	Baseline *baseline.Stats `json:"baseline,omitempty"`
	// APIOnly is the number of API-only processes (RunConfig.APIOnly).
	APIOnly int `json:"api_only,omitempty"`
	// History is what was seeded into the changelog before the run (nil:
	// an empty table).
	History *HistoryStats `json:"history,omitempty"`
	// CPUBefore is each process's CPU seconds at the first publication:
	// its start-up (a history's recovery; the load test's own seeding).
	CPUBefore map[string]float64 `json:"cpu_before_burst,omitempty"`
	// Ready is how long each herald process took from its start to
	// answering /readyz (its table and view recovered).
	Ready map[string]time.Duration `json:"ready,omitempty"`
	// Lookups is GET /v1/messages/{id} on the first process after the
	// run, one at a time, per kind of id: "burst", and with a history
	// "history-remembered" and "history-final".
	Lookups map[string]Latency `json:"lookups,omitempty"`
	// ChangelogBytes is the dispatcher changelog's size in the broker's
	// data dir after the run; Stores each herald's local storage.
	ChangelogBytes int64                 `json:"changelog_bytes,omitempty"`
	Stores         map[string]StoreBytes `json:"stores,omitempty"`
	endToEndHist   *hdrhistogram.Histogram
	latenessHist   *hdrhistogram.Histogram
}

// Passed reports whether the run completed and every check passed.
func (r *Result) Passed() bool {
	return r.Complete && len(r.Errors) == 0 && len(Failed(r.Checks)) == 0
}

// HeraldCPU sums the CPU seconds the herald run processes spent from the
// first publication on (their start-up, and a history's recovery, left
// out: CPUBefore), and gives the highest peak RSS among them, start-up
// included.
func (r *Result) HeraldCPU() (cpu float64, peakRSS int64) {
	for name, u := range r.Procs {
		if strings.HasPrefix(name, "herald-") {
			cpu += u.CPU - r.CPUBefore[name]
			peakRSS = max(peakRSS, u.PeakRSS)
		}
	}
	return cpu, peakRSS
}

// runState is a run in progress.
type runState struct {
	env     *Env
	rc      RunConfig
	dir     string
	plan    *Plan
	rec     *Recorder
	prov    *ProviderServer
	broker  *child
	heralds []*child
	// metrics are the herald processes' /metrics URLs.
	metrics []string
	brokers []string
	dbURL   string
	pool    *pgxpool.Pool
	watch   *ProcWatch
	res     *Result
	// apiURLs are the herald processes' HTTP bases; ready how long each
	// took to answer /readyz; history what was seeded (nil: none).
	apiURLs []string
	ready   map[string]time.Duration
	history *HistoryStats
}

// Run runs one configuration to the end and checks it. The error is for
// a run that could not be carried out at all; a run that finished with
// failed checks returns a Result whose Passed is false.
func (e *Env) Run(ctx context.Context, rc RunConfig) (*Result, error) {
	rc = rc.withDefaults()
	if err := rc.validate(); err != nil {
		return nil, err
	}
	plan, err := NewPlan(rc.Workload)
	if err != nil {
		return nil, err
	}
	s := &runState{env: e, rc: rc, plan: plan, dir: filepath.Join(e.cfg.WorkDir, rc.Name)}
	defer s.cleanup()
	if err := os.RemoveAll(s.dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	if !e.HasRunFlag("provider") {
		return nil, errors.New("`herald run` has no --provider flag: the sender stage is not built into this binary, so nothing would be sent")
	}
	if s.watch, err = NewProcWatch(); err != nil {
		return nil, err
	}
	s.watch.Watch("loadtest+provider", os.Getpid(), false)
	if pid := e.postgresPID(); pid > 0 {
		s.watch.Watch("postgres", pid, true)
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	s.res = &Result{Name: rc.Name, Partitions: rc.Partitions, Instances: rc.Instances, Concurrency: rc.Concurrency,
		Rate: rc.Rate, N: plan.W.N, Records: plan.Records(), Valid: plan.Valid(), Duplicates: len(plan.Rerun),
		Kinds: map[string]int{}, Provider: providerLabel(rc.Provider), APIOnly: rc.APIOnly, History: s.history,
		Ready: s.ready}
	for _, k := range Kinds() {
		s.res.Kinds[k.String()] = plan.Count(k)
	}
	s.res.CPUBefore = map[string]float64{}
	for name, u := range s.watch.Sample() {
		s.res.CPUBefore[name] = u.CPU
	}
	if err := s.drive(ctx); err != nil {
		return s.res, err
	}
	if s.res.Lookups, err = s.measureLookups(ctx); err != nil {
		s.res.Errors = append(s.res.Errors, err.Error())
	}
	s.cleanup() // the stores and the changelog are measured closed
	s.measureDisk()
	return s.res, nil
}

func providerLabel(p ProviderSpec) string {
	return "email " + p.Email.Encode() + "; sms " + p.SMS.Encode()
}

func (s *runState) logf(format string, args ...any) {
	s.env.cfg.Log.Info(fmt.Sprintf(format, args...), "run", s.rc.Name)
}

// start brings up the provider, the broker, the database and the herald
// processes, and waits until they are ready.
func (s *runState) start(ctx context.Context) error {
	rc := s.rc
	s.rec = NewRecorder(s.plan, rc.Provider.HonourIdempotency)
	var err error
	if s.prov, err = StartProvider(s.rec); err != nil {
		return err
	}
	s.brokers = rc.Brokers
	if len(s.brokers) == 0 {
		addr, err := FreeAddr()
		if err != nil {
			return err
		}
		s.broker, err = startChild("broker", s.env.cfg.Binary, []string{"broker", "--broker-addr", addr,
			"--data-dir", filepath.Join(s.dir, "broker"), "--partitions", strconv.Itoa(rc.Partitions),
			"--log-level", "warn"}, filepath.Join(s.dir, "broker.log"), nil)
		if err != nil {
			return err
		}
		s.watch.Watch("broker", s.broker.pid(), false)
		s.brokers = []string{addr}
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = topology.WaitForBrokers(wctx, s.brokers)
	if err == nil {
		// `herald broker` creates the topics just after it listens; make
		// sure they exist with the run's partition count before anything
		// else asks for them.
		err = topology.EnsureTopics(wctx, topology.Config{Brokers: s.brokers, Partitions: rc.Partitions}.WithDefaults())
	}
	cancel()
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	if rc.History.States > 0 {
		if err := s.seedHistory(ctx); err != nil {
			return err
		}
	}
	if s.dbURL, err = s.env.NewDatabase(ctx, rc.Name); err != nil {
		return err
	}
	if s.pool, err = pgxpool.New(ctx, s.dbURL); err != nil {
		return fmt.Errorf("database: %w", err)
	}

	emailURL := s.prov.ChannelURL("email", rc.Provider.Email)
	smsURL := s.prov.ChannelURL("sms", rc.Provider.SMS)
	readyURLs := make([]string, rc.Instances+rc.APIOnly)
	started := make([]time.Time, rc.Instances+rc.APIOnly)
	for i := range rc.Instances + rc.APIOnly {
		addr, err := FreeAddr()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("herald-%d", i+1)
		if i >= rc.Instances {
			name = fmt.Sprintf("api-%d", i-rc.Instances+1)
		}
		args := []string{"run", "--brokers", strings.Join(s.brokers, ","),
			"--data-dir", filepath.Join(s.dir, name), "--http-addr", addr,
			"--database-url", s.dbURL, "--partitions", strconv.Itoa(rc.Partitions),
			"--log-level", "warn",
			"--provider", "email=" + emailURL, "--provider", "sms=" + smsURL}
		if s.env.HasRunFlag("provider-timeout") {
			args = append(args, "--provider-timeout", rc.ProviderTimeout.String())
		}
		if rc.Concurrency > 0 {
			f := s.env.concurrencyFlag()
			if f == "" {
				return errors.New("`herald run` has no sender concurrency flag; drop --concurrency")
			}
			args = append(args, "--"+f, strconv.Itoa(rc.Concurrency))
		}
		args = append(args, rc.RunArgs...)
		if i >= rc.Instances {
			args = append(args, "--stages", "api")
		}
		started[i] = time.Now()
		c, err := startChild(name, s.env.cfg.Binary, args, filepath.Join(s.dir, name+".log"), nil)
		if err != nil {
			return err
		}
		s.heralds = append(s.heralds, c)
		s.watch.Watch(name, c.pid(), false)
		readyURLs[i] = "http://" + addr + "/readyz"
		s.apiURLs = append(s.apiURLs, "http://"+addr)
		if i < rc.Instances { // an API-only process has no sender gauges
			s.metrics = append(s.metrics, "http://"+addr+"/metrics")
		}
	}
	// A table of a year takes a while to recover.
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute+time.Duration(rc.History.States/10_000)*time.Second)
	defer cancel()
	s.ready = map[string]time.Duration{}
	errs := make([]error, len(s.heralds))
	took := make([]time.Duration, len(s.heralds))
	var wg sync.WaitGroup
	for i, c := range s.heralds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = waitReady(rctx, c, readyURLs[i])
			took[i] = time.Since(started[i])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, c := range s.heralds {
		s.ready[c.name] = took[i]
		s.logf("%s ready in %s", c.name, took[i].Round(100*time.Millisecond))
	}
	settle := rc.Settle
	if align := s.plan.PublishAlignment(time.Now().Add(settle)); align > 0 {
		settle += align
		s.logf("the window_queued share's windows are to open during the backlog: %s more before publishing", align)
	}
	s.logf("%d herald processes ready on %d partitions; settling %s", rc.Instances, rc.Partitions, settle)
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// concurrencyFlag is the name of the sender's in-flight limit flag.
func (e *Env) concurrencyFlag() string {
	for _, f := range []string{"send-concurrency", "sender-concurrency", "concurrency", "max-in-flight"} {
		if e.HasRunFlag(f) {
			return f
		}
	}
	return ""
}

// drive publishes, watches until every notification is final, then
// gathers what happened and checks it.
func (s *runState) drive(ctx context.Context) error {
	pub := &Publisher{Plan: s.plan, Brokers: s.brokers, Rate: s.rc.Rate, RerunDelay: s.rc.RerunDelay}
	lagR, err := newLagReader(s.brokers)
	if err != nil {
		return err
	}
	defer lagR.Close()
	return watchRun(ctx, watchSpec{
		plan: s.plan, rec: s.rec, procs: s.watch, timeout: s.rc.Timeout, quiet: s.rc.Quiet,
		out: s.env.cfg.Progress, log: s.env.cfg.Log,
		publish:   pub.Run,
		published: pub.Acked,
		lastAck:   pub.finished.Load,
		progress: func(ctx context.Context) (int64, int64, error) {
			return dbProgress(ctx, s.pool, s.plan.W.Campaign)
		},
		lag:     lagR.Lag,
		senders: senderGauges{urls: s.metrics, client: &http.Client{Timeout: 2 * time.Second}}.read,
		alive: func() error {
			for _, c := range append([]*child{s.broker}, s.heralds...) {
				if c == nil {
					continue
				}
				if done, err := c.exited(); done {
					return fmt.Errorf("%s exited during the run (%v):\n%s", c.name, err, c.tail(30))
				}
			}
			return nil
		},
		observe: func(ctx context.Context, o *Observed) []string {
			var errs []string
			var err error
			if o.DB, err = dbCounts(ctx, s.pool, s.plan.W.Campaign); err != nil {
				errs = append(errs, err.Error())
			}
			if o.FinalSynced, err = dbFinalSynced(ctx, s.pool, s.plan); err != nil {
				errs = append(errs, err.Error())
			}
			if o.DLQ, err = readDLQ(ctx, s.brokers); err != nil {
				errs = append(errs, err.Error())
			}
			return errs
		},
	}, s.res)
}

func throughputOf(samples []Sample, valid int64) Throughput {
	t := Throughput{
		In:        Rates(samples, func(s Sample) int64 { return s.Published }, 1),
		Out:       Rates(samples, func(s Sample) int64 { return s.Calls }, 1),
		Delivered: Rates(samples, func(s Sample) int64 { return s.Delivered }, 1),
		Completed: Rates(samples, func(s Sample) int64 { return s.Completed }, 1),
	}
	// Against the valid count, not the counter's last value: a run that
	// did not finish has no steady rate to speak of.
	t.To90 = SteadyRate(samples, func(s Sample) int64 { return s.Completed }, valid, 0, 0.9)
	return t
}

// cleanup stops everything the run started.
func (s *runState) cleanup() {
	var wg sync.WaitGroup
	for _, c := range s.heralds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.stop(30 * time.Second); err != nil {
				s.env.cfg.Log.Warn("stop", "process", c.name, "err", err)
			}
		}()
	}
	wg.Wait()
	if s.pool != nil {
		s.pool.Close()
		s.pool = nil
	}
	if s.broker != nil {
		if err := s.broker.stop(30 * time.Second); err != nil {
			s.env.cfg.Log.Warn("stop", "process", "broker", "err", err)
		}
	}
	if s.prov != nil {
		s.prov.Close()
		s.prov = nil
	}
}

// ParseProviderQuery reads a channel's simulation as the mock's query
// ("latency=1s&fail=0.01&permanent=0.001") and checks it.
func ParseProviderQuery(s string) (url.Values, error) {
	q, err := url.ParseQuery(s)
	if err != nil {
		return nil, err
	}
	if _, err := provider.ParseSimulation(q); err != nil {
		return nil, err
	}
	return q, nil
}

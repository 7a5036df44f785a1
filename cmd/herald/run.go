package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/herald-dispatch/herald/internal/broker"
	"github.com/herald-dispatch/herald/internal/tableview"
	"github.com/herald-dispatch/herald/internal/topology"
)

// A stage is one part of the pipeline that `herald run` starts: the
// dispatcher, the delay stage, the sender, the sink, the status feed, the
// API. Each lives in its own stage_*.go file; pipelineStages lists them.
type stage struct {
	name string
	// flags registers the stage's flags on the run command.
	flags func(fs *flag.FlagSet)
	// start prepares the stage; the returned loop runs until ctx ends and
	// returns nil after a clean stop. start runs in the order of
	// pipelineStages, the loops run concurrently.
	start func(ctx context.Context, env *runEnv) (func(ctx context.Context) error, error)
}

// pipelineStages lists the stages of the pipeline commands, in the order
// they start. No stage depends on another having started: what they share
// (the database, the table view) the run environment resolves once, for
// whichever asks first.
func pipelineStages() []stage {
	return []stage{
		{name: "dispatcher", flags: dispatcherFlags.register, start: startDispatcher},
		{name: "delay", flags: delayFlags.register, start: startDelay},
		{name: "sender", flags: senderFlags.register, start: startSender},
		{name: "sink", flags: sinkFlags.register, start: startSink},
		{name: "status", flags: statusFlags.register, start: startStatusFeed},
		{name: "api", flags: apiFlags.register, start: startAPI},
	}
}

// runEnv is what the stages share.
type runEnv struct {
	Log      *slog.Logger
	DataDir  string
	Brokers  []string
	Topology topology.Config
	HTTPAddr string
	// Pprof mounts net/http/pprof under /debug/pprof/ (--pprof).
	Pprof bool
	// Mux is served on HTTPAddr; stages mount their routes on it.
	Mux *http.ServeMux
	// Registry is Herald's Prometheus registry, served at /metrics.
	Registry *prometheus.Registry
	// stages are the stages this process runs ("all" for every one).
	stages map[string]bool
	// given holds the flags set on the command line, by a variable or by
	// the config file (Given).
	given map[string]bool

	// db is the pipeline's PostgreSQL (Database).
	db database
	// viewDir is the storage of the table view (TableView).
	viewDir string

	mu         sync.Mutex
	ready      map[string]func() bool
	closers    []func()
	processors []func() *goka.Processor
	tableView  *tableview.StateView
	loops      []func(context.Context) error
}

// database is how the pipeline reaches PostgreSQL, resolved once.
type database struct {
	// url is --database-url; empty: the local Postgres in the data dir,
	// started only when startLocal (the sink runs in this process).
	url        string
	startLocal bool
	pgPort     int

	once sync.Once
	db   *pipelineDB
	err  error
}

// pipelineDB is the pipeline's PostgreSQL.
type pipelineDB struct {
	URL  string
	Pool *pgxpool.Pool
}

// Database returns the pipeline's PostgreSQL, the same for every stage
// that asks: --database-url, or else the local Postgres in
// <data-dir>/postgres, started on the first call when the sink runs in
// this process and stopped when herald stops. It is nil when there is
// neither (no URL, and the sink runs elsewhere). The pool connects
// lazily; the sink migrates the database before it writes.
func (e *runEnv) Database(ctx context.Context) (*pipelineDB, error) {
	d := &e.db
	d.once.Do(func() {
		url := d.url
		if url == "" {
			if !d.startLocal {
				return
			}
			u, stop, err := localDatabase(ctx, e.Log, e.DataDir, d.pgPort, false)
			if err != nil {
				d.err = err
				return
			}
			e.OnClose(stop)
			e.Log.Info("local postgres ready", "url", u)
			url = u
		}
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			d.err = fmt.Errorf("database: %w", err)
			return
		}
		e.OnClose(pool.Close)
		d.db = &pipelineDB{URL: url, Pool: pool}
	})
	return d.db, d.err
}

// TableView returns the process's one Goka view of the dispatcher table,
// shared by every stage that reads it (the sender's stale check, the API):
// a view is a full local copy of the table, so one per process is enough.
// Its storage is --api-view-dir, or <data-dir>/goka/views/table; LevelDB
// allows one process per directory. The view runs with the pipeline.
func (e *runEnv) TableView() (*tableview.StateView, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tableView != nil {
		return e.tableView, nil
	}
	dir := e.viewDir
	if dir == "" {
		dir = filepath.Join(e.DataDir, "goka", "views", "table")
	}
	v, err := tableview.NewStateView(e.Topology, dir, e.Log.With("component", "table-view"))
	if err != nil {
		return nil, err
	}
	e.tableView = v
	e.loops = append(e.loops, v.Run)
	e.ready["table-view"] = v.Recovered
	return v, nil
}

// Given reports whether the flag was set (on the command line, by its
// variable or in the config file), not left at its default.
func (e *runEnv) Given(flagName string) bool { return e.given[flagName] }

// Runs reports whether this process runs the stage.
func (e *runEnv) Runs(stage string) bool { return e.stages["all"] || e.stages[stage] }

// AddProcessor registers a stage's Goka processor for Goka's monitor
// (/goka/). get returns the processor running now, or nil (a supervisor
// builds a new one after each failure).
func (e *runEnv) AddProcessor(get func() *goka.Processor) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.processors = append(e.processors, get)
}

// Processors returns the Goka processors running now.
func (e *runEnv) Processors() []*goka.Processor {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*goka.Processor
	for _, get := range e.processors {
		if p := get(); p != nil {
			out = append(out, p)
		}
	}
	return out
}

// AddReady registers a readiness check for /readyz.
func (e *runEnv) AddReady(name string, fn func() bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ready[name] = fn
}

// OnClose registers a cleanup to run after every stage has stopped, in
// reverse order.
func (e *runEnv) OnClose(fn func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closers = append(e.closers, fn)
}

// notReady lists the checks that fail.
func (e *runEnv) notReady() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for name, fn := range e.ready {
		if !fn() {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// runFlags are the flags every pipeline command shares.
type runFlags struct {
	brokers, dataDir, databaseURL, httpAddr, brokerAddr string
	logLevel, logFormat, stages                         string
	memoryLimit                                         string
	pprof                                               bool
	partitions, replication, pgPort                     int
	retention, sessionTimeout, heartbeat                time.Duration
	security                                            kafkaSecurityFlags
}

func (f *runFlags) register(fs *flag.FlagSet, defaultStages string) {
	cli.String(fs, &f.brokers, "brokers", "", "Kafka bootstrap brokers, host:port,...; empty starts the embedded broker")
	cli.String(fs, &f.dataDir, "data-dir", "./data", "directory for the embedded broker's log, Goka's storage and the local Postgres")
	cli.String(fs, &f.databaseURL, "database-url", "", "PostgreSQL URL; empty starts a local Postgres in the data dir")
	pgPortFlag(fs, &f.pgPort)
	cli.String(fs, &f.httpAddr, "http-addr", "127.0.0.1:8080", "address of the HTTP API, /metrics and /healthz")
	cli.String(fs, &f.brokerAddr, "broker-addr", "127.0.0.1:9092", "address of the embedded broker, when --brokers is empty")
	cli.String(fs, &f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	cli.String(fs, &f.logFormat, "log-format", "text", "log format: text or json")
	cli.String(fs, &f.stages, "stages", defaultStages, "stages to run, comma-separated, or all")
	cli.Int(fs, &f.partitions, "partitions", topology.DefaultPartitions, "partitions of every co-partitioned topic (fixed once the topics exist)")
	cli.Int(fs, &f.replication, "replication", topology.DefaultReplication, "replication factor of the topics Herald creates")
	cli.Duration(fs, &f.retention, "retention", topology.DefaultRetention, "retention of Herald's stream topics")
	cli.Duration(fs, &f.sessionTimeout, "session-timeout", topology.DefaultSessionTimeout, "consumer group session timeout of every consumer: how soon a dead or paused instance's partitions move to the others")
	cli.Duration(fs, &f.heartbeat, "heartbeat-interval", topology.DefaultHeartbeatInterval, "heartbeat interval of every consumer (at most a third of --session-timeout)")
	cli.String(fs, &f.memoryLimit, "memory-limit", "", "soft memory limit of the Go runtime (debug.SetMemoryLimit), e.g. 400MiB or 1GB; empty keeps GOMEMLIMIT, or no limit. Set it below the container's limit: the garbage collector then works harder instead of the process being killed")
	cli.Bool(fs, &f.pprof, "pprof", false, "serve Go's profiles (net/http/pprof) under /debug/pprof/ on --http-addr; off by default, they expose the process's internals")
	f.security.register(fs)
}

// applyMemoryLimit sets the runtime's soft memory limit from --memory-limit.
func applyMemoryLimit(v string, log *slog.Logger) error {
	if v == "" {
		return nil
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n == 0 || n > math.MaxInt64 {
		return fmt.Errorf("--memory-limit %q: want a size such as 400MiB or 1GB", v)
	}
	debug.SetMemoryLimit(int64(n))
	log.Info("memory limit set", "limit", humanize.IBytes(n))
	return nil
}

// checkNumbers refuses a number setting out of its range before anything
// starts. Zero or a negative value is never "the default": topology and
// the stages would otherwise replace it silently (HERALD_PARTITIONS=0 ran
// with 12 partitions, which can never change afterwards).
func checkNumbers(rf *runFlags) error {
	if rf.partitions < 1 || rf.partitions > math.MaxInt32 {
		return fmt.Errorf("--partitions %d: want at least 1 (it is fixed once the topics exist)", rf.partitions)
	}
	if rf.replication < 1 || rf.replication > math.MaxInt16 {
		return fmt.Errorf("--replication %d: want at least 1", rf.replication)
	}
	if senderFlags.concurrency < 1 || senderFlags.limit.Min < 1 {
		return fmt.Errorf("--send-concurrency %d, --send-concurrency-min %d: want at least 1", senderFlags.concurrency, senderFlags.limit.Min)
	}
	if rf.pgPort < 0 || rf.pgPort > 65535 {
		return fmt.Errorf("--pg-port %d: want a port, 1 to 65535, or 0 for a free one", rf.pgPort)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"retention", rf.retention}, {"session-timeout", rf.sessionTimeout}, {"heartbeat-interval", rf.heartbeat},
		{"held-scan-interval", apiFlags.heldInterval}, {"lag-interval", apiFlags.lagInterval},
		{"delay-fetch-max-wait", delayFlags.fetchMaxWait}, {"delay-commit-interval", delayFlags.commitInterval},
		{"delay-shutdown-grace", delayFlags.shutdownGrace},
	} {
		if d.v <= 0 {
			return fmt.Errorf("--%s %s: want a positive duration", d.name, d.v)
		}
	}
	return nil
}

// pgPortFlag registers --pg-port, the port of the local Postgres.
func pgPortFlag(fs *flag.FlagSet, p *int) {
	cli.Int(fs, p, "pg-port", 0, "port of the local Postgres started when --database-url is empty (0: a free port)")
}

func init() {
	register(command{name: "run", summary: "run the pipeline (starts the embedded broker and a local Postgres unless told otherwise)",
		run: func(ctx context.Context, args []string) error { return runPipeline(ctx, "run", args, "all") }})
}

// runPipeline parses the flags of a pipeline command and runs the chosen
// stages until ctx ends.
func runPipeline(ctx context.Context, name string, args []string, defaultStages string) error {
	fs := flag.NewFlagSet("herald "+name, flag.ContinueOnError)
	var rf runFlags
	rf.register(fs, defaultStages)
	stages := pipelineStages()
	for _, s := range stages {
		if s.flags != nil {
			s.flags(fs)
		}
	}
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	log, err := cli.NewLogger(rf.logLevel, rf.logFormat)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	security, err := rf.security.load()
	if err != nil {
		return err
	}

	chosen := map[string]bool{}
	for _, s := range cli.SplitList(rf.stages) {
		chosen[s] = true
	}
	var names []string
	for _, s := range stages {
		names = append(names, s.name)
	}
	for s := range chosen {
		if s != "all" && !slices.Contains(names, s) {
			return fmt.Errorf("--stages: unknown stage %q (have %s)", s, strings.Join(names, ", "))
		}
	}

	if err := checkNumbers(&rf); err != nil {
		return err
	}
	if err := applyMemoryLimit(rf.memoryLimit, log); err != nil {
		return err
	}
	dataDir, err := filepath.Abs(rf.dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if err := checkDataDir(dataDir); err != nil {
		return err
	}
	env := &runEnv{
		Log:      log,
		DataDir:  dataDir,
		HTTPAddr: rf.httpAddr,
		Pprof:    rf.pprof,
		Mux:      http.NewServeMux(),
		Registry: prometheus.NewRegistry(),
		db:       database{url: rf.databaseURL, startLocal: chosen["all"] || chosen["sink"], pgPort: rf.pgPort},
		viewDir:  apiFlags.viewDir,
		ready:    map[string]func() bool{},
		given:    map[string]bool{},
		stages:   chosen,
	}
	fs.Visit(func(f *flag.Flag) { env.given[f.Name] = true })
	env.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	defer func() {
		for i := len(env.closers) - 1; i >= 0; i-- {
			env.closers[i]()
		}
	}()

	env.Brokers = cli.SplitList(rf.brokers)
	if len(env.Brokers) == 0 {
		b, err := broker.Start(broker.Config{Addr: rf.brokerAddr, DataDir: filepath.Join(dataDir, "kafka"),
			Partitions: rf.partitions, Log: log})
		if err != nil {
			return fmt.Errorf("embedded broker: %w (is another herald or a Kafka on %s? pass --brokers to use it)", err, rf.brokerAddr)
		}
		env.OnClose(b.Close)
		env.Brokers = b.Addrs()
		log.Info("embedded broker started", "addr", strings.Join(env.Brokers, ","), "data", filepath.Join(dataDir, "kafka"))
	}
	env.Topology = topology.Config{Brokers: env.Brokers, Partitions: rf.partitions, Replication: rf.replication,
		Retention: rf.retention, ClientID: "herald", SessionTimeout: rf.sessionTimeout, HeartbeatInterval: rf.heartbeat,
		Security: security}.WithDefaults()
	if err := env.Topology.Validate(); err != nil {
		return err
	}

	if err := checkKafkaSecurity(ctx, env.Brokers, security, rf.security.checkTimeout); err != nil {
		return err
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = topology.WaitForBrokers(waitCtx, env.Brokers, security.KgoOpts()...)
	cancel()
	if err != nil {
		return err
	}
	if err := topology.EnsureTopics(ctx, env.Topology); err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	for _, s := range stages {
		if !chosen["all"] && !chosen[s.name] {
			continue
		}
		loop, err := s.start(gctx, env)
		if err != nil {
			return fmt.Errorf("stage %s: %w", s.name, err)
		}
		if loop == nil {
			continue
		}
		log.Info("stage started", "stage", s.name)
		g.Go(func() error {
			if err := loop(gctx); err != nil {
				return fmt.Errorf("stage %s: %w", s.name, err)
			}
			return nil
		})
	}
	for _, loop := range env.loops {
		g.Go(func() error { return loop(gctx) })
	}
	g.Go(func() error { return serveHTTP(gctx, env) })
	log.Info("herald running", "brokers", strings.Join(env.Brokers, ","), "kafka_security", security.String(), "http", env.HTTPAddr,
		"partitions", env.Topology.Partitions, "data_dir", dataDir)
	err = g.Wait()
	log.Info("herald stopped")
	return err
}

// serveHTTP serves the stages' routes plus /healthz, /readyz and /metrics
// until ctx ends.
func serveHTTP(ctx context.Context, env *runEnv) error {
	if env.HTTPAddr == "" || env.HTTPAddr == "off" {
		return nil
	}
	env.Mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	env.Mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if bad := env.notReady(); len(bad) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"status":"not ready","waiting_for":["%s"]}`+"\n", strings.Join(bad, `","`))
			return
		}
		fmt.Fprintln(w, `{"status":"ready"}`)
	})
	env.Mux.Handle("GET /metrics", promhttp.HandlerFor(env.Registry, promhttp.HandlerOpts{Registry: env.Registry}))
	if env.Pprof {
		env.Mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		env.Mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		env.Mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		env.Mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		env.Mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{
		Handler:           env.Mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	ln, err := net.Listen("tcp", env.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http: listen on %s: %w", env.HTTPAddr, err)
	}
	env.Log.Info("http listening", "addr", ln.Addr().String())
	if err := serveUntil(ctx, srv, ln); err != nil {
		return fmt.Errorf("http: %w", err)
	}
	return nil
}

// serveUntil serves srv on ln until ctx ends, then shuts it down, giving
// requests in progress up to 10 s.
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// checkDataDir creates the data dir if needed and checks that this process
// can write in it, so that a volume owned by another user stops herald at
// once with one clear error (not a Goka storage error per partition later).
func checkDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("--data-dir %s is not writable by uid %d (a container volume must belong to Herald's user): %w", dir, os.Getuid(), err)
	}
	f.Close()
	return os.Remove(f.Name())
}

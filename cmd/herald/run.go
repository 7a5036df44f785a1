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

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/herald-dispatch/herald/internal/broker"
	"github.com/herald-dispatch/herald/internal/dispatcher"
	"github.com/herald-dispatch/herald/internal/tableview"
	"github.com/herald-dispatch/herald/internal/topology"
)

// A stage is one part of the pipeline that `herald run` starts: the
// dispatcher, the delay stage, the sender, the sink, the status feed, the
// API. Each lives in its own stage_*.go file; runFlags.pipelineStages
// lists them.
type stage struct {
	name string
	// flags registers the stage's flags on the run command.
	flags func(fs *flag.FlagSet)
	// start prepares the stage; the returned loop runs until ctx ends and
	// returns nil after a clean stop. start runs in the order of
	// runFlags.pipelineStages, the loops run concurrently.
	start func(ctx context.Context, env *runEnv) (stageLoop, error)
}

// stageLoop is a stage's run loop.
type stageLoop = func(ctx context.Context) error

// pipelineStages lists the stages of the pipeline commands, in the order
// they start, each given its own options and the shared settings it reads
// (no stage reads another's options). No stage depends on another having
// started: what they share (the database, the table view) the run
// environment resolves once, for whichever asks first.
func (f *runFlags) pipelineStages() []stage {
	return []stage{
		{name: "dispatcher", flags: f.dispatcher.register, start: func(_ context.Context, env *runEnv) (stageLoop, error) {
			return startDispatcher(env, &f.dispatcher, f.shared)
		}},
		{name: "delay", flags: f.delay.register, start: func(_ context.Context, env *runEnv) (stageLoop, error) {
			return startDelay(env, &f.delay)
		}},
		{name: "sender", flags: f.sender.register, start: func(_ context.Context, env *runEnv) (stageLoop, error) {
			return startSender(env, &f.sender, f.shared)
		}},
		{name: "sink", flags: f.sink.register, start: func(ctx context.Context, env *runEnv) (stageLoop, error) {
			return startSink(ctx, env, &f.sink)
		}},
		{name: "status", flags: f.status.register, start: func(_ context.Context, env *runEnv) (stageLoop, error) {
			return startStatusFeed(env, &f.status)
		}},
		{name: "api", flags: f.api.register, start: func(ctx context.Context, env *runEnv) (stageLoop, error) {
			return startAPI(ctx, env, &f.api, f.shared)
		}},
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
	// security are the Kafka TLS and SASL settings (--kafka-*).
	security *topology.Security

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

// runFlags are the flags of one pipeline command's invocation: the
// process's own, the settings several stages share, and each stage's
// options. runPipeline builds one per invocation; nothing of it lives in a
// package variable.
type runFlags struct {
	brokers, dataDir, databaseURL, httpAddr, brokerAddr string
	logLevel, logFormat, stages                         string
	memoryLimit                                         string
	pprof                                               bool
	partitions, replication, pgPort                     int
	retention, sessionTimeout, heartbeat                time.Duration
	security                                            kafkaSecurityFlags

	shared     sharedFlags
	dispatcher dispatcherOptions
	delay      delayOptions
	sender     senderOptions
	sink       sinkOptions
	status     statusOptions
	api        apiOptions
}

// sharedFlags are the settings more than one stage reads. Each is defined
// once, here, and runFlags.pipelineStages passes them to the stages that read
// them, so that two stages cannot disagree on one.
type sharedFlags struct {
	// providerTimeout (--provider-timeout) bounds one provider attempt in
	// the sender; the dispatcher's send timeout must be longer, and fires
	// after a command's cut-off plus it.
	providerTimeout time.Duration
	// sweepGrace (--sweep-grace) is how overdue a wake-up is before the
	// dispatcher's sweep makes it again, and before the API shows it stuck.
	sweepGrace time.Duration
	// providers (--provider) are the sender's providers; the API checks
	// requests' channels against them.
	providers cli.List
	// viewDir (--api-view-dir) is the storage of the process's one table
	// view (runEnv.TableView), read by the api, sender and dispatcher.
	viewDir string
}

// register registers the shared settings' flags on fs.
func (f *sharedFlags) register(fs *flag.FlagSet) {
	// Lists append: start each parse empty (a value registered again).
	f.providers = cli.List{}
	cli.ListVar(fs, &f.providers, "provider", "provider of a channel, CHANNEL=URL (http(s)://, smtp(s)://, mock://, template:PATH); repeat a channel for a failover chain, in order; default email and sms mocks")
	cli.Duration(fs, &f.providerTimeout, "provider-timeout", contract.DefaultProviderTimeout, "timeout of one provider attempt; the dispatcher's send timeout assumes it, and each send command carries it to the sender, which bounds the command's call by it too")
	cli.Duration(fs, &f.sweepGrace, "sweep-grace", dispatcher.DefaultSweepGrace, "how overdue a wake-up must be before the sweep makes it again")
	cli.String(fs, &f.viewDir, "api-view-dir", "", "storage of the API's view of the dispatcher table; empty: <data-dir>/goka/views/table (one process per dir; shared by the api and sender stages)")
}

// register registers every flag of a pipeline command on fs: the
// process's, the shared settings', then each stage's.
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
	f.shared.register(fs)
	for _, s := range f.pipelineStages() {
		s.flags(fs)
	}
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
	if rf.sender.concurrency < 1 || rf.sender.limit.Min < 1 {
		return fmt.Errorf("--send-concurrency %d, --send-concurrency-min %d: want at least 1", rf.sender.concurrency, rf.sender.limit.Min)
	}
	if rf.pgPort < 0 || rf.pgPort > 65535 {
		return fmt.Errorf("--pg-port %d: want a port, 1 to 65535, or 0 for a free one", rf.pgPort)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"retention", rf.retention}, {"session-timeout", rf.sessionTimeout}, {"heartbeat-interval", rf.heartbeat},
		{"held-scan-interval", rf.api.heldInterval}, {"lag-interval", rf.api.lagInterval},
		{"delay-fetch-max-wait", rf.delay.fetchMaxWait}, {"delay-commit-interval", rf.delay.commitInterval},
		{"delay-shutdown-grace", rf.delay.shutdownGrace},
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

// runPipeline runs a pipeline command: it reads the invocation's flags
// into one runFlags, lists the stages, wires them (the run environment,
// Kafka and its topics) and runs the chosen ones until ctx ends.
func runPipeline(ctx context.Context, name string, args []string, defaultStages string) error {
	rf := new(runFlags)
	stages := rf.pipelineStages()
	fs := flag.NewFlagSet("herald "+name, flag.ContinueOnError)
	rf.register(fs, defaultStages)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	env, err := newRunEnv(rf, stages)
	if err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) { env.given[f.Name] = true })
	defer env.close()
	if err := env.connect(ctx, rf); err != nil {
		return err
	}
	return env.run(ctx, stages)
}

// newRunEnv checks the process's settings and builds the run environment:
// the logger, the stages chosen, the data dir. Nothing is created before
// every setting has been read and checked.
func newRunEnv(rf *runFlags, stages []stage) (*runEnv, error) {
	log, err := cli.NewLogger(rf.logLevel, rf.logFormat)
	if err != nil {
		return nil, err
	}
	slog.SetDefault(log)
	security, err := rf.security.load()
	if err != nil {
		return nil, err
	}
	chosen, err := chooseStages(rf.stages, stages)
	if err != nil {
		return nil, err
	}
	if err := checkNumbers(rf); err != nil {
		return nil, err
	}
	if err := applyMemoryLimit(rf.memoryLimit, log); err != nil {
		return nil, err
	}
	dataDir, err := filepath.Abs(rf.dataDir)
	if err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	if err := checkDataDir(dataDir); err != nil {
		return nil, err
	}
	env := &runEnv{
		Log:      log,
		DataDir:  dataDir,
		HTTPAddr: rf.httpAddr,
		Pprof:    rf.pprof,
		Mux:      http.NewServeMux(),
		Registry: prometheus.NewRegistry(),
		security: security,
		db:       database{url: rf.databaseURL, startLocal: chosen["all"] || chosen["sink"], pgPort: rf.pgPort},
		viewDir:  rf.shared.viewDir,
		ready:    map[string]func() bool{},
		given:    map[string]bool{},
		stages:   chosen,
	}
	env.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return env, nil
}

// chooseStages reads --stages: stage names of the pipeline, or all.
func chooseStages(list string, stages []stage) (map[string]bool, error) {
	chosen := map[string]bool{}
	for _, s := range cli.SplitList(list) {
		chosen[s] = true
	}
	var names []string
	for _, s := range stages {
		names = append(names, s.name)
	}
	for s := range chosen {
		if s != "all" && !slices.Contains(names, s) {
			return nil, fmt.Errorf("--stages: unknown stage %q (have %s)", s, strings.Join(names, ", "))
		}
	}
	return chosen, nil
}

// connect reaches Kafka: the brokers of --brokers, or else the embedded
// broker it starts; then it settles the topology, checks the TLS and SASL
// settings, waits for the brokers and creates the topics.
func (e *runEnv) connect(ctx context.Context, rf *runFlags) error {
	e.Brokers = cli.SplitList(rf.brokers)
	if len(e.Brokers) == 0 {
		dir := filepath.Join(e.DataDir, "kafka")
		b, err := broker.Start(broker.Config{Addr: rf.brokerAddr, DataDir: dir, Partitions: rf.partitions, Log: e.Log})
		if err != nil {
			return fmt.Errorf("embedded broker: %w (is another herald or a Kafka on %s? pass --brokers to use it)", err, rf.brokerAddr)
		}
		e.OnClose(b.Close)
		e.Brokers = b.Addrs()
		e.Log.Info("embedded broker started", "addr", strings.Join(e.Brokers, ","), "data", dir)
	}
	e.Topology = topology.Config{Brokers: e.Brokers, Partitions: rf.partitions, Replication: rf.replication,
		Retention: rf.retention, ClientID: "herald", SessionTimeout: rf.sessionTimeout, HeartbeatInterval: rf.heartbeat,
		Security: e.security}.WithDefaults()
	if err := e.Topology.Validate(); err != nil {
		return err
	}
	if err := checkKafkaSecurity(ctx, e.Brokers, e.security, rf.security.checkTimeout); err != nil {
		return err
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := topology.WaitForBrokers(waitCtx, e.Brokers, e.security.KgoOpts()...)
	cancel()
	if err != nil {
		return err
	}
	return topology.EnsureTopics(ctx, e.Topology)
}

// run starts the chosen stages in order, then runs their loops, the
// shared loops (the table view) and the HTTP server until ctx ends or one
// of them fails. When a stage fails to start, the loops of the stages
// started before it are stopped, and have returned, before run returns
// (and the cleanups close what they use).
func (e *runEnv) run(ctx context.Context, stages []stage) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, s := range stages {
		if !e.Runs(s.name) {
			continue
		}
		loop, err := s.start(gctx, e)
		if err != nil {
			err = fmt.Errorf("stage %s: %w", s.name, err)
			g.Go(func() error { return err }) // cancels gctx
			g.Wait()
			return err
		}
		if loop == nil {
			continue
		}
		e.Log.Info("stage started", "stage", s.name)
		g.Go(func() error {
			if err := loop(gctx); err != nil {
				return fmt.Errorf("stage %s: %w", s.name, err)
			}
			return nil
		})
	}
	for _, loop := range e.loops {
		g.Go(func() error { return loop(gctx) })
	}
	g.Go(func() error { return serveHTTP(gctx, e) })
	e.Log.Info("herald running", "brokers", strings.Join(e.Brokers, ","), "kafka_security", e.security.String(), "http", e.HTTPAddr,
		"partitions", e.Topology.Partitions, "data_dir", e.DataDir)
	err := g.Wait()
	e.Log.Info("herald stopped")
	return err
}

// close runs the cleanups registered with OnClose, in reverse order.
func (e *runEnv) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
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

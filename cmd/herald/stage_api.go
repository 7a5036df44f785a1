package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/herald-dispatch/herald/internal/metrics"
	"github.com/herald-dispatch/herald/internal/topology"
	"github.com/herald-dispatch/herald/internal/views"
	"github.com/herald-dispatch/herald/internal/views/ui"
)

type apiOptions struct {
	token        string
	maxBody      int
	heldInterval time.Duration
	lagInterval  time.Duration
	lagGroups    cli.List
	gokaMonitor  bool
}

// register registers the API stage's flags on fs.
func (f *apiOptions) register(fs *flag.FlagSet) {
	cli.String(fs, &f.token, "api-token", "", "bearer token every /v1 route requires, and that allows ?reveal=1; empty: the token in <data-dir>/api-token, generated and printed on the first start; off: no auth, no reveal (prefer the variable to the flag: flags show in ps)")
	cli.Bool(fs, &f.gokaMonitor, "goka-monitor", false, "serve Goka's monitor at /goka/ (its page loads jQuery, Bootstrap and d3 from public CDNs: blank offline)")
	cli.Int(fs, &f.maxBody, "api-max-body", views.DefaultMaxBody, "largest request body the API reads, in bytes")
	cli.Duration(fs, &f.heldInterval, "held-scan-interval", metrics.DefaultHeldInterval, "how often the view is scanned for herald_notifications and herald_held_notifications")
	cli.Duration(fs, &f.lagInterval, "lag-interval", metrics.DefaultLagInterval, "how often consumer lag is read from the brokers")
	cli.ListVar(fs, &f.lagGroups, "lag-group", "consumer group whose lag /metrics exports (default: "+fmt.Sprint(metrics.DefaultLagGroups())+")")
}

// startAPI serves the /v1 API, the console (/ui/), Goka's monitor and the
// view-based metrics; any other path answers the API's error shape (401
// without the token, else 404).
// It needs a view of the dispatcher table and a producer, and no processor,
// so `herald api` can run it alone and scale it apart from the pipeline.
func startAPI(ctx context.Context, env *runEnv, f *apiOptions, shared sharedFlags) (stageLoop, error) {
	log := env.Log.With("stage", "api")
	if f.maxBody <= 0 {
		return nil, fmt.Errorf("--api-max-body must be positive")
	}
	if env.HTTPAddr == "" || env.HTTPAddr == "off" {
		return nil, fmt.Errorf("the api stage needs --http-addr")
	}
	token, err := resolveAPIToken(f.token, env.DataDir, os.Stderr)
	if err != nil {
		return nil, err
	}
	view, err := env.TableView()
	if err != nil {
		return nil, err
	}
	opts := append(append(env.Topology.KgoOpts(), kgo.ClientID(env.Topology.ClientID+"-api")), topology.KgoProducerOpts()...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("api: kafka client: %w", err)
	}
	env.OnClose(cl.Close)

	channels, err := providerChannels(shared.providers.Vals, env.Runs("sender"))
	if err != nil {
		return nil, err
	}
	if channels == nil {
		log.Info("the providers are not known here (no --provider, no sender stage): requests are not checked for a channel with no provider")
	}
	api := &views.Server{
		Config: views.Config{Token: token, MaxBody: int64(f.maxBody), Channels: channels,
			StuckGrace: shared.sweepGrace},
		Scanner:  view,
		Table:    view,
		Producer: cl,
		Observer: metrics.NewAPI(env.Registry),
		Log:      log,
	}
	db, err := env.Database(ctx)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if db != nil {
		api.Store = views.PGStore{Q: db.Pool}
	} else {
		log.Warn("no database: GET /v1/campaigns answers 503 (set --database-url, or run the sink stage in this process)")
	}
	if token == "" {
		log.Warn("HERALD_API_TOKEN is off: the API needs no authentication and cannot reveal addresses", "addr", env.HTTPAddr)
	}
	dlq := &views.DLQReader{Brokers: env.Brokers, KgoOpts: env.Topology.KgoOpts(), Log: log}
	api.DLQ = dlq
	// Replays publish with the API's producer; herald.dlq.replays exists
	// (runPipeline ensured every topic).
	api.Replayer = &views.DLQReplayer{ReadOpts: append(env.Topology.KgoOpts(), kgo.ClientID(env.Topology.ClientID+"-dlq-replay")), Client: cl}
	env.Mux.Handle("/v1/", api.Handler())
	env.Mux.Handle("/v1", api.Handler())
	env.Mux.Handle(ui.Path, ui.Handler())
	env.Mux.Handle("GET /{$}", http.RedirectHandler(ui.Path, http.StatusFound))
	env.Mux.Handle("/", api.Authenticate(views.NotFound()))
	if f.gokaMonitor {
		env.Mux.Handle(views.MonitorPath+"/", &views.Monitor{Processors: env.Processors, Views: []*goka.View{view.Goka()}, Log: log})
	}

	held := metrics.NewHeld(env.Registry, view)
	lag := metrics.NewLag(env.Registry, kadm.NewClient(cl), f.lagGroups.Vals)
	return func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return held.Run(gctx, f.heldInterval, view.Recovered, log) })
		g.Go(func() error { return lag.Run(gctx, f.lagInterval, log) })
		g.Go(func() error { return dlq.Run(gctx) })
		return g.Wait()
	}, nil
}

package heraldtest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/delay"
	"github.com/herald-dispatch/herald/internal/provider"
)

// Stage is a part a test runs in a pipeline, under its lifecycle: the
// sender, a view of the table, the sink. heraldtest builds none of them:
// their packages' in-package tests use heraldtest, which therefore cannot
// import them.
type Stage struct {
	Name string
	Run  func(context.Context) error
}

// PipelineOptions tune StartPipeline.
type PipelineOptions struct {
	// Dispatcher tunes the dispatcher; its Now and Log default to the
	// pipeline's.
	Dispatcher DispatcherOptions
	// WithoutDelay leaves the delay stage out: held notifications stay in
	// the tier topics.
	WithoutDelay bool
	// Stages start after the dispatcher and the delay stage, in order, and
	// stop before them, in reverse order.
	Stages []Stage
	// Now is the clock of the dispatcher and the delay stage (default
	// time.Now), Log their logger (default QuietLog).
	Now func() time.Time
	Log *slog.Logger
}

// Pipeline is the send path running on a test cluster: the dispatcher and
// the delay stage, and the options' Stages.
type Pipeline struct {
	Cluster    *Cluster
	Dispatcher *Dispatcher
	Delay      *Delay // nil WithoutDelay
	stops      []func() time.Duration
}

// StartPipeline assembles the pipeline on c as `herald run` does and runs
// it until Stop or the end of the test. It does not wait for readiness.
func StartPipeline(t testing.TB, c *Cluster, o PipelineOptions) *Pipeline {
	t.Helper()
	if o.Log == nil {
		o.Log = QuietLog()
	}
	if o.Dispatcher.Now == nil {
		o.Dispatcher.Now = o.Now
	}
	if o.Dispatcher.Log == nil {
		o.Dispatcher.Log = o.Log
	}
	p := &Pipeline{Cluster: c}
	p.Dispatcher = StartDispatcher(t, c, o.Dispatcher)
	p.stops = append(p.stops, p.Dispatcher.Stop)
	if !o.WithoutDelay {
		p.Delay = StartDelay(t, c, func(cfg *delay.Config) { cfg.Now, cfg.Log = o.Now, o.Log })
		p.stops = append(p.stops, p.Delay.Stop)
	}
	for _, s := range o.Stages {
		p.stops = append(p.stops, Background(t, s.Name, s.Run))
	}
	return p
}

// Stop stops every stage, the last started first, and waits for each. It
// is also called when the test ends.
func (p *Pipeline) Stop() {
	for i := len(p.stops) - 1; i >= 0; i-- {
		p.stops[i]()
	}
}

// Providers opens a provider set (provider.OpenSet) for the sender of a
// test, closed when the test ends.
func Providers(t testing.TB, specs []string, o provider.Options) provider.Set {
	t.Helper()
	set, err := provider.OpenSet(specs, o)
	if err != nil {
		t.Fatalf("providers: %v", err)
	}
	t.Cleanup(func() { set.Close() })
	return set
}

// MockProvider serves a provider.MockServer over HTTP until the test ends
// and returns it with its URL.
func MockProvider(t testing.TB, o provider.MockServerOptions) (*provider.MockServer, string) {
	mock := provider.NewMockServer(o)
	srv := httptest.NewServer(mock)
	t.Cleanup(srv.Close)
	return mock, srv.URL
}

package heraldtest

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/lovoo/goka"

	"github.com/herald-dispatch/herald/internal/dispatcher"
	"github.com/herald-dispatch/herald/internal/gokax"
)

// DispatcherOptions tune StartDispatcher. The zero value runs the
// production wiring (dispatcher.Dispatcher.Supervisor) with DefaultLoc UTC,
// a one-hour send timeout and fresh storage.
type DispatcherOptions struct {
	// Config of the dispatch; a nil DefaultLoc is UTC and a zero
	// SendTimeout one hour.
	Config   dispatcher.DispatchConfig
	Now      func() time.Time
	Observer dispatcher.DispatchObserver
	// Log is the dispatcher's and its supervisor's (default: warnings to
	// stderr); SupervisorLog, when set, is the supervisor's instead.
	Log, SupervisorLog *slog.Logger
	// Storage is the Goka storage directory (default: a fresh one under
	// the test's temp dir). A restart passes the same one again.
	Storage string
	// MinBackoff, when set, is the supervisor's first restart delay.
	MinBackoff time.Duration
	// GokaOptions are appended to the supervisor's processor options.
	GokaOptions []goka.ProcessorOption
	// WrapProducer, when set, wraps the supervisor's producer builder (a
	// test's fault injector); the supervisor's Ledger counts what the
	// wrapper's producers report.
	WrapProducer func(goka.ProducerBuilder) goka.ProducerBuilder
	// Changelog is the dispatcher's Dispatcher.Changelog (default nil:
	// a replay always makes its send command again). View.Version is one.
	Changelog func(id string) (uint64, bool)
	// ChangelogReady is the dispatcher's Dispatcher.ChangelogReady.
	ChangelogReady func() bool
}

// Dispatcher is a supervised dispatcher running in the background.
type Dispatcher struct {
	*gokax.Supervisor
	stop func() time.Duration
}

// Stop stops the dispatcher, waits for a clean shutdown and says how long
// it took. It is also called when the test ends.
func (d *Dispatcher) Stop() time.Duration { return d.stop() }

// StartDispatcher runs a dispatcher on c, under its Supervisor, until Stop
// or the end of the test. It does not wait for it to be ready (Ready).
func StartDispatcher(t testing.TB, c *Cluster, o DispatcherOptions) *Dispatcher {
	t.Helper()
	if o.Config.DefaultLoc == nil {
		o.Config.DefaultLoc = time.UTC
	}
	if o.Config.SendTimeout == 0 {
		o.Config.SendTimeout = time.Hour
	}
	if o.Log == nil {
		o.Log = QuietLog()
	}
	if o.SupervisorLog == nil {
		o.SupervisorLog = o.Log
	}
	if o.Storage == "" {
		o.Storage = filepath.Join(t.TempDir(), "goka")
	}
	d := &dispatcher.Dispatcher{Config: o.Config, Now: o.Now, Observer: o.Observer, Log: o.Log, Changelog: o.Changelog,
		ChangelogReady: o.ChangelogReady}
	sup := d.Supervisor(c.Topology, o.Storage, o.SupervisorLog)
	if o.MinBackoff > 0 {
		sup.MinBackoff = o.MinBackoff
	}
	sup.Options = append(sup.Options, o.GokaOptions...)
	if o.WrapProducer != nil {
		sup.Producer = o.WrapProducer(sup.Producer)
	}
	return &Dispatcher{Supervisor: sup, stop: Background(t, "dispatcher", sup.Run)}
}

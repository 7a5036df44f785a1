package views

import (
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"

	"github.com/gorilla/mux"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/web/monitor"

	"github.com/herald-dispatch/herald/internal/gokax"
)

// MonitorPath is where Goka's monitor is mounted.
const MonitorPath = "/goka"

// Monitor serves Goka's monitor (github.com/lovoo/goka/web/monitor) under
// MonitorPath: a page per processor and view with its partitions' state,
// offsets and throughput, and the same as JSON under
// /goka/data/{processor|view}/{index}.
//
// Goka's monitor keeps the *goka.Processor it was given, but a Supervisor
// builds a new processor after each failure; Monitor asks Processors for
// the current ones on every request and rebuilds the monitor when they have
// changed. The monitor's pages load their scripts and styles from public
// CDNs, so they render fully only in a browser with internet access; the
// JSON does not need it.
type Monitor struct {
	// Processors returns the processors running now (nil entries, for a
	// supervisor between two processors, are skipped).
	Processors func() []*goka.Processor
	Views      []*goka.View
	Log        *slog.Logger

	mu      sync.Mutex
	current []*goka.Processor
	handler http.Handler
}

// ServeHTTP implements http.Handler.
func (m *Monitor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var ps []*goka.Processor
	if m.Processors != nil {
		for _, p := range m.Processors() {
			if p != nil {
				ps = append(ps, p)
			}
		}
	}
	m.mu.Lock()
	if m.handler == nil || !slices.Equal(ps, m.current) {
		router := mux.NewRouter()
		srv := monitor.NewServer(MonitorPath, router, monitor.WithLogger(gokax.GokaLogger(m.Log)))
		for _, p := range ps {
			srv.AttachProcessor(p)
		}
		for _, v := range m.Views {
			srv.AttachView(v)
		}
		m.current, m.handler = ps, router
	}
	h := m.handler
	m.mu.Unlock()
	defer func() {
		// Goka's monitor indexes its processors with an off-by-one bound
		// check (idx > len instead of >=): one past the end panics.
		if v := recover(); v != nil {
			if m.Log != nil {
				m.Log.Debug("goka monitor: request failed", "path", r.URL.Path, "panic", fmt.Sprint(v))
			}
			http.NotFound(w, r)
		}
	}()
	h.ServeHTTP(w, r)
}

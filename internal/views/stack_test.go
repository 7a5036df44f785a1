package views_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/gokax"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/metrics"
	"github.com/herald-dispatch/herald/internal/tableview"
	"github.com/herald-dispatch/herald/internal/topology"
	"github.com/herald-dispatch/herald/internal/views"
)

// stack is a live pipeline for the API tests: an embedded broker, the real
// dispatcher (Goka processor under its Supervisor), a view of its table,
// and the API on an httptest server.
type stack struct {
	t        *testing.T
	cluster  *heraldtest.Cluster
	client   *kgo.Client
	view     *tableview.StateView
	sup      *gokax.Supervisor
	registry *prometheus.Registry
	api      *views.Server
	srv      *httptest.Server
	held     *metrics.Held
	lag      *metrics.Lag
	// logs holds everything the dispatcher, the view and the API logged,
	// at debug level.
	logs *logBuffer
}

type stackOptions struct {
	token   string
	maxBody int64
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("HERALD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// logBuffer collects log output for tests that check what is logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func startCluster(t *testing.T) *heraldtest.Cluster {
	return heraldtest.StartKafka(t, heraldtest.Options{Partitions: 2})
}

func httpServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	start := time.Now()
	logs := new(logBuffer)
	var w io.Writer = logs
	if os.Getenv("HERALD_TEST_LOG") != "" {
		w = io.MultiWriter(logs, os.Stderr)
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := startCluster(t)
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	sup := heraldtest.StartDispatcher(t, c, heraldtest.DispatcherOptions{Observer: metrics.NewDispatch(reg), Log: log,
		Storage: filepath.Join(dir, "goka"), MinBackoff: 100 * time.Millisecond})
	view, err := tableview.NewStateView(c.Topology, filepath.Join(dir, "goka", "views"), log)
	if err != nil {
		t.Fatal(err)
	}
	heraldtest.Background(t, "view", view.Run)
	s := &stack{t: t, cluster: c, client: c.Client(t), view: view, sup: sup.Supervisor, registry: reg, logs: logs}
	s.api = &views.Server{
		Config:   views.Config{Token: o.token, MaxBody: o.maxBody},
		Table:    view,
		Producer: s.client,
		Observer: metrics.NewAPI(reg),
		Log:      log,
	}
	s.held = metrics.NewHeld(reg, view)
	s.lag = metrics.NewLag(reg, kadm.NewClient(s.client), nil)
	mux := http.NewServeMux()
	mux.Handle("/v1/", s.api.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle(views.MonitorPath+"/", &views.Monitor{
		Processors: func() []*goka.Processor { return []*goka.Processor{sup.Processor()} },
		Views:      []*goka.View{view.Goka()}, Log: log,
	})
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	// Ready for 300 ms running: a view's partition that restarts right
	// after its first recovery (seen once under make test's load) reads as
	// recovering again, and the API answers 503 until it is back.
	var readySince time.Time
	heraldtest.WaitFor(t, 45*time.Second, "dispatcher and view ready for 300 ms", func() bool {
		if !sup.Ready() || !view.Recovered() {
			readySince = time.Time{}
			return false
		}
		if readySince.IsZero() {
			readySince = time.Now()
		}
		return time.Since(readySince) >= 300*time.Millisecond
	})
	t.Logf("stack ready in %v", time.Since(start).Round(time.Millisecond))
	return s
}

// call makes an HTTP request and decodes a JSON answer into out (if not
// nil). It returns the status code and the raw body.
func (s *stack) call(method, path, token, contentType string, body []byte, out any) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") && strings.HasPrefix(path, "/v1/") {
		s.t.Errorf("%s %s: Content-Type %q, want JSON (body %s)", method, path, ct, b)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, b
}

// state waits until the view has id with a status for which ok is true.
func (s *stack) state(id string, ok func(*contract.State) bool) *contract.State {
	s.t.Helper()
	var st *contract.State
	heraldtest.WaitFor(s.t, 20*time.Second, "state of "+id, func() bool {
		var err error
		st, err = s.view.Get(id)
		if err != nil {
			s.t.Fatal(err)
		}
		return st != nil && ok(st)
	})
	return st
}

func statusIs(want ...contract.Status) func(*contract.State) bool {
	return func(s *contract.State) bool {
		for _, w := range want {
			if s.Status == w {
				return true
			}
		}
		return false
	}
}

// request builds a valid dispatch request as JSON, with edits applied.
func request(id string, edit func(m map[string]any)) []byte {
	m := map[string]any{
		"schema":    contract.SchemaV1,
		"id":        id,
		"campaign":  "statements-2026-01",
		"recipient": map[string]any{"email": "jane.doe@example.com", "phone": "+821012345678", "tz": "Asia/Seoul"},
		"channels":  []string{"email", "sms"},
		"content":   map[string]any{"template": "statement", "amount": "12.30"},
	}
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func later(d time.Duration) func(m map[string]any) {
	return func(m map[string]any) { m["not_before"] = time.Now().Add(d).UTC().Format(time.RFC3339Nano) }
}

// result publishes a send result for a notification's current attempt, as
// the sender would.
func (s *stack) result(st *contract.State, outcome contract.Outcome, msg string) {
	s.t.Helper()
	r := contract.SendResult{ID: st.ID, Attempt: st.Attempts, Channel: st.Channel, Outcome: outcome,
		Error: msg, At: time.Now().UTC(), Latency: contract.Duration(3 * time.Millisecond)}
	b, _ := json.Marshal(r)
	s.cluster.Produce(s.t, s.client, &kgo.Record{Topic: topology.TopicResults, Key: []byte(st.ID), Value: b})
}

// wakeup publishes the hold wake-up of a held notification to
// herald.wakeups, as the delay stage does when it is due.
func (s *stack) wakeup(st *contract.State) {
	s.t.Helper()
	b, _ := json.Marshal(contract.Wakeup{ID: st.ID, Kind: contract.WakeupHold, Due: *st.NextAttemptAt})
	s.cluster.Produce(s.t, s.client, &kgo.Record{Topic: topology.TopicWakeups, Key: []byte(st.ID), Value: b})
}

// scrape returns the value of every sample on /metrics, by its text form
// (name{labels}).
func (s *stack) scrape() map[string]float64 {
	s.t.Helper()
	resp, err := http.Get(s.srv.URL + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err != nil {
			s.t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

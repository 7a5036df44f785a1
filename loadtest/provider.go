package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/herald-dispatch/herald/provider"
)

// ProviderSpec is the simulated provider of a run, per channel, in the
// mock's query form (provider.Simulation.Override).
type ProviderSpec struct {
	Email, SMS url.Values
	// HonourIdempotency makes the provider answer a repeated
	// Idempotency-Key from its first acceptance instead of delivering
	// again. Off by default: a load test wants to see every second
	// delivery, so "exactly once" is Herald's doing, not the provider's.
	HonourIdempotency bool
}

// DefaultProviderSpec is the provider: email at 1 s with 1%
// transient and 0.1% permanent failures, SMS at 50 ms.
func DefaultProviderSpec() ProviderSpec {
	return ProviderSpec{
		Email: url.Values{"latency": {"1s"}, "fail": {"0.01"}, "permanent": {"0.001"}},
		SMS:   url.Values{"latency": {"50ms"}},
	}
}

// EmailSimulation returns the email channel's simulation.
func (s ProviderSpec) EmailSimulation() (provider.Simulation, error) {
	return provider.ParseSimulation(s.Email)
}

// Recorder is the run's provider: provider.MockServer (the simulation
// `herald mock-provider` serves) behind a thin layer that notes, for every
// call, the moment it arrived. The mock server itself records accepted
// deliveries and counts duplicates; the recorder adds what the latency and
// blackout checks need: when each notification was first called, however
// that call ended, and how many calls it got.
type Recorder struct {
	Mock *provider.MockServer
	plan *Plan
	// first is the arrival of each index's first call (Unix ns), calls
	// the number of calls.
	first []atomic.Int64
	calls []atomic.Int32
	total atomic.Int64
	// unknown counts calls for ids the plan does not know.
	unknown atomic.Int64
	now     func() time.Time
}

// NewRecorder returns a recorder for plan's ids.
func NewRecorder(plan *Plan, honourIdempotency bool) *Recorder {
	return &Recorder{
		Mock:  provider.NewMockServer(provider.MockServerOptions{IgnoreIdempotency: !honourIdempotency}),
		plan:  plan,
		first: make([]atomic.Int64, plan.W.N),
		calls: make([]atomic.Int32, plan.W.N),
		now:   time.Now,
	}
}

// ServeHTTP records a POST and hands it to the mock server.
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		r.Mock.ServeHTTP(w, req)
		return
	}
	at := r.now().UnixNano()
	raw, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	var body struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(raw, &body) == nil {
		r.note(body.ID, at)
	}
	req.Body = io.NopCloser(bytes.NewReader(raw))
	r.Mock.ServeHTTP(w, req)
}

func (r *Recorder) note(id string, at int64) {
	r.total.Add(1)
	i, ok := r.plan.Index(id)
	if !ok {
		r.unknown.Add(1)
		return
	}
	r.calls[i].Add(1)
	r.first[i].CompareAndSwap(0, at)
}

// Calls returns how many provider calls arrived so far.
func (r *Recorder) Calls() int64 { return r.total.Load() }

// FirstCall returns the arrival of index i's first call (Unix ns), or 0.
func (r *Recorder) FirstCall(i int) int64 { return r.first[i].Load() }

// CallCount returns how many calls index i got.
func (r *Recorder) CallCount(i int) int { return int(r.calls[i].Load()) }

// Unknown counts calls for ids outside the plan.
func (r *Recorder) Unknown() int64 { return r.unknown.Load() }

// ProviderServer serves a Recorder on a loopback port.
type ProviderServer struct {
	Rec  *Recorder
	URL  string
	srv  *http.Server
	done chan error
}

// StartProvider serves rec on 127.0.0.1 (a free port).
func StartProvider(rec *Recorder) (*ProviderServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("provider: listen: %w", err)
	}
	s := &ProviderServer{Rec: rec, URL: "http://" + ln.Addr().String(), done: make(chan error, 1),
		srv: &http.Server{Handler: rec, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// ChannelURL is the webhook URL of a channel: the server's URL with the
// channel's simulation in the query.
func (s *ProviderServer) ChannelURL(channel string, sim url.Values) string {
	return s.URL + "/" + channel + "?" + sim.Encode()
}

// Close stops the server.
func (s *ProviderServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	if e := <-s.done; e != nil && !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}

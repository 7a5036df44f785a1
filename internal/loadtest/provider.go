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
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/provider"
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

// Recorder is the run's provider: one provider.MockServer (the simulation
// `herald mock-provider` serves) per channel, behind a thin layer that
// notes, for every call, the moment it arrived. Each channel's mock
// records its own accepted deliveries and keeps its own idempotency keys,
// as two real providers would, so a notification delivered by email and
// by SMS counts as delivered twice. The recorder adds what the latency,
// window and expiry checks need: when each notification was first called,
// however that call ended, how many calls it got, and which calls arrived
// inside a window or after expiry (Plan.forbiddenFrom). It also plays the
// slow email provider of the slow_provider share (serveSlow).
type Recorder struct {
	// Mocks is the provider of each channel.
	Mocks map[contract.Channel]*provider.MockServer
	plan  *Plan
	// first is the arrival of each index's first call (Unix ns), calls
	// the number of calls.
	first []atomic.Int64
	calls []atomic.Int32
	// forbidden counts each index's calls that arrived inside a window or
	// at or after its expiry; forbiddenBy is the furthest such arrival
	// past the window's opening or the expiry (ns).
	forbidden   []atomic.Int32
	forbiddenBy []atomic.Int64
	// answered is the latest moment a call for each index was answered
	// (the handler returned: the response is on its way; Unix ns).
	answered []atomic.Int64
	// slow maps the idempotency key of a slow_provider notification to a
	// channel closed once its first email call has delivered;
	// slowReplays counts the calls answered from that delivery.
	slowMu      sync.Mutex
	slow        map[string]chan struct{}
	slowReplays atomic.Int64
	total       atomic.Int64
	// unknown counts calls for ids the plan does not know.
	unknown atomic.Int64
	now     func() time.Time
}

// recorderChannels are the channels a Recorder serves, one mock each.
var recorderChannels = []contract.Channel{contract.ChannelEmail, contract.ChannelSMS, contract.ChannelPush}

// NewRecorder returns a recorder for plan's ids.
func NewRecorder(plan *Plan, honourIdempotency bool) *Recorder {
	r := &Recorder{
		Mocks:       map[contract.Channel]*provider.MockServer{},
		plan:        plan,
		first:       make([]atomic.Int64, plan.W.N),
		calls:       make([]atomic.Int32, plan.W.N),
		forbidden:   make([]atomic.Int32, plan.W.N),
		forbiddenBy: make([]atomic.Int64, plan.W.N),
		answered:    make([]atomic.Int64, plan.W.N),
		slow:        map[string]chan struct{}{},
		now:         time.Now,
	}
	for _, ch := range recorderChannels {
		r.Mocks[ch] = provider.NewMockServer(provider.MockServerOptions{IgnoreIdempotency: !honourIdempotency})
	}
	return r
}

// ServeHTTP records a POST and hands it to its channel's mock server
// (the email one for a body without a known channel, which refuses it).
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		r.Mocks[contract.ChannelEmail].ServeHTTP(w, req)
		return
	}
	at := r.now().UnixNano()
	raw, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	var body struct {
		ID      string           `json:"id"`
		Channel contract.Channel `json:"channel"`
	}
	if json.Unmarshal(raw, &body) == nil {
		r.note(body.ID, at)
		if i, ok := r.plan.Index(body.ID); ok {
			defer r.answer(i)
		}
	}
	req.Body = io.NopCloser(bytes.NewReader(raw))
	m := r.Mocks[body.Channel]
	if m == nil {
		m = r.Mocks[contract.ChannelEmail]
	}
	if i, ok := r.plan.Index(body.ID); ok && body.Channel == contract.ChannelEmail && r.plan.Kinds[i] == KindSlowProvider {
		r.serveSlow(w, req, m, body.ID)
		return
	}
	m.ServeHTTP(w, req)
}

// serveSlow plays an email provider slower than the sender's provider
// timeout that honours Idempotency-Key, as the providers of issue 12's
// finding did: the first call for a key is delivered after
// Workload.SlowLatency (no failure simulated) whether or not the caller
// still waits, as a provider does not notice that its client gave up; a
// later call with the same key waits for that delivery if it is still
// under way and is answered from it, without delivering again.
func (r *Recorder) serveSlow(w http.ResponseWriter, req *http.Request, m *provider.MockServer, id string) {
	key := req.Header.Get(provider.HeaderIdempotencyKey)
	if key == "" {
		key = id
	}
	r.slowMu.Lock()
	done, seen := r.slow[key]
	if !seen {
		done = make(chan struct{})
		r.slow[key] = done
	}
	r.slowMu.Unlock()
	if !seen {
		defer close(done)
		u := *req.URL
		q := u.Query()
		q.Set("latency", r.plan.W.SlowLatency.String())
		for _, k := range []string{"jitter", "fail", "permanent", "throttle"} {
			q.Del(k)
		}
		u.RawQuery = q.Encode()
		req = req.WithContext(context.WithoutCancel(req.Context()))
		req.URL = &u
		m.ServeHTTP(w, req)
		return
	}
	select {
	case <-done:
	case <-req.Context().Done():
		return
	}
	r.slowReplays.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "replay": true})
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
	if from, bad := r.plan.forbiddenFrom(i, at); bad {
		r.forbidden[i].Add(1)
		by := at - from
		for cur := r.forbiddenBy[i].Load(); by > cur; cur = r.forbiddenBy[i].Load() {
			if r.forbiddenBy[i].CompareAndSwap(cur, by) {
				break
			}
		}
	}
}

// answer notes that a call for index i was answered now.
func (r *Recorder) answer(i int) {
	at := r.now().UnixNano()
	for cur := r.answered[i].Load(); at > cur; cur = r.answered[i].Load() {
		if r.answered[i].CompareAndSwap(cur, at) {
			return
		}
	}
}

// Answered returns when index i's last call was answered (Unix ns), or 0.
func (r *Recorder) Answered(i int) int64 { return r.answered[i].Load() }

// Accepted counts the deliveries of every channel.
func (r *Recorder) Accepted() int64 {
	var n int64
	for _, m := range r.Mocks {
		n += m.Stats().Accepted
	}
	return n
}

// Deliveries returns every channel's accepted deliveries.
func (r *Recorder) Deliveries() []provider.Delivery {
	var out []provider.Delivery
	for _, ch := range recorderChannels {
		out = append(out, r.Mocks[ch].Deliveries()...)
	}
	return out
}

// Stats adds up the channels' mocks. UniqueIDs counts distinct ids over
// all channels, so an id delivered by email and by SMS is one id with a
// duplicate; Replays includes the slow provider's answers by key.
func (r *Recorder) Stats() provider.Stats {
	s := provider.Stats{Channels: map[contract.Channel]*provider.ChannelStats{}}
	for _, ch := range recorderChannels {
		ms := r.Mocks[ch].Stats()
		s.Requests += ms.Requests
		s.Accepted += ms.Accepted
		s.Replays += ms.Replays
		s.Failures.Transient += ms.Failures.Transient
		s.Failures.Permanent += ms.Failures.Permanent
		s.Failures.Throttled += ms.Failures.Throttled
		s.BadRequests += ms.BadRequests
		s.Abandoned += ms.Abandoned
		for c, cs := range ms.Channels {
			s.Channels[c] = cs
		}
	}
	s.Replays += r.slowReplays.Load()
	byID := map[string]int{}
	for _, d := range r.Deliveries() {
		byID[d.ID]++
	}
	s.UniqueIDs = int64(len(byID))
	s.Duplicates = s.Accepted - s.UniqueIDs
	for _, n := range byID {
		if n > 1 {
			s.DuplicateIDs++
		}
	}
	return s
}

// Forbidden returns how many of index i's calls arrived inside a window or
// at or after its expiry, and the furthest of them past the cut-off.
func (r *Recorder) Forbidden(i int) (calls int, by time.Duration) {
	return int(r.forbidden[i].Load()), time.Duration(r.forbiddenBy[i].Load())
}

// SlowReplays counts the slow provider's answers from an earlier delivery.
func (r *Recorder) SlowReplays() int64 { return r.slowReplays.Load() }

// Calls returns how many provider calls arrived so far.
func (r *Recorder) Calls() int64 { return r.total.Load() }

// FirstCall returns the arrival of index i's first call (Unix ns), or 0.
func (r *Recorder) FirstCall(i int) int64 { return r.first[i].Load() }

// CallCount returns how many calls index i got.
func (r *Recorder) CallCount(i int) int { return int(r.calls[i].Load()) }

// Unknown counts calls for ids outside the plan.
func (r *Recorder) Unknown() int64 { return r.unknown.Load() }

// ProviderServer serves a provider (a Recorder, or another handler) on a
// loopback port.
type ProviderServer struct {
	Rec  *Recorder
	URL  string
	srv  *http.Server
	done chan error
}

// StartProvider serves rec on 127.0.0.1 (a free port).
func StartProvider(rec *Recorder) (*ProviderServer, error) {
	s, err := ServeProvider(rec)
	if err != nil {
		return nil, err
	}
	s.Rec = rec
	return s, nil
}

// ServeProvider serves h on 127.0.0.1 (a free port).
func ServeProvider(h http.Handler) (*ProviderServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("provider: listen: %w", err)
	}
	s := &ProviderServer{URL: "http://" + ln.Addr().String(), done: make(chan error, 1),
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}}
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

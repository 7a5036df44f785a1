package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// MockServer is a simulated provider behind the webhook protocol: the core
// of `herald mock-provider`, and an http.Handler tests mount on httptest.
//
// POST to any path delivers one attempt (a WebhookBody). The simulation's
// parameters come from the server's defaults, overridden by the request
// URL's query (the same keys as mock://), so one server can play a slow
// email provider at /email?latency=1s and a fast SMS one at /sms.
//
// It honours Idempotency-Key like a well-behaved provider: a request whose
// key was accepted before gets the first answer again and counts as a
// replay, not as a delivery. Every accepted delivery is recorded (id,
// channel, attempt, time), and an id accepted more than once counts as a
// duplicate, so load and fault tests can count losses and duplicates:
//
//	GET    /stats        JSON Stats
//	GET    /deliveries   JSON list of deliveries (?format=tsv for a compact
//	                     form, ?channel=email to filter)
//	DELETE /deliveries   forget everything
type MockServer struct {
	sim    Simulation
	honour bool
	now    func() time.Time

	mu         sync.Mutex
	deliveries []Delivery
	byKey      map[string]int32 // idempotency key -> index of its delivery
	byID       map[string]int32 // id -> deliveries accepted
	stats      Stats
}

// MockServerOptions configure a MockServer.
type MockServerOptions struct {
	// Simulation is the default simulation.
	Simulation Simulation
	// IgnoreIdempotency makes the server deliver every successful attempt,
	// like a provider without idempotency keys, so that duplicates show.
	IgnoreIdempotency bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Delivery is one accepted delivery.
type Delivery struct {
	ID      string           `json:"id"`
	Channel contract.Channel `json:"channel"`
	Attempt int              `json:"attempt"`
	Key     string           `json:"key,omitempty"`
	At      time.Time        `json:"at"`
}

// Stats summarises what a MockServer saw.
type Stats struct {
	// Requests counts every POST, answered or not.
	Requests int64 `json:"requests"`
	// Accepted counts deliveries (replays excluded).
	Accepted int64 `json:"accepted"`
	// UniqueIDs counts distinct ids accepted.
	UniqueIDs int64 `json:"unique_ids"`
	// Duplicates counts deliveries of an id already delivered
	// (Accepted - UniqueIDs); DuplicateIDs counts the ids concerned.
	Duplicates   int64 `json:"duplicates"`
	DuplicateIDs int64 `json:"duplicate_ids"`
	// Replays counts requests answered from an earlier acceptance with the
	// same idempotency key.
	Replays  int64    `json:"replays"`
	Failures Failures `json:"failures"`
	// BadRequests counts requests that were not a valid WebhookBody.
	BadRequests int64 `json:"bad_requests"`
	// Abandoned counts requests whose client went away before the answer.
	Abandoned int64                              `json:"abandoned"`
	Channels  map[contract.Channel]*ChannelStats `json:"channels"`
}

// Failures counts simulated failures by kind.
type Failures struct {
	Transient int64 `json:"transient"`
	Permanent int64 `json:"permanent"`
	Throttled int64 `json:"throttled"`
}

func (f *Failures) add(o contract.Outcome) {
	switch o {
	case contract.OutcomePermanent:
		f.Permanent++
	case contract.OutcomeThrottled:
		f.Throttled++
	default:
		f.Transient++
	}
}

// ChannelStats are the per-channel counts.
type ChannelStats struct {
	Accepted   int64    `json:"accepted"`
	UniqueIDs  int64    `json:"unique_ids"`
	Duplicates int64    `json:"duplicates"`
	Replays    int64    `json:"replays"`
	Failures   Failures `json:"failures"`
}

// NewMockServer returns a simulated webhook provider.
func NewMockServer(o MockServerOptions) *MockServer {
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &MockServer{sim: o.Simulation, honour: !o.IgnoreIdempotency, now: o.Now}
	m.Reset()
	return m
}

// Reset forgets every delivery and count.
func (m *MockServer) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deliveries = nil
	m.byKey = map[string]int32{}
	m.byID = map[string]int32{}
	m.stats = Stats{Channels: map[contract.Channel]*ChannelStats{}}
}

// Stats returns a copy of the counts.
func (m *MockServer) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats
	s.Channels = make(map[contract.Channel]*ChannelStats, len(m.stats.Channels))
	for ch, cs := range m.stats.Channels {
		c := *cs
		s.Channels[ch] = &c
	}
	return s
}

// Deliveries returns a copy of the accepted deliveries, in acceptance order.
func (m *MockServer) Deliveries() []Delivery {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Delivery(nil), m.deliveries...)
}

// ServeHTTP routes the mock's endpoints.
func (m *MockServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/stats":
		writeJSON(w, http.StatusOK, m.Stats())
	case r.Method == http.MethodGet && r.URL.Path == "/deliveries":
		m.serveDeliveries(w, r)
	case r.Method == http.MethodDelete && r.URL.Path == "/deliveries":
		m.Reset()
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && r.URL.Path == "/healthz":
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	case r.Method == http.MethodPost:
		m.serveSend(w, r)
	default:
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "POST a webhook body, or GET /stats or /deliveries"})
	}
}

func (m *MockServer) channel(ch contract.Channel) *ChannelStats {
	cs := m.stats.Channels[ch]
	if cs == nil {
		cs = &ChannelStats{}
		m.stats.Channels[ch] = cs
	}
	return cs
}

func (m *MockServer) badRequest(w http.ResponseWriter, msg string) {
	m.mu.Lock()
	m.stats.BadRequests++
	m.mu.Unlock()
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg})
}

func (m *MockServer) serveSend(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.stats.Requests++
	m.mu.Unlock()

	body, sim, ok := m.decodeSend(w, r)
	if !ok {
		return
	}
	d := sim.Decide(body.ID, body.Attempt)
	if !m.wait(r.Context(), d.Delay) {
		return
	}
	key := r.Header.Get(HeaderIdempotencyKey)

	m.mu.Lock()
	cs := m.channel(body.Channel)
	if i, ok := m.byKey[key]; ok && m.honour && key != "" {
		first := m.deliveries[i]
		m.stats.Replays++
		cs.Replays++
		m.mu.Unlock()
		writeJSON(w, http.StatusOK, acceptance{ID: first.ID, Delivery: int(i) + 1, Channel: first.Channel,
			Attempt: first.Attempt, Replay: true})
		return
	}
	if d.Outcome != contract.OutcomeSuccess {
		m.stats.Failures.add(d.Outcome)
		cs.Failures.add(d.Outcome)
		m.mu.Unlock()
		if d.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.RetryAfter.Seconds()))))
		}
		writeJSON(w, d.Code, map[string]string{"error": d.Result().Err.Error()})
		return
	}
	idx := m.deliver(body, key, cs)
	m.mu.Unlock()
	writeJSON(w, d.Code, acceptance{ID: body.ID, Delivery: int(idx) + 1, Channel: body.Channel, Attempt: body.Attempt})
}

// decodeSend reads a webhook body and the request's overrides of the
// simulation (query parameters); it answers 400 itself when either is bad.
func (m *MockServer) decodeSend(w http.ResponseWriter, r *http.Request) (WebhookBody, Simulation, bool) {
	var body WebhookBody
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		m.badRequest(w, "read body: "+err.Error())
		return body, Simulation{}, false
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		m.badRequest(w, "body: "+err.Error())
		return body, Simulation{}, false
	}
	if body.ID == "" || body.Attempt < 1 || !body.Channel.Valid() {
		m.badRequest(w, "body needs id, attempt >= 1 and a known channel")
		return body, Simulation{}, false
	}
	sim, err := m.sim.Override(r.URL.Query())
	if err != nil {
		m.badRequest(w, err.Error())
		return body, Simulation{}, false
	}
	return body, sim, true
}

// wait holds the answer for the simulated delay; false when the caller
// gave up first (counted as abandoned).
func (m *MockServer) wait(ctx context.Context, delay time.Duration) bool {
	if delay <= 0 {
		return true
	}
	t := time.NewTimer(delay)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		t.Stop()
		m.mu.Lock()
		m.stats.Abandoned++
		m.mu.Unlock()
		return false
	}
}

// deliver records an accepted delivery and counts it (unique or a
// duplicate of its id, overall and on its channel cs); m.mu is held. It
// returns the delivery's index.
func (m *MockServer) deliver(body WebhookBody, key string, cs *ChannelStats) int32 {
	idx := int32(len(m.deliveries))
	m.deliveries = append(m.deliveries, Delivery{ID: body.ID, Channel: body.Channel, Attempt: body.Attempt,
		Key: key, At: m.now().UTC()})
	if key != "" {
		if _, seen := m.byKey[key]; !seen {
			m.byKey[key] = idx
		}
	}
	n := m.byID[body.ID] + 1
	m.byID[body.ID] = n
	m.stats.Accepted++
	cs.Accepted++
	if n == 1 {
		m.stats.UniqueIDs++
	} else {
		m.stats.Duplicates++
		if n == 2 {
			m.stats.DuplicateIDs++
		}
	}
	if n == 1 { // the channel of an id's first delivery counts it as unique
		cs.UniqueIDs++
	} else {
		cs.Duplicates++
	}
	return idx
}

type acceptance struct {
	ID       string           `json:"id"`
	Delivery int              `json:"delivery"`
	Channel  contract.Channel `json:"channel"`
	Attempt  int              `json:"attempt"`
	Replay   bool             `json:"replay,omitempty"`
}

func (m *MockServer) serveDeliveries(w http.ResponseWriter, r *http.Request) {
	ds := m.Deliveries()
	if ch := r.URL.Query().Get("channel"); ch != "" {
		out := ds[:0]
		for _, d := range ds {
			if string(d.Channel) == ch {
				out = append(out, d)
			}
		}
		ds = out
	}
	if r.URL.Query().Get("format") == "tsv" {
		w.Header().Set("Content-Type", "text/tab-separated-values")
		fmt.Fprintln(w, "id\tchannel\tattempt\tat_unix_ms")
		for _, d := range ds {
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\n", d.ID, d.Channel, d.Attempt, d.At.UnixMilli())
		}
		return
	}
	writeJSON(w, http.StatusOK, ds)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/provider"
)

// Call outcomes as the provider answered them.
const (
	// OutcomeDelivered: the mock accepted a new delivery.
	OutcomeDelivered = "delivered"
	// OutcomeReplay: answered from an earlier delivery with the same
	// Idempotency-Key (honouring mode); not a delivery.
	OutcomeReplay = "replay"
	// OutcomeFailed: the mock's simulation answered an error.
	OutcomeFailed = "failed"
	// OutcomeOutage: answered 503 because of an injected provider outage.
	OutcomeOutage = "outage"
	// OutcomeAbandoned: the caller went away before the answer (a killed
	// sender, a provider timeout).
	OutcomeAbandoned = "abandoned"
	// OutcomeBad: not a webhook body the mock takes.
	OutcomeBad = "bad"
)

// Call is one provider call as the provider saw it.
type Call struct {
	// Caller is the first segment of a path of two or more ("herald-2" of
	// /herald-2/email): each instance gets its own provider URLs, so a
	// call can be traced to the process that made it.
	Caller  string           `json:"caller,omitempty"`
	ID      string           `json:"id"`
	Channel contract.Channel `json:"channel"`
	Attempt int              `json:"attempt"`
	Key     string           `json:"idempotency_key"`
	Start   time.Time        `json:"start"`
	End     time.Time        `json:"end"`
	Status  int              `json:"status"`
	Outcome string           `json:"outcome"`
}

// Provider is the chaos run's webhook provider: provider.MockServer (which
// keeps the delivery log and honours Idempotency-Key unless told not to)
// behind a layer that logs every call, however it ended, counts the calls
// in flight, and can answer 503 to everything for a while (an outage).
// What it records is the run's ground truth: the checks read deliveries
// here, never from Herald.
type Provider struct {
	Mock   *provider.MockServer
	Honour bool
	URL    string
	// Accept shapes how connections are taken (set before Start).
	Accept Accept

	mu          sync.Mutex
	calls       []Call
	open        map[int]Call // calls in progress, by sequence number
	seq         int
	outageUntil time.Time
	now         func() time.Time

	srv  *http.Server
	ln   *slowListener
	done chan error
}

// NewProvider returns a provider; honour chooses whether a repeated
// Idempotency-Key gets the first answer (true) or is delivered again.
func NewProvider(honour bool) *Provider {
	return &Provider{
		Mock:   provider.NewMockServer(provider.MockServerOptions{IgnoreIdempotency: !honour}),
		Honour: honour,
		open:   map[int]Call{},
		now:    time.Now,
	}
}

// Outage makes the provider answer 503 to every call until d has passed.
func (p *Provider) Outage(d time.Duration) {
	p.mu.Lock()
	p.outageUntil = p.now().Add(d)
	p.mu.Unlock()
}

// InFlight returns the calls in progress now.
func (p *Provider) InFlight() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Call, 0, len(p.open))
	for _, c := range p.open {
		out = append(out, c)
	}
	return out
}

// Calls returns every finished call, in the order they finished.
func (p *Provider) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Call(nil), p.calls...)
}

// CallCount returns how many calls have finished.
func (p *Provider) CallCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.calls)
}

// ServeHTTP logs a POST and answers it (outage or mock); anything else
// goes to the mock (/stats, /deliveries).
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		p.Mock.ServeHTTP(w, r)
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	var body provider.WebhookBody
	_ = json.Unmarshal(raw, &body) // the mock rejects what does not decode
	c := Call{Caller: caller(r.URL.Path), ID: body.ID, Channel: body.Channel, Attempt: body.Attempt,
		Key: r.Header.Get(provider.HeaderIdempotencyKey)}

	p.mu.Lock()
	c.Start = p.now()
	outage := c.Start.Before(p.outageUntil)
	p.seq++
	seq := p.seq
	p.open[seq] = c
	p.mu.Unlock()
	if n := p.Accept.CloseEvery; n > 0 && seq%n == 0 {
		w.Header().Set("Connection", "close") // the next call on it dials again
	}

	rec := &answer{ResponseWriter: w}
	if outage {
		rec.Header().Set("Content-Type", "application/json")
		rec.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(rec, `{"error":"injected provider outage"}`)
	} else {
		r.Body = io.NopCloser(bytes.NewReader(raw))
		p.Mock.ServeHTTP(rec, r)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.open, seq)
	c.End = p.now()
	c.Status = rec.status
	switch {
	case outage:
		c.Outcome = OutcomeOutage
	case rec.status == 0:
		c.Outcome = OutcomeAbandoned
	case rec.status == http.StatusBadRequest:
		c.Outcome = OutcomeBad
	case rec.status >= 200 && rec.status < 300:
		var a struct {
			Replay bool `json:"replay"`
		}
		_ = json.Unmarshal(rec.body.Bytes(), &a)
		c.Outcome = OutcomeDelivered
		if a.Replay {
			c.Outcome = OutcomeReplay
		}
	default:
		c.Outcome = OutcomeFailed
	}
	p.calls = append(p.calls, c)
}

// caller is the first segment of a path with two or more.
func caller(path string) string {
	first, rest, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !ok || rest == "" {
		return ""
	}
	return first
}

// answer remembers the status and body written through it.
type answer struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (a *answer) WriteHeader(code int) {
	if a.status == 0 {
		a.status = code
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *answer) Write(b []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	a.body.Write(b)
	return a.ResponseWriter.Write(b)
}

// Start serves the provider on a free loopback port, shaped by Accept,
// and sets URL.
func (p *Provider) Start() error {
	ln, err := listenLoopback(p.Accept.Backlog)
	if err != nil {
		return err
	}
	p.ln = &slowListener{Listener: ln, delay: p.Accept.Delay, closed: make(chan struct{})}
	p.URL = "http://" + ln.Addr().String()
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	p.done = make(chan error, 1)
	go func() { p.done <- p.srv.Serve(p.ln) }()
	return nil
}

// Close stops serving.
func (p *Provider) Close() error {
	if p.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.srv.Shutdown(ctx)
	if err != nil {
		p.srv.Close()
	}
	if e := <-p.done; e != nil && !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}

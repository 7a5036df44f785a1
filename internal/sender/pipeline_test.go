package sender_test

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dispatcher"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/herald-dispatch/herald/internal/sender"
	"github.com/herald-dispatch/herald/internal/tableview"
	"github.com/herald-dispatch/herald/internal/topology"
)

// pipeline is the whole send path on the embedded broker
// (heraldtest.StartPipeline): the dispatcher, the delay stage, a view of
// the dispatcher table, the sender reading it, and a mock provider served
// over HTTP.
type pipeline struct {
	*heraldtest.Pipeline
	c    *heraldtest.Cluster
	mock *provider.MockServer
	view *tableview.StateView
	obs  *benchObserver
}

// benchObserver keeps the sender's in-flight count and provider latency
// sum, so that a slow run can tell a starved sender from a slow provider,
// and the email channel's concurrency limit, calls in flight and rate
// share.
type benchObserver struct {
	inFlight, attempts, latencyNs atomic.Int64
	emailLimit, emailCalls        atomic.Int64
	emailRate                     atomic.Uint64 // math.Float64bits
	members                       atomic.Int64
}

func (o *benchObserver) Attempt(_ contract.Channel, _ contract.Outcome, d time.Duration) {
	o.attempts.Add(1)
	o.latencyNs.Add(int64(d))
}
func (o *benchObserver) Delivered(contract.Channel, time.Duration) {}
func (o *benchObserver) Skipped(contract.Channel)                  {}
func (o *benchObserver) InFlight(d int)                            { o.inFlight.Add(int64(d)) }
func (o *benchObserver) Paused(contract.Channel, time.Duration)    {}
func (o *benchObserver) DeadLetter(string)                         {}
func (o *benchObserver) ConcurrencyLimit(ch contract.Channel, n int) {
	if ch == contract.ChannelEmail {
		o.emailLimit.Store(int64(n))
	}
}
func (o *benchObserver) ProviderInFlight(ch contract.Channel, d int) {
	if ch == contract.ChannelEmail {
		o.emailCalls.Add(int64(d))
	}
}
func (o *benchObserver) RateShare(ch contract.Channel, perSecond float64, members int) {
	if ch == contract.ChannelEmail {
		o.emailRate.Store(math.Float64bits(perSecond))
		o.members.Store(int64(members))
	}
}

// meanLatency returns the mean provider latency since the last call.
func (o *benchObserver) meanLatency(prevN, prevNs *int64) time.Duration {
	n, ns := o.attempts.Load(), o.latencyNs.Load()
	defer func() { *prevN, *prevNs = n, ns }()
	if n == *prevN {
		return 0
	}
	return time.Duration((ns - *prevNs) / (n - *prevN))
}

type pipelineOptions struct {
	Partitions  int
	Concurrency int
	// Email and SMS are the mock's query for each channel.
	Email, SMS  string
	SendTimeout time.Duration
	// EmailURL and SMSURL, when set, are the channels' webhook URLs
	// instead of the mock's.
	EmailURL, SMSURL string
	// ProviderTimeout bounds one provider call (default the provider's).
	ProviderTimeout time.Duration
	// Now is the clock of the dispatcher, the delay stage and the sender
	// (default time.Now).
	Now func() time.Time
}

func startPipeline(t testing.TB, o pipelineOptions) *pipeline {
	t.Helper()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: o.Partitions})
	log := quietLog()
	mock, mockURL := heraldtest.MockProvider(t, provider.MockServerOptions{})
	view, err := tableview.NewStateView(c.Topology, filepath.Join(t.TempDir(), "views", "sender"), log)
	if err != nil {
		t.Fatal(err)
	}
	emailURL, smsURL := mockURL+"/email?"+o.Email, mockURL+"/sms?"+o.SMS
	if o.EmailURL != "" {
		emailURL = o.EmailURL
	}
	if o.SMSURL != "" {
		smsURL = o.SMSURL
	}
	set := heraldtest.Providers(t, []string{"email=" + emailURL, "sms=" + smsURL},
		provider.Options{Concurrency: o.Concurrency, Timeout: o.ProviderTimeout})
	obs := &benchObserver{}
	s, err := sender.New(sender.Config{Topology: c.Topology, Providers: set, Concurrency: o.Concurrency,
		State: tableview.ProgressReader{View: view}, Log: log, Observer: obs, Now: o.Now})
	if err != nil {
		t.Fatal(err)
	}
	p := heraldtest.StartPipeline(t, c, heraldtest.PipelineOptions{
		Dispatcher: heraldtest.DispatcherOptions{Config: dispatcher.DispatchConfig{SendTimeout: o.SendTimeout,
			ProviderTimeout: o.ProviderTimeout}},
		Stages: []heraldtest.Stage{{Name: "view", Run: view.Run}, {Name: "sender", Run: s.Run}},
		Now:    o.Now,
		Log:    log,
	})
	return &pipeline{Pipeline: p, c: c, mock: mock, view: view, obs: obs}
}

// request renders a dispatch request for email then SMS, with a fast
// backoff so that retries come back within the test.
func request(id string) []byte {
	return []byte(fmt.Sprintf(`{"schema":"herald.dispatch.v1","id":%q,"campaign":"bill-2026-01",
		"recipient":{"email":"user@example.com","phone":"+821012345678"},
		"channels":["email","sms"],"content":{"subject":"Your bill","text":"Amount due: 10"},
		"policy":{"id":"billing","version":1,"attempts_per_channel":3,
		"backoff":{"initial":"100ms","multiplier":2,"max":"1s"}}}`, id))
}

// expectedDelivery predicts, from the mock's deterministic decisions, the
// channel and attempt on which an id is accepted: email attempts 1 to 3
// unless the id fails permanently on email (then SMS at once) or all three
// fail transiently (then SMS after them).
func expectedDelivery(email provider.Simulation, id string) (contract.Channel, int) {
	if email.PermanentFor(id) {
		return contract.ChannelSMS, 2
	}
	for a := 1; a <= 3; a++ {
		if email.Decide(id, a).Outcome == contract.OutcomeSuccess {
			return contract.ChannelEmail, a
		}
	}
	return contract.ChannelSMS, 4
}

// pipelineSize is the notification count of TestPipelineExactlyOnce:
// HERALD_PIPELINE_N if set, 2,000 with -short, else 20,000.
func pipelineSize(t *testing.T) int {
	if s := os.Getenv("HERALD_PIPELINE_N"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("HERALD_PIPELINE_N=%q", s)
		}
		return n
	}
	if testing.Short() {
		return 2000
	}
	return 20000
}

// TestPipelineExactlyOnce is the sending issue's acceptance test: 20,000
// notifications through the dispatcher, the delay stage and the sender to
// a mock provider over HTTP, email at 200 ms with 5% transient failures,
// 1% of emails failing permanently and falling back to SMS. Every id ends
// sent, accepted exactly once by the provider, on the channel and attempt
// the mock's decisions predict; the state records the channel that
// succeeded.
func TestPipelineExactlyOnce(t *testing.T) {
	t.Parallel()
	n := pipelineSize(t)
	emailQuery := "latency=200ms&fail=0.05&permanent=0.01"
	p := startPipeline(t, pipelineOptions{Partitions: 4, Concurrency: 2000,
		Email: emailQuery, SMS: "latency=20ms", SendTimeout: 2 * time.Minute})
	q, _ := parseQuery(emailQuery)
	email, err := provider.ParseSimulation(q)
	if err != nil {
		t.Fatal(err)
	}

	ids := make([]string, n)
	recs := make([]*kgo.Record, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("2026-01:acct-%06d:bill", i)
		recs[i] = &kgo.Record{Topic: topology.TopicRequests, Key: []byte(ids[i]), Value: request(ids[i])}
	}
	start := time.Now()
	cl := p.c.Client(t)
	p.c.Produce(t, cl, recs...)
	produced := time.Since(start)

	// Wait until the provider has accepted every id and the table says sent.
	deadline := time.Now().Add(3 * time.Minute)
	var sent int
	for time.Now().Before(deadline) {
		if p.mock.Stats().UniqueIDs >= int64(n) {
			sent = countStatus(t, p.view, contract.StatusSent)
			if sent == n {
				break
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	took := time.Since(start)
	st := p.mock.Stats()
	t.Logf("%d notifications: produced in %s, all sent after %s (%.0f/s); provider: %d requests, %d accepted, "+
		"%d replays, %d duplicates, failures %+v, email %d, sms %d",
		n, produced.Round(time.Millisecond), took.Round(time.Millisecond), float64(n)/took.Seconds(),
		st.Requests, st.Accepted, st.Replays, st.Duplicates, st.Failures,
		st.Channels[contract.ChannelEmail].Accepted, st.Channels[contract.ChannelSMS].Accepted)
	if sent != n {
		t.Fatalf("%d of %d notifications sent after %s", sent, n, took)
	}
	if st.UniqueIDs != int64(n) || st.Accepted != int64(n) || st.Duplicates != 0 {
		t.Fatalf("provider accepted %d deliveries of %d ids, %d duplicates; want %d once each", st.Accepted, st.UniqueIDs, st.Duplicates, n)
	}

	got := map[string]provider.Delivery{}
	for _, d := range p.mock.Deliveries() {
		got[d.ID] = d
	}
	fallbacks := 0
	for _, id := range ids {
		d, ok := got[id]
		if !ok {
			t.Errorf("%s: never delivered", id)
			continue
		}
		ch, attempt := expectedDelivery(email, id)
		if d.Channel != ch || d.Attempt != attempt {
			t.Errorf("%s: delivered on %s attempt %d, want %s attempt %d", id, d.Channel, d.Attempt, ch, attempt)
		}
		if ch == contract.ChannelSMS {
			fallbacks++
		}
		s, err := p.view.Get(id)
		if err != nil || s == nil {
			t.Errorf("%s: state %v %v", id, s, err)
			continue
		}
		if s.Status != contract.StatusSent || s.Channel != d.Channel || s.Attempts != d.Attempt || s.SentAt == nil {
			t.Errorf("%s: state %s on %s after %d attempts, provider accepted %s attempt %d",
				id, s.Status, s.Channel, s.Attempts, d.Channel, d.Attempt)
		}
	}
	permanent := int(st.Channels[contract.ChannelEmail].Failures.Permanent)
	t.Logf("%d fell back to SMS (%d permanent email failures)", fallbacks, permanent)
	if permanent < n/200 || permanent > n/50 {
		t.Errorf("%d permanent email failures for %d ids: the test does not exercise 1%% fallback", permanent, n)
	}
}

func countStatus(t *testing.T, v *tableview.StateView, want contract.Status) int {
	t.Helper()
	n := 0
	if err := v.Scan(context.Background(), func(s contract.Summary) {
		if s.Status == want {
			n++
		}
	}); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return n
}

func parseQuery(q string) (map[string][]string, error) {
	v, err := url.ParseQuery(q)
	return v, err
}

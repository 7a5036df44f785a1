package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

func TestParseSimulation(t *testing.T) {
	t.Parallel()
	u, _ := url.Parse("mock://?latency=1s&jitter=200ms&fail=0.01&permanent=0.001&throttle=0.5&retry_after=3s&seed=x")
	s, err := ParseSimulation(u.Query())
	if err != nil {
		t.Fatal(err)
	}
	want := Simulation{Latency: time.Second, Jitter: 200 * time.Millisecond, Fail: 0.01, Permanent: 0.001,
		Throttle: 0.5, RetryAfter: 3 * time.Second, Seed: "x"}
	if s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
	for _, bad := range []string{"latency=fast", "fail=2", "permanent=-0.1", "jitter=-1s", "colour=red"} {
		q, _ := url.ParseQuery(bad)
		if _, err := ParseSimulation(q); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestSimulationRatesAndDeterminism(t *testing.T) {
	t.Parallel()
	s := Simulation{Latency: time.Second, Jitter: 200 * time.Millisecond, Fail: 0.05, Permanent: 0.01}
	const n = 20000
	var perm, fail int
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("n-%d", i)
		d := s.Decide(id, 1)
		if d != s.Decide(id, 1) {
			t.Fatalf("%s: decision not repeatable", id)
		}
		if d.Delay < 800*time.Millisecond || d.Delay > 1200*time.Millisecond {
			t.Fatalf("%s: delay %s outside 1s±200ms", id, d.Delay)
		}
		switch d.Outcome {
		case contract.OutcomePermanent:
			perm++
			if !s.PermanentFor(id) || s.Decide(id, 2).Outcome != contract.OutcomePermanent {
				t.Fatalf("%s: permanent failure not decided per id", id)
			}
		case contract.OutcomeTransient:
			fail++
		}
	}
	// Binomial: 1% of 20000 = 200 ± 14 (sd); 5% of 19800 = 990 ± 31.
	if perm < 150 || perm > 250 {
		t.Errorf("permanent: %d of %d, want about 1%%", perm, n)
	}
	if fail < 870 || fail > 1110 {
		t.Errorf("transient: %d of %d, want about 5%%", fail, n)
	}
	other := Simulation{Permanent: 0.01, Seed: "other"}
	same := 0
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("n-%d", i)
		if s.PermanentFor(id) && other.PermanentFor(id) {
			same++
		}
	}
	if same > 20 {
		t.Errorf("seeds do not change the decisions: %d ids permanent under both", same)
	}
}

func TestMockProviderLatencyAndCancel(t *testing.T) {
	t.Parallel()
	m := NewMock(Simulation{Latency: 50 * time.Millisecond})
	start := time.Now()
	r := m.Send(context.Background(), testCommand("a", 1))
	if el := time.Since(start); r.Outcome != contract.OutcomeSuccess || el < 50*time.Millisecond {
		t.Errorf("got %s after %s", r.Outcome, el)
	}
	slow := NewMock(Simulation{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	r = slow.Send(ctx, testCommand("a", 1))
	if r.Outcome != contract.OutcomeTransient {
		t.Errorf("canceled: got %s", r.Outcome)
	}
	if c := m.Counts(); c.Accepted != 1 {
		t.Errorf("counts %+v", c)
	}
}

func TestOpenAndParseSpec(t *testing.T) {
	t.Parallel()
	ch, u, err := ParseSpec("email=mock://?latency=1s&fail=0.01")
	if err != nil || ch != contract.ChannelEmail || u != "mock://?latency=1s&fail=0.01" {
		t.Fatalf("ParseSpec: %s %s %v", ch, u, err)
	}
	for _, bad := range []string{"email", "fax=mock://", "=mock://", "sms="} {
		if _, _, err := ParseSpec(bad); err == nil {
			t.Errorf("ParseSpec(%q): no error", bad)
		}
	}
	set, err := OpenSet([]string{"email=mock://?latency=1s", "sms=http://127.0.0.1:1/", "push=smtp://u:secret@mail.example.com?from=a@example.com"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if _, ok := set[contract.ChannelEmail].(*Mock); !ok {
		t.Errorf("email: %T", set[contract.ChannelEmail])
	}
	if _, ok := set[contract.ChannelSMS].(*Webhook); !ok {
		t.Errorf("sms: %T", set[contract.ChannelSMS])
	}
	if _, ok := set[contract.ChannelPush].(*SMTP); !ok {
		t.Errorf("push: %T", set[contract.ChannelPush])
	}
	twice, err := OpenSet([]string{"email=mock://", "email=mock://?latency=1ms"}, Options{})
	if err != nil {
		t.Fatalf("a channel configured twice: %v", err)
	}
	if c, ok := twice[contract.ChannelEmail].(*Chain); !ok || len(c.Circuits()) != 2 || c.Circuits()[1].Provider != "mock#2" {
		t.Errorf("a channel configured twice: %T, want a chain of mock and mock#2", twice[contract.ChannelEmail])
	}
	twice.Close()
	_, err = Open("ftp://u:secret@x/", Options{})
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("unknown scheme: %v (must not show the password)", err)
	}
	if got := Redact("email=smtp://u:secret@h:25?from=a"); strings.Contains(got, "secret") {
		t.Errorf("Redact: %s", got)
	}
}

// post sends one webhook body to a mock server, as the Webhook provider
// would, and returns the classified result.
func post(t *testing.T, base string, path string, id string, ch contract.Channel, attempt int) Result {
	t.Helper()
	wh, err := NewWebhook(base+path, Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Close()
	cmd := testCommand(id, attempt)
	cmd.Channel = ch
	return wh.Send(context.Background(), cmd)
}

func TestMockServerIdempotencyAndStats(t *testing.T) {
	t.Parallel()
	m := NewMockServer(MockServerOptions{Simulation: Simulation{Latency: time.Millisecond}})
	srv := httptest.NewServer(m)
	defer srv.Close()

	if r := post(t, srv.URL, "/email", "a", contract.ChannelEmail, 1); r.Outcome != contract.OutcomeSuccess {
		t.Fatalf("first: %s %v", r.Outcome, r.Err)
	}
	// The same key again: the first answer, counted as a replay.
	if r := post(t, srv.URL, "/email", "a", contract.ChannelEmail, 2); r.Outcome != contract.OutcomeSuccess || r.Code != 200 {
		t.Fatalf("replay: %s %d %v", r.Outcome, r.Code, r.Err)
	}
	post(t, srv.URL, "/sms", "b", contract.ChannelSMS, 1)
	// Failures chosen by the query: a permanent for every id, a 429, a 503.
	if r := post(t, srv.URL, "/email?permanent=1", "c", contract.ChannelEmail, 1); r.Outcome != contract.OutcomePermanent || r.Code != 422 {
		t.Errorf("permanent: %s %d", r.Outcome, r.Code)
	}
	if r := post(t, srv.URL, "/email?throttle=1&retry_after=2s", "d", contract.ChannelEmail, 1); r.Outcome != contract.OutcomeThrottled || r.RetryAfter != 2*time.Second {
		t.Errorf("throttle: %s %s", r.Outcome, r.RetryAfter)
	}
	if r := post(t, srv.URL, "/email?fail=1", "d", contract.ChannelEmail, 2); r.Outcome != contract.OutcomeTransient || r.Code != 503 {
		t.Errorf("fail: %s %d", r.Outcome, r.Code)
	}

	st := m.Stats()
	if st.Requests != 6 || st.Accepted != 2 || st.UniqueIDs != 2 || st.Duplicates != 0 || st.Replays != 1 {
		t.Errorf("stats %+v", st)
	}
	if st.Failures != (Failures{Transient: 1, Permanent: 1, Throttled: 1}) {
		t.Errorf("failures %+v", st.Failures)
	}
	if e := st.Channels[contract.ChannelEmail]; e == nil || e.Accepted != 1 || e.Replays != 1 || e.Failures.Permanent != 1 {
		t.Errorf("email stats %+v", e)
	}
	if s := st.Channels[contract.ChannelSMS]; s == nil || s.Accepted != 1 {
		t.Errorf("sms stats %+v", s)
	}

	// GET /stats is the same summary in JSON.
	resp, err := http.Get(srv.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	var viaHTTP Stats
	json.NewDecoder(resp.Body).Decode(&viaHTTP)
	resp.Body.Close()
	if viaHTTP.Accepted != 2 || viaHTTP.Replays != 1 || viaHTTP.Channels[contract.ChannelSMS].Accepted != 1 {
		t.Errorf("GET /stats: %+v", viaHTTP)
	}

	// GET /deliveries lists what was accepted, in order.
	resp, err = http.Get(srv.URL + "/deliveries")
	if err != nil {
		t.Fatal(err)
	}
	var ds []Delivery
	json.NewDecoder(resp.Body).Decode(&ds)
	resp.Body.Close()
	if len(ds) != 2 || ds[0].ID != "a" || ds[0].Attempt != 1 || ds[0].Channel != contract.ChannelEmail || ds[1].ID != "b" || ds[0].At.IsZero() {
		t.Errorf("deliveries %+v", ds)
	}
	resp, err = http.Get(srv.URL + "/deliveries?format=tsv&channel=sms")
	if err != nil {
		t.Fatal(err)
	}
	tsv, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	lines := strings.Split(strings.TrimSpace(string(tsv)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "b\tsms\t1\t") {
		t.Errorf("tsv: %q", tsv)
	}

	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/deliveries", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %v", err)
	}
	if st := m.Stats(); st.Accepted != 0 || len(m.Deliveries()) != 0 {
		t.Errorf("after reset: %+v", st)
	}
}

func TestMockServerCountsDuplicatesWithoutIdempotency(t *testing.T) {
	t.Parallel()
	m := NewMockServer(MockServerOptions{IgnoreIdempotency: true})
	srv := httptest.NewServer(m)
	defer srv.Close()
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			post(t, srv.URL, "/", "x", contract.ChannelEmail, 1)
		}()
	}
	wg.Wait()
	post(t, srv.URL, "/", "y", contract.ChannelEmail, 1)
	st := m.Stats()
	if st.Accepted != 4 || st.UniqueIDs != 2 || st.Duplicates != 2 || st.DuplicateIDs != 1 || st.Replays != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestMockServerRejectsBadBodies(t *testing.T) {
	t.Parallel()
	m := NewMockServer(MockServerOptions{})
	srv := httptest.NewServer(m)
	defer srv.Close()
	for _, body := range []string{"nope", `{"id":"a","attempt":0,"channel":"email"}`, `{"id":"a","attempt":1,"channel":"fax"}`} {
		resp, err := http.Post(srv.URL+"/", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d", body, resp.StatusCode)
		}
	}
	if st := m.Stats(); st.BadRequests != 3 || st.Accepted != 0 {
		t.Errorf("stats %+v", st)
	}
}

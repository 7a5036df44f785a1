package chaos

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/provider"
)

func post(t *testing.T, url, id string, attempt int, ch contract.Channel) int {
	t.Helper()
	body, _ := json.Marshal(provider.WebhookBody{ID: id, Channel: ch, Attempt: attempt, Recipient: "x@example.com"})
	req, _ := http.NewRequest(http.MethodPost, url+"/"+string(ch), bytes.NewReader(body))
	req.Header.Set(provider.HeaderIdempotencyKey, id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func outcomes(cs []Call) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Outcome)
	}
	return out
}

// The honouring provider answers a known key from the first delivery and
// logs the call as a replay; the other delivers again.
func TestProviderModes(t *testing.T) {
	for _, honour := range []bool{true, false} {
		p := NewProvider(honour)
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		post(t, p.URL, "a", 1, contract.ChannelEmail)
		post(t, p.URL, "a", 2, contract.ChannelSMS)
		p.Close()
		cs := p.Calls()
		want := []string{OutcomeDelivered, OutcomeDelivered}
		deliveries := 2
		if honour {
			want[1], deliveries = OutcomeReplay, 1
		}
		if got := outcomes(cs); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("honour %v: outcomes %v, want %v", honour, got, want)
		}
		if n := len(p.Mock.Deliveries()); n != deliveries {
			t.Fatalf("honour %v: %d deliveries, want %d", honour, n, deliveries)
		}
		c := cs[1]
		if c.ID != "a" || c.Attempt != 2 || c.Channel != contract.ChannelSMS || c.Key != "a" || c.Status/100 != 2 || c.End.Before(c.Start) {
			t.Fatalf("call logged as %+v", c)
		}
	}
}

// During an outage every call gets 503 and nothing is delivered; after it
// the provider delivers again.
func TestProviderOutage(t *testing.T) {
	p := NewProvider(true)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Outage(200 * time.Millisecond)
	if code := post(t, p.URL, "b", 1, contract.ChannelEmail); code != http.StatusServiceUnavailable {
		t.Fatalf("during the outage: %d", code)
	}
	time.Sleep(250 * time.Millisecond)
	if code := post(t, p.URL, "b", 2, contract.ChannelEmail); code/100 != 2 {
		t.Fatalf("after the outage: %d", code)
	}
	if got := outcomes(p.Calls()); len(got) != 2 || got[0] != OutcomeOutage || got[1] != OutcomeDelivered {
		t.Fatalf("outcomes %v", got)
	}
	if ds := p.Mock.Deliveries(); len(ds) != 1 || ds[0].Attempt != 2 {
		t.Fatalf("deliveries %+v", ds)
	}
}

// A call in progress is counted in flight; a caller that goes away is
// logged as abandoned, not delivered.
func TestProviderInFlightAndAbandoned(t *testing.T) {
	p := NewProvider(false)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	body, _ := json.Marshal(provider.WebhookBody{ID: "c", Channel: contract.ChannelEmail, Attempt: 1})
	client := &http.Client{Timeout: 300 * time.Millisecond}
	errc := make(chan error, 1)
	go func() {
		_, err := client.Post(p.URL+"/email?latency=5s", "application/json", bytes.NewReader(body))
		errc <- err
	}()
	deadline := time.Now().Add(2 * time.Second)
	for len(p.InFlight()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(p.InFlight()); n != 1 {
		t.Fatalf("%d calls in flight, want 1", n)
	}
	if err := <-errc; err == nil {
		t.Fatal("the client did not time out")
	}
	for p.CallCount() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := outcomes(p.Calls()); len(got) != 1 || got[0] != OutcomeAbandoned || len(p.InFlight()) != 0 {
		t.Fatalf("outcomes %v, in flight %d", got, len(p.InFlight()))
	}
	if n := len(p.Mock.Deliveries()); n != 0 {
		t.Fatalf("%d deliveries", n)
	}
}

// Each instance's provider URLs name it, and every call records who made it.
func TestProviderCaller(t *testing.T) {
	p := NewProvider(true)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	post(t, p.URL+"/herald-2", "d", 1, contract.ChannelEmail)
	post(t, p.URL, "e", 1, contract.ChannelEmail)
	cs := p.Calls()
	if len(cs) != 2 || cs[0].Caller != "herald-2" || cs[1].Caller != "" {
		t.Fatalf("calls %+v", cs)
	}
	if ds := p.Mock.Deliveries(); len(ds) != 2 {
		t.Fatalf("deliveries %+v", ds)
	}
}

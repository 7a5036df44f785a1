package views_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
	"github.com/herald-dispatch/herald/internal/views"
)

// TestMetricsAddUp runs a small mix of notifications to every end and
// checks on /metrics that nothing is lost between the counters:
// accepted = sent + failed + expired + canceled + rejected + still held
// (+ sending, which is zero once every attempt has its result).
func TestMetricsAddUp(t *testing.T) {
	s := startStack(t, stackOptions{})
	now := time.Now().UTC()
	var batch [][]byte
	add := func(prefix string, n int, edit func(m map[string]any)) []string {
		var ids []string
		for i := range n {
			id := fmt.Sprintf("%s-%d", prefix, i)
			ids = append(ids, id)
			batch = append(batch, request(id, edit))
		}
		return ids
	}
	emailOnly := func(m map[string]any) { m["channels"] = []string{"email"} }
	slowBackoff := func(m map[string]any) {
		m["channels"] = []string{"email"}
		m["policy"] = map[string]any{"backoff": map[string]any{"initial": "1h", "max": "2h"}}
	}
	from, to := now.Add(-time.Hour), now.Add(time.Hour)
	sent := add("ok", 10, nil)
	failed := add("fail", 5, emailOnly)
	add("late", 5, func(m map[string]any) { m["expires_at"] = now.Add(-time.Minute).Format(time.RFC3339) })
	scheduled := add("sched", 8, later(time.Hour))
	add("night", 4, func(m map[string]any) {
		m["recipient"] = map[string]any{"email": email, "phone": phone, "tz": "UTC"}
		m["blackout"] = []map[string]string{{"from": from.Format("15:04"), "to": to.Format("15:04")}}
	})
	backoff := add("flaky", 3, slowBackoff)
	throttled := add("busy", 2, slowBackoff)
	batch = append(batch, request("bad-1", func(m map[string]any) { m["channels"] = []string{} }),
		request("bad-2", func(m map[string]any) { delete(m, "content") }), []byte(`{"schema": 1}`))
	batch = append(batch, request("ok-0", nil), request("ok-1", nil)) // duplicates within the batch
	body := append(append([]byte("["), joinComma(batch)...), ']')

	var r views.IngestResponse
	if code, b := s.call("POST", "/v1/messages", "", "", body, &r); code != 200 || r.Accepted != 37 || r.Rejected != 3 || r.Duplicates != 2 {
		t.Fatalf("%d %.400s", code, b)
	}

	for _, id := range sent {
		s.result(s.state(id, statusIs(contract.StatusSending)), contract.OutcomeSuccess, "")
	}
	for _, id := range failed {
		s.result(s.state(id, statusIs(contract.StatusSending)), contract.OutcomePermanent, "550 no such user")
	}
	for _, id := range backoff {
		s.result(s.state(id, statusIs(contract.StatusSending)), contract.OutcomeTransient, "timeout")
	}
	for _, id := range throttled {
		st := s.state(id, statusIs(contract.StatusSending))
		res := contract.SendResult{ID: id, Attempt: st.Attempts, Channel: st.Channel, Outcome: contract.OutcomeThrottled,
			RetryAfter: contract.Duration(time.Hour), At: time.Now().UTC()}
		b, _ := json.Marshal(res)
		s.cluster.Produce(t, s.client, &kgo.Record{Topic: topology.TopicResults, Key: []byte(id), Value: b})
	}
	for _, id := range scheduled[:3] {
		s.state(id, statusIs(contract.StatusScheduled))
		if code, b := s.call("POST", "/v1/messages/"+id+"/cancel?wait=10s", "", "", nil, nil); code != 200 {
			t.Fatalf("cancel %s: %d %s", id, code, b)
		}
	}
	// A duplicate and a broken record straight to Kafka, past the API.
	s.cluster.Produce(t, s.client,
		&kgo.Record{Topic: topology.TopicRequests, Key: []byte("ok-2"), Value: request("ok-2", nil)},
		&kgo.Record{Topic: topology.TopicRequests, Key: []byte("junk"), Value: []byte("not json")})

	for _, id := range sent {
		s.state(id, statusIs(contract.StatusSent))
	}
	for _, id := range failed {
		s.state(id, statusIs(contract.StatusFailed))
	}
	for _, id := range append(backoff, throttled...) {
		s.state(id, statusIs(contract.StatusRetrying))
	}
	heraldtest.WaitFor(t, 10*time.Second, "the duplicate and the dead letter", func() bool {
		m := s.scrape()
		return m["herald_duplicates_total"] == 1 && m[`herald_dlq_records_total{reason="malformed",topic="herald.requests"}`] == 1
	})
	if err := s.held.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}

	m := s.scrape()
	get := func(name string) float64 {
		v, ok := m[name]
		if !ok {
			t.Errorf("no sample %s", name)
		}
		return v
	}
	accepted := get(`herald_api_ingested_items_total{result="accepted"}`)
	if d := get("herald_requests_accepted_total"); d != accepted || accepted != 37 {
		t.Errorf("API accepted %v, dispatcher accepted %v, want 37", accepted, d)
	}
	final := 0.0
	want := map[contract.Status]float64{contract.StatusSent: 10, contract.StatusFailed: 5, contract.StatusExpired: 5,
		contract.StatusCanceled: 3, contract.StatusRejected: 0}
	for st, n := range want {
		// Each final status is reached once per notification; the scan
		// of the view must agree with the transition counters.
		var reached float64
		for k, v := range m {
			if len(k) > len("herald_transitions_total{") && k[:len("herald_transitions_total{")] == "herald_transitions_total{" &&
				containsLabel(k, "to", string(st)) {
				reached += v
			}
		}
		inView := get(`herald_notifications{status="` + string(st) + `"}`)
		if reached != n || inView != n {
			t.Errorf("%s: transitions %v, view %v, want %v", st, reached, inView, n)
		}
		final += reached
	}
	held := 0.0
	for _, st := range []contract.Status{contract.StatusScheduled, contract.StatusDeferred, contract.StatusRetrying} {
		held += get(`herald_notifications{status="` + string(st) + `"}`)
	}
	sending := get(`herald_notifications{status="sending"}`)
	if final+held+sending != accepted || sending != 0 {
		t.Errorf("accepted %v != final %v + held %v + sending %v", accepted, final, held, sending)
	}
	byReason := map[string]float64{"schedule": 5, "blackout": 4, "backoff": 3, "rate_limit": 2}
	for reason, n := range byReason {
		if v := get(`herald_held_notifications{reason="` + reason + `"}`); v != n {
			t.Errorf("held for %s: %v, want %v", reason, v, n)
		}
	}
	if v := get(`herald_api_ingested_items_total{result="duplicate"}`) + get("herald_duplicates_total"); v != 3 {
		t.Errorf("duplicates dropped: %v, want 3", v)
	}
	if v := get(`herald_api_ingested_items_total{result="rejected"}`); v != 3 {
		t.Errorf("rejected: %v, want 3", v)
	}
	t.Logf("accepted %v = final %v + held %v", accepted, final, held)

	// The dispatcher's group has committed everything it read: its lag
	// on every input partition comes down to zero.
	heraldtest.WaitFor(t, 20*time.Second, "the dispatcher's lag to reach zero", func() bool {
		if err := s.lag.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		m := s.scrape()
		n, total := 0, 0.0
		for k, v := range m {
			if strings.HasPrefix(k, "herald_consumer_lag{") && containsLabel(k, "group", "herald-dispatcher") {
				n++
				total += v
			}
		}
		// 5 input topics (with the repartition topic) x 2 partitions
		return n == 10 && total == 0 && m[`herald_consumer_group_members{group="herald-dispatcher",state="Stable"}`] == 1
	})
}

func joinComma(items [][]byte) []byte {
	var out []byte
	for i, it := range items {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, it...)
	}
	return out
}

// containsLabel reports whether a sample's text form has label="value".
func containsLabel(sample, label, value string) bool {
	want := label + `="` + value + `"`
	for i := 0; i+len(want) <= len(sample); i++ {
		if sample[i:i+len(want)] == want && (sample[i-1] == '{' || sample[i-1] == ',') {
			return true
		}
	}
	return false
}

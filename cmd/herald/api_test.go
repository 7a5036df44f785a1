package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// httpCall makes one request to the herald at addr, with a bearer token
// unless token is empty, and returns the status and the body.
func httpCall(addr, method, path, token, body string) (int, string) {
	req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAPIStage runs the dispatcher and the api stage as `herald run` does,
// against a test broker, and checks what the HTTP server offers.
func TestAPIStage(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 2})
	addr := freeAddr(t)
	run := startRun(t, c, "--api-token", "stage-token", "--goka-monitor", "--http-addr", addr, "--stages", "dispatcher,api", "--log-level", "warn",
		"--held-scan-interval", "100ms", "--lag-interval", "100ms")
	do := func(method, path, token, body string) (int, string) { return httpCall(addr, method, path, token, body) }
	eventually := func(what string, cond func() bool) {
		t.Helper()
		run.waitFor(30*time.Second, what, cond)
	}
	eventually("/readyz", func() bool { code, _ := do("GET", "/readyz", "", ""); return code == http.StatusOK })
	if code, b := do("GET", "/healthz", "", ""); code != http.StatusOK {
		t.Errorf("healthz: %d %s", code, b)
	}

	req := `{"schema":"herald.dispatch.v1","id":"stage-1","campaign":"c","recipient":{"email":"kim@example.com"},
		"channels":["email"],"content":{"subject":"hi"},"not_before":"2099-01-01T00:00:00Z"}`
	if code, b := do("POST", "/v1/messages", "", req); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d %s", code, b)
	}
	if code, b := do("POST", "/v1/messages", "stage-token", req); code != http.StatusAccepted {
		t.Fatalf("post: %d %s", code, b)
	}
	eventually("the message in the view", func() bool {
		code, b := do("GET", "/v1/messages/stage-1", "stage-token", "")
		return code == http.StatusOK && strings.Contains(b, `"status":"scheduled"`) && strings.Contains(b, "k***@example.com")
	})
	eventually("the gauges", func() bool {
		_, m := do("GET", "/metrics", "", "")
		return strings.Contains(m, `herald_held_notifications{reason="schedule"} 1`) &&
			strings.Contains(m, `herald_consumer_lag{group="herald-dispatcher",partition="0",topic="herald.requests"}`) &&
			strings.Contains(m, `herald_api_requests_total{code="202",route="POST /v1/messages"} 1`) &&
			strings.Contains(m, `herald_requests_accepted_total 1`)
	})
	if code, b := do("GET", "/goka/", "", ""); code != http.StatusOK || !strings.Contains(b, "herald-dispatcher") {
		t.Errorf("goka monitor: %d %.200s", code, b)
	}
	if code, b := do("GET", "/v1/campaigns/c", "stage-token", ""); code != http.StatusServiceUnavailable {
		t.Errorf("campaigns without a database: %d %s", code, b)
	}

	// A dead letter, replayed with a fix-up through the API.
	c.Produce(t, c.Client(t), &kgo.Record{Topic: topology.TopicRequests, Key: []byte("stage-dlq"), Value: []byte(`{"schema":"herald.dispatch.v1","id":"stage-dlq"`)})
	eventually("the dead letter in a dry run", func() bool {
		code, b := do("POST", "/v1/dlq/replay?dry_run=1&key=stage-dlq", "stage-token", "")
		return code == http.StatusOK && strings.Contains(b, `"skipped":1`) && strings.Contains(b, "still not a valid request")
	})
	fix := strings.ReplaceAll(strings.ReplaceAll(req, "\n", ""), "stage-1", "stage-dlq")
	if code, b := do("POST", "/v1/dlq/replay?key=stage-dlq", "stage-token", fix); code != http.StatusAccepted || !strings.Contains(b, `"replayed":1`) {
		t.Fatalf("replay: %d %s", code, b)
	}
	eventually("the replayed request in the view", func() bool {
		code, b := do("GET", "/v1/messages/stage-dlq", "stage-token", "")
		return code == http.StatusOK && strings.Contains(b, `"status":"scheduled"`)
	})

	// The console, and the error shape outside /v1.
	if code, b := do("GET", "/ui/", "", ""); code != http.StatusOK || !strings.Contains(b, `<script src="app.js">`) {
		t.Errorf("console: %d %.200s", code, b)
	}
	for _, c := range []struct {
		method, path, token string
		code                int
		errCode             string
	}{
		{"GET", "/nothing", "", http.StatusUnauthorized, `"code":"unauthorized"`},
		{"GET", "/nothing", "stage-token", http.StatusNotFound, `"code":"not_found"`},
		{"GET", "/v1", "stage-token", http.StatusNotFound, `"code":"not_found"`},
		{"DELETE", "/v1/messages/stage-1", "stage-token", http.StatusMethodNotAllowed, `"code":"method_not_allowed"`},
	} {
		if code, b := do(c.method, c.path, c.token, ""); code != c.code || !strings.Contains(b, c.errCode) {
			t.Errorf("%s %s: %d %s", c.method, c.path, code, b)
		}
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, err := client.Get("http://" + addr + "/"); err != nil || resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("/: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

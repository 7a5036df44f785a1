package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/jackc/pgx/v5"
)

// TestRunFailoverChain is issue 24's acceptance case: `herald run
// --provider sms=http://DEAD --provider sms=http://LIVE/sms`. Every
// SMS-only notification is sent, each delivered exactly once by the live
// provider, and the dead provider's circuit is open on /metrics.
func TestRunFailoverChain(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 2})
	dsn := heraldtest.Postgres(t)
	mock := provider.NewMockServer(provider.MockServerOptions{})
	live := httptest.NewServer(mock)
	defer live.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()

	addr := freeAddr(t)
	startRun(t, c, "--api-token", "chain-token", "--http-addr", addr, "--database-url", dsn, "--log-level", "warn",
		"--provider", "sms=http://"+dead, "--provider", "sms="+live.URL+"/sms",
		"--provider-circuit-failures", "3", "--provider-circuit-cooldown", "1h")
	do := func(method, path, body string) (int, string) {
		return httpCall(addr, method, path, "chain-token", body)
	}
	heraldtest.WaitFor(t, 60*time.Second, "/readyz", func() bool { code, _ := do("GET", "/readyz", ""); return code == http.StatusOK })

	const n = 12
	for i := range n {
		req := fmt.Sprintf(`{"schema":"herald.dispatch.v1","id":"chain-%d","campaign":"chain","recipient":{"phone":"+15005550006"},
			"channels":["sms"],"content":{"text":"hi"}}`, i)
		if code, b := do("POST", "/v1/messages", strings.ReplaceAll(req, "\n", "")); code != http.StatusAccepted {
			t.Fatalf("post %d: %d %s", i, code, b)
		}
	}
	heraldtest.WaitFor(t, 60*time.Second, "every notification sent", func() bool {
		for i := range n {
			code, b := do("GET", fmt.Sprintf("/v1/messages/chain-%d", i), "")
			if code != http.StatusOK || !strings.Contains(b, `"status":"sent"`) {
				return false
			}
		}
		return true
	})
	st := mock.Stats()
	if st.UniqueIDs != n || st.Duplicates != 0 {
		t.Errorf("live provider: %d unique ids, %d duplicates; want %d and 0", st.UniqueIDs, st.Duplicates, n)
	}
	// The status and Postgres name the provider that delivered.
	liveName := strings.TrimPrefix(live.URL, "http://")
	if _, b := do("GET", "/v1/messages/chain-0", ""); !strings.Contains(b, `"provider":"`+liveName+`"`) {
		t.Errorf("the message's history does not name the live provider %s: %s", liveName, b)
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	heraldtest.WaitFor(t, 30*time.Second, "every success attempt in Postgres naming the live provider", func() bool {
		var got int
		err := conn.QueryRow(context.Background(), `SELECT count(*) FROM dispatch_attempts
			WHERE campaign = 'chain' AND outcome = 'success' AND provider = $1`, liveName).Scan(&got)
		return err == nil && got == n
	})
	_, metrics := do("GET", "/metrics", "")
	deadState := regexp.MustCompile(`herald_provider_circuit_state\{channel="sms",provider="` + regexp.QuoteMeta(dead) + `"\} (\d)`).FindStringSubmatch(metrics)
	liveState := regexp.MustCompile(`herald_provider_circuit_state\{channel="sms",provider="` + regexp.QuoteMeta(strings.TrimPrefix(live.URL, "http://")) + `"\} (\d)`).FindStringSubmatch(metrics)
	if deadState == nil || deadState[1] != "2" || liveState == nil || liveState[1] != "0" {
		t.Errorf("circuits on /metrics: dead %v, live %v; want 2 (open) and 0 (closed)", deadState, liveState)
	}
}

// A template with a mistake stops `herald run` with the file and line.
func TestRunTemplateErrorStopsStartup(t *testing.T) {
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1})
	path := filepath.Join(t.TempDir(), "vendor.yaml")
	os.WriteFile(path, []byte("name: vendor\nrequest:\n  url: https://api.example.com/send\n  form:\n    To: '{{.Adress}}'\n"), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append(brokersFlag(c), "--partitions", "1", "--data-dir", t.TempDir(), "--stages", "sender",
		"--send-stale-check=false", "--http-addr", freeAddr(t), "--log-level", "error",
		"--provider", "sms=template:"+path)
	err := runPipeline(ctx, "run", args, "all")
	if err == nil || !strings.Contains(err.Error(), path+":5: form field To") {
		t.Fatalf("run: %v, want the template's file and line", err)
	}
}

package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-dispatch/herald/internal/broker"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

// TestRunOverTLSAndSASL runs every stage of `herald run` against a broker
// that requires mutual TLS and SCRAM-SHA-512, configured the way an
// operator would (variables, the password in a file), and follows a
// scheduled notification through the API's producer, the dispatcher and
// the API's view (Goka, Sarama), the delay stage, the sender and the sink
// (franz-go) to PostgreSQL.
func TestRunOverTLSAndSASL(t *testing.T) {
	files := heraldtest.NewTLSFiles(t, true)
	pwFile := filepath.Join(t.TempDir(), "kafka-password")
	os.WriteFile(pwFile, []byte("pa55-w0rd\n"), 0o600)
	opts := topology.SecurityOptions{CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey,
		SASLMechanism: topology.SASLScramSHA512, SASLUser: "herald", SASLPasswordFile: pwFile}
	sec, err := topology.LoadSecurity(opts)
	if err != nil {
		t.Fatal(err)
	}
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 2, TLS: files.Server, Security: sec,
		SASL: []broker.SASLUser{{Mechanism: topology.SASLScramSHA512, User: "herald", Password: "pa55-w0rd"}}})
	dsn := heraldtest.Postgres(t)

	t.Setenv("HERALD_KAFKA_TLS_CA", files.CA)
	t.Setenv("HERALD_KAFKA_TLS_CERT", files.ClientCert)
	t.Setenv("HERALD_KAFKA_TLS_KEY", files.ClientKey)
	t.Setenv("HERALD_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("HERALD_KAFKA_SASL_USER", "herald")
	t.Setenv("HERALD_KAFKA_SASL_PASSWORD_FILE", pwFile)
	t.Setenv("HERALD_API_TOKEN", "secure-token")
	addr := freeAddr(t)
	run := startRun(t, c, "--http-addr", addr, "--database-url", dsn, "--log-level", "warn",
		"--provider", "email=mock://?latency=1ms", "--sink-batch-interval", "50ms")
	do := func(method, path, body string) (int, string) {
		return httpCall(addr, method, path, "secure-token", body)
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		run.waitFor(60*time.Second, what, cond)
	}
	eventually("/readyz", func() bool { code, _ := do("GET", "/readyz", ""); return code == http.StatusOK })
	if code, _ := do("GET", "/goka/", ""); code != http.StatusNotFound {
		t.Errorf("Goka's monitor (CDN assets) is served without --goka-monitor: %d", code)
	}
	due := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339Nano)
	req := `{"schema":"herald.dispatch.v1","id":"secure-1","campaign":"secure","recipient":{"email":"kim@example.com"},
		"channels":["email"],"content":{"subject":"hi"},"not_before":"` + due + `"}`
	if code, b := do("POST", "/v1/messages", req); code != http.StatusAccepted {
		t.Fatalf("post: %d %s", code, b)
	}
	eventually("the notification sent, in the view", func() bool {
		code, b := do("GET", "/v1/messages/secure-1", "")
		return code == http.StatusOK && strings.Contains(b, `"status":"sent"`)
	})
	// herald send --via kafka takes the same security settings.
	jsonl := filepath.Join(t.TempDir(), "req.jsonl")
	os.WriteFile(jsonl, []byte(strings.ReplaceAll(strings.ReplaceAll(req, "secure-1", "secure-2"), "\n", "")+"\n"), 0o600)
	if err := sendFile(context.Background(), jsonl, append(brokersFlag(c), "--via", "kafka")...); err != nil {
		t.Fatalf("send --via kafka: %v", err)
	}
	eventually("the notification sent with herald send, in the view", func() bool {
		code, b := do("GET", "/v1/messages/secure-2", "")
		return code == http.StatusOK && strings.Contains(b, `"status":"sent"`)
	})
	eventually("the notification sent, in PostgreSQL", func() bool {
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			return false
		}
		defer conn.Close(context.Background())
		var status string
		conn.QueryRow(context.Background(), `SELECT status FROM dispatch_status WHERE id = 'secure-1'`).Scan(&status)
		return status == "sent"
	})
}

// TLS against a plaintext listener, and plaintext against a TLS one, stop
// herald dlq, herald send and herald run with an error naming TLS as the
// likely cause, not a hang or a bare time-out. Each check waits out its
// --kafka-check-timeout on a listener that does not answer, so they run
// side by side.
func TestKafkaSecurityMismatch(t *testing.T) {
	t.Parallel()
	plain := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1})
	files := heraldtest.NewTLSFiles(t, false)
	sec, err := topology.LoadSecurity(topology.SecurityOptions{CAFile: files.CA})
	if err != nil {
		t.Fatal(err)
	}
	secure := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1, TLS: files.Server, Security: sec})
	tlsArgs := slices.Concat(brokersFlag(plain), []string{"--kafka-tls", "--kafka-check-timeout", "2s"})
	jsonl := filepath.Join(t.TempDir(), "req.jsonl")
	os.WriteFile(jsonl, []byte(sendRequest("tls-1")+"\n"), 0o600)
	for _, tc := range []struct {
		what string
		run  func(ctx context.Context, t *testing.T) error
	}{
		{"dlq list --kafka-tls, plaintext broker", func(ctx context.Context, t *testing.T) error {
			return runDLQ(ctx, stdio{out: io.Discard, err: io.Discard}, slices.Concat([]string{"list"}, tlsArgs))
		}},
		{"send --via kafka --kafka-tls, plaintext broker", func(ctx context.Context, t *testing.T) error {
			return sendFile(ctx, jsonl, slices.Concat(tlsArgs, []string{"--via", "kafka"})...)
		}},
		{"run --kafka-tls, plaintext broker", func(ctx context.Context, t *testing.T) error {
			return runPipeline(ctx, "run", slices.Concat(tlsArgs, []string{"--data-dir", t.TempDir(), "--http-addr", "off", "--partitions", "1"}), "all")
		}},
		{"dlq list in plaintext, TLS broker", func(ctx context.Context, t *testing.T) error {
			return runDLQ(ctx, stdio{out: io.Discard, err: io.Discard},
				slices.Concat([]string{"list", "--kafka-check-timeout", "2s"}, brokersFlag(secure)))
		}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := tc.run(ctx, t); err == nil || !strings.Contains(err.Error(), "TLS is the likely cause") {
				t.Errorf("err = %v, want one naming TLS as the likely cause", err)
			}
		})
	}
}

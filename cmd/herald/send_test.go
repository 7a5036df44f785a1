package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/ingest"
	"github.com/herald-dispatch/herald/internal/tableview"
	"github.com/herald-dispatch/herald/internal/topology"
	"github.com/herald-dispatch/herald/internal/views"
)

func sendRequest(id string) string {
	b, _ := json.Marshal(map[string]any{
		"schema": contract.SchemaV1, "id": id, "campaign": "send-test",
		"recipient": map[string]any{"email": "kim@example.com"}, "channels": []string{"email"},
		"content": map[string]any{"subject": "hi"},
	})
	return string(b)
}

// writeRequests writes a JSONL file: 7 valid requests (one repeated), a
// blank line, an invalid one and a line that is not JSON; it returns the
// valid ids.
func writeRequests(t *testing.T) (string, []string) {
	lines := []string{sendRequest("s-1"), sendRequest("s-2"), "", `{"schema":"herald.dispatch.v1","id":"s-bad"}`,
		sendRequest("s-3"), sendRequest("s-4"), "not json", sendRequest("s-5"), sendRequest("s-2"), sendRequest("s-6"), sendRequest("s-7")}
	path := filepath.Join(t.TempDir(), "requests.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, []string{"s-1", "s-2", "s-3", "s-4", "s-5", "s-6", "s-7"}
}

// published reads herald.requests and checks every record sits on the
// partition Herald's partitioner gives its key.
func published(t *testing.T, c *heraldtest.Cluster, want int) []string {
	recs := c.Consume(t, topology.TopicRequests, 10*time.Second, func(rs []*kgo.Record) bool { return len(rs) >= want })
	var keys []string
	for _, r := range recs {
		if p := topology.Partition(string(r.Key), c.Topology.Partitions); r.Partition != p {
			t.Errorf("%s on partition %d, want %d", r.Key, r.Partition, p)
		}
		var req contract.Request
		if err := json.Unmarshal(r.Value, &req); err != nil || req.ID != string(r.Key) {
			t.Errorf("record %s: %s", r.Key, r.Value)
		}
		keys = append(keys, string(r.Key))
	}
	slices.Sort(keys)
	return keys
}

func TestSendKafka(t *testing.T) {
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 3})
	path, ids := writeRequests(t)
	var err error
	out := captureStdout(t, func() {
		err = sendFile(context.Background(), path, append(brokersFlag(c), "--via", "kafka", "--send-batch", "3")...)
	})
	if err == nil || !strings.Contains(err.Error(), "2 requests rejected, 0 failed") {
		t.Fatalf("err = %v", err)
	}
	// Straight to Kafka nothing is checked against the dispatcher's state:
	// "published", never "accepted".
	if !strings.Contains(out, "8 published") || strings.Contains(out, "accepted") {
		t.Errorf("summary %q", out)
	}
	// s-2 comes twice, in different batches: straight to Kafka nothing
	// checks across batches, the dispatcher drops the second.
	got := published(t, c, 8)
	want := append(slices.Clone(ids), "s-2")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
}

func TestSendAPI(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 3})
	view, err := tableview.NewStateView(c.Topology, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	heraldtest.Background(t, "view", view.Run)
	heraldtest.WaitFor(t, 60*time.Second, "the view to recover", view.Recovered)
	ctx := context.Background()
	const token = "send-token"
	api := &views.Server{Config: views.Config{Token: token}, Table: view, Producer: c.Client(t),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var posts, fail atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		if fail.Add(-1) >= 0 { // the API restarting
			http.Error(w, `{"code":"unavailable","error":"the view of the dispatcher table is still recovering"}`, http.StatusServiceUnavailable)
			return
		}
		api.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()
	path, ids := writeRequests(t)

	// A wrong token is not retried.
	err = sendFile(ctx, path, "--api-url", srv.URL, "--api-token", "wrong")
	if err == nil || !strings.Contains(err.Error(), "401") || posts.Load() != 1 {
		t.Fatalf("wrong token: %v after %d posts", err, posts.Load())
	}

	// Two 503s, then the batches go through; s-2's repeat is in the same
	// batch, so the API answers it as a duplicate.
	posts.Store(0)
	fail.Store(2)
	err = sendFile(ctx, path, "--api-url", srv.URL+"/", "--api-token", token, "--send-batch", "20")
	if err == nil || !strings.Contains(err.Error(), "2 requests rejected, 0 failed") || posts.Load() != 3 {
		t.Fatalf("err = %v after %d posts", err, posts.Load())
	}
	if got := published(t, c, 7); !slices.Equal(got, ids) {
		t.Errorf("published %v, want %v", got, ids)
	}
}

// TestSendReport checks what the sender prints for each line that was not
// accepted, with the file's line numbers across batches.
func TestSendReport(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 2})
	path, _ := writeRequests(t)
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out bytes.Buffer
	var progressed int
	s := fileSender{batch: 2, batchBytes: 1 << 20, send: (&ingest.Ingester{Producer: c.Client(t)}).Ingest, out: &out,
		progress: func(n int) { progressed += n }}
	st, err := s.run(context.Background(), fh)
	if err != nil {
		t.Fatal(err)
	}
	if st != (sendStats{items: 10, accepted: 8, rejected: 2}) || progressed != 11 {
		t.Errorf("stats %+v, progress %d lines", st, progressed)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "line 4 (s-bad): rejected: campaign: required") ||
		!strings.HasPrefix(lines[1], "line 7: rejected: json: ") {
		t.Errorf("report:\n%s", out.String())
	}
	_, n, err := openInput(path)
	if err != nil || n != 11 {
		t.Errorf("counted %d lines, %v", n, err)
	}
}

func TestSendFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "--file is required"},
		{[]string{"--file", "x.jsonl", "--via", "carrier-pigeon"}, "want api or kafka"},
		{[]string{"--file", "x.jsonl", "--send-batch", "0"}, "must be positive"},
		{[]string{"--file", filepath.Join(t.TempDir(), "missing.jsonl")}, "no such file"},
	} {
		if err := runSend(context.Background(), c.args); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

func TestSendTellsTheTruth(t *testing.T) {
	t.Run("no rate before a second", func(t *testing.T) {
		if got := rateText(500, 5*time.Microsecond); got != "…" {
			t.Errorf("first frame: %q", got)
		}
		if got := rateText(3000, 2*time.Second); got != "1500 req/s" {
			t.Errorf("%q", got)
		}
	})
	t.Run("an unreachable API is an error", func(t *testing.T) {
		path, _ := writeRequests(t)
		err := sendFile(context.Background(), path, "--api-url", "http://127.0.0.1:1", "--send-retries", "0")
		if err == nil || !strings.Contains(err.Error(), "nothing sent") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("generate", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "requests.jsonl")
		if err := runSend(context.Background(), []string{"--generate", "25", "--campaign", "tour-x", "--out", out}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for i, l := range lines {
			r, err := contract.Decode(nil, []byte(l))
			if err != nil || r.Campaign != "tour-x" || len(contract.UnknownFields([]byte(l))) > 0 {
				t.Fatalf("line %d: %v %s", i+1, err, l)
			}
		}
		if len(lines) != 25 {
			t.Errorf("%d lines", len(lines))
		}
		if err := runSend(context.Background(), []string{"--generate", "2", "--file", out}); err == nil {
			t.Error("--generate with --file accepted")
		}
	})
}

// captureStdout returns what fn prints to standard output.
func captureStdout(t *testing.T, fn func()) string { t.Helper(); return capture(t, &os.Stdout, fn) }

// captureStderr returns what fn writes to standard error.
func captureStderr(t *testing.T, fn func()) string { t.Helper(); return capture(t, &os.Stderr, fn) }

func capture(t *testing.T, f **os.File, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := *f
	*f = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	defer func() { *f = old }()
	fn()
	w.Close()
	*f = old
	return <-done
}

func TestSendReportsWarningsAndDifferingPayloads(t *testing.T) {
	var out bytes.Buffer
	s := fileSender{out: &out}
	var st sendStats
	s.report(&st, []ingest.ItemResult{
		{Line: 1, ID: "a", Result: ingest.ResultAccepted, Warnings: []string{"unknown field sendAt: ignored"}},
		{Line: 2, ID: "b", Result: ingest.ResultDuplicate, PayloadDiffers: true},
		{Line: 3, ID: "c", Result: ingest.ResultDuplicate},
	})
	if st.warned != 1 || st.differs != 1 || st.duplicates != 2 ||
		!strings.Contains(out.String(), "line 1 (a): unknown field sendAt: ignored") ||
		!strings.Contains(out.String(), "line 2 (b): duplicate with a different payload") || strings.Contains(out.String(), "line 3") {
		t.Errorf("%+v\n%s", st, out.String())
	}
}

// Without --api-token, herald send uses the token herald run generated in
// the data dir.
func TestSendUsesGeneratedToken(t *testing.T) {
	dir := t.TempDir()
	tok, err := resolveAPIToken("", dir, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var auth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		http.Error(w, `{"error":"stop here"}`, http.StatusUnauthorized)
	}))
	defer srv.Close()
	path, _ := writeRequests(t)
	sendFile(context.Background(), path, "--api-url", srv.URL, "--data-dir", dir)
	if got, _ := auth.Load().(string); got != "Bearer "+tok {
		t.Errorf("Authorization %q, want the generated token", got)
	}
}

// Without --api-url, `herald send` posts to the API `herald run` would
// serve at HERALD_HTTP_ADDR, and says where.
func TestSendFollowsRunsHTTPAddr(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"accepted":1}`)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	t.Setenv("HERALD_HTTP_ADDR", addr)
	path := filepath.Join(t.TempDir(), "one.jsonl")
	os.WriteFile(path, []byte(sendRequest("f-1")+"\n"), 0o644)
	var err error
	msgs := captureStderr(t, func() { err = sendFile(context.Background(), path, "--data-dir", t.TempDir()) })
	if posts.Load() == 0 {
		t.Fatalf("nothing posted to HERALD_HTTP_ADDR %s (err %v)", addr, err)
	}
	if want := "the API at http://" + addr + " (--http-addr)"; !strings.Contains(msgs, want) {
		t.Errorf("send said %q, want %q", msgs, want)
	}
}

func TestDialAddr(t *testing.T) {
	for in, want := range map[string]string{"0.0.0.0:8080": "127.0.0.1:8080", ":9092": "127.0.0.1:9092", "[::]:80": "[::1]:80",
		"10.0.0.5:8080": "10.0.0.5:8080", "herald:8080": "herald:8080"} {
		if got := dialAddr(in); got != want {
			t.Errorf("dialAddr(%q) = %q, want %q", in, got, want)
		}
	}
	f := apiTargetFlags{httpAddr: "off"}
	if _, _, err := f.resolve(); err == nil {
		t.Error("--http-addr off resolved to a URL")
	}
}

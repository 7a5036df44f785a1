package provider

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/herald-dispatch/herald/contract"
)

func testCommand(id string, attempt int) *contract.SendCommand {
	return &contract.SendCommand{
		ID: id, Campaign: "c1", Channel: contract.ChannelEmail, Attempt: attempt,
		Address: "jane@example.com", Content: json.RawMessage(`{"subject":"hi","text":"hello"}`),
		IdempotencyKey: id,
	}
}

func TestWebhookClassifiesEveryResponseClass(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status int
		want   contract.Outcome
	}{
		{200, contract.OutcomeSuccess},
		{201, contract.OutcomeSuccess},
		{202, contract.OutcomeSuccess},
		{204, contract.OutcomeSuccess},
		{301, contract.OutcomePermanent}, // redirects are not followed
		{302, contract.OutcomePermanent},
		{400, contract.OutcomePermanent},
		{401, contract.OutcomePermanent},
		{403, contract.OutcomePermanent},
		{404, contract.OutcomePermanent},
		{408, contract.OutcomeTransient},
		{409, contract.OutcomePermanent},
		{422, contract.OutcomePermanent},
		{429, contract.OutcomeThrottled},
		{500, contract.OutcomeTransient},
		{502, contract.OutcomeTransient},
		{503, contract.OutcomeTransient},
		{504, contract.OutcomeTransient},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var status int
		json.NewDecoder(strings.NewReader(r.URL.Query().Get("s"))).Decode(&status)
		if status >= 300 && status < 400 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
		io.WriteString(w, "why: "+http.StatusText(status))
	}))
	defer srv.Close()
	for _, c := range cases {
		wh, err := NewWebhook(srv.URL+"/?s="+itoa(c.status), Options{Concurrency: 4, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		r := wh.Send(context.Background(), testCommand("n1", 1))
		if r.Outcome != c.want || r.Code != c.status {
			t.Errorf("HTTP %d: got %s (code %d), want %s", c.status, r.Outcome, r.Code, c.want)
		}
		if (r.Err == nil) != (c.want == contract.OutcomeSuccess) {
			t.Errorf("HTTP %d: err = %v", c.status, r.Err)
		}
		if r.Err != nil && !strings.Contains(r.Err.Error(), http.StatusText(c.status)) {
			t.Errorf("HTTP %d: error %q does not quote the response body", c.status, r.Err)
		}
		wh.Close()
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// A timeout after the request was written is an unknown outcome (the
// provider may have delivered); a connection refused is transient (nothing
// reached it).
func TestWebhookTimeoutIsUnknownAndRefusedIsTransient(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	wh, _ := NewWebhook(slow.URL, Options{Timeout: 100 * time.Millisecond})
	start := time.Now()
	r := wh.Send(context.Background(), testCommand("n1", 1))
	if r.Outcome != contract.OutcomeUnknown || r.Code != 0 {
		t.Errorf("timeout: got %s code %d (%v), want unknown 0", r.Outcome, r.Code, r.Err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("timeout took %s", el)
	}

	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	wh2, _ := NewWebhook("http://"+addr+"/", Options{Timeout: time.Second})
	r = wh2.Send(context.Background(), testCommand("n1", 1))
	if r.Outcome != contract.OutcomeTransient || r.Code != 0 || r.Err == nil {
		t.Errorf("refused: got %s code %d (%v), want transient 0", r.Outcome, r.Code, r.Err)
	}
}

func TestWebhookRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var header atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", header.Load().(string))
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	wh, _ := NewWebhook(srv.URL, Options{})
	wh.now = func() time.Time { return now }
	for _, c := range []struct {
		h    string
		want time.Duration
	}{
		{"7", 7 * time.Second},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0}, // in the past
		{"soon", 0},
		{"-3", 0},
	} {
		header.Store(c.h)
		r := wh.Send(context.Background(), testCommand("n1", 1))
		if r.Outcome != contract.OutcomeThrottled || r.RetryAfter != c.want {
			t.Errorf("Retry-After %q: got %s %s, want throttled %s", c.h, r.Outcome, r.RetryAfter, c.want)
		}
	}
}

func TestParseRetryAfterOn503(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	wh, _ := NewWebhook(srv.URL, Options{})
	r := wh.Send(context.Background(), testCommand("n1", 1))
	if r.Outcome != contract.OutcomeTransient || r.RetryAfter != 2*time.Minute {
		t.Errorf("got %s %s, want transient 2m", r.Outcome, r.RetryAfter)
	}
}

func TestWebhookBodyAndIdempotencyKey(t *testing.T) {
	t.Parallel()
	type seen struct {
		key  string
		ct   string
		body WebhookBody
		raw  map[string]json.RawMessage
	}
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var s seen
		s.key, s.ct = r.Header.Get(HeaderIdempotencyKey), r.Header.Get("Content-Type")
		json.Unmarshal(b, &s.body)
		json.Unmarshal(b, &s.raw)
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	wh, _ := NewWebhook(srv.URL, Options{})
	for attempt := 1; attempt <= 3; attempt++ {
		cmd := testCommand("notif-42", attempt)
		if attempt == 3 {
			cmd.Channel, cmd.Address = contract.ChannelSMS, "+821012345678"
		}
		wh.Send(context.Background(), cmd)
	}
	if len(got) != 3 {
		t.Fatalf("got %d requests", len(got))
	}
	for i, s := range got {
		if s.key != "notif-42" {
			t.Errorf("attempt %d: Idempotency-Key %q, want notif-42 on every attempt", i+1, s.key)
		}
		if s.ct != "application/json" {
			t.Errorf("attempt %d: Content-Type %q", i+1, s.ct)
		}
		if s.body.ID != "notif-42" || s.body.Attempt != i+1 || s.body.Campaign != "c1" {
			t.Errorf("attempt %d: body %+v", i+1, s.body)
		}
		for _, k := range []string{"id", "campaign", "channel", "attempt", "recipient", "content"} {
			if _, ok := s.raw[k]; !ok {
				t.Errorf("attempt %d: body lacks %q", i+1, k)
			}
		}
		if len(s.raw) != 6 {
			t.Errorf("attempt %d: body has extra fields: %v", i+1, s.raw)
		}
	}
	if got[0].body.Recipient != "jane@example.com" || got[0].body.Channel != contract.ChannelEmail {
		t.Errorf("email attempt: recipient %q channel %s", got[0].body.Recipient, got[0].body.Channel)
	}
	if got[2].body.Recipient != "+821012345678" || got[2].body.Channel != contract.ChannelSMS {
		t.Errorf("sms attempt: recipient %q channel %s", got[2].body.Recipient, got[2].body.Channel)
	}
	if string(got[0].raw["content"]) != `{"subject":"hi","text":"hello"}` {
		t.Errorf("content %s", got[0].raw["content"])
	}
}

func TestWebhookReusesConnections(t *testing.T) {
	t.Parallel()
	var newConns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		w.WriteHeader(http.StatusAccepted)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			newConns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	const conc = 50
	wh, _ := NewWebhook(srv.URL, Options{Concurrency: conc})
	defer wh.Close()
	for round := 0; round < 5; round++ {
		var wg sync.WaitGroup
		for i := 0; i < conc; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r := wh.Send(context.Background(), testCommand("n", 1)); r.Outcome != contract.OutcomeSuccess {
					t.Errorf("send: %s %v", r.Outcome, r.Err)
				}
			}()
		}
		wg.Wait()
	}
	// 250 requests in rounds of 50 concurrent: the pool keeps up to 50 idle
	// connections, so later rounds reuse the first round's.
	if n := newConns.Load(); n > conc {
		t.Errorf("%d connections opened for %d requests at concurrency %d; keep-alive pool too small", n, 5*conc, conc)
	}
}

// The cut-off rule (handover.go): the command's cut-off bounds when the
// request may reach the provider, not how long its answer may take.
func TestWebhookCutoffBoundsTheHandOverNotTheAnswer(t *testing.T) {
	t.Parallel()
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		time.Sleep(400 * time.Millisecond) // answers after the cut-off below
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	wh, err := NewWebhook(srv.URL, Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}

	// Written before the cut-off, answered after it: the answer counts.
	cmd := testCommand("spans", 1)
	cmd.Cutoff = time.Now().Add(150 * time.Millisecond)
	if r := wh.Send(context.Background(), cmd); r.Outcome != contract.OutcomeSuccess || r.Code != http.StatusAccepted {
		t.Errorf("a request written before the cut-off and answered after it: %s %d (%v), want success 202", r.Outcome, r.Code, r.Err)
	}

	// The cut-off has passed before the request could be written: not
	// attempted, and the provider never sees it.
	cmd = testCommand("past", 1)
	cmd.Cutoff = time.Now().Add(-time.Millisecond)
	if r := wh.Send(context.Background(), cmd); r.Outcome != contract.OutcomeNotAttempted || r.Err == nil {
		t.Errorf("cut-off already past: %s (%v), want not_attempted", r.Outcome, r.Err)
	}

	// The connection takes longer than the time left: abandoned at the
	// cut-off, before anything reached the provider.
	slow, err := NewWebhook("http://herald.invalid:80/", Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	slow.client.Transport.(*http.Transport).DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	cmd = testCommand("slow-connect", 1)
	cmd.Cutoff = time.Now().Add(200 * time.Millisecond)
	start := time.Now()
	r := slow.Send(context.Background(), cmd)
	if r.Outcome != contract.OutcomeNotAttempted || !strings.Contains(r.Err.Error(), "before the request reached the provider") {
		t.Errorf("connection slower than the time to the cut-off: %s (%v), want not_attempted", r.Outcome, r.Err)
	}
	if el := time.Since(start); el < 150*time.Millisecond || el > 3*time.Second {
		t.Errorf("abandoned after %s, want at the cut-off (200 ms)", el)
	}
	if n := got.Load(); n != 1 {
		t.Errorf("the provider received %d requests, want only the first", n)
	}
}

// A provider (or a load balancer before it) that reads a request on a
// reused keep-alive connection and closes the connection without an
// answer has seen it once: the webhook must report the outcome unknown,
// and net/http must not send it again on a new connection (it would, for
// a request with an Idempotency-Key and a rewindable body).
func TestWebhookNoTransportReplay(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var (
		mu    sync.Mutex
		seen  []string // the Idempotency-Key of every request read, in order
		conns int
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns++
			mu.Unlock()
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body) // read it fully
					mu.Lock()
					seen = append(seen, req.Header.Get(HeaderIdempotencyKey))
					n := len(seen)
					mu.Unlock()
					if n == 2 {
						return // read, then close without an answer
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				}
			}(c)
		}
	}()
	wh, err := NewWebhook("http://"+ln.Addr().String()+"/", Options{Concurrency: 1, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Close()
	// HTTP/2 resends a written body only through GetBody
	// (http2shouldRetryRequest): the transport must never get one.
	tr := wh.client.Transport
	var rewindable atomic.Int32
	wh.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.GetBody != nil {
			rewindable.Add(1)
		}
		return tr.RoundTrip(r)
	})
	if r := wh.Send(context.Background(), testCommand("first", 1)); r.Outcome != contract.OutcomeSuccess {
		t.Fatalf("first request: %s (%v)", r.Outcome, r.Err)
	}
	r := wh.Send(context.Background(), testCommand("second", 1))
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 || len(seen) != 2 || seen[1] != "second" {
		t.Fatalf("the server saw requests %q on %d connections, want [first second] on one (the second request replayed by the transport?)", seen, conns)
	}
	if r.Outcome != contract.OutcomeUnknown {
		t.Fatalf("the second request, read and not answered: %s (%v), want unknown", r.Outcome, r.Err)
	}
	if n := rewindable.Load(); n != 0 {
		t.Fatalf("%d requests reached the transport with a GetBody (HTTP/2 could resend them)", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The same over HTTP/2: a server (or a proxy) that reads a request and
// then sends a GOAWAY whose last stream is before it tells the client
// the request was not processed, and net/http's HTTP/2 transport resends
// a request it can rewind (GetBody) on a new connection. The webhook's
// cannot be: the server sees it once, and the outcome is unknown.
func TestWebhookNoHTTP2Replay(t *testing.T) {
	t.Parallel()
	tlsSrv := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsSrv.StartTLS() // for its certificate and a pool that trusts it
	cert, roots := tlsSrv.TLS.Certificates[0], tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	tlsSrv.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var (
		mu   sync.Mutex
		seen []string
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveH2(c, func(key string) bool { // answer, or GOAWAY
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, key)
				return len(seen) != 2
			})
		}
	}()
	wh, err := NewWebhook("https://"+ln.Addr().String()+"/", Options{Concurrency: 1, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Close()
	wh.client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots}
	if r := wh.Send(context.Background(), testCommand("first", 1)); r.Outcome != contract.OutcomeSuccess {
		t.Fatalf("first request: %s (%v)", r.Outcome, r.Err)
	}
	r := wh.Send(context.Background(), testCommand("second", 1))
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[1] != "second" {
		t.Fatalf("the server saw requests %q, want [first second] (the second resent by the HTTP/2 transport?)", seen)
	}
	if r.Outcome != contract.OutcomeUnknown {
		t.Fatalf("the second request, read and followed by a GOAWAY: %s (%v), want unknown", r.Outcome, r.Err)
	}
}

// serveH2 is a minimal HTTP/2 server on c: for every request read whole
// it calls seen with its Idempotency-Key, and answers 200 if seen says so,
// or else sends a GOAWAY naming the stream before it as the last one
// processed, and closes the connection.
func serveH2(c net.Conn, seen func(key string) bool) {
	defer c.Close()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	dec := hpack.NewDecoder(4096, nil)
	keys := map[uint32]string{}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		var id uint32
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
			continue
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
			continue
		case *http2.HeadersFrame:
			fields, _ := dec.DecodeFull(f.HeaderBlockFragment())
			for _, hf := range fields {
				if strings.EqualFold(hf.Name, HeaderIdempotencyKey) {
					keys[f.StreamID] = hf.Value
				}
			}
			if !f.StreamEnded() {
				continue
			}
			id = f.StreamID
		case *http2.DataFrame:
			if len(f.Data()) > 0 {
				fr.WriteWindowUpdate(0, uint32(len(f.Data())))
			}
			if !f.StreamEnded() {
				continue
			}
			id = f.StreamID
		default:
			continue
		}
		if !seen(keys[id]) {
			fr.WriteGoAway(id-2, http2.ErrCodeNo, nil)
			return
		}
		var hb bytes.Buffer
		hpack.NewEncoder(&hb).WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	}
}

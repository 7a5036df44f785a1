package provider

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// writeTemplate writes a template file and opens it.
func writeTemplate(t *testing.T, text string) (*Template, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vendor.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return OpenTemplate(path, Options{Timeout: 5 * time.Second})
}

func mustTemplate(t *testing.T, text string) *Template {
	t.Helper()
	tp, err := writeTemplate(t, text)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	return tp
}

func smsCmd(id string) *contract.SendCommand {
	return &contract.SendCommand{ID: id, Campaign: "c", Channel: contract.ChannelSMS, Attempt: 1, Address: "+15005550006",
		Content: []byte(`{"text":"hello"}`), IdempotencyKey: id}
}

// A bad template stops start-up with an error naming the file and line.
func TestTemplateErrorsNameTheLine(t *testing.T) {
	t.Setenv("TPL_TOKEN", "tok")
	cases := []struct{ name, text, want string }{
		{"unknown key", "name: x\nrequest:\n  url: https://x/\n  bogus: 1\n", "vendor.yaml:4: field bogus not found"},
		{"unknown top key", "name: x\nrequst:\n  url: https://x/\n", "vendor.yaml:2: field requst not found"},
		{"template syntax", "request:\n  url: https://x/\n  json:\n    to: '{{.Address'\n", ":4: json field"},
		{"unknown field", "request:\n  url: https://x/\n  form:\n    To: '{{.Adress}}'\n", ":4: form field To"},
		{"unknown secret", "request:\n  url: https://x/\n  auth:\n    bearer: '{{secret \"tok\"}}'\n", `:4: auth.bearer: auth.bearer:1:2: executing "auth.bearer" at <secret "tok">: error calling secret: no secret "tok"`},
		{"unset variable", "secrets:\n  tok: {env: TPL_UNSET_VARIABLE}\nrequest:\n  url: https://x/\n", ":2: secret tok: the environment variable TPL_UNSET_VARIABLE is not set"},
		{"bad outcome", "request:\n  url: https://x/\nanswer:\n  rules:\n    - status: 400\n      outcome: bounced\n", `:5: rule: outcome "bounced"`},
		{"bad status", "request:\n  url: https://x/\nanswer:\n  rules:\n    - status: [9xx]\n      outcome: permanent\n", `vendor.yaml:5: status "9xx"`},
		{"failover on success", "request:\n  url: https://x/\nanswer:\n  rules:\n    - status: 200\n      outcome: success\n      failover: true\n", ":5: rule: failover"},
		{"not a URL", "request:\n  url: ftp://x/\n", ":2: url: want an http"},
		{"two auths", "secrets:\n  tok: {env: TPL_TOKEN}\nrequest:\n  url: https://x/\n  auth:\n    bearer: '{{secret \"tok\"}}'\n    basic: {username: a, password: b}\n", ":6: auth: give one of"},
		{"bad method", "request:\n  method: FETCH\n  url: https://x/\n", `:2: method "FETCH"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := writeTemplate(t, tc.text)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), "vendor.yaml") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want the file and %q", err, tc.want)
			}
		})
	}
	// Through Open and OpenSet, as herald run starts it.
	path := filepath.Join(t.TempDir(), "broken.yaml")
	os.WriteFile(path, []byte("request:\n  url: https://x/\n  form:\n    To: '{{.Nope}}'\n"), 0o600)
	if _, err := OpenSet([]string{"sms=template:" + path}, Options{}); err == nil || !strings.Contains(err.Error(), path+":4:") {
		t.Errorf("OpenSet: %v", err)
	}
}

// A request the provider read on a reused connection that then broke is
// not sent again by net/http (its body cannot be rewound, even with an
// Idempotency-Key header), and the outcome is unknown.
func TestTemplateRequestIsNotReplayed(t *testing.T) {
	t.Parallel()
	var arrivals atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := arrivals.Add(1)
		io.Copy(io.Discard, r.Body)
		if n == 1 {
			w.WriteHeader(http.StatusOK) // keep-alive: the next request reuses the connection
			return
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // read it, then hang up without an answer
		}
	}))
	defer srv.Close()
	tp := mustTemplate(t, "request:\n  url: "+srv.URL+"/send\n  idempotency_header: Idempotency-Key\n  json:\n    to: '{{.Address}}'\n")
	if r := tp.Send(context.Background(), smsCmd("a")); r.Outcome != contract.OutcomeSuccess {
		t.Fatalf("first: %+v", r)
	}
	r := tp.Send(context.Background(), smsCmd("b"))
	if r.Outcome != contract.OutcomeUnknown {
		t.Errorf("hang-up after the request: %s (%v), want unknown", r.Outcome, r.Err)
	}
	if n := arrivals.Load(); n != 2 {
		t.Errorf("the provider got %d requests, want 2: net/http replayed the second", n)
	}
	req, err := tp.build(context.Background(), smsCmd("c"))
	if err != nil || req.GetBody != nil || req.ContentLength == 0 {
		t.Errorf("built request: GetBody set %v, length %d, %v", req.GetBody != nil, req.ContentLength, err)
	}
}

// The cut-off bounds the hand-over: a command past it is not sent.
func TestTemplateCutoff(t *testing.T) {
	t.Parallel()
	var arrivals atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { arrivals.Add(1) }))
	defer srv.Close()
	tp := mustTemplate(t, "request:\n  url: "+srv.URL+"/\n  form:\n    To: '{{.Address}}'\n")
	cmd := smsCmd("late")
	cmd.Cutoff = time.Now().Add(-time.Millisecond)
	if r := tp.Send(context.Background(), cmd); r.Outcome != contract.OutcomeNotAttempted || arrivals.Load() != 0 {
		t.Errorf("%+v, %d requests: want not_attempted and none", r, arrivals.Load())
	}
}

// An HMAC signature over chosen parts of the request, as NHN Cloud and
// Naver SENS sign theirs.
func TestTemplateHMAC(t *testing.T) {
	t.Setenv("TPL_ACCESS", "AK123")
	t.Setenv("TPL_SECRET", "s3cr3t-key")
	var got http.Header
	var gotURI string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, gotURI = r.Header.Clone(), r.URL.RequestURI()
		w.WriteHeader(202)
	}))
	defer srv.Close()
	tp := mustTemplate(t, `secrets:
  access: {env: TPL_ACCESS}
  key: {env: TPL_SECRET}
request:
  url: `+srv.URL+`/sms/v2/services/svc/messages?x=1
  timestamp: unix_ms
  headers:
    x-ncp-apigw-timestamp: '{{.Timestamp}}'
    x-ncp-iam-access-key: '{{secret "access"}}'
  auth:
    hmac:
      key: '{{secret "key"}}'
      message: "{{.Method}} {{.Path}}\n{{.Timestamp}}\n{{secret \"access\"}}"
      header: x-ncp-apigw-signature-v2
  json:
    to: '{{.Address}}'
`)
	tp.now = func() time.Time { return time.UnixMilli(1767225600123) }
	if r := tp.Send(context.Background(), smsCmd("h")); r.Outcome != contract.OutcomeSuccess {
		t.Fatalf("%+v", r)
	}
	mac := hmac.New(sha256.New, []byte("s3cr3t-key"))
	mac.Write([]byte("POST " + gotURI + "\n1767225600123\nAK123"))
	want := encodeStd(mac.Sum(nil))
	if got.Get("x-ncp-apigw-signature-v2") != want || got.Get("x-ncp-apigw-timestamp") != "1767225600123" || gotURI != "/sms/v2/services/svc/messages?x=1" {
		t.Errorf("signature %q at %q (%s), want %q", got.Get("x-ncp-apigw-signature-v2"), got.Get("x-ncp-apigw-timestamp"), gotURI, want)
	}
	_ = hex.EncodeToString
}

// A bearer token read from a file is read again when the file changes.
func TestTemplateTokenFileReread(t *testing.T) {
	t.Parallel()
	tokFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokFile, []byte("first-token\n"), 0o600)
	var mu sync.Mutex
	var auths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
	}))
	defer srv.Close()
	tp := mustTemplate(t, "secrets:\n  tok: {file: "+tokFile+"}\nrequest:\n  url: "+srv.URL+"/\n  auth:\n    bearer: '{{secret \"tok\"}}'\n")
	tp.Send(context.Background(), smsCmd("1"))
	os.WriteFile(tokFile, []byte("second-token-longer\n"), 0o600)
	os.Chtimes(tokFile, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	tp.Send(context.Background(), smsCmd("2"))
	mu.Lock()
	defer mu.Unlock()
	if len(auths) != 2 || auths[0] != "Bearer first-token" || auths[1] != "Bearer second-token-longer" {
		t.Errorf("Authorization headers %q", auths)
	}
}

// Secrets never show in a result's error, whatever the failure.
func TestTemplateHidesSecrets(t *testing.T) {
	t.Setenv("TPL_SID", "AC0123456789")
	t.Setenv("TPL_TOKEN", "tok-9876543210")
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		io.WriteString(w, `{"message":"bad auth `+r.Header.Get("Authorization")+` for `+r.URL.Path+`"}`)
	}))
	defer echo.Close()
	tmpl := func(base string) string {
		return "secrets:\n  sid: {env: TPL_SID}\n  tok: {env: TPL_TOKEN}\nrequest:\n  url: '" + base +
			"/Accounts/{{secret \"sid\"}}/x'\n  auth:\n    bearer: '{{secret \"tok\"}}'\nanswer:\n  error: message\n"
	}
	for name, base := range map[string]string{"echoed in the answer": echo.URL, "in a connection error": deadURL(t)} {
		r := mustTemplate(t, tmpl(strings.TrimSuffix(base, "/sms"))).Send(context.Background(), smsCmd("s"))
		if r.Err == nil || strings.Contains(r.Err.Error(), "AC0123456789") || strings.Contains(r.Err.Error(), "tok-9876543210") {
			t.Errorf("%s: error %v shows a secret", name, r.Err)
		}
	}
}

// Answer rules: status and body fields decide the outcome, failover, the
// retry-after and the message id.
func TestTemplateAnswerRules(t *testing.T) {
	t.Parallel()
	answers := map[string]func(http.ResponseWriter){
		"ok": func(w http.ResponseWriter) {
			w.WriteHeader(200)
			io.WriteString(w, `{"result":{"id":"m-1","ok":true}}`)
		},
		"soft": func(w http.ResponseWriter) {
			w.WriteHeader(200)
			io.WriteString(w, `{"result":{"ok":false,"code":"E_BUSY","wait":2.5}}`)
		},
		"bad": func(w http.ResponseWriter) {
			w.WriteHeader(400)
			io.WriteString(w, `{"errors":[{"code":1},{"code":77,"msg":"bad number"}]}`)
		},
		"down":     func(w http.ResponseWriter) { w.WriteHeader(503) },
		"teapot":   func(w http.ResponseWriter) { w.WriteHeader(418) },
		"throttle": func(w http.ResponseWriter) { w.Header().Set("Retry-After", "7"); w.WriteHeader(429) },
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		answers[strings.TrimPrefix(string(b), "k=")](w)
	}))
	defer srv.Close()
	tp := mustTemplate(t, `request:
  url: `+srv.URL+`/
  form:
    k: '{{.Content.k}}'
answer:
  message_id: result.id
  error: errors.*.msg
  retry_after: result.wait
  rules:
    - {status: 200, field: result.ok, equals: ["false"], outcome: transient, failover: true}
    - {status: 400, field: errors.*.code, equals: [77], outcome: permanent}
    - {status: 5xx, outcome: transient, failover: true}
`)
	send := func(k string) Result {
		cmd := smsCmd(k)
		cmd.Content = []byte(`{"k":"` + k + `"}`)
		return tp.Send(context.Background(), cmd)
	}
	check := func(k string, o contract.Outcome, failover bool) Result {
		t.Helper()
		r := send(k)
		if r.Outcome != o || r.Failover != failover || r.Provider != "vendor" {
			t.Errorf("%s: %s failover=%v by %q (%v), want %s failover=%v by vendor", k, r.Outcome, r.Failover, r.Provider, r.Err, o, failover)
		}
		return r
	}
	if r := check("ok", contract.OutcomeSuccess, false); r.MessageID != "m-1" {
		t.Errorf("message id %q", r.MessageID)
	}
	if r := check("soft", contract.OutcomeTransient, true); r.RetryAfter != 2500*time.Millisecond {
		t.Errorf("retry after %s from the body", r.RetryAfter)
	}
	if r := check("bad", contract.OutcomePermanent, false); r.Err == nil || !strings.Contains(r.Err.Error(), "HTTP 400: bad number") {
		t.Errorf("error %v", r.Err)
	}
	check("down", contract.OutcomeTransient, true)
	check("teapot", contract.OutcomePermanent, false) // defaults after the rules
	check("throttle", contract.OutcomeThrottled, false)
	// Content without the field the template needs: permanent, nothing sent.
	cmd := smsCmd("x")
	cmd.Content = []byte(`{}`)
	if r := tp.Send(context.Background(), cmd); r.Outcome != contract.OutcomePermanent || !strings.Contains(r.Err.Error(), "k") {
		t.Errorf("missing content field: %+v", r)
	}
	// A refused connection fails over.
	dead := mustTemplate(t, "request:\n  url: "+deadURL(t)+"\n")
	if r := dead.Send(context.Background(), smsCmd("d")); r.Outcome != contract.OutcomeTransient || !r.Failover {
		t.Errorf("refused: %+v", r)
	}
}

func encodeStd(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// A template file may be JSON (YAML's subset); its errors name lines too.
func TestTemplateJSONFile(t *testing.T) {
	t.Parallel()
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
		w.WriteHeader(201)
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "vendor.json")
	os.WriteFile(path, []byte(`{
  "name": "jsonvendor",
  "request": {
    "url": "`+srv.URL+`/send",
    "json": {"to": "{{.Address}}", "attempt": 1, "text": "{{.Content.text}}"}
  }
}`), 0o600)
	tp, err := OpenTemplate(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if r := tp.Send(context.Background(), smsCmd("j")); r.Outcome != contract.OutcomeSuccess || r.Provider != "jsonvendor" {
		t.Fatalf("%+v", r)
	}
	if got != `{"to":"+15005550006","attempt":1,"text":"hello"}` {
		t.Errorf("body %s", got)
	}
	os.WriteFile(path, []byte("{\n  \"request\": {\n    \"url\": \"https://x/\",\n    \"json\": {\"to\": \"{{.Nope}}\"}\n  }\n}"), 0o600)
	if _, err := OpenTemplate(path, Options{}); err == nil || !strings.Contains(err.Error(), "vendor.json:4:") {
		t.Errorf("error %v, want vendor.json:4", err)
	}
}

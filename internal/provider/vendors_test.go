package provider

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// The worked examples of deploy/providers, each against a fake of the
// vendor's API that checks the request as the vendor's public API
// reference describes it (host, path, method, authentication, headers,
// body fields) and answers as the vendor does, its error shapes included.
// The shipped files are used unchanged: the provider's connections are
// dialled to the fake, which serves TLS under the vendor's host name.

// vendorFake serves a fake vendor over TLS and points tp at it.
func vendorFake(t *testing.T, tp *Template, h http.HandlerFunc) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	tp.client.Transport = &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the fake's certificate is not the vendor's
	}
}

func openExample(t *testing.T, name string) *Template {
	t.Helper()
	tp, err := OpenTemplate(filepath.Join("..", "..", "deploy", "providers", name), Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	return tp
}

// vendorCheck collects what a fake found wrong with a request.
type vendorCheck struct {
	mu       sync.Mutex
	problems []string
}

func (v *vendorCheck) expect(ok bool, format string, args ...any) bool {
	if !ok {
		v.mu.Lock()
		v.problems = append(v.problems, fmt.Sprintf(format, args...))
		v.mu.Unlock()
	}
	return ok
}

func (v *vendorCheck) report(t *testing.T) {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, p := range v.problems {
		t.Error("request: " + p)
	}
}

func vendorJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)

// Twilio Messages: POST /2010-04-01/Accounts/{AccountSid}/Messages.json,
// HTTP basic auth (Account SID, Auth Token), form-encoded To, From, Body;
// 201 with the Message resource; errors {"code","message","more_info","status"}.
func TestVendorTwilioSMS(t *testing.T) {
	const sid, token = "AC0123456789abcdef0123456789abcdef", "twilio-auth-token-0001"
	t.Setenv("TWILIO_ACCOUNT_SID", sid)
	t.Setenv("TWILIO_AUTH_TOKEN", token)
	t.Setenv("TWILIO_FROM", "+15005550006")
	tp := openExample(t, "twilio-sms.yaml")
	chk := &vendorCheck{}
	twilioError := func(w http.ResponseWriter, status, code int, msg string) {
		vendorJSON(w, status, fmt.Sprintf(`{"code":%d,"message":%q,"more_info":"https://www.twilio.com/docs/errors/%d","status":%d}`, code, msg, code, status))
	}
	vendorFake(t, tp, func(w http.ResponseWriter, r *http.Request) {
		chk.expect(r.Method == http.MethodPost, "method %s", r.Method)
		chk.expect(r.Host == "api.twilio.com", "host %s", r.Host)
		chk.expect(r.URL.Path == "/2010-04-01/Accounts/"+sid+"/Messages.json", "path %s", r.URL.Path)
		chk.expect(r.Header.Get("Content-Type") == "application/x-www-form-urlencoded", "content type %q", r.Header.Get("Content-Type"))
		if u, p, ok := r.BasicAuth(); !ok || u != sid || p != token {
			twilioError(w, 401, 20003, "Authenticate")
			chk.expect(false, "basic auth %q", u)
			return
		}
		if err := r.ParseForm(); !chk.expect(err == nil, "form: %v", err) {
			return
		}
		to, from, body := r.PostForm.Get("To"), r.PostForm.Get("From"), r.PostForm.Get("Body")
		chk.expect(from == "+15005550006" && body != "" && len(r.PostForm) == 3, "form %v", r.PostForm)
		switch {
		case !e164.MatchString(to):
			twilioError(w, 400, 21211, fmt.Sprintf("The 'To' number %s is not a valid phone number.", to))
		case to == "+15005550009":
			w.Header().Set("Retry-After", "3")
			twilioError(w, 429, 20429, "Too Many Requests")
		case to == "+15005550010":
			twilioError(w, 503, 20503, "Service Unavailable")
		case to == "+15005550011":
			twilioError(w, 400, 21611, "This 'From' number has exceeded the maximum number of queued messages")
		case to == "+15005550012":
			twilioError(w, 500, 20500, "Internal Server Error")
		default:
			vendorJSON(w, 201, fmt.Sprintf(`{"account_sid":%q,"api_version":"2010-04-01","body":%q,"direction":"outbound-api","from":%q,
				"num_segments":"1","sid":"SM1f0e8ae6ade43cb3c0ce4525424e404f","status":"queued","to":%q,"uri":"/2010-04-01/Accounts/%s/Messages/SM1f0e8ae6ade43cb3c0ce4525424e404f.json"}`,
				sid, body, from, to, sid))
		}
	})
	send := func(to string) Result {
		return tp.Send(context.Background(), &contract.SendCommand{ID: "n-" + to, Channel: contract.ChannelSMS, Attempt: 1,
			Address: to, Content: []byte(`{"text":"Your bill is ready"}`), IdempotencyKey: "n-" + to})
	}
	r := send("+821012345678")
	if r.Outcome != contract.OutcomeSuccess || r.Code != 201 || r.MessageID != "SM1f0e8ae6ade43cb3c0ce4525424e404f" || r.Provider != "twilio" {
		t.Errorf("success: %+v", r)
	}
	r = send("12345")
	if r.Outcome != contract.OutcomePermanent || r.Failover || r.Err == nil || !strings.Contains(r.Err.Error(), "HTTP 400: The 'To' number 12345 is not a valid phone number.") {
		t.Errorf("21211: %+v", r)
	}
	if r = send("+15005550009"); r.Outcome != contract.OutcomeThrottled || !r.Failover || r.RetryAfter != 3*time.Second {
		t.Errorf("429: %+v", r)
	}
	if r = send("+15005550010"); r.Outcome != contract.OutcomeTransient || !r.Failover {
		t.Errorf("503: %+v", r)
	}
	if r = send("+15005550011"); r.Outcome != contract.OutcomeThrottled || !r.Failover {
		t.Errorf("21611: %+v", r)
	}
	if r = send("+15005550012"); r.Outcome != contract.OutcomeTransient || r.Failover {
		t.Errorf("500: %+v (may have been created: not a failover)", r)
	}
	t.Setenv("TWILIO_AUTH_TOKEN", "wrong-token-value")
	wrong := openExample(t, "twilio-sms.yaml")
	vendorFake(t, wrong, func(w http.ResponseWriter, r *http.Request) {
		twilioError(w, 401, 20003, "Authenticate")
	})
	if r := wrong.Send(context.Background(), smsCmd("w")); r.Outcome != contract.OutcomePermanent || !r.Failover || strings.Contains(r.Err.Error(), "wrong-token-value") {
		t.Errorf("401: %+v", r)
	}
	chk.report(t)
}

// SendGrid v3 Mail Send: POST /v3/mail/send, Authorization: Bearer <API
// key>, JSON personalizations/from/subject/content; 202 with an empty body
// and X-Message-Id; errors {"errors":[{"message","field","help"}]}.
func TestVendorSendGridEmail(t *testing.T) {
	const key = "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"
	t.Setenv("SENDGRID_API_KEY", key)
	t.Setenv("SENDGRID_FROM", "billing@example.com")
	tp := openExample(t, "sendgrid-email.yaml")
	chk := &vendorCheck{}
	sgError := func(w http.ResponseWriter, status int, field, msg string) {
		f := "null"
		if field != "" {
			f = fmt.Sprintf("%q", field)
		}
		vendorJSON(w, status, fmt.Sprintf(`{"errors":[{"message":%q,"field":%s,"help":null}]}`, msg, f))
	}
	vendorFake(t, tp, func(w http.ResponseWriter, r *http.Request) {
		chk.expect(r.Method == http.MethodPost && r.Host == "api.sendgrid.com" && r.URL.Path == "/v3/mail/send", "%s %s%s", r.Method, r.Host, r.URL.Path)
		chk.expect(r.Header.Get("Content-Type") == "application/json", "content type %q", r.Header.Get("Content-Type"))
		if r.Header.Get("Authorization") != "Bearer "+key {
			sgError(w, 401, "", "The provided authorization grant is invalid, expired, or revoked")
			chk.expect(false, "authorization %q", r.Header.Get("Authorization"))
			return
		}
		var m struct {
			Personalizations []struct {
				To         []struct{ Email string } `json:"to"`
				CustomArgs map[string]string        `json:"custom_args"`
			} `json:"personalizations"`
			From    struct{ Email string } `json:"from"`
			Subject string                 `json:"subject"`
			Content []struct{ Type, Value string }
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			sgError(w, 400, "", "Bad Request")
			chk.expect(false, "body: %v", err)
			return
		}
		if len(m.Personalizations) != 1 || len(m.Personalizations[0].To) != 1 {
			sgError(w, 400, "personalizations", "The personalizations field is required and must have at least one personalization.")
			return
		}
		to := m.Personalizations[0].To[0].Email
		chk.expect(m.From.Email == "billing@example.com" && m.Subject == "Your bill" && m.Personalizations[0].CustomArgs["herald_id"] != "", "from %q subject %q args %v", m.From.Email, m.Subject, m.Personalizations[0].CustomArgs)
		chk.expect(len(m.Content) >= 1 && m.Content[0].Type == "text/plain" && (len(m.Content) == 1 || m.Content[1].Type == "text/html"), "content %+v", m.Content)
		switch {
		case !strings.Contains(to, "@"):
			sgError(w, 400, "personalizations.0.to.0.email", "Does not contain a valid address.")
		case strings.HasPrefix(to, "rate@"):
			w.Header().Set("X-RateLimit-Remaining", "0")
			sgError(w, 429, "", "too many requests")
		case strings.HasPrefix(to, "down@"):
			sgError(w, 503, "", "The SendGrid v3 Web API is not available.")
		default:
			w.Header().Set("X-Message-Id", "W-yoi3nQQQ2o2hUVlIgTvw")
			w.WriteHeader(http.StatusAccepted)
		}
	})
	send := func(to, content string) Result {
		return tp.Send(context.Background(), &contract.SendCommand{ID: "n-" + to, Channel: contract.ChannelEmail, Attempt: 1,
			Address: to, Content: []byte(content), IdempotencyKey: "n-" + to})
	}
	r := send("jane@example.com", `{"subject":"Your bill","text":"Due on the 31st.","html":"<p>Due on the 31st.</p>"}`)
	if r.Outcome != contract.OutcomeSuccess || r.Code != 202 || r.MessageID != "W-yoi3nQQQ2o2hUVlIgTvw" {
		t.Errorf("success: %+v", r)
	}
	if r := send("kim@example.com", `{"subject":"Your bill","text":"plain only"}`); r.Outcome != contract.OutcomeSuccess {
		t.Errorf("text only: %+v", r)
	}
	r = send("not-an-address", `{"subject":"Your bill","text":"x"}`)
	if r.Outcome != contract.OutcomePermanent || r.Failover || !strings.Contains(r.Err.Error(), "Does not contain a valid address.") {
		t.Errorf("400: %+v", r)
	}
	if r := send("rate@example.com", `{"subject":"Your bill","text":"x"}`); r.Outcome != contract.OutcomeThrottled || !r.Failover {
		t.Errorf("429: %+v", r)
	}
	if r := send("down@example.com", `{"subject":"Your bill","text":"x"}`); r.Outcome != contract.OutcomeTransient || !r.Failover {
		t.Errorf("503: %+v", r)
	}
	chk.report(t)
}

// FCM HTTP v1: POST /v1/projects/{project}/messages:send, Authorization:
// Bearer <OAuth 2.0 access token>, JSON {"message":{"token",
// "notification":{"title","body"},"data"}}; 200 {"name"}; errors are
// google.rpc.Status with FcmError details.
func TestVendorFCMPush(t *testing.T) {
	tokFile := filepath.Join(t.TempDir(), "fcm-access-token")
	os.WriteFile(tokFile, []byte("ya29.first-access-token\n"), 0o600)
	t.Setenv("FCM_TOKEN_FILE", tokFile)
	t.Setenv("FCM_PROJECT_ID", "herald-demo-b5ae1")
	tp := openExample(t, "fcm-push.yaml")
	chk := &vendorCheck{}
	valid := map[string]bool{"Bearer ya29.first-access-token": true}
	var validMu sync.Mutex
	fcmError := func(w http.ResponseWriter, status int, rpc, fcm, msg string) {
		details := ""
		if fcm != "" {
			details = fmt.Sprintf(`,"details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":%q}]`, fcm)
		}
		vendorJSON(w, status, fmt.Sprintf(`{"error":{"code":%d,"message":%q,"status":%q%s}}`, status, msg, rpc, details))
	}
	vendorFake(t, tp, func(w http.ResponseWriter, r *http.Request) {
		chk.expect(r.Method == http.MethodPost && r.Host == "fcm.googleapis.com" && r.URL.EscapedPath() == "/v1/projects/herald-demo-b5ae1/messages:send",
			"%s %s%s", r.Method, r.Host, r.URL.EscapedPath())
		chk.expect(r.Header.Get("Content-Type") == "application/json", "content type %q", r.Header.Get("Content-Type"))
		validMu.Lock()
		ok := valid[r.Header.Get("Authorization")]
		validMu.Unlock()
		if !ok {
			fcmError(w, 401, "UNAUTHENTICATED", "", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.")
			return
		}
		var m struct {
			Message struct {
				Token        string `json:"token"`
				Notification struct {
					Title string `json:"title"`
					Body  string `json:"body"`
				} `json:"notification"`
				Data map[string]string `json:"data"`
			} `json:"message"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			fcmError(w, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid JSON payload received.")
			chk.expect(false, "body: %v", err)
			return
		}
		chk.expect(m.Message.Notification.Title == "Your bill" && m.Message.Notification.Body != "" && m.Message.Data["herald_id"] != "", "message %+v", m.Message)
		switch m.Message.Token {
		case "":
			fcmError(w, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Recipient of the message is not set.")
		case "stale-token":
			fcmError(w, 404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")
		case "quota-token":
			w.Header().Set("Retry-After", "60")
			fcmError(w, 429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded for quota metric 'Messages sent'.")
		case "busy-token":
			fcmError(w, 503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable.")
		case "internal-token":
			fcmError(w, 500, "INTERNAL", "INTERNAL", "Internal error encountered.")
		default:
			vendorJSON(w, 200, `{"name":"projects/herald-demo-b5ae1/messages/0:1500415314455276%31bd1c9631bd1c96"}`)
		}
	})
	send := func(token string) Result {
		return tp.Send(context.Background(), &contract.SendCommand{ID: "n-" + token, Channel: contract.ChannelPush, Attempt: 1,
			Address: token, Content: []byte(`{"subject":"Your bill","text":"Due on the 31st."}`), IdempotencyKey: "n-" + token})
	}
	r := send("fGw0qy4TGgk:APA91bGtWGjuhp4WRhHXgbabIYp1jxEKI08ofj_v1bKhWAGJQ4e3")
	if r.Outcome != contract.OutcomeSuccess || r.MessageID != "projects/herald-demo-b5ae1/messages/0:1500415314455276%31bd1c9631bd1c96" {
		t.Errorf("success: %+v", r)
	}
	if r := send("stale-token"); r.Outcome != contract.OutcomePermanent || r.Failover || !strings.Contains(r.Err.Error(), "Requested entity was not found.") {
		t.Errorf("UNREGISTERED: %+v", r)
	}
	if r := send("quota-token"); r.Outcome != contract.OutcomeThrottled || !r.Failover || r.RetryAfter != time.Minute {
		t.Errorf("QUOTA_EXCEEDED: %+v", r)
	}
	if r := send("busy-token"); r.Outcome != contract.OutcomeTransient || !r.Failover {
		t.Errorf("UNAVAILABLE: %+v", r)
	}
	if r := send("internal-token"); r.Outcome != contract.OutcomeTransient || r.Failover {
		t.Errorf("INTERNAL: %+v", r)
	}
	// The token expires: the old one is refused (transient, fails over)
	// until the file holds the new one, which is read without a restart.
	validMu.Lock()
	valid = map[string]bool{"Bearer ya29.second-access-token": true}
	validMu.Unlock()
	if r := send("device-a"); r.Outcome != contract.OutcomeTransient || !r.Failover || r.Code != 401 {
		t.Errorf("expired token: %+v", r)
	}
	os.WriteFile(tokFile, []byte("ya29.second-access-token\n"), 0o600)
	os.Chtimes(tokFile, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	if r := send("device-a"); r.Outcome != contract.OutcomeSuccess {
		t.Errorf("after the token file changed: %+v", r)
	}
	chk.report(t)
}

// The examples are valid templates for `herald run`: each opens through
// OpenSet from its --provider spec.
func TestVendorExamplesOpen(t *testing.T) {
	for _, v := range []string{"TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM", "SENDGRID_API_KEY", "SENDGRID_FROM", "FCM_PROJECT_ID"} {
		t.Setenv(v, "value-of-"+v)
	}
	tokFile := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(tokFile, []byte("t"), 0o600)
	t.Setenv("FCM_TOKEN_FILE", tokFile)
	dir := filepath.Join("..", "..", "deploy", "providers")
	set, err := OpenSet([]string{"sms=template:" + filepath.Join(dir, "twilio-sms.yaml"), "email=template:" + filepath.Join(dir, "sendgrid-email.yaml"),
		"push=template:" + filepath.Join(dir, "fcm-push.yaml")}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	for ch, name := range map[contract.Channel]string{contract.ChannelSMS: "twilio", contract.ChannelEmail: "sendgrid", contract.ChannelPush: "fcm"} {
		if tp, ok := set[ch].(*Template); !ok || tp.Name() != name {
			t.Errorf("%s: %T, want template %s", ch, set[ch], name)
		}
	}
}

// A chain of Twilio, answering 503 (declared failover), then a webhook:
// the attempt is delivered by the webhook, once, within the same Send.
func TestVendorChainFailsOverOnDeclared503(t *testing.T) {
	t.Setenv("TWILIO_ACCOUNT_SID", "AC1")
	t.Setenv("TWILIO_AUTH_TOKEN", "token-1")
	t.Setenv("TWILIO_FROM", "+15005550006")
	tw := openExample(t, "twilio-sms.yaml")
	var twilioCalls int
	vendorFake(t, tw, func(w http.ResponseWriter, r *http.Request) {
		twilioCalls++
		vendorJSON(w, 503, `{"code":20503,"message":"Service Unavailable","more_info":"https://www.twilio.com/docs/errors/20503","status":503}`)
	})
	mock := NewMockServer(MockServerOptions{})
	srv := httptest.NewServer(mock)
	defer srv.Close()
	wh, err := NewWebhook(srv.URL+"/sms", Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.URL)
	c := NewChain(contract.ChannelSMS, []string{tw.Name(), u.Host}, []Provider{tw, wh}, ChainOptions{})
	r := c.Send(context.Background(), smsCmd("f-1"))
	if r.Outcome != contract.OutcomeSuccess || r.Provider != u.Host || twilioCalls != 1 || mock.Stats().Accepted != 1 {
		t.Errorf("%+v: twilio called %d times, webhook accepted %d", r, twilioCalls, mock.Stats().Accepted)
	}
}

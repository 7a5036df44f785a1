package provider

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// The example of the Standard Webhooks specification: a receiver using
// any Standard Webhooks library accepts Herald's signatures.
func TestSignWebhookSpecVector(t *testing.T) {
	t.Parallel()
	key, err := ParseWebhookSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := SignWebhook(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if got != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" {
		t.Fatalf("signature %s", got)
	}
}

// The worked example in docs/sending.md is right.
func TestSignWebhookDocExample(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/sending.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "<!-- webhook-example: checked by internal/provider/signing_test.go -->\n```text\n")
	if !ok {
		t.Fatal("docs/sending.md has no webhook example")
	}
	block, _, _ = strings.Cut(block, "```")
	ex := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		k, v, _ := strings.Cut(line, ":")
		ex[k] = strings.TrimSpace(v)
	}
	key, err := ParseWebhookSecret(ex["secret"])
	if err != nil {
		t.Fatal(err)
	}
	sec, _ := strconv.ParseInt(ex["webhook-timestamp"], 10, 64)
	if got := SignWebhook(key, ex["webhook-id"], time.Unix(sec, 0), []byte(ex["body"])); got != ex["webhook-signature"] || got == "" {
		t.Fatalf("the documented signature is %q, Herald computes %q", ex["webhook-signature"], got)
	}
	// And the body is what Herald's webhook would post for that command.
	var seen []byte
	var hdr http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = io.ReadAll(r.Body)
		hdr = r.Header.Clone()
	}))
	defer srv.Close()
	w, err := NewWebhook(srv.URL, Options{webhook: WebhookOptions{Secret: ex["secret"],
		Headers: http.Header{"Authorization": {"Bearer sk-test"}}}})
	if err != nil {
		t.Fatal(err)
	}
	w.now = func() time.Time { return time.Unix(sec, 0) }
	res := w.Send(context.Background(), &contract.SendCommand{ID: "2026-01:user-123:bill", Campaign: "billing-2026-01",
		Channel: contract.ChannelEmail, Attempt: 1, Address: "jane@example.com", IdempotencyKey: ex["webhook-id"],
		Content: []byte(`{"subject":"Your January statement"}`)})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if string(seen) != ex["body"] || hdr.Get(HeaderWebhookSignature) != ex["webhook-signature"] ||
		hdr.Get(HeaderWebhookID) != ex["webhook-id"] || hdr.Get(HeaderWebhookTimestamp) != ex["webhook-timestamp"] ||
		hdr.Get("Authorization") != "Bearer sk-test" {
		t.Fatalf("posted %s with %v", seen, hdr)
	}
	if err := VerifyWebhook(ex["secret"], hdr, seen, time.Unix(sec+30, 0), 5*time.Minute); err != nil {
		t.Errorf("verify: %v", err)
	}
	if err := VerifyWebhook(ex["secret"], hdr, append(seen, ' '), time.Unix(sec, 0), 5*time.Minute); err == nil {
		t.Errorf("a changed body verified")
	}
	if err := VerifyWebhook(ex["secret"], hdr, seen, time.Unix(sec+3600, 0), 5*time.Minute); err == nil {
		t.Errorf("an hour-old request verified")
	}
}

func TestWebhookSecretAndRedact(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!", "whsec_c2hvcnQ="} {
		if _, err := ParseWebhookSecret(bad); err == nil {
			t.Errorf("secret %q accepted", bad)
		}
	}
	for in, want := range map[string]string{
		"sms=https://api.example.com/sms?api_key=SECRET&from=x": "sms=https://api.example.com/sms?api_key=xxxxx&from=xxxxx",
		"email=smtp://user:pass@mail.example.com:587?from=a@b":  "email=smtp://xxxxx@mail.example.com:587?from=xxxxx",
		"https://tok@hooks.example.com/p#frag":                  "https://xxxxx@hooks.example.com/p",
		"email=mock://?latency=1s":                              "email=mock://?latency=1s",
		"sms=https://x/%zz?k=SECRET":                            "sms=(unparsable URL, hidden)",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

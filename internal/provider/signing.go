package provider

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Webhook bodies are signed the Standard Webhooks way
// (https://www.standardwebhooks.com), so a receiver can tell Herald from
// anyone else: three headers,
//
//	webhook-id: the message id (the command's idempotency key: the same
//	            for every attempt of one notification)
//	webhook-timestamp: Unix seconds
//	webhook-signature: v1,<base64 of HMAC-SHA256(key, id + "." + timestamp + "." + body)>
//
// where key is the secret "whsec_<base64>" decoded. docs/sending.md has
// a worked example that the tests check.
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
	// webhookSecretPrefix starts every signing secret.
	webhookSecretPrefix = "whsec_"
)

// WebhookOptions are a webhook channel's own settings.
type WebhookOptions struct {
	// Headers are sent with every request (an Authorization header, say).
	Headers http.Header
	// Secret signs every body: "whsec_" and the base64 of at least 24
	// random bytes. Empty: unsigned.
	Secret string
}

// ParseWebhookSecret decodes a "whsec_<base64>" signing secret.
func ParseWebhookSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), webhookSecretPrefix)
	if !ok {
		return nil, errors.New("webhook secret: want whsec_ and base64")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("webhook secret: base64: %w", err)
	}
	if len(key) < 24 {
		return nil, fmt.Errorf("webhook secret: %d bytes, want at least 24", len(key))
	}
	return key, nil
}

// SignWebhook returns the webhook-signature value of body.
func SignWebhook(key []byte, id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + strconv.FormatInt(ts.Unix(), 10) + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// VerifyWebhook checks a signed request as a receiver would: one of the
// space-separated v1 signatures must match, and the timestamp must be
// within tolerance of now (replays of old requests are refused).
func VerifyWebhook(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := ParseWebhookSecret(secret)
	if err != nil {
		return err
	}
	id, tsText := h.Get(HeaderWebhookID), h.Get(HeaderWebhookTimestamp)
	sec, err := strconv.ParseInt(tsText, 10, 64)
	if id == "" || err != nil {
		return errors.New("webhook: missing or bad webhook-id or webhook-timestamp")
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook: timestamp %s is too far from now", ts.UTC().Format(time.RFC3339))
	}
	want := SignWebhook(key, id, ts, body)
	for _, sig := range strings.Fields(h.Get(HeaderWebhookSignature)) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return errors.New("webhook: no matching signature")
}

package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// HeaderIdempotencyKey carries the command's idempotency key on every
// webhook request. It is the same for every attempt of one notification.
const HeaderIdempotencyKey = "Idempotency-Key"

// WebhookBody is the JSON a webhook receives.
type WebhookBody struct {
	ID       string           `json:"id"`
	Campaign string           `json:"campaign"`
	Channel  contract.Channel `json:"channel"`
	Attempt  int              `json:"attempt"`
	// Recipient is the address for Channel only.
	Recipient string          `json:"recipient"`
	Content   json.RawMessage `json:"content"`
}

// Webhook posts each attempt as JSON to a URL.
//
// Classification: 2xx is success; 429 is throttled (no attempt used up);
// 408, 5xx, timeouts and connection errors are transient; any other status
// (other 4xx, and 1xx/3xx, which a webhook must not answer: redirects are
// not followed) is permanent. A Retry-After header, in seconds or as an
// HTTP date, is passed on with the result.
type Webhook struct {
	url     string
	headers http.Header
	key     []byte // signing key; nil: unsigned
	client  *http.Client
	timeout time.Duration
	now     func() time.Time
}

// NewWebhook builds a webhook provider whose keep-alive pool holds one idle
// connection per possible in-flight attempt, so that a steady load reuses
// connections instead of opening new ones.
func NewWebhook(url string, o Options) (*Webhook, error) {
	o = o.withDefaults()
	var key []byte
	if o.webhook.Secret != "" {
		var err error
		if key, err = ParseWebhookSecret(o.webhook.Secret); err != nil {
			return nil, err
		}
	}
	return &Webhook{
		url:     url,
		headers: o.webhook.Headers.Clone(),
		key:     key,
		client:  httpClient(o),
		timeout: o.Timeout,
		now:     time.Now,
	}, nil
}

// Send posts one attempt.
func (w *Webhook) Send(ctx context.Context, cmd *contract.SendCommand) Result {
	body, err := json.Marshal(WebhookBody{
		ID: cmd.ID, Campaign: cmd.Campaign, Channel: cmd.Channel, Attempt: cmd.Attempt,
		Recipient: cmd.Address, Content: cmd.Content,
	})
	if err != nil {
		return Permanent(0, fmt.Errorf("webhook: encode body: %w", err))
	}
	start := w.now()
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	ctx, h := handOverBy(ctx, cmd.Until())
	defer h.release()
	req, err := w.request(ctx, cmd, body)
	if err != nil {
		return Permanent(0, fmt.Errorf("webhook: %w", err))
	}
	// Whether the request was written decides what a failure means: before
	// it, nothing reached the provider (transient; not attempted when the
	// cut-off ended it); after it, the provider may have delivered
	// (unknown: the same attempt is issued again with the same key, never
	// moved to another channel). Once written, the cut-off no longer ends
	// the call (handover.go): only the timeout does.
	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil { // a failed write did not reach the provider whole
				wrote.Store(true)
				h.handedOver()
			}
		},
	}))
	resp, err := w.client.Do(req)
	if err != nil {
		if h.cutOff() && !wrote.Load() {
			return notHandedOver("webhook", w.now().Sub(start))
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("no answer within %s", w.timeout)
		} else {
			err = unwrapURLError(err)
		}
		if wrote.Load() {
			return Unknown(fmt.Errorf("webhook: request sent, %w", err))
		}
		return Transient(0, fmt.Errorf("webhook: %w", err))
	}
	defer func() {
		// Drain (bounded) so the connection goes back to the pool.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	return w.answer(resp)
}

// request is the POST of one command's body: the configured headers, the
// idempotency key (the id when the command has none) and, with a signing
// key, the signature headers. One Send is one request on the wire: the
// transport must never send it again by itself (notReplayable).
func (w *Webhook) request(ctx context.Context, cmd *contract.SendCommand, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	notReplayable(req)
	for name, vs := range w.headers {
		req.Header[name] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	key := cmd.IdempotencyKey
	if key == "" {
		key = cmd.ID
	}
	req.Header.Set(HeaderIdempotencyKey, key)
	if w.key != nil {
		now := w.now()
		req.Header.Set(HeaderWebhookID, key)
		req.Header.Set(HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
		req.Header.Set(HeaderWebhookSignature, SignWebhook(w.key, key, now, body))
	}
	return req, nil
}

// answer classifies the provider's answer by its status (Classify), with
// its Retry-After and, for a failure, the start of its body.
func (w *Webhook) answer(resp *http.Response) Result {
	r := Classify(resp.StatusCode)
	r.RetryAfter = ParseRetryAfter(resp.Header.Get("Retry-After"), w.now())
	if r.Outcome != contract.OutcomeSuccess {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		msg := strings.TrimSpace(string(snippet))
		if msg != "" {
			r.Err = fmt.Errorf("webhook: HTTP %d: %s", resp.StatusCode, msg)
		} else {
			r.Err = fmt.Errorf("webhook: HTTP %d", resp.StatusCode)
		}
	}
	return r
}

// notReplayable makes req impossible for the transport to send twice.
//
// net/http's HTTP/1 transport sends a request again on a new connection
// when a reused keep-alive connection fails before the answer's first
// byte (the server closed it, or a read failed) and the request is
// replayable (Request.isReplayable): a GET, or any method whose request
// carries an Idempotency-Key header (ours always does) with a body it can
// rewind (GetBody, which http.NewRequest sets for a bytes.Reader). The
// server may have read and acted on the first copy: a provider that
// ignores the key would deliver twice, after the cut-off too. Without
// GetBody the request is not replayable, and rewindBody cannot rewind it:
// the failure comes back to Send, which reports the outcome unknown. A
// request that failed with nothing written (persistConn's
// nothingWrittenError) is not retried either then; it is reported
// transient, since nothing reached the provider.
//
// HTTP/2 (ForceAttemptHTTP2; net/http's bundled h2,
// http2shouldRetryRequest in Go 1.26) retries after a GOAWAY, a
// REFUSED_STREAM or a PROTOCOL_ERROR stream reset from the peer, using
// GetBody for a body already written. Without GetBody it resends only a
// request whose connection was unusable before the stream began
// (errClientConnUnusable: nothing of it was written), and fails the rest
// with "cannot retry ... after Request.Body was written". The transport's
// own no-cached-connection retry (http2isNoCachedConnError) also happens
// before anything is written. So neither protocol can put a second copy
// of a written request on the wire (TestWebhookNoTransportReplay,
// TestWebhookNoHTTP2Replay: a GOAWAY naming an earlier stream after the
// request was read made the transport resend it before).
//
// The price: a request that failed on a reused connection before any of
// it was written, which the transport used to resend safely, now comes
// back as a transient failure.
func notReplayable(req *http.Request) { req.GetBody = nil }

// Close closes idle connections.
func (w *Webhook) Close() error {
	w.client.CloseIdleConnections()
	return nil
}

// Classify maps an HTTP status to an outcome (Err is left nil).
func Classify(status int) Result {
	switch {
	case status >= 200 && status < 300:
		return Success(status)
	case status == http.StatusTooManyRequests:
		return Result{Outcome: contract.OutcomeThrottled, Code: status}
	case status == http.StatusRequestTimeout, status >= 500:
		return Result{Outcome: contract.OutcomeTransient, Code: status}
	}
	return Result{Outcome: contract.OutcomePermanent, Code: status}
}

// ParseRetryAfter reads a Retry-After header: delay-seconds or an HTTP
// date. It returns 0 for an empty, malformed or past value.
func ParseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if n, err := strconv.ParseInt(h, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		const maxSeconds = int64(7 * 24 * 3600) // a week; beyond is nonsense
		return time.Duration(min(n, maxSeconds)) * time.Second
	}
	t, err := http.ParseTime(h)
	if err != nil {
		return 0
	}
	if d := t.Sub(now); d > 0 {
		return d
	}
	return 0
}

// unwrapURLError drops the "Post \"url\":" prefix net/http adds, which
// would repeat the URL in every result.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

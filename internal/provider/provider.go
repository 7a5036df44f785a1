// Package provider owns Herald's delivery providers: the interface the
// sender calls for one attempt, how a provider's answer is classified
// (success, transient, permanent, throttled), and the implementations
// chosen by URL scheme:
//
//   - http:// and https:// post a JSON webhook (webhook.go);
//   - smtp:// and smtps:// send real email (smtp.go);
//   - template:PATH speaks any vendor's HTTP API as a file describes it
//     (template.go);
//   - mock:// simulates a provider in-process (mock.go), and MockServer
//     serves the same simulation over HTTP for load and fault tests
//     (`herald mock-provider`).
//
// A channel given more than one provider gets a Chain of them (chain.go):
// a definite failure moves the attempt to the next provider, an unknown
// outcome never does, and a circuit breaker per provider skips a dead one.
// The sender paces each provider of a chain on its own (pace.go): one
// paused, past its rate or at its concurrency limit is skipped for a call
// another provider can take.
//
// A provider never retries by itself: one Send is one attempt, and the
// dispatcher decides what happens next from the Result. Every provider
// hands the command's idempotency key to the other side where the protocol
// allows it, so a re-sent attempt does not become a second delivery at a
// provider that honours it.
package provider

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// Provider delivers one attempt of a notification on one channel.
type Provider interface {
	// Send makes one attempt and classifies the answer. It returns when the
	// provider has answered, the attempt timed out (Options.Timeout), the
	// command's cut-off came before the request reached the provider
	// (NotAttempted; handover.go), or ctx ended (a shutdown). It is safe
	// for concurrent use.
	Send(ctx context.Context, cmd *contract.SendCommand) Result
	// Close releases idle connections.
	Close() error
}

// Result is a provider's classified answer to one attempt.
type Result struct {
	Outcome contract.Outcome
	// Code is the provider's response code (HTTP status, SMTP reply code),
	// 0 when no response came.
	Code int
	// Err describes a failure; nil on success.
	Err error
	// RetryAfter is how long the provider asked us to wait, 0 if it did not.
	RetryAfter time.Duration
	// Failover marks a failure that certainly left the provider without
	// the notification and is the provider's, not the notification's (a
	// template's answer rule declares it): a chain moves the attempt to
	// the channel's next provider (chain.go).
	Failover bool
	// Provider names the provider that answered, in a chain or for a
	// template; empty otherwise.
	Provider string
	// MessageID is the provider's id for the message it accepted, where
	// its answer has one (a template's answer.message_id).
	MessageID string
}

// Success is the result of an accepted attempt.
func Success(code int) Result { return Result{Outcome: contract.OutcomeSuccess, Code: code} }

// Transient is a failure worth retrying on the same channel.
func Transient(code int, err error) Result {
	return Result{Outcome: contract.OutcomeTransient, Code: code, Err: err}
}

// Unknown is an attempt that may or may not have been delivered: the
// request reached the provider (or may have), and no answer came. The
// dispatcher issues the same attempt again with the same idempotency key
// rather than moving to another channel.
func Unknown(err error) Result {
	return Result{Outcome: contract.OutcomeUnknown, Err: err}
}

// Permanent is a failure no retry on this channel can fix.
func Permanent(code int, err error) Result {
	return Result{Outcome: contract.OutcomePermanent, Code: code, Err: err}
}

// Options tune the providers Open builds.
type Options struct {
	// Concurrency is how many attempts may be in flight at once; providers
	// size their connection pools by it.
	Concurrency int
	// Timeout bounds one attempt (request and response). Default 10 s.
	Timeout time.Duration
	Log     *slog.Logger
	// Webhooks are the webhook settings of each channel (headers, the
	// signing secret); OpenSet hands each webhook its channel's.
	Webhooks map[contract.Channel]WebhookOptions
	// Chain tunes the failover chain of a channel given more than one
	// provider.
	Chain ChainOptions

	webhook WebhookOptions
}

func (o Options) withDefaults() Options {
	if o.Concurrency <= 0 {
		o.Concurrency = 100
	}
	if o.Timeout <= 0 {
		o.Timeout = contract.DefaultProviderTimeout
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return o
}

// Open builds the provider a URL names, by its scheme.
func Open(rawURL string, o Options) (Provider, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("provider: %w", err)
	}
	o = o.withDefaults()
	switch u.Scheme {
	case "http", "https":
		return NewWebhook(u.String(), o)
	case "smtp", "smtps":
		return NewSMTP(u, o)
	case "template":
		path := u.Opaque
		if path == "" {
			path = u.Path
		}
		return OpenTemplate(path, o)
	case "mock":
		sim, err := ParseSimulation(u.Query())
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", Redact(rawURL), err)
		}
		return NewMock(sim), nil
	}
	return nil, fmt.Errorf("provider %s: unknown scheme %q (want http, https, smtp, smtps, mock or template)", Redact(rawURL), u.Scheme)
}

// ParseSpec reads a --provider value, CHANNEL=URL.
func ParseSpec(spec string) (contract.Channel, string, error) {
	ch, u, ok := strings.Cut(spec, "=")
	ch, u = strings.TrimSpace(ch), strings.TrimSpace(u)
	if !ok || ch == "" || u == "" {
		return "", "", fmt.Errorf("provider %q: want CHANNEL=URL", Redact(spec))
	}
	c := contract.Channel(ch)
	if !c.Valid() {
		return "", "", fmt.Errorf("provider %q: unknown channel %q (have %v)", Redact(spec), ch, contract.Channels())
	}
	return c, u, nil
}

// Set is the provider of each channel.
type Set map[contract.Channel]Provider

// OpenSet opens the provider of every CHANNEL=URL spec. A channel named
// more than once gets a failover Chain of its providers, in the order
// given (chain.go).
func OpenSet(specs []string, o Options) (Set, error) {
	type opened struct {
		urls []string
		ps   []Provider
	}
	var order []contract.Channel
	byChannel := map[contract.Channel]*opened{}
	closeAll := func() {
		for _, op := range byChannel {
			for _, p := range op.ps {
				p.Close()
			}
		}
	}
	for _, spec := range specs {
		ch, u, err := ParseSpec(spec)
		if err != nil {
			closeAll()
			return nil, err
		}
		wo := o
		wo.webhook = o.Webhooks[ch]
		p, err := Open(u, wo)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("provider for %s: %w", ch, err)
		}
		op := byChannel[ch]
		if op == nil {
			op = &opened{}
			byChannel[ch] = op
			order = append(order, ch)
		}
		op.urls, op.ps = append(op.urls, u), append(op.ps, p)
	}
	s := Set{}
	for _, ch := range order {
		op := byChannel[ch]
		if len(op.ps) == 1 {
			s[ch] = op.ps[0]
			continue
		}
		co := o.Chain
		if co.Log == nil {
			co.Log = o.Log
		}
		s[ch] = NewChain(ch, providerNames(op.urls, op.ps), op.ps, co)
	}
	return s, nil
}

// Close closes every provider.
func (s Set) Close() error {
	var first error
	for _, p := range s {
		if err := p.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Redact hides the secrets of a provider URL (or a CHANNEL=URL spec) for
// logs and errors: the user and password, and every query value (API keys
// often travel as ?api_key=). mock:// URLs hold no secrets and stay whole.
// A URL that does not parse is hidden entirely.
func Redact(s string) string {
	prefix := ""
	if ch, rest, ok := strings.Cut(s, "="); ok && !strings.Contains(ch, ":") {
		prefix, s = ch+"=", rest
	}
	u, err := url.Parse(s)
	if err != nil {
		return prefix + "(unparsable URL, hidden)"
	}
	if u.Scheme == "mock" {
		return prefix + s
	}
	if u.User != nil {
		u.User = url.User(redacted)
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{redacted}
		}
		u.RawQuery = q.Encode()
	}
	u.Fragment, u.RawFragment = "", ""
	return prefix + u.String()
}

const redacted = "xxxxx"

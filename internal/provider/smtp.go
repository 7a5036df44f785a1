package provider

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	mail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"

	"github.com/herald-dispatch/herald/contract"
)

// EmailContent is what the SMTP provider reads from a command's content:
// a subject and a plain-text and/or an HTML body (both become a
// multipart/alternative message). Other fields are ignored.
type EmailContent struct {
	Subject string `json:"subject"`
	Text    string `json:"text"`
	HTML    string `json:"html"`
}

// SMTP sends email through an SMTP server, over a pool of connections kept
// open between messages.
//
// URL: smtp://user:pass@host:port?from=sender@example.com (default port
// 587, STARTTLS), with optional tls=opportunistic (default), mandatory or
// none; conns=N (connections, default 8); helo=NAME; auth=auto (default
// with a user), plain, login, cram-md5 or scram-sha-256. smtps:// connects
// with implicit TLS (default port 465).
//
// Classification: a reply code 4xx to MAIL, RCPT, DATA or the end of DATA
// is transient and 5xx permanent; a failure to connect, greet or
// authenticate is transient (it says nothing about the message; the
// server may be back soon), and so is a connection broken before the end
// of DATA. No reply to the end of DATA (a timeout, a broken connection)
// is unknown: the server may have accepted the message, so every message
// carries a Message-ID derived from the idempotency key, the same on every
// attempt, for receivers that deduplicate by it.
type SMTP struct {
	client  *mail.Client
	from    string
	domain  string
	timeout time.Duration // bounds each step of a session, and the wait for the final reply

	slots chan struct{}
	mu    sync.Mutex
	idle  []*smtp.Client
}

// DefaultSMTPConns is the default size of the SMTP connection pool.
const DefaultSMTPConns = 8

// NewSMTP builds an SMTP provider from its URL.
func NewSMTP(u *url.URL, o Options) (*SMTP, error) {
	o = o.withDefaults()
	q := u.Query()
	from := q.Get("from")
	if from == "" {
		return nil, fmt.Errorf("provider %s: from= is required", Redact(u.String()))
	}
	domain := "herald.invalid"
	if at := strings.LastIndexByte(from, '@'); at >= 0 {
		domain = strings.TrimSuffix(from[at+1:], ">")
	}
	opts := []mail.Option{mail.WithTimeout(o.Timeout)}
	port := 587 // submission
	if u.Scheme == "smtps" {
		port = 465
		opts = append(opts, mail.WithSSL())
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("provider %s: port: %w", Redact(u.String()), err)
		}
		port = n
	}
	opts = append(opts, mail.WithPort(port))
	if u.Scheme == "smtp" {
		switch tls := q.Get("tls"); tls {
		case "", "opportunistic":
			opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
		case "mandatory":
			opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
		case "none":
			opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
		default:
			return nil, fmt.Errorf("provider %s: tls=%q: want opportunistic, mandatory or none", Redact(u.String()), tls)
		}
	}
	if u.User != nil && u.User.Username() != "" {
		pass, _ := u.User.Password()
		auth := mail.SMTPAuthAutoDiscover
		if a := q.Get("auth"); a != "" {
			if err := auth.UnmarshalString(a); err != nil {
				return nil, fmt.Errorf("provider %s: auth=%q: %w", Redact(u.String()), a, err)
			}
		}
		opts = append(opts, mail.WithSMTPAuth(auth), mail.WithUsername(u.User.Username()), mail.WithPassword(pass))
	}
	if h := q.Get("helo"); h != "" {
		opts = append(opts, mail.WithHELO(h))
	}
	conns := DefaultSMTPConns
	if c := q.Get("conns"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("provider %s: conns=%q: want a positive number", Redact(u.String()), c)
		}
		conns = n
	}
	cl, err := mail.NewClient(u.Hostname(), opts...)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", Redact(u.String()), err)
	}
	return &SMTP{client: cl, from: from, domain: domain, timeout: o.Timeout, slots: make(chan struct{}, conns)}, nil
}

// Send delivers one email.
//
// The hand-over (handover.go) is the end of DATA: the line holding the
// final dot, after which the server may deliver whatever it answers and
// nothing the client does can stop it. Before it, the server holds at
// most an unfinished transaction, which it drops when the connection
// closes (RFC 5321, 4.1.1.4). So until the dot is sent, the command's
// cut-off ends the attempt: the connection is closed without the dot and
// the answer is NotAttempted, whether the cut-off came while waiting for
// a connection, the greeting, a reply to MAIL FROM, RCPT TO or DATA, or
// while the message was being written. The dot is sent only if the
// cut-off has not come; its reply is then awaited up to the provider
// timeout, and a failure without a reply is unknown.
func (s *SMTP) Send(ctx context.Context, cmd *contract.SendCommand) Result {
	msg, err := s.message(cmd)
	if err != nil {
		return Permanent(0, err)
	}
	start := time.Now()
	ctx, h := handOverBy(ctx, cmd.Until())
	defer h.release()
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		if h.cutOff() {
			return notHandedOver("smtp", time.Since(start))
		}
		return Transient(0, fmt.Errorf("smtp: waiting for a connection: %w", ctx.Err()))
	}
	defer func() { <-s.slots }()

	conn, err := s.conn(ctx)
	if err != nil {
		if h.cutOff() {
			return notHandedOver("smtp", time.Since(start))
		}
		return Transient(smtpCode(err), fmt.Errorf("smtp: connect: %w", err))
	}
	// The client takes no context: closing the connection is how the
	// cut-off (or a shutdown) stops a session waiting for a reply.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	r, keep := s.transaction(conn, msg, h)
	canceled := !stop()
	s.release(conn, keep && !canceled)
	switch {
	case h.cutOff():
		return notHandedOver("smtp", time.Since(start))
	case canceled && r.Outcome != contract.OutcomeSuccess:
		if h.handedOver() {
			return Unknown(fmt.Errorf("smtp: message sent, no answer: %w", ctx.Err()))
		}
		return Transient(0, fmt.Errorf("smtp: %w", ctx.Err()))
	}
	return r
}

// transaction runs one mail transaction on conn (MAIL FROM, RCPT TO,
// DATA, the message) and ends it with the final dot only if h is handed
// over first. It reports the result and whether conn may be reused. A
// result after the cut-off came is replaced by the caller.
func (s *SMTP) transaction(conn *smtp.Client, msg *mail.Msg, h *handOver) (Result, bool) {
	if err := conn.Noop(); err != nil {
		return Transient(0, fmt.Errorf("smtp: connection check: %w", err)), false
	}
	if err := conn.UpdateDeadline(s.timeout); err != nil {
		return Transient(0, fmt.Errorf("smtp: %w", err)), false
	}
	from, err := msg.GetSender(false)
	if err != nil {
		return Permanent(0, fmt.Errorf("smtp: from: %w", err)), true
	}
	rcpts, err := msg.GetRecipients()
	if err != nil {
		return Permanent(0, fmt.Errorf("smtp: recipients: %w", err)), true
	}
	if err := conn.Mail(from); err != nil {
		return refused(conn, "MAIL FROM", err)
	}
	for _, rcpt := range rcpts {
		if err := conn.Rcpt(rcpt); err != nil {
			return refused(conn, "RCPT TO", err)
		}
	}
	w, err := conn.Data()
	if err != nil {
		return refused(conn, "DATA", err)
	}
	if _, err := msg.WriteTo(w); err != nil {
		// No dot was sent: the server drops the unfinished message.
		return Transient(0, fmt.Errorf("smtp: writing the message: %w", err)), false
	}
	if !h.handedOver() {
		return Result{}, false // the cut-off came: no dot
	}
	if err := conn.UpdateDeadline(s.timeout); err != nil {
		return Unknown(fmt.Errorf("smtp: message written, %w", err)), false
	}
	if err := w.Close(); err != nil { // the dot, and its reply
		switch code := smtpCode(err); {
		case code >= 500 && code < 600:
			return Permanent(code, fmt.Errorf("smtp: end of DATA: %w", err)), true
		case code >= 400 && code < 500:
			return Transient(code, fmt.Errorf("smtp: end of DATA: %w", err)), true
		}
		return Unknown(fmt.Errorf("smtp: message sent, no answer to its end: %w", err)), false
	}
	return Success(250), true
}

// refused classifies a failed MAIL FROM, RCPT TO or DATA: a reply 5xx is
// permanent and 4xx transient, and the transaction is reset so that the
// connection can be reused; no reply (a broken connection) is transient.
// Nothing was handed over either way.
func refused(conn *smtp.Client, step string, err error) (Result, bool) {
	code := smtpCode(err)
	if code == 0 {
		return Transient(0, fmt.Errorf("smtp: %s: %w", step, err)), false
	}
	keep := conn.Reset() == nil
	if code >= 500 && code < 600 {
		return Permanent(code, fmt.Errorf("smtp: %s: %w", step, err)), keep
	}
	return Transient(code, fmt.Errorf("smtp: %s: %w", step, err)), keep
}

// message builds the email of a command.
func (s *SMTP) message(cmd *contract.SendCommand) (*mail.Msg, error) {
	var c EmailContent
	if len(cmd.Content) > 0 {
		if err := json.Unmarshal(cmd.Content, &c); err != nil {
			return nil, fmt.Errorf("smtp: content: %w", err)
		}
	}
	if c.Text == "" && c.HTML == "" {
		return nil, errors.New("smtp: content has neither text nor html")
	}
	m := mail.NewMsg()
	if err := m.From(s.from); err != nil {
		return nil, fmt.Errorf("smtp: from: %w", err)
	}
	if err := m.To(cmd.Address); err != nil {
		return nil, fmt.Errorf("smtp: invalid recipient address: %w", err)
	}
	m.Subject(c.Subject)
	key := cmd.IdempotencyKey
	if key == "" {
		key = cmd.ID
	}
	m.SetMessageIDWithValue("herald." + messageIDPart(key) + "@" + s.domain)
	m.SetGenHeader(mail.Header("X-Herald-Id"), cmd.ID)
	m.SetDate()
	switch {
	case c.Text != "" && c.HTML != "":
		m.SetBodyString(mail.TypeTextPlain, c.Text)
		m.AddAlternativeString(mail.TypeTextHTML, c.HTML)
	case c.HTML != "":
		m.SetBodyString(mail.TypeTextHTML, c.HTML)
	default:
		m.SetBodyString(mail.TypeTextPlain, c.Text)
	}
	return m, nil
}

// messageIDPart keeps a key usable inside a Message-ID: as it is if it is
// plain, hex-encoded otherwise.
func messageIDPart(key string) string {
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return "x" + hex.EncodeToString([]byte(key))
		}
	}
	return key
}

// conn returns an idle connection or dials a new one.
func (s *SMTP) conn(ctx context.Context) (*smtp.Client, error) {
	s.mu.Lock()
	if n := len(s.idle); n > 0 {
		c := s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return c, nil
	}
	s.mu.Unlock()
	return s.client.DialToSMTPClientWithContext(ctx)
}

// release puts a healthy connection back in the pool, or closes it.
func (s *SMTP) release(c *smtp.Client, keep bool) {
	if keep {
		s.mu.Lock()
		s.idle = append(s.idle, c)
		s.mu.Unlock()
		return
	}
	c.Close()
}

// Close says goodbye on every idle connection.
func (s *SMTP) Close() error {
	s.mu.Lock()
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	for _, c := range idle {
		s.client.CloseWithSMTPClient(c)
	}
	return nil
}

// smtpCode finds the SMTP reply code in an error, 0 if there is none.
func smtpCode(err error) int {
	var se *mail.SendError
	if errors.As(err, &se) && se.ErrorCode() != 0 {
		return se.ErrorCode()
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

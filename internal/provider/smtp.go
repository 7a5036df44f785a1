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
// Classification: a reply code 4xx to MAIL, RCPT or DATA is transient and
// 5xx permanent; a failure to connect, greet or authenticate is transient
// (it says nothing about the message; the server may be back soon), and so
// is a broken connection. A transient failure after DATA may mean the
// server accepted the message anyway, so every message carries a
// Message-ID derived from the idempotency key, the same on every attempt,
// for receivers that deduplicate by it.
type SMTP struct {
	client *mail.Client
	from   string
	domain string

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
	return &SMTP{client: cl, from: from, domain: domain, slots: make(chan struct{}, conns)}, nil
}

// Send delivers one email.
func (s *SMTP) Send(ctx context.Context, cmd *contract.SendCommand) Result {
	msg, err := s.message(cmd)
	if err != nil {
		return Permanent(0, err)
	}
	// Until the session begins, the command's cut-off ends the attempt
	// (handover.go); after it, only the client's timeout and ctx do.
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
	if !h.handedOver() {
		s.release(conn, true)
		return notHandedOver("smtp", time.Since(start))
	}
	// SendWithSMTPClient takes no context: closing the connection is how a
	// canceled attempt stops waiting.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	err = s.client.SendWithSMTPClient(conn, msg)
	canceled := !stop()
	var se *mail.SendError
	if err == nil {
		s.release(conn, true)
		return Success(250)
	}
	keep := !canceled && errors.As(err, &se) && se.ErrorCode() != 0 &&
		(se.Reason == mail.ErrSMTPMailFrom || se.Reason == mail.ErrSMTPRcptTo || se.Reason == mail.ErrSMTPDataClose)
	s.release(conn, keep)
	code := smtpCode(err)
	switch {
	case canceled:
		return Transient(code, fmt.Errorf("smtp: %w", ctx.Err()))
	case code >= 500 && code < 600:
		return Permanent(code, fmt.Errorf("smtp: %w", err))
	case code >= 400 && code < 500:
		return Transient(code, fmt.Errorf("smtp: %w", err))
	case se != nil && !se.IsTemp() && se.Reason != mail.ErrConnCheck && se.Reason != mail.ErrWriteContent && se.Reason != mail.ErrAmbiguous:
		return Permanent(code, fmt.Errorf("smtp: %w", err))
	}
	return Transient(code, fmt.Errorf("smtp: %w", err))
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

package provider

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// fakeSMTP is a minimal SMTP server: it answers RCPT for addresses
// starting "perm" with 550 and "temp" with 451, accepts everything else,
// and records the messages it received.
type fakeSMTP struct {
	ln    net.Listener
	mu    sync.Mutex
	msgs  []string
	conns int
	// slowUntil, if set, holds back the replies to MAIL FROM and RCPT TO
	// until then, and slowDotUntil the reply to the end of DATA.
	slowUntil, slowDotUntil time.Time
	// ended gets a value when a connection's handler returns.
	ended chan struct{}
}

func startFakeSMTP(t *testing.T) *fakeSMTP {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSMTP{ln: ln, ended: make(chan struct{}, 100)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
			go f.serve(c)
		}
	}()
	return f
}

func (f *fakeSMTP) serve(c net.Conn) {
	defer func() { f.ended <- struct{}{} }()
	defer c.Close()
	f.mu.Lock()
	slow, slowDot := f.slowUntil, f.slowDotUntil
	f.mu.Unlock()
	r := bufio.NewReader(c)
	reply := func(s string) { c.Write([]byte(s + "\r\n")) }
	reply("220 fake ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		if strings.HasPrefix(cmd, "MAIL FROM") || strings.HasPrefix(cmd, "RCPT TO") {
			time.Sleep(time.Until(slow))
		}
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			reply("250-fake")
			reply("250 8BITMIME")
		case strings.HasPrefix(cmd, "MAIL FROM"), cmd == "RSET", cmd == "NOOP":
			reply("250 ok")
		case strings.HasPrefix(cmd, "RCPT TO:<PERM"):
			reply("550 5.1.1 no such user")
		case strings.HasPrefix(cmd, "RCPT TO:<TEMP"):
			reply("451 4.3.0 try again later")
		case strings.HasPrefix(cmd, "RCPT TO"):
			reply("250 ok")
		case cmd == "DATA":
			reply("354 go ahead")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			f.mu.Lock()
			f.msgs = append(f.msgs, b.String())
			f.mu.Unlock()
			time.Sleep(time.Until(slowDot))
			reply("250 2.0.0 queued")
		case cmd == "QUIT":
			reply("221 bye")
			return
		default:
			reply("502 not implemented")
		}
	}
}

func TestSMTPSendsAndClassifies(t *testing.T) {
	t.Parallel()
	f := startFakeSMTP(t)
	u, _ := url.Parse("smtp://" + f.ln.Addr().String() + "?from=herald@example.com&tls=none&conns=2")
	p, err := NewSMTP(u, Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cmd := func(addr string, content string) *contract.SendCommand {
		c := testCommand("bill-7", 1)
		c.Address, c.Content = addr, json.RawMessage(content)
		return c
	}
	ok := `{"subject":"Your statement","text":"plain body","html":"<p>html body</p>"}`
	for i := 0; i < 5; i++ {
		if r := p.Send(context.Background(), cmd("jane@example.com", ok)); r.Outcome != contract.OutcomeSuccess || r.Code != 250 {
			t.Fatalf("send %d: %s %d %v", i, r.Outcome, r.Code, r.Err)
		}
	}
	if r := p.Send(context.Background(), cmd("perm@example.com", ok)); r.Outcome != contract.OutcomePermanent || r.Code != 550 {
		t.Errorf("550: %s %d %v", r.Outcome, r.Code, r.Err)
	}
	if r := p.Send(context.Background(), cmd("temp@example.com", ok)); r.Outcome != contract.OutcomeTransient || r.Code != 451 {
		t.Errorf("451: %s %d %v", r.Outcome, r.Code, r.Err)
	}
	if r := p.Send(context.Background(), cmd("not an address", ok)); r.Outcome != contract.OutcomePermanent {
		t.Errorf("bad address: %s %v", r.Outcome, r.Err)
	}
	if r := p.Send(context.Background(), cmd("jane@example.com", `{"subject":"no body"}`)); r.Outcome != contract.OutcomePermanent {
		t.Errorf("no body: %s %v", r.Outcome, r.Err)
	}
	// After the rejections the connection is still usable.
	if r := p.Send(context.Background(), cmd("jane@example.com", `{"subject":"s","text":"t"}`)); r.Outcome != contract.OutcomeSuccess {
		t.Errorf("after rejections: %s %v", r.Outcome, r.Err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.msgs) != 6 {
		t.Fatalf("server got %d messages, want 6", len(f.msgs))
	}
	m := f.msgs[0]
	for _, want := range []string{"Subject: Your statement", "To: <jane@example.com>", "From: <herald@example.com>",
		"Message-ID: <herald.bill-7@example.com>", "X-Herald-Id: bill-7", "plain body", "html body", "multipart/alternative"} {
		if !strings.Contains(m, want) {
			t.Errorf("message lacks %q:\n%s", want, m)
		}
	}
	if f.conns > 2 {
		t.Errorf("%d connections for sequential sends; the pool does not reuse them", f.conns)
	}
}

func TestSMTPConnectionRefusedIsTransient(t *testing.T) {
	t.Parallel()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	u, _ := url.Parse("smtp://" + addr + "?from=herald@example.com&tls=none")
	p, err := NewSMTP(u, Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := p.Send(context.Background(), testCommand("a", 1))
	if r.Outcome != contract.OutcomeTransient || r.Err == nil {
		t.Errorf("got %s %v", r.Outcome, r.Err)
	}
	if _, err := NewSMTP(mustURL("smtp://h?tls=none"), Options{}); err == nil {
		t.Error("missing from=: no error")
	}
}

func mustURL(s string) *url.URL { u, _ := url.Parse(s); return u }

// The cut-off rule (handover.go) for SMTP: a command whose cut-off has
// passed before the session begins is not attempted, and the server gets
// no message; one whose session began before it is delivered.
func TestSMTPCutoffBoundsTheSessionStart(t *testing.T) {
	t.Parallel()
	f := startFakeSMTP(t)
	u, _ := url.Parse("smtp://" + f.ln.Addr().String() + "?from=herald@example.com&tls=none&conns=1")
	p, err := NewSMTP(u, Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	late := testCommand("late", 1)
	late.Cutoff = time.Now().Add(-time.Millisecond)
	if r := p.Send(context.Background(), late); r.Outcome != contract.OutcomeNotAttempted || r.Err == nil {
		t.Errorf("cut-off already past: %s %v, want not_attempted", r.Outcome, r.Err)
	}
	inTime := testCommand("in-time", 1)
	inTime.Cutoff = time.Now().Add(time.Minute)
	if r := p.Send(context.Background(), inTime); r.Outcome != contract.OutcomeSuccess {
		t.Errorf("cut-off a minute away: %s %v, want success", r.Outcome, r.Err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.msgs) != 1 || !strings.Contains(f.msgs[0], "X-Herald-Id: in-time") {
		t.Errorf("server got %d messages, want only in-time's", len(f.msgs))
	}
}

// The hand-over is the end of DATA. A relay slow to answer MAIL FROM and
// RCPT TO, so that the cut-off passes before the message's final dot, gets
// no complete message (the session is abandoned without the dot), and the
// attempt is not_attempted. A relay slow to answer the dot itself, past
// the cut-off, has the message: its answer is awaited.
func TestSMTPHandOverIsTheEndOfData(t *testing.T) {
	t.Parallel()
	f := startFakeSMTP(t)
	u, _ := url.Parse("smtp://" + f.ln.Addr().String() + "?from=herald@example.com&tls=none&conns=1")
	p, err := NewSMTP(u, Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cmd := testCommand("slow-relay", 1)
	cmd.Cutoff = time.Now().Add(300 * time.Millisecond)
	f.mu.Lock()
	f.slowUntil = cmd.Cutoff.Add(300 * time.Millisecond) // replies come after the cut-off
	f.mu.Unlock()
	if r := p.Send(context.Background(), cmd); r.Outcome != contract.OutcomeNotAttempted {
		t.Errorf("cut-off before the end of DATA: %s %v, want not_attempted", r.Outcome, r.Err)
	}
	select {
	case <-f.ended: // the server is done with that session
	case <-time.After(10 * time.Second):
		t.Fatal("the server's session did not end")
	}
	f.mu.Lock()
	if len(f.msgs) != 0 {
		t.Errorf("the server got %d complete messages after the cut-off, want none", len(f.msgs))
	}
	f.mu.Unlock()

	dot := testCommand("slow-dot", 1)
	dot.Cutoff = time.Now().Add(2 * time.Second)
	f.mu.Lock()
	f.slowUntil, f.slowDotUntil = time.Time{}, dot.Cutoff.Add(300*time.Millisecond)
	f.mu.Unlock()
	if r := p.Send(context.Background(), dot); r.Outcome != contract.OutcomeSuccess {
		t.Errorf("cut-off after the end of DATA, before its reply: %s %v, want success", r.Outcome, r.Err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.msgs) != 1 || !strings.Contains(f.msgs[0], "X-Herald-Id: slow-dot") {
		t.Errorf("server got %d messages, want slow-dot's", len(f.msgs))
	}
}

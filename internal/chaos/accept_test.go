package chaos

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/provider"
)

// With the accept loop stalled, the kernel queues at most about Backlog
// connections; the next connect gets no answer and times out. The
// system's backlog (thousands) takes all of them.
func TestProviderBacklog(t *testing.T) {
	dials := func(backlog int) (ok int, failed bool) {
		p := NewProvider(true)
		p.Accept = Accept{Backlog: backlog, Delay: time.Hour}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		addr := p.URL[len("http://"):]
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range 12 {
			c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
			if err != nil {
				return ok, true
			}
			conns = append(conns, c)
			ok++
		}
		return ok, false
	}
	ok, failed := dials(2)
	t.Logf("backlog 2: %d connects before one timed out", ok)
	if !failed || ok > 4 {
		t.Fatalf("backlog 2: %d connects succeeded, one failed: %v; want a failure after at most 4", ok, failed)
	}
	if ok, failed := dials(0); failed {
		t.Fatalf("the system's backlog: connect %d failed", ok+1)
	}
}

// Every CloseEvery-th answer closes its connection; the others keep it.
func TestProviderCloseEvery(t *testing.T) {
	p := NewProvider(true)
	p.Accept = Accept{CloseEvery: 2}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var closed []bool
	for i := range 4 {
		body, _ := json.Marshal(provider.WebhookBody{ID: "x", Channel: contract.ChannelEmail, Attempt: i + 1, Recipient: "x@example.com"})
		resp, err := http.Post(p.URL+"/email", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		closed = append(closed, resp.Close)
	}
	if want := []bool{false, true, false, true}; !slices.Equal(closed, want) {
		t.Fatalf("connection closed after calls %v, want %v", closed, want)
	}
}

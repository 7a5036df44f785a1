package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/provider"
)

func TestCountSignals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald-1.log")
	log := `time=x level=ERROR msg="herald-dispatcher failed; restarting" err="Failed to produce message to topic herald-send: kafka server: The broker received an out of order sequence number"
time=x level=INFO msg=ready
time=x level=ERROR msg="herald-dispatcher failed; restarting" err="Failed to produce message to topic herald-dispatcher-loop: assertion failed: message out of sequence added to a batch"
`
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{"failed; restarting": 1} // from another instance's log
	if err := countSignals(path, counts); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"out of order sequence number": 1, "message out of sequence added to a batch": 1,
		"Failed to produce message": 2, "failed; restarting": 3}
	if len(counts) != len(want) {
		t.Fatalf("counts %v, want %v", counts, want)
	}
	for k, n := range want {
		if counts[k] != n {
			t.Fatalf("counts %v, want %v", counts, want)
		}
	}
	if err := countSignals(filepath.Join(t.TempDir(), "none.log"), counts); err == nil {
		t.Fatal("a missing log: no error")
	}
}

// A fault with WhenBusy waits for that many open calls from its target;
// calls of another instance do not count.
func TestWaitBusy(t *testing.T) {
	p := NewProvider(false)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	client := &http.Client{Timeout: 3 * time.Second}
	for i := range 2 {
		body, _ := json.Marshal(provider.WebhookBody{ID: "w", Channel: contract.ChannelEmail, Attempt: i + 1})
		go func() {
			if resp, err := client.Post(p.URL+"/herald-1/email?latency=2s", "application/json", bytes.NewReader(body)); err == nil {
				resp.Body.Close()
			}
		}()
	}
	ctx := context.Background()
	if !waitBusy(ctx, p, "herald-1", 2, time.Minute) {
		t.Fatal("2 open calls from herald-1 not seen")
	}
	if waitBusy(ctx, p, "herald-2", 1, 50*time.Millisecond) {
		t.Fatal("herald-2 has no open call")
	}
	if !waitBusy(ctx, p, "", 2, time.Minute) {
		t.Fatal("2 open calls from anyone not seen")
	}
}

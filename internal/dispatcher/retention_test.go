package dispatcher

import (
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/topology"
)

// sizeRequest is the contract's benchmark request (contract/bench_test.go):
// a typical billing notification, two channels, a zone, a window, an
// expiry.
const sizeRequest = `{"schema":"herald.dispatch.v1","id":"2026-01:user-123:bill","campaign":"billing-2026-01",
 "recipient":{"email":"jane@example.com","phone":"+821012345678","tz":"Asia/Seoul"},"channels":["email","sms"],
 "content":{"template":"statement","amount":"42.00","currency":"EUR","period":"2026-01"},
 "policy":{"id":"billing","version":3,"attempts_per_channel":3,"backoff":{"initial":"1s","multiplier":2,"max":"10m"}},
 "blackout":[{"from":"22:00","to":"06:00"}],"expires_at":"2026-02-15T00:00:00Z"}`

// TestStateSizes measures the encoded bytes of one notification's state
// in the table (docs/performance.md, "Bytes per state"): a sent state with
// its payload (what releases before the shedding kept), the same state
// shed, and run with -v it reports both.
func TestStateSizes(t *testing.T) {
	cfg := testConfig()
	r, err := contract.Decode([]byte("2026-01:user-123:bill"), []byte(sizeRequest))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)
	src := func(topic string, off int64) contract.Position {
		return contract.Position{Topic: topic, Partition: 3, Offset: off}
	}
	d := Dispatch(nil, Event{Source: src(topology.TopicRequests, 1234567), Epoch: 7, Request: r}, now, cfg)
	sending := d.State
	d = Dispatch(sending, Event{Source: src(topology.TopicResults, 7654321), Epoch: 7, Result: &contract.SendResult{
		ID: r.ID, Attempt: 1, Channel: contract.ChannelEmail, Outcome: contract.OutcomeSuccess, At: now.Add(time.Second)}}, now.Add(time.Second), cfg)
	sent := d.State
	if sent == nil || sent.Status != contract.StatusSent || sent.HasPayload() {
		t.Fatalf("want a shed sent state, got %+v", sent)
	}
	kept := *sent
	kept.Request = r // the sent state as it was before shedding
	size := func(s *contract.State) int {
		b, err := contract.EncodeState(s)
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	full, shed := size(&kept), size(sent)
	payload := len(r.Content) + len(r.Recipient.Email) + len(r.Recipient.Phone)
	t.Logf("bytes per state (encoded): sending %d, sent with its payload %d, sent shed %d (payload %d bytes of content and addresses)",
		size(sending), full, shed, payload)
	if full-shed < payload {
		t.Errorf("shedding saved %d bytes, less than the payload's %d", full-shed, payload)
	}
}

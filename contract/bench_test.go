package contract

import (
	"encoding/json"
	"testing"
	"time"
)

// benchRequest is a typical billing notification: two channels, a zone, a
// blackout crossing midnight, an expiry.
var benchRequest = []byte(`{
  "schema": "herald.dispatch.v1",
  "id": "2026-01:user-123:bill",
  "campaign": "billing-2026-01",
  "recipient": {"email": "jane@example.com", "phone": "+821012345678", "tz": "Asia/Seoul"},
  "channels": ["email", "sms"],
  "content": {"template": "statement", "amount": "42.00", "currency": "EUR", "period": "2026-01"},
  "policy": {"id": "billing", "version": 3, "attempts_per_channel": 3,
             "backoff": {"initial": "1s", "multiplier": 2, "max": "10m"}},
  "blackout": [{"from": "22:00", "to": "06:00"}],
  "expires_at": "2026-02-15T00:00:00Z"
}`)

func BenchmarkDecode(b *testing.B) {
	key := []byte("2026-01:user-123:bill")
	b.SetBytes(int64(len(benchRequest)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(key, benchRequest); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeState measures the table codec's work per change: the JSON
// of a state after two attempts, as it is written to the changelog.
func BenchmarkEncodeState(b *testing.B) {
	r, err := Decode(nil, benchRequest)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)
	next := t0.Add(2 * time.Second)
	s := &State{
		ID: r.ID, Campaign: r.Campaign, Status: StatusRetrying, Channel: ChannelEmail,
		Attempts: 2, ChannelAttempts: 2, FirstSeen: t0, UpdatedAt: t0.Add(time.Second),
		NextAttemptAt: &next, HoldReason: HoldBackoff, LastError: "email attempt 2: transient (503): unavailable",
		Version: 5, Request: r,
		History: []Attempt{
			{Attempt: 1, Channel: ChannelEmail, Outcome: OutcomeTransient, Code: 503, Error: "unavailable", At: t0},
			{Attempt: 2, Channel: ChannelEmail, Outcome: OutcomeTransient, Code: 503, Error: "unavailable", At: t0.Add(time.Second)},
		},
		Applied: map[string]Position{
			"herald.requests": {Topic: "herald.requests", Partition: 3, Offset: 1234567},
			"herald.results":  {Topic: "herald.results", Partition: 3, Offset: 7654321},
		},
		LastSource: Position{Topic: "herald.results", Partition: 3, Offset: 7654321}, LastEmitted: true,
	}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		out, err := json.Marshal(s)
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	b.SetBytes(int64(n))
}

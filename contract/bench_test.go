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

// benchState is a realistic state after two attempts: the request, two
// history entries, two applied positions.
func benchState(tb testing.TB) *State {
	r, err := Decode(nil, benchRequest)
	if err != nil {
		tb.Fatal(err)
	}
	t0 := time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)
	next := t0.Add(2 * time.Second)
	return &State{
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
}

// encodings returns the state encoded as this release writes it and as
// the releases before the binary encoding did (JSON), which the decoders
// still read: each benchmark runs both, so one run compares them.
func encodings(b *testing.B, s *State) map[string][]byte {
	bin, err := EncodeState(s)
	if err != nil {
		b.Fatal(err)
	}
	return map[string][]byte{"binary": bin, "json": legacyJSON(b, s)}
}

// BenchmarkEncodeState measures the table codec's work per change: a state
// after two attempts, encoded as it is written to the changelog (binary),
// against the JSON the previous release wrote.
func BenchmarkEncodeState(b *testing.B) {
	s := benchState(b)
	for name, enc := range map[string]func() ([]byte, error){
		"binary": func() ([]byte, error) { return EncodeState(s) },
		// The same bytes through a pb.State and protobuf's marshaller, as
		// EncodeState wrote them before appendState.
		"binary-protobuf": func() ([]byte, error) { return protoBytes(b, s) },
		"json":            func() ([]byte, error) { return legacyJSON(b, s), nil },
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var n int
			for b.Loop() {
				out, err := enc()
				if err != nil {
					b.Fatal(err)
				}
				n = len(out)
			}
			b.ReportMetric(float64(n), "bytes/state")
		})
	}
}

// BenchmarkDecodeState measures the table codec's work per read: the
// dispatcher decodes the state of every record it handles, the sink and
// the API every state they read.
func BenchmarkDecodeState(b *testing.B) {
	for name, raw := range encodings(b, benchState(b)) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeState(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// The binary encoding through a pb.State and protobuf's decoder, as
	// DecodeState read it before scanState.
	raw := encodings(b, benchState(b))["binary"]
	b.Run("binary-protobuf", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeStatePB(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodePartial measures what the readers that need a few
// fields decode per state: the version (every changelog record a view or
// the dispatcher's recovery applies), the summary (the held gauge's scan)
// and the progress (the sender's stale check, the sweep).
func BenchmarkDecodePartial(b *testing.B) {
	for name, raw := range encodings(b, benchState(b)) {
		b.Run("version/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if v, err := StateVersion(raw); err != nil || v != 5 {
					b.Fatal(v, err)
				}
			}
		})
		b.Run("summary/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if s, err := DecodeSummary(raw); err != nil || s.HoldReason != HoldBackoff {
					b.Fatal(s, err)
				}
			}
		})
		b.Run("progress/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if s, err := DecodeProgress(raw); err != nil || s.Attempts != 2 {
					b.Fatal(s, err)
				}
			}
		})
		b.Run("status/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if s, err := DecodeStatus(raw); err != nil || s.Attempts != 2 || s.LastError == "" {
					b.Fatal(s, err)
				}
			}
		})
	}
}

// benchRecords are typical internal records of one attempt.
func benchRecords() (*SendCommand, *SendResult, *Wakeup) {
	t0 := time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)
	cmd := &SendCommand{ID: "2026-01:user-123:bill", Campaign: "billing-2026-01", Channel: ChannelEmail, Attempt: 1,
		Address: "jane@example.com", Content: json.RawMessage(`{"template":"statement","amount":"42.00","currency":"EUR","period":"2026-01"}`),
		IdempotencyKey: "2026-01:user-123:bill", RequestedAt: t0, IssuedAt: t0.Add(10 * time.Millisecond),
		Deadline: t0.Add(10 * time.Minute), Cutoff: t0.Add(10 * time.Minute), CallTimeout: Duration(DefaultProviderTimeout)}
	res := &SendResult{ID: cmd.ID, Attempt: 1, Channel: ChannelEmail, Outcome: OutcomeTransient, Error: "503 Service Unavailable",
		Code: 503, RetryAfter: Duration(30 * time.Second), At: t0.Add(time.Second), Latency: Duration(812 * time.Millisecond)}
	w := &Wakeup{ID: cmd.ID, Kind: WakeupSendTimeout, Due: t0.Add(10*time.Minute + 30*time.Second), Attempt: 1}
	return cmd, res, w
}

// BenchmarkRecords measures the encode and decode of the records every
// attempt passes, a send command, its result and a send-timeout wake-up:
// binary, the same bytes through the pb messages and protobuf's
// marshaller and decoder (binary-protobuf, as before recordwire.go), and
// the JSON of the previous release.
func BenchmarkRecords(b *testing.B) {
	cmd, res, w := benchRecords()
	key := []byte(cmd.ID)
	type codec struct {
		enc func() ([]byte, error)
		dec func([]byte) error
	}
	run := func(name string, v any, bin, viaPB codec) {
		jsonDec := bin.dec // the decoders read JSON too
		for _, format := range []string{"binary", "binary-protobuf", "json"} {
			c := map[string]codec{"binary": bin, "binary-protobuf": viaPB,
				"json": {func() ([]byte, error) { return json.Marshal(v) }, jsonDec}}[format]
			raw, err := c.enc()
			if err != nil {
				b.Fatal(err)
			}
			b.Run(name+"/encode/"+format, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.enc(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(raw)), "bytes/record")
			})
			b.Run(name+"/decode/"+format, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := c.dec(raw); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	run("command", cmd,
		codec{func() ([]byte, error) { return EncodeCommand(cmd) },
			func(raw []byte) error { _, err := DecodeCommand(key, raw); return err }},
		codec{func() ([]byte, error) { return commandProtoBytes(cmd) },
			func(raw []byte) error { _, err := decodeCommandPB(key, raw); return err }})
	run("result", res,
		codec{func() ([]byte, error) { return EncodeResult(res) },
			func(raw []byte) error { _, err := DecodeResult(key, raw); return err }},
		codec{func() ([]byte, error) { return resultProtoBytes(res) },
			func(raw []byte) error { _, err := decodeResultPB(key, raw); return err }})
	run("wakeup", w,
		codec{func() ([]byte, error) { return EncodeWakeup(w) },
			func(raw []byte) error { _, err := DecodeWakeup(key, raw); return err }},
		codec{func() ([]byte, error) { return wakeupProtoBytes(w) },
			func(raw []byte) error { _, err := decodeWakeupPB(key, raw); return err }})
}

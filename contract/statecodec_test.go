package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// trickyStates are states for every status and hold reason, with ids,
// errors and content that quote the fields a light decoder looks for.
func trickyStates(tb testing.TB) []*State {
	now := time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)
	var out []*State
	for _, st := range Statuses() {
		for _, r := range []HoldReason{HoldSchedule, HoldBlackout, HoldBackoff, HoldRateLimit, ""} {
			req, err := Decode(nil, benchRequest)
			if err != nil {
				tb.Fatal(err)
			}
			req.Content = json.RawMessage(`{"status":"sent","hold_reason":"blackout","version":9}`)
			s := &State{ID: `id "status":"sent"`, Campaign: `c\"status\":\"sent\"`, Status: st, HoldReason: r,
				Request: req, LastError: `"hold_reason":"backoff"`, FirstSeen: now, Version: 3, Attempts: 2, Issue: 1,
				History: []Attempt{{Error: `"status":"failed"`}}}
			if st.Held() {
				s.NextAttemptAt = &now
			}
			if st == StatusSending {
				s.TimeoutAt = &now
			}
			out = append(out, s)
		}
	}
	out[0].UpdatedAt = now.Add(time.Hour)
	return append(out, &State{ID: "bare", Status: StatusSent},
		&State{ID: "remembered", Status: StatusCanceled, UpdatedAt: now, Version: 1<<32 + 9, Remembered: true}, benchState(tb))
}

func TestStateCodecRoundTrip(t *testing.T) {
	t.Parallel()
	for _, s := range trickyStates(t) {
		b, err := StateCodec{}.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		v, err := StateCodec{}.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if got := v.(*State); !sameState(got, s) {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", s.ID, got, s)
		}
	}
	if _, err := (StateCodec{}).Encode(State{}); err == nil {
		t.Error("a State value (not a pointer) was encoded")
	}
	if _, err := DecodeState([]byte("not a state")); err == nil {
		t.Error("garbage decoded")
	}
}

// sameState compares two states as their JSON says, so that equal
// instants in different locations are equal.
func sameState(a, b *State) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	var ma, mb any
	_ = json.Unmarshal(ja, &ma)
	_ = json.Unmarshal(jb, &mb)
	return reflect.DeepEqual(ma, mb)
}

// legacyJSON is how the releases before the binary encoding wrote a state
// (and, without the HTML escaping detail, a record).
func legacyJSON(tb testing.TB, v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		tb.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// Each light decoder agrees with the full decode, for every status and
// reason, and for content and ids that try to fool it, in the binary
// encoding and in the JSON of earlier releases.
func TestLightDecodersAgreeWithDecodeState(t *testing.T) {
	t.Parallel()
	sent := time.Date(2026, 1, 31, 9, 0, 1, 5, time.FixedZone("", 3600))
	// Every field DecodeStatus reads, set, a channel outside the enum
	// (travels by name) and a duplicate request as the last source.
	status := &State{ID: "n-1", Campaign: "billing", Status: StatusSent, Channel: Channel("fax"), Attempts: 3,
		Duplicates: 2, UpdatedAt: sent, SentAt: &sent, LastError: "sms attempt 1: transient", Version: 1<<32 + 7,
		LastSource: Position{Topic: "herald.requests", Partition: 4, Offset: 99}, History: []Attempt{{Attempt: 1}},
		Moved: map[string]int64{"herald.results": 3}}
	for _, s := range append(trickyStates(t), status) {
		bin, err := EncodeState(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{bin, legacyJSON(t, s)} {
			full, err := DecodeState(b)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := DecodeSummary(b)
			if err != nil || sum != (Summary{Status: full.Status, HoldReason: full.HoldReason}) || sum.Status != s.Status {
				t.Errorf("%q: summary %+v, %v; want %s/%s", b, sum, err, full.Status, full.HoldReason)
			}
			v, err := StateVersion(b)
			if err != nil || v != s.Version {
				t.Errorf("%q: version %d, %v", b, v, err)
			}
			p, err := DecodeProgress(b)
			want := &State{ID: full.ID, Status: full.Status, HoldReason: full.HoldReason, Attempts: full.Attempts, Issue: full.Issue,
				Commands: full.Commands, NextAttemptAt: full.NextAttemptAt, TimeoutAt: full.TimeoutAt, Version: full.Version}
			if err != nil || !sameState(p, want) {
				t.Errorf("%q: progress %+v, %v; want %+v", b, p, err, want)
			}
			st, err := DecodeStatus(b)
			if want := statusFields(full); err != nil || !sameState(st, want) {
				t.Errorf("%q: status %+v, %v; want %+v", b, st, err, want)
			}
			ret, err := DecodeRetention(b)
			if wantR := (Retention{ID: full.ID, Status: full.Status, UpdatedAt: full.UpdatedAt, Version: full.Version,
				Remembered: full.Remembered}); err != nil || !ret.UpdatedAt.Equal(wantR.UpdatedAt) || ret.ID != wantR.ID ||
				ret.Status != wantR.Status || ret.Version != wantR.Version || ret.Remembered != wantR.Remembered {
				t.Errorf("%q: retention %+v, %v; want %+v", b, ret, err, wantR)
			}
		}
	}
}

// An upgrade loses nothing: a state the previous release wrote to the
// table and its changelog (JSON, testdata/state-v1.4.json) decodes to the
// same State, and so does every light decoder.
func TestStateFromThePreviousReleaseDecodes(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/state-v1.4.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, legacyJSON(t, benchState(t))) {
		t.Fatal("testdata/state-v1.4.json is not benchState as the previous release wrote it")
	}
	got, err := DecodeState(b)
	if err != nil || !sameState(got, benchState(t)) {
		t.Fatalf("decode: %+v, %v", got, err)
	}
	// Re-encoded by this release, it is the same state again.
	bin, err := EncodeState(got)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := DecodeState(bin); err != nil || !sameState(back, got) {
		t.Fatalf("re-encoded: %+v, %v", back, err)
	}
	if bin[0] != FormatProto || len(bin) >= len(b) {
		t.Errorf("binary encoding: first byte 0x%02x, %d bytes (JSON %d)", bin[0], len(bin), len(b))
	}
}

// The light decoders stop at the last field they need, which is right only
// while EncodeState writes the fields in number order and the fields they
// read come first.
func TestStateFieldOrder(t *testing.T) {
	t.Parallel()
	if lastProgressField >= stateFields.ByName("history").Number() {
		t.Errorf("the progress fields end at %d, after history", lastProgressField)
	}
	for _, s := range trickyStates(t) {
		s.Moved = map[string]int64{"herald.requests/1": 3, "herald.control/0": 4}
		b, err := EncodeState(s)
		if err != nil {
			t.Fatal(err)
		}
		var last protowire.Number
		for b = b[1:]; len(b) > 0; {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				t.Fatal(protowire.ParseError(n))
			}
			b = b[n:]
			if num < last {
				t.Fatalf("field %d written after field %d", num, last)
			}
			last = num
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				t.Fatal(protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
}

// A value that is neither encoding, or a binary value cut short, is an
// error that says so, from every decoder of the state.
func TestUndecodableStates(t *testing.T) {
	t.Parallel()
	bin, err := EncodeState(benchState(t))
	if err != nil {
		t.Fatal(err)
	}
	decoders := map[string]func([]byte) error{
		"state":     func(b []byte) error { _, err := DecodeState(b); return err },
		"version":   func(b []byte) error { _, err := StateVersion(b); return err },
		"summary":   func(b []byte) error { _, err := DecodeSummary(b); return err },
		"progress":  func(b []byte) error { _, err := DecodeProgress(b); return err },
		"retention": func(b []byte) error { _, err := DecodeRetention(b); return err },
		"codec":     func(b []byte) error { _, err := StateCodec{}.Decode(b); return err },
	}
	for name, dec := range decoders {
		for _, b := range [][]byte{nil, []byte("not a state"), {0x02, 0x08, 0x01}} {
			err := dec(b)
			if !errors.Is(err, ErrUnknownEncoding) || !strings.Contains(err.Error(), "neither") && len(b) > 0 {
				t.Errorf("%s of %q: %v, want an unknown-encoding error", name, b, err)
			}
		}
		if err := dec(bin[:2]); err == nil { // the version's tag without its value
			t.Errorf("%s of a truncated value: no error", name)
		}
		if err := dec(bin[:len(bin)-5]); err == nil && (name == "state" || name == "codec") { // into last_source
			t.Errorf("%s of a truncated value: no error", name)
		}
	}
	// A status this release does not know (a later one wrote it) is an
	// error, not an empty status.
	bad := append([]byte{FormatProto}, protowire.AppendTag(nil, fieldStatus, protowire.VarintType)...)
	bad = protowire.AppendVarint(bad, 99)
	for name, dec := range decoders {
		if name == "version" {
			continue
		}
		if err := dec(bad); err == nil || !strings.Contains(err.Error(), "unknown status 99") {
			t.Errorf("%s of status 99: %v", name, err)
		}
	}
}

// A value this release does not know (a newer sender's outcome, a status
// or channel added later) is written as its name and read back as it
// was, by every decoder; only a position filed under another topic is
// refused.
func TestStateKeepsValuesItDoesNotKnow(t *testing.T) {
	t.Parallel()
	s := &State{ID: "a", Status: "paused", HoldReason: "quota", Channel: "webpush", Version: 7,
		Request:  &Request{Channels: []Channel{"webpush", ChannelEmail}},
		History:  []Attempt{{Attempt: 1, Channel: "webpush", Outcome: "bounced"}, {Attempt: 2, Channel: ChannelEmail, Outcome: OutcomeSuccess}},
		Applied:  map[string]Position{"herald.results": {Topic: "herald.results", Offset: 4}},
		Moved:    map[string]int64{"herald.requests/3": 9},
		Attempts: 2}
	b, err := EncodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeState(b)
	if err != nil || !sameState(got, s) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if sum, err := DecodeSummary(b); err != nil || sum.Status != "paused" || sum.HoldReason != "quota" {
		t.Errorf("summary: %+v, %v", sum, err)
	}
	if p, err := DecodeProgress(b); err != nil || p.Status != "paused" || p.HoldReason != "quota" || p.Attempts != 2 {
		t.Errorf("progress: %+v, %v", p, err)
	}
	if _, err := EncodeState(&State{ID: "a", Applied: map[string]Position{"herald.results": {Topic: "herald.requests"}}}); err == nil {
		t.Error("a position filed under another topic was encoded")
	}
}

// Every time survives: nanoseconds, a producer's offset, a set zero time,
// years far from now.
func TestStateTimesRoundTrip(t *testing.T) {
	t.Parallel()
	seoul := time.FixedZone("", 9*3600)
	far := time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	early := time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)
	epoch := time.Unix(0, 0).UTC()
	var zero time.Time
	nb := time.Date(2026, 2, 1, 9, 0, 0, 123, seoul)
	s := &State{ID: "t", FirstSeen: time.Date(2026, 1, 31, 9, 0, 0, 1, time.UTC), UpdatedAt: epoch,
		NextAttemptAt: &far, SentAt: &zero, Cutoff: &early, Request: &Request{NotBefore: &nb, ExpiresAt: &far}}
	b, err := EncodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	if !sameState(got, s) || got.SentAt == nil || !got.SentAt.IsZero() || got.IssuedAt != nil || !got.UpdatedAt.Equal(epoch) {
		t.Errorf("times:\n got %s\nwant %s", legacyJSON(t, got), legacyJSON(t, s))
	}
	if _, off := got.Request.NotBefore.Zone(); off != 9*3600 {
		t.Errorf("not_before lost its offset: %s", got.Request.NotBefore)
	}
}

// The summary's fast path falls back to a full read of anything that is
// not the dispatcher's own encoding, and still answers right.
func TestDecodeSummaryFallback(t *testing.T) {
	t.Parallel()
	got, err := DecodeSummary([]byte(`{"version": 1, "hold_reason": "schedule", "status": "scheduled"}`))
	if err != nil || got.Status != StatusScheduled || got.HoldReason != HoldSchedule {
		t.Errorf("reordered: %+v %v", got, err)
	}
	got, err = DecodeSummary([]byte(`{"status":"sch\u0065duled","version":1}`))
	if err != nil || got.Status != StatusScheduled {
		t.Errorf("escaped: %+v %v", got, err)
	}
	for _, bad := range []string{`not json`, ``} {
		if _, err := DecodeSummary([]byte(bad)); err == nil {
			t.Errorf("%q: no error for a broken state", bad)
		}
		if _, err := DecodeProgress([]byte(bad)); err == nil {
			t.Errorf("%q: progress of a broken state", bad)
		}
		if _, err := StateVersion([]byte(bad)); err == nil {
			t.Errorf("%q: version of a broken state", bad)
		}
	}
}

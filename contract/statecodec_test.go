package contract

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// trickyStates are states for every status and hold reason, with ids,
// errors and content that quote the fields a light decoder looks for.
func trickyStates(tb testing.TB) []*State {
	now := time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)
	var out []*State
	for _, st := range Statuses {
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
	return append(out, &State{ID: "bare", Status: StatusSent}, benchState(tb))
}

func TestStateCodecRoundTrip(t *testing.T) {
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

// Each light decoder agrees with the full decode, for every status and
// reason, and for content and ids that try to fool it.
func TestLightDecodersAgreeWithDecodeState(t *testing.T) {
	for _, s := range trickyStates(t) {
		b, err := EncodeState(s)
		if err != nil {
			t.Fatal(err)
		}
		full, err := DecodeState(b)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := DecodeSummary(b)
		if err != nil || sum != (Summary{Status: full.Status, HoldReason: full.HoldReason}) || sum.Status != s.Status {
			t.Errorf("%s: summary %+v, %v; want %s/%s", b, sum, err, full.Status, full.HoldReason)
		}
		v, err := StateVersion(b)
		if err != nil || v != s.Version {
			t.Errorf("%s: version %d, %v", b, v, err)
		}
		p, err := DecodeProgress(b)
		want := &State{ID: full.ID, Status: full.Status, HoldReason: full.HoldReason, Attempts: full.Attempts, Issue: full.Issue,
			NextAttemptAt: full.NextAttemptAt, TimeoutAt: full.TimeoutAt, Version: full.Version}
		if err != nil || !sameState(p, want) {
			t.Errorf("%s: progress %+v, %v; want %+v", b, p, err, want)
		}
	}
}

// The summary's fast path falls back to a full read of anything that is
// not the dispatcher's own encoding, and still answers right.
func TestDecodeSummaryFallback(t *testing.T) {
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

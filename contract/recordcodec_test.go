package contract

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract/internal/pb"
)

func TestDecodeCommand(t *testing.T) {
	t.Parallel()
	ok := `{"id":"a","channel":"email","attempt":1,"address":"x@y.z","content":{}}`
	if c, err := DecodeCommand([]byte("a"), []byte(ok)); err != nil || c.ID != "a" || c.Channel != ChannelEmail {
		t.Fatalf("valid: %+v %v", c, err)
	}
	cases := []struct {
		key, val, reason string
	}{
		{"a", `{"id":`, ReasonMalformed},
		{"a", `[1,2]`, ReasonMalformed},
		{"b", ok, ReasonKeyMismatch},
		{"a", `{"id":"a","channel":"fax","attempt":1}`, ReasonInvalid},
		{"a", `{"id":"a","channel":"sms","attempt":0}`, ReasonInvalid},
		{"", `{"channel":"sms","attempt":1}`, ReasonInvalid},
	}
	for _, c := range cases {
		_, err := DecodeCommand([]byte(c.key), []byte(c.val))
		if err == nil {
			t.Errorf("%s: no error", c.val)
			continue
		}
		if got := Reason(err); got != c.reason {
			t.Errorf("%s: reason %s, want %s (%v)", c.val, got, c.reason, err)
		}
		var ve *ValidationError
		if c.reason != ReasonMalformed && !errors.As(err, &ve) {
			t.Errorf("%s: %T is not a ValidationError", c.val, err)
		}
	}
}

// Every internal record comes back as it was encoded.
func TestRecordsRoundTrip(t *testing.T) {
	t.Parallel()
	cmd, res, w := benchRecords()
	key := []byte(cmd.ID)
	check := func(what string, got, want any, err error) {
		t.Helper()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v, %v\nwant %+v", what, got, err, want)
		}
	}
	b, err := EncodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	gotCmd, err := DecodeCommand(key, b)
	check("command", gotCmd, cmd, err)

	b, err = EncodeResult(res)
	if err != nil {
		t.Fatal(err)
	}
	gotRes, err := DecodeResult(key, b)
	check("result", gotRes, res, err)

	b, err = EncodeWakeup(w)
	if err != nil {
		t.Fatal(err)
	}
	gotW, err := DecodeWakeup(key, b)
	check("wake-up", gotW, w, err)

	at := time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)
	cancel := &Cancel{ID: cmd.ID, Reason: "closed", RequestedAt: at}
	b, err = EncodeCancel(cancel)
	if err != nil {
		t.Fatal(err)
	}
	c, r, err := DecodeControl(key, b)
	check("cancel", c, cancel, err)
	if r != nil {
		t.Errorf("a cancel decoded as a retry too: %+v", r)
	}

	retry := &Retry{ID: cmd.ID, AfterAttempts: 6, Reason: "fixed", RequestedAt: at}
	b, err = EncodeRetry(retry)
	if err != nil {
		t.Fatal(err)
	}
	c, r, err = DecodeControl(key, b)
	retry.Kind = ControlRetry
	check("retry", r, retry, err)
	if c != nil {
		t.Errorf("a retry decoded as a cancel too: %+v", c)
	}
}

// A record of Herald's own that does not decode, or whose id is not its
// key, is refused with the reason its dead letter gives.
func TestInternalRecordsAreChecked(t *testing.T) {
	t.Parallel()
	decoders := map[string]func(key, value []byte) error{
		"result":  func(k, v []byte) error { _, err := DecodeResult(k, v); return err },
		"wake-up": func(k, v []byte) error { _, err := DecodeWakeup(k, v); return err },
		"control": func(k, v []byte) error { _, _, err := DecodeControl(k, v); return err },
	}
	for name, dec := range decoders {
		for _, c := range []struct{ key, val, reason string }{
			{"a", `{"id":`, ReasonMalformed},
			{"a", ``, ReasonMalformed},
			{"k", `{"id":"other","kind":"hold"}`, ReasonKeyMismatch},
			{"k", `{"kind":"retry","id":"other"}`, ReasonKeyMismatch},
		} {
			err := dec([]byte(c.key), []byte(c.val))
			if got := Reason(err); err == nil || got != c.reason {
				t.Errorf("%s %q: %v (reason %s), want %s", name, c.val, err, got, c.reason)
			}
		}
	}
}

// Records in the JSON of earlier releases (still in the topics at an
// upgrade, and what docs/events.md shows) decode as they did.
func TestRecordsFromThePreviousReleaseDecode(t *testing.T) {
	t.Parallel()
	cmd, res, w := benchRecords()
	key := []byte(cmd.ID)
	if got, err := DecodeCommand(key, legacyJSON(t, cmd)); err != nil || !reflect.DeepEqual(got, cmd) {
		t.Errorf("command: %+v, %v", got, err)
	}
	if got, err := DecodeResult(key, legacyJSON(t, res)); err != nil || !reflect.DeepEqual(got, res) {
		t.Errorf("result: %+v, %v", got, err)
	}
	if got, err := DecodeWakeup(key, legacyJSON(t, w)); err != nil || !reflect.DeepEqual(got, w) {
		t.Errorf("wake-up: %+v, %v", got, err)
	}
	c, r, err := DecodeControl([]byte("x"), []byte(`{"id":"x","reason":"customer closed the account","requested_at":"2026-01-05T00:00:00Z"}`))
	if err != nil || r != nil || c == nil || c.Reason != "customer closed the account" || c.RequestedAt.IsZero() {
		t.Errorf("cancel: %+v %+v %v", c, r, err)
	}
	c, r, err = DecodeControl([]byte("x"), []byte(`{"kind":"retry","id":"x","after_attempts":6,"reason":"fixed","requested_at":"2026-01-05T00:00:00Z"}`))
	if err != nil || c != nil || r == nil || r.AfterAttempts != 6 || r.Kind != ControlRetry || r.Reason != "fixed" {
		t.Errorf("retry: %+v %+v %v", c, r, err)
	}
}

// Every record is written in the binary encoding, smaller than its JSON.
func TestRecordsAreBinary(t *testing.T) {
	t.Parallel()
	cmd, res, w := benchRecords()
	for name, enc := range map[string]func() ([]byte, error){
		"command": func() ([]byte, error) { return EncodeCommand(cmd) },
		"result":  func() ([]byte, error) { return EncodeResult(res) },
		"wake-up": func() ([]byte, error) { return EncodeWakeup(w) },
		"cancel":  func() ([]byte, error) { return EncodeCancel(&Cancel{ID: "x", RequestedAt: time.Now()}) },
		"retry":   func() ([]byte, error) { return EncodeRetry(&Retry{ID: "x", AfterAttempts: 2}) },
	} {
		b, err := enc()
		if err != nil || len(b) == 0 || b[0] != FormatProto {
			t.Errorf("%s: %q, %v", name, b, err)
		}
	}
}

// A value this release does not know travels as its name: a newer
// sender's outcome reaches the dispatcher (which treats it as permanent),
// a wake-up of a newer kind is read (and found stale), a command on an
// unknown channel is refused by its validation, not by its encoding.
func TestRecordsKeepValuesTheyDoNotKnow(t *testing.T) {
	t.Parallel()
	key := []byte("x")
	b, err := EncodeResult(&SendResult{ID: "x", Attempt: 1, Channel: "webpush", Outcome: "bounced"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := DecodeResult(key, b); err != nil || r.Outcome != "bounced" || r.Channel != "webpush" {
		t.Errorf("result: %+v, %v", r, err)
	}
	if b, err = EncodeWakeup(&Wakeup{ID: "x", Kind: "digest"}); err != nil {
		t.Fatal(err)
	}
	if w, err := DecodeWakeup(key, b); err != nil || w.Kind != "digest" {
		t.Errorf("wake-up: %+v, %v", w, err)
	}
	// retire (v1.7) came after the enum was fixed: it travels as its
	// name, so a release before it reads an unknown kind (stale), not an
	// error.
	if b, err = EncodeWakeup(&Wakeup{ID: "x", Kind: WakeupRetire, Due: time.Unix(5, 0).UTC(), SeenVersion: 9}); err != nil {
		t.Fatal(err)
	}
	var m pb.Wakeup
	if err := unmarshalOpts.Unmarshal(b[1:], &m); err != nil || m.Kind != 0 || m.KindName != "retire" {
		t.Errorf("retire wake-up on the wire: kind %v name %q, %v; want 0 and its name", m.Kind, m.KindName, err)
	}
	if w, err := DecodeWakeup(key, b); err != nil || w.Kind != WakeupRetire || w.SeenVersion != 9 {
		t.Errorf("retire wake-up: %+v, %v", w, err)
	}
	if b, err = EncodeCommand(&SendCommand{ID: "x", Channel: "fax", Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeCommand(key, b); Reason(err) != ReasonInvalid || !strings.Contains(err.Error(), `unknown channel "fax"`) {
		t.Errorf("command on channel fax: %v", err)
	}
}

// A value that is neither encoding is malformed, and says why.
func TestRecordsOfNeitherEncoding(t *testing.T) {
	t.Parallel()
	for _, v := range [][]byte{[]byte("x"), {0x02, 0x0a}, {FormatProto, 0x0a, 0x09}} {
		_, err := DecodeResult([]byte("a"), v)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", v, err)
		}
		if v[0] != FormatProto && !errors.Is(err, ErrUnknownEncoding) {
			t.Errorf("%q: %v, want ErrUnknownEncoding", v, err)
		}
	}
}

// The Go enumerations map to herald.proto's enums value for value: the
// proto name of each is its Go value in capitals, after the enum's prefix.
func TestEnumsMatchTheProto(t *testing.T) {
	t.Parallel()
	check := func(name string, goVals []string, pbNames map[int32]string, prefix string) {
		t.Helper()
		if len(goVals) != len(pbNames) {
			t.Errorf("%s: %d Go values, %d in the proto", name, len(goVals), len(pbNames))
		}
		for i, v := range goVals {
			want := prefix + strings.ToUpper(v)
			if v == "" {
				want = prefix + "UNSPECIFIED"
			}
			if pbNames[int32(i)] != want {
				t.Errorf("%s %d: Go %q, proto %s", name, i, v, pbNames[int32(i)])
			}
		}
	}
	var st, hr, ch, oc, wk []string
	for _, v := range statusEnum.fromPB {
		st = append(st, string(v))
	}
	for _, v := range holdEnum.fromPB {
		hr = append(hr, string(v))
	}
	for _, v := range channelEnum.fromPB {
		ch = append(ch, string(v))
	}
	for _, v := range outcomeEnum.fromPB {
		oc = append(oc, string(v))
	}
	for _, v := range wakeupEnum.fromPB {
		wk = append(wk, string(v))
	}
	check("status", st, pb.Status_name, "STATUS_")
	check("hold reason", hr, pb.HoldReason_name, "HOLD_REASON_")
	check("channel", ch, pb.Channel_name, "CHANNEL_")
	check("outcome", oc, pb.Outcome_name, "OUTCOME_")
	check("wake-up kind", wk, pb.WakeupKind_name, "WAKEUP_KIND_")
	// Every value the Go code knows has one.
	if len(st) != len(Statuses())+1 || len(ch) != len(Channels())+1 {
		t.Errorf("statuses %d/%d, channels %d/%d", len(st)-1, len(Statuses()), len(ch)-1, len(Channels()))
	}
}

// Readable shows a binary value as the JSON people know, and leaves
// everything else alone.
func TestReadable(t *testing.T) {
	t.Parallel()
	cmd, res, w := benchRecords()
	st := benchState(t)
	at := time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)
	cases := []struct {
		kind RecordKind
		bin  []byte
		want any
	}{
		{KindState, mustEncode(EncodeState(st)), st},
		{KindCommand, mustEncode(EncodeCommand(cmd)), cmd},
		{KindResult, mustEncode(EncodeResult(res)), res},
		{KindWakeup, mustEncode(EncodeWakeup(w)), w},
		{KindControl, mustEncode(EncodeCancel(&Cancel{ID: "x", Reason: "r", RequestedAt: at})), &Cancel{ID: "x", Reason: "r", RequestedAt: at}},
		{KindControl, mustEncode(EncodeRetry(&Retry{ID: "x", AfterAttempts: 3, RequestedAt: at})),
			&Retry{Kind: ControlRetry, ID: "x", AfterAttempts: 3, RequestedAt: at}},
	}
	for _, c := range cases {
		want, _ := json.Marshal(c.want)
		if got := Readable(c.kind, c.bin); string(got) != string(want) {
			t.Errorf("kind %d:\n got %s\nwant %s", c.kind, got, want)
		}
	}
	for _, v := range [][]byte{nil, []byte(`{"id":"x"}`), {FormatProto, 0xff}} {
		if got := Readable(KindResult, v); string(got) != string(v) {
			t.Errorf("%q shown as %q", v, got)
		}
	}
	if got := Readable(KindOther, cases[1].bin); string(got) != string(cases[1].bin) {
		t.Errorf("a value of another kind was decoded: %q", got)
	}
}

// The provider that answered and its message id travel with the result,
// in the binary encoding and in JSON.
func TestResultProviderRoundTrip(t *testing.T) {
	t.Parallel()
	res := &SendResult{ID: "n-1", Attempt: 2, Channel: ChannelSMS, Outcome: OutcomeSuccess, Code: 201,
		At: time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC), Provider: "twilio", ProviderMessageID: "SM1234567890abcdef"}
	b, err := EncodeResult(res)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeResult([]byte(res.ID), b)
	if err != nil || !reflect.DeepEqual(got, res) {
		t.Errorf("binary: got %+v, %v", got, err)
	}
	j, _ := json.Marshal(res)
	if !strings.Contains(string(j), `"provider":"twilio","provider_message_id":"SM1234567890abcdef"`) {
		t.Errorf("JSON: %s", j)
	}
	got, err = DecodeResult([]byte(res.ID), j)
	if err != nil || !reflect.DeepEqual(got, res) {
		t.Errorf("JSON: got %+v, %v", got, err)
	}
}

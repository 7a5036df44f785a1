package contract

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestDecodeCommand(t *testing.T) {
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

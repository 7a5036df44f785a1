package sender

import (
	"errors"
	"testing"

	"github.com/herald-dispatch/herald/contract"
)

func TestStale(t *testing.T) {
	cmd := &contract.SendCommand{ID: "a", Attempt: 3}
	cases := []struct {
		name  string
		state *contract.State
		want  bool
	}{
		{"unknown id (view behind)", nil, false},
		{"view behind: fewer attempts", &contract.State{Attempts: 2, Status: contract.StatusRetrying}, false},
		{"this attempt, sending", &contract.State{Attempts: 3, Status: contract.StatusSending}, false},
		{"this attempt, result applied", &contract.State{Attempts: 3, Status: contract.StatusRetrying}, true},
		{"this attempt, sent", &contract.State{Attempts: 3, Status: contract.StatusSent}, true},
		{"this attempt, failed", &contract.State{Attempts: 3, Status: contract.StatusFailed}, true},
		{"this attempt, canceled", &contract.State{Attempts: 3, Status: contract.StatusCanceled}, true},
		{"a later attempt sending", &contract.State{Attempts: 4, Status: contract.StatusSending}, true},
		{"a later attempt sent", &contract.State{Attempts: 5, Status: contract.StatusSent}, true},
	}
	for _, c := range cases {
		if got := Stale(c.state, cmd); got != c.want {
			t.Errorf("%s: Stale = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestDecodeCommand(t *testing.T) {
	ok := `{"id":"a","channel":"email","attempt":1,"address":"x@y.z","content":{}}`
	if c, err := DecodeCommand([]byte("a"), []byte(ok)); err != nil || c.ID != "a" || c.Channel != contract.ChannelEmail {
		t.Fatalf("valid: %+v %v", c, err)
	}
	cases := []struct {
		key, val, reason string
	}{
		{"a", `{"id":`, contract.ReasonMalformed},
		{"a", `[1,2]`, contract.ReasonMalformed},
		{"b", ok, contract.ReasonKeyMismatch},
		{"a", `{"id":"a","channel":"fax","attempt":1}`, contract.ReasonInvalid},
		{"a", `{"id":"a","channel":"sms","attempt":0}`, contract.ReasonInvalid},
		{"", `{"channel":"sms","attempt":1}`, contract.ReasonInvalid},
	}
	for _, c := range cases {
		_, err := DecodeCommand([]byte(c.key), []byte(c.val))
		if err == nil {
			t.Errorf("%s: no error", c.val)
			continue
		}
		if got := contract.Reason(err); got != c.reason {
			t.Errorf("%s: reason %s, want %s (%v)", c.val, got, c.reason, err)
		}
		var ve *contract.ValidationError
		if c.reason != contract.ReasonMalformed && !errors.As(err, &ve) {
			t.Errorf("%s: %T is not a ValidationError", c.val, err)
		}
	}
}

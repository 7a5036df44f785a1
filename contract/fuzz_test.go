package contract

import (
	"encoding/json"
	"errors"
	"regexp"
	"testing"
)

// fieldPath matches every field a problem may name: the contract's fields,
// with list indexes, and the Kafka key.
var fieldPath = regexp.MustCompile(`^(key|schema|id|campaign|content|not_before|expires_at|` +
	`recipient(\.(email|phone|push_token|tz))?|channels(\[\d+\])?|` +
	`policy(\.(id|version|attempts_per_channel|backoff(\.(initial|multiplier|max))?))?|` +
	`blackout(\[\d+\](\.(from|to))?)?)$`)

// FuzzDecode checks Decode's invariants on any input. The seed corpus is
// in testdata/fuzz/FuzzDecode; run the fuzzer with
//
//	go test ./contract/ -run '^$' -fuzz FuzzDecode -fuzztime 60s
//
// Invariants:
//   - Decode never panics, and returns a request or an error, never both;
//   - an error is ErrMalformed or a *ValidationError whose problems each
//     name a field of the contract and say something, with no problem
//     listed twice;
//   - the fast path and the field-by-field path agree;
//   - a decoded request marshals, and what it marshals to is a valid
//     request with its id as key that decodes and marshals to the same
//     bytes; inside a State it survives the changelog's JSON round trip.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, key, value []byte) {
		if len(key) == 0 {
			key = nil
		}
		r, err := Decode(key, value)
		if (r == nil) == (err == nil) {
			t.Fatalf("Decode = %v, %v: want exactly one", r, err)
		}
		slow, slowErr := decodeFields(key, value)
		if err != nil {
			checkDecodeError(t, err)
			if slowErr == nil {
				t.Fatalf("Decode failed (%v) where decodeFields succeeded: %+v", err, slow)
			}
			return
		}
		if slowErr != nil {
			t.Fatalf("Decode succeeded where decodeFields failed: %v", slowErr)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("a decoded request does not marshal: %v\n%+v", err, r)
		}
		if sb, _ := json.Marshal(slow); string(sb) != string(b) {
			t.Fatalf("fast and field-by-field paths differ:\n%s\n%s", b, sb)
		}
		r2, err := Decode([]byte(r.ID), b)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", b, err)
		}
		b2, err := json.Marshal(r2)
		if err != nil || string(b2) != string(b) {
			t.Fatalf("round trip changed the request (%v):\n%s\n%s", err, b, b2)
		}
		sj, err := json.Marshal(&State{ID: r.ID, Request: r})
		if err != nil {
			t.Fatalf("state with the request does not marshal: %v", err)
		}
		var s State
		if err := json.Unmarshal(sj, &s); err != nil {
			t.Fatalf("state with the request does not unmarshal: %v\n%s", err, sj)
		}
		if sj2, _ := json.Marshal(&s); string(sj2) != string(sj) {
			t.Fatalf("state round trip changed:\n%s\n%s", sj, sj2)
		}
	})
}

func checkDecodeError(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, ErrMalformed) {
		if Reason(err) != ReasonMalformed {
			t.Fatalf("Reason(%v) = %q", err, Reason(err))
		}
		return
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T %v is neither ErrMalformed nor *ValidationError", err, err)
	}
	if len(ve.Problems) == 0 {
		t.Fatal("a ValidationError without problems")
	}
	seen := map[FieldError]bool{}
	for _, p := range ve.Problems {
		if !fieldPath.MatchString(p.Field) || p.Message == "" {
			t.Fatalf("problem without a contract field or a message: %q", p)
		}
		if seen[p] {
			t.Fatalf("problem listed twice: %q in %v", p, err)
		}
		seen[p] = true
	}
	if r := Reason(err); r != ReasonInvalid && r != ReasonKeyMismatch {
		t.Fatalf("Reason(%v) = %q", err, r)
	}
}

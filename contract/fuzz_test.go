package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
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
//     bytes; inside a State it survives the changelog's round trip, in the
//     binary encoding and in the JSON of earlier releases.
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
		st := &State{ID: r.ID, Request: r}
		for name, enc := range map[string]func(*State) ([]byte, error){
			"binary": EncodeState,
			"json":   func(s *State) ([]byte, error) { return json.Marshal(s) },
		} {
			sb, err := enc(st)
			if err != nil {
				t.Fatalf("state with the request does not encode (%s): %v", name, err)
			}
			back, err := DecodeState(sb)
			if err != nil {
				t.Fatalf("state with the request does not decode (%s): %v\n%q", name, err, sb)
			}
			sj, _ := json.Marshal(st)
			if sj2, _ := json.Marshal(back); string(sj2) != string(sj) {
				t.Fatalf("state round trip (%s) changed:\n%s\n%s", name, sj, sj2)
			}
		}
	})
}

// FuzzDecodeState feeds any bytes to every decoder of the state and of
// Herald's records: none panics, each returns a value or an error, and a
// state that decodes re-encodes to a state that decodes the same. Seeds:
// a typical state and records in both encodings.
//
//	go test ./contract/ -run '^$' -fuzz FuzzDecodeState -fuzztime 60s
func FuzzDecodeState(f *testing.F) {
	s := benchState(f)
	bin, err := EncodeState(s)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bin)
	f.Add(legacyJSON(f, s))
	cmd, res, w := benchRecords()
	for _, v := range []any{cmd, res, w} {
		f.Add(legacyJSON(f, v))
	}
	for _, b := range [][]byte{mustEncode(EncodeCommand(cmd)), mustEncode(EncodeResult(res)), mustEncode(EncodeWakeup(w))} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		key := []byte(cmd.ID)
		_, _ = StateVersion(value)
		_, _ = DecodeSummary(value)
		_, _ = DecodeProgress(value)
		if c, err := DecodeCommand(key, value); (c == nil) == (err == nil) {
			t.Fatalf("DecodeCommand = %v, %v", c, err)
		}
		if r, err := DecodeResult(key, value); (r == nil) == (err == nil) {
			t.Fatalf("DecodeResult = %v, %v", r, err)
		}
		if w, err := DecodeWakeup(key, value); (w == nil) == (err == nil) {
			t.Fatalf("DecodeWakeup = %v, %v", w, err)
		}
		if c, r, err := DecodeControl(key, value); err == nil && (c == nil) == (r == nil) || err != nil && (c != nil || r != nil) {
			t.Fatalf("DecodeControl = %v, %v, %v", c, r, err)
		}
		st, err := DecodeState(value)
		if (st == nil) == (err == nil) {
			t.Fatalf("DecodeState = %v, %v", st, err)
		}
		if len(value) > 0 && value[0] == FormatProto {
			// scanState decides what protobuf's decoder would, the same way.
			pst, perr := decodeStatePB(value)
			if (err == nil) != (perr == nil) || !reflect.DeepEqual(st, pst) {
				t.Fatalf("DecodeState = %+v, %v; through protobuf's decoder %+v, %v", st, err, pst, perr)
			}
		}
		if err != nil {
			return
		}
		if sf, err := DecodeStatus(value); err != nil || !sameState(sf, statusFields(st)) {
			t.Fatalf("DecodeStatus = %+v, %v; DecodeState's fields %+v", sf, err, statusFields(st))
		}
		b, err := EncodeState(st)
		if want, werr := protoBytes(t, st); (werr == nil) != (err == nil) || err == nil && !bytes.Equal(b, want) {
			t.Fatalf("EncodeState = %x, %v; protobuf's marshaller %x, %v", b, err, want, werr)
		}
		if err != nil {
			return // a state no dispatcher writes (an applied position under another topic)
		}
		back, err := DecodeState(b)
		if err != nil {
			t.Fatalf("a re-encoded state does not decode: %v", err)
		}
		want, _ := json.Marshal(st)
		if got, _ := json.Marshal(back); string(got) != string(want) {
			t.Fatalf("re-encoded state changed:\n%s\n%s", want, got)
		}
	})
}

func mustEncode(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
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

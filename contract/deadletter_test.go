package contract

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestDeadLetterRecordKeepsBytesAndRoundTrips(t *testing.T) {
	t.Parallel()
	value := []byte("{\"id\":\"a\x00\" not json \xff")
	_, err := Decode([]byte("k"), []byte(`{"schema":"herald.dispatch.v1","id":"a\u0000"}`))
	at := time.Date(2026, 11, 29, 18, 0, 0, 123, time.UTC)
	dl := NewDeadLetter(Position{Topic: "herald.requests", Partition: 3, Offset: 42}, []byte("k"), value, err, at)
	dl.Timestamp = at.Add(-time.Minute)
	dl.Headers = []Header{{Key: "traceparent", Value: []byte("00-abc")}, {Key: HeaderDLQReason, Value: []byte("old")}}

	key, val, hs := dl.Record()
	if string(key) != "k" || string(val) != string(value) {
		t.Fatalf("record key %q value %q: want the original bytes", key, val)
	}
	names := map[string]string{}
	for _, h := range hs {
		names[h.Key] = string(h.Value)
	}
	if names[HeaderDLQReason] != ReasonInvalid || names[HeaderDLQTopic] != "herald.requests" ||
		names[HeaderDLQPartition] != "3" || names[HeaderDLQOffset] != "42" || names["traceparent"] != "00-abc" ||
		names[HeaderDLQProblems] == "" || names[HeaderDLQError] == "" {
		t.Fatalf("headers %v", names)
	}

	back, err := ParseDeadLetter(key, val, hs)
	if err != nil {
		t.Fatal(err)
	}
	dl.Headers = dl.Headers[:1] // an older dead letter's reason is replaced, not kept
	if !reflect.DeepEqual(back, dl) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, dl)
	}

	if _, err := ParseDeadLetter(key, val, nil); !errors.Is(err, ErrNotDeadLetter) {
		t.Errorf("a record without headers: %v", err)
	}
	if _, err := ParseDeadLetter(key, val, append(hs, Header{Key: HeaderDLQOffset, Value: []byte("x")})); err == nil {
		t.Errorf("a bad offset header was accepted")
	}
}

// A dead letter of a record too large for a dead letter keeps its first
// MaxDeadLetterValue bytes and says how long the original was, so that
// writing it can never fail for its size.
func TestDeadLetterOfAHugeRecordIsTruncated(t *testing.T) {
	t.Parallel()
	value := make([]byte, MaxDeadLetterValue+10)
	d := NewDeadLetter(Position{Topic: "herald.requests"}, []byte("k"), value, ErrTooLarge, time.Now())
	if len(d.Value) != MaxDeadLetterValue || d.Truncated != len(value) {
		t.Fatalf("value %d bytes, truncated %d", len(d.Value), d.Truncated)
	}
	k, v, hs := d.Record()
	back, err := ParseDeadLetter(k, v, hs)
	if err != nil || back.Truncated != len(value) || len(back.Value) != MaxDeadLetterValue {
		t.Fatalf("round trip: %+v, %v", back.Truncated, err)
	}
	small := NewDeadLetter(Position{}, nil, []byte("{}"), ErrMalformed, time.Now())
	if small.Truncated != 0 {
		t.Fatal("a small value marked truncated")
	}
}

package dlq

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
)

func TestFilter(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	e := Entry{Partition: 2, Offset: 7, Letter: contract.DeadLetter{Reason: "invalid", Topic: "herald.requests", Key: []byte("k"), At: at}}
	for _, tc := range []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{Reason: "invalid", Topic: "herald.requests", Key: "k", Since: at, Until: at.Add(time.Second), At: []string{"1@1", "2@7"}}, true},
		{Filter{Reason: "malformed"}, false},
		{Filter{Topic: "herald.results"}, false},
		{Filter{Key: "other"}, false},
		{Filter{Since: at.Add(time.Second)}, false},
		{Filter{Until: at}, false},
		{Filter{At: []string{"2@8"}}, false},
	} {
		if got := tc.f.Match(e); got != tc.want {
			t.Errorf("%+v: %v, want %v", tc.f, got, tc.want)
		}
	}
	bad := Entry{Partition: 0, Offset: 1, Err: contract.ErrNotDeadLetter}
	if !(Filter{}).Match(bad) || (Filter{Reason: "invalid"}).Match(bad) {
		t.Error("a record that is no dead letter shows only without content filters")
	}
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	d := contract.DeadLetter{Reason: "malformed", Error: "x", Topic: "herald.send", Partition: 1, Offset: 9,
		At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Key: []byte("k"), Value: []byte("raw"),
		Headers: []contract.Header{{Key: "h", Value: []byte("v")}}}
	r := Record("herald.dlq", d)
	if r.Topic != "herald.dlq" || string(r.Key) != "k" || string(r.Value) != "raw" || !r.Timestamp.Equal(d.At) {
		t.Fatalf("record %+v", r)
	}
	back, err := Parse(&kgo.Record{Key: r.Key, Value: r.Value, Headers: r.Headers})
	if err != nil || back.Topic != d.Topic || back.Offset != 9 || len(back.Headers) != 1 {
		t.Fatalf("parse: %+v %v", back, err)
	}
}

// Kgo keeps the consumed record's key, value, position, timestamp and
// headers, takes the reason from the error unless the stage names one.
func TestKgo(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := ts.Add(time.Hour)
	in := &kgo.Record{Topic: "herald.send", Partition: 2, Offset: 5, Key: []byte("k"), Value: []byte("{"), Timestamp: ts,
		Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t1")}}}
	for _, tc := range []struct {
		reason, want string
	}{{"", contract.ReasonMalformed}, {"undecodable_state", "undecodable_state"}} {
		out, dl := Kgo("herald.dlq", in, contract.ErrMalformed, tc.reason, now)
		back, err := Parse(out)
		if err != nil {
			t.Fatal(err)
		}
		if out.Topic != "herald.dlq" || dl.Reason != tc.want || back.Reason != tc.want || back.Topic != "herald.send" ||
			back.Partition != 2 || back.Offset != 5 || !back.Timestamp.Equal(ts) || !back.At.Equal(now) ||
			string(back.Key) != "k" || string(back.Value) != "{" || len(back.Headers) != 1 || string(back.Headers[0].Value) != "t1" {
			t.Errorf("reason %q: %+v", tc.reason, back)
		}
	}
}

func TestReadFixes(t *testing.T) {
	t.Parallel()
	fixes, err := ReadFixes([]byte("# comment\n\n{\"id\":\"a\",\"x\":1}\r\n  {\"id\":\"b\"}  \n"))
	if err != nil || len(fixes) != 2 || string(fixes["a"]) != `{"id":"a","x":1}` || string(fixes["b"]) != `{"id":"b"}` {
		t.Fatalf("%q %v", fixes, err)
	}
	for _, bad := range []string{`{"id":"a"}` + "\n" + `{"id":"a"}`, `{"no":"id"}`, `not json`} {
		if _, err := ReadFixes([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestFilterCheck(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	if err := (Filter{At: []string{"0@0", "11@42"}, Since: at, Until: at.Add(time.Second)}).Check(); err != nil {
		t.Errorf("good filter: %v", err)
	}
	for _, bad := range []Filter{{At: []string{"7"}}, {At: []string{"a@1"}}, {At: []string{"1@-1"}}, {At: []string{"1@x"}},
		{Since: at, Until: at}} {
		if err := bad.Check(); err == nil {
			t.Errorf("%+v passes", bad)
		}
	}
}

func TestParseWhen(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{"": {}, "90m": now.Add(-90 * time.Minute), "2026-01-02T03:04:05Z": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} {
		if got, err := ParseWhen(in, now); err != nil || !got.Equal(want) {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	if _, err := ParseWhen("yesterday", now); err == nil {
		t.Error("yesterday parses")
	}
}

// A truncated dead letter is replayed only with a fix: its value is no
// longer the original.
func TestReplaySkipsTruncatedWithoutAFix(t *testing.T) {
	t.Parallel()
	rp := &Replayer{IntakeTopic: "herald.requests", DryRun: true, Now: time.Now}
	e := Entry{Letter: contract.DeadLetter{Topic: "herald.requests", Key: []byte("k"), Value: []byte(`{"id":`), Truncated: 900000}}
	out, err := rp.Replay(context.Background(), []Entry{e})
	if err != nil || len(out) != 1 || out[0].Action != ActionSkipped || !strings.Contains(out[0].Why, "900000 bytes") {
		t.Fatalf("%+v %v", out, err)
	}
}

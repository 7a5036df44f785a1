package views

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dlq"
	"github.com/herald-dispatch/herald/internal/topology"
)

func TestDLQReaderKeepsTheNewestAndCountsAll(t *testing.T) {
	d := &DLQReader{Keep: 3}
	for i := range 5 {
		reason := contract.ReasonInvalid
		if i%2 == 0 {
			reason = contract.ReasonMalformed
		}
		d.add(dlq.Record("herald.dlq", contract.DeadLetter{Reason: reason, Error: "bad <jane@example.com>", Topic: "herald.requests",
			Offset: int64(i), Key: []byte(fmt.Sprint("k", i)), Value: []byte(`{"recipient":{"email":"jane@example.com"}}`), At: time.Now()}))
	}
	d.add(&kgo.Record{Topic: "herald.dlq", Value: []byte("not a dead letter: no headers")})
	r := d.DeadLetters(10)
	if r.Total != 6 || len(r.DeadLetters) != 3 || r.Reasons[0] != (ReasonCount{Reason: contract.ReasonMalformed, DeadLetters: 3}) {
		t.Fatalf("%+v", r)
	}
	if r.DeadLetters[0].Reason != "undecodable" || r.DeadLetters[1].Key != "k4" || r.DeadLetters[2].Key != "k3" {
		t.Errorf("newest first: %+v", r.DeadLetters)
	}
	if r.DeadLetters[1].Error != "bad <j***@example.com>" || r.DeadLetters[1].ValueBytes == 0 {
		t.Errorf("masked error %q", r.DeadLetters[1].Error)
	}
	if r := d.DeadLetters(1); len(r.DeadLetters) != 1 {
		t.Errorf("limit: %d", len(r.DeadLetters))
	}
}

func TestDLQReaderShowsReplays(t *testing.T) {
	d := &DLQReader{Keep: 2}
	replay := func(pos, id string) *kgo.Record {
		b, _ := json.Marshal(dlq.Replay{DLQ: pos, ID: id, At: time.Now()})
		return &kgo.Record{Topic: topology.TopicDLQReplays, Key: []byte(pos), Value: b}
	}
	// A replay read before its dead letter still shows.
	d.addReplay(replay("0@1", "b"))
	d.addReplay(&kgo.Record{Topic: topology.TopicDLQReplays, Key: []byte("0@0"), Value: []byte("not json")})
	for i := range 2 {
		d.add(&kgo.Record{Topic: topology.TopicDLQ, Offset: int64(i), Value: []byte("x")})
	}
	r := d.DeadLetters(10)
	if r.DeadLetters[0].DLQ != "0@1" || r.DeadLetters[0].Replayed == nil || r.DeadLetters[0].Replayed.ID != "b" || r.DeadLetters[1].Replayed != nil {
		t.Fatalf("%+v", r.DeadLetters)
	}
	// Past twice Keep, only the replays of kept dead letters stay.
	for i := range 5 {
		d.addReplay(replay(fmt.Sprint("9@", i), "old"))
	}
	if len(d.replays) > 2*d.Keep || d.DeadLetters(10).DeadLetters[0].Replayed == nil {
		t.Errorf("replays %d: %v", len(d.replays), d.replays)
	}
}

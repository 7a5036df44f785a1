package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/topology"
)

// producer records what it is asked to publish and fails the ids in fail
// with their error.
type producer struct {
	got  []*kgo.Record
	fail map[string]error
}

func (p *producer) ProduceSync(_ context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	var out kgo.ProduceResults
	for _, r := range rs {
		p.got = append(p.got, r)
		out = append(out, kgo.ProduceResult{Record: r, Err: p.fail[string(r.Key)]})
	}
	return out
}

// table knows the states in it.
type table map[string]*contract.State

func (t table) Get(id string) (*contract.State, error) { return t[id], nil }

func request(id string, edit func(m map[string]any)) []byte {
	m := map[string]any{
		"schema":    contract.SchemaV1,
		"id":        id,
		"campaign":  "c",
		"recipient": map[string]any{"email": "jane.doe@example.com", "phone": "+821012345678"},
		"channels":  []string{"email"},
		"content":   map[string]any{"template": "statement"},
	}
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func items(raws ...[]byte) []Item {
	out := make([]Item, len(raws))
	for i, r := range raws {
		out[i] = Item{Index: i, Line: i + 1, Raw: r}
	}
	return out
}

// Every item is answered, in order, and only the accepted ones are
// published, keyed by id, as they came.
func TestIngestAnswersEveryItem(t *testing.T) {
	known, err := contract.Decode(nil, request("known", nil))
	if err != nil {
		t.Fatal(err)
	}
	p := &producer{}
	in := &Ingester{Producer: p, Channels: []contract.Channel{contract.ChannelEmail},
		Table: table{"known": {ID: "known", Status: contract.StatusSent, Request: known}}}
	rs, err := in.Ingest(context.Background(), items(
		request("a", nil),
		request("a", func(m map[string]any) { m["content"] = map[string]any{"template": "other"} }),
		request("known", nil),
		[]byte(`{"schema": "herald.dispatch.v1", "id": "broken"`),
		request("sms", func(m map[string]any) { m["channels"] = []string{"sms"} }),
		request("extra", func(m map[string]any) { m["sendAt"] = "now" }),
		[]byte(strings.Repeat(" ", contract.MaxRequestBytes+1)),
	))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id, result string
		check      func(ItemResult) bool
	}{
		{"a", ResultAccepted, func(r ItemResult) bool { return len(r.Warnings) == 0 }},
		{"a", ResultDuplicate, func(r ItemResult) bool { return r.PayloadDiffers && r.Status == "" }},
		{"known", ResultDuplicate, func(r ItemResult) bool { return !r.PayloadDiffers && r.Status == contract.StatusSent }},
		{"", ResultRejected, func(r ItemResult) bool { return len(r.Errors) == 1 && r.Errors[0].Field == "json" }},
		{"sms", ResultRejected, func(r ItemResult) bool { return r.NoProvider == contract.ChannelSMS }},
		{"extra", ResultAccepted, func(r ItemResult) bool { return slices.Equal(r.Warnings, []string{"unknown field sendAt: ignored"}) }},
		{"", ResultRejected, func(r ItemResult) bool { return r.TooLarge }},
	}
	if len(rs) != len(want) {
		t.Fatalf("%d results for %d items: %+v", len(rs), len(want), rs)
	}
	for i, w := range want {
		if r := rs[i]; r.Index != i || r.Line != i+1 || r.ID != w.id || r.Result != w.result || !w.check(r) {
			t.Errorf("item %d: %+v, want id %q %s", i, r, w.id, w.result)
		}
	}
	var keys []string
	for _, r := range p.got {
		keys = append(keys, string(r.Key))
		if r.Topic != topology.TopicRequests {
			t.Errorf("published %s to %s", r.Key, r.Topic)
		}
	}
	if !slices.Equal(keys, []string{"a", "extra"}) {
		t.Fatalf("published %v, want a and extra", keys)
	}
	if string(p.got[0].Value) != string(request("a", nil)) {
		t.Fatalf("published %s, not the request as it came", p.got[0].Value)
	}
}

// Strict refuses the fields v1 does not define instead of warning.
func TestIngestStrict(t *testing.T) {
	p := &producer{}
	rs, err := (&Ingester{Producer: p, Strict: true}).Ingest(context.Background(),
		items(request("extra", func(m map[string]any) { m["sendAt"] = "now" })))
	if err != nil {
		t.Fatal(err)
	}
	if r := rs[0]; r.Result != ResultRejected || len(r.Errors) != 1 || r.Errors[0].Field != "sendAt" || r.Warnings != nil {
		t.Fatalf("strict: %+v", r)
	}
	if len(p.got) != 0 {
		t.Fatalf("published %d records", len(p.got))
	}
}

// A record the broker refuses for what it is is rejected (too large:
// TooLarge, which a single request answers 413); any other publish error
// is failed, safe to send again.
func TestIngestPublishFailures(t *testing.T) {
	p := &producer{fail: map[string]error{"big": kerr.MessageTooLarge, "down": errors.New("broker unreachable")}}
	rs, err := (&Ingester{Producer: p}).Ingest(context.Background(), items(request("big", nil), request("down", nil), request("ok", nil)))
	if err != nil {
		t.Fatal(err)
	}
	if r := rs[0]; r.Result != ResultRejected || !r.TooLarge || len(r.Errors) != 1 {
		t.Errorf("refused: %+v", r)
	}
	if r := rs[1]; r.Result != ResultFailed || r.Error != "broker unreachable" {
		t.Errorf("failed: %+v", r)
	}
	if r := rs[2]; r.Result != ResultAccepted {
		t.Errorf("accepted: %+v", r)
	}
	if got := Tally(rs); got[ResultAccepted] != 1 || got[ResultRejected] != 1 || got[ResultFailed] != 1 || got[ResultDuplicate] != 0 {
		t.Errorf("tally %v", got)
	}
}

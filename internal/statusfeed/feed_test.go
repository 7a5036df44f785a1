package statusfeed

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

func state(id string, v uint64, st contract.Status, from string) *contract.State {
	dups := 0
	if from == topology.TopicRequests && v > 1 {
		dups = 1 // the tests' second request-made version is a duplicate
	}
	return &contract.State{Duplicates: dups, ID: id, Campaign: "c", Status: st, Version: v, Channel: contract.ChannelEmail, Attempts: 1,
		UpdatedAt: time.Date(2026, 1, 15, 12, 0, int(v), 0, time.UTC), LastError: "550 <jane@example.com>",
		LastSource: contract.Position{Topic: from}, Request: &contract.Request{Recipient: contract.Recipient{Email: "jane@example.com"}}}
}

func mask(s string) string { return strings.ReplaceAll(s, "jane@example.com", "j***@example.com") }

func TestNewRecord(t *testing.T) {
	t.Parallel()
	if _, ok := NewRecord(state("a", 2, contract.StatusSending, topology.TopicRequests), ModeAll, mask); ok {
		t.Error("a duplicate request is not a status change")
	}
	r, ok := NewRecord(state("a", 1, contract.StatusSending, topology.TopicRequests), ModeAll, mask)
	if !ok || r.Schema != SchemaV1 || r.Final || r.Version != 1 || r.LastError != "550 <j***@example.com>" {
		t.Errorf("%+v", r)
	}
	if _, ok := NewRecord(state("a", 3, contract.StatusRetrying, topology.TopicResults), ModeFinal, mask); ok {
		t.Error("final mode published a retrying state")
	}
	if r, ok := NewRecord(state("a", 4, contract.StatusSent, topology.TopicResults), ModeFinal, mask); !ok || !r.Final {
		t.Errorf("final mode: %+v %v", r, ok)
	}
	for _, m := range []Mode{ModeAll, ModeFinal} {
		mem := &contract.State{ID: "a", Status: contract.StatusSent, Version: 5, UpdatedAt: time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC), Remembered: true}
		if r, ok := NewRecord(mem, m, mask); ok {
			t.Errorf("mode %v published the remembered record of a retired state: %+v", m, r)
		}
	}
	if _, err := ParseMode("some"); err == nil {
		t.Error("mode some accepted")
	}
}

func TestFeedPublishesStatusChanges(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 2})
	cl := c.Client(t)
	var recs []*kgo.Record
	for _, s := range []*contract.State{
		state("n-1", 1, contract.StatusSending, topology.TopicRequests),
		state("n-1", 2, contract.StatusSending, topology.TopicRequests), // a duplicate
		state("n-2", 1, contract.StatusSending, topology.TopicRequests),
		state("n-1", 3, contract.StatusSent, topology.TopicResults),
		state("n-2", 2, contract.StatusFailed, topology.TopicResults),
	} {
		b, _ := json.Marshal(s)
		recs = append(recs, &kgo.Record{Topic: string(topology.TableDispatcher), Key: []byte(s.ID), Value: b})
	}
	recs = append(recs, &kgo.Record{Topic: string(topology.TableDispatcher), Key: []byte("junk"), Value: []byte("{")})
	c.Produce(t, cl, recs...)

	f, err := New(Config{Topology: c.Topology})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()
	got := c.Consume(t, topology.TopicStatus, 20*time.Second, func(rs []*kgo.Record) bool { return len(rs) >= 4 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	versions := map[string][]uint64{}
	for _, r := range got {
		var rec Record
		if err := json.Unmarshal(r.Value, &rec); err != nil || rec.ID != string(r.Key) || rec.Schema != SchemaV1 {
			t.Fatalf("%s: %s (%v)", r.Key, r.Value, err)
		}
		if strings.Contains(string(r.Value), "jane@example.com") && f.cfg.Mask != nil {
			t.Errorf("unmasked: %s", r.Value)
		}
		versions[rec.ID] = append(versions[rec.ID], rec.Version)
	}
	if len(got) != 4 || len(versions["n-1"]) != 2 || versions["n-1"][0] != 1 || versions["n-1"][1] != 3 ||
		len(versions["n-2"]) != 2 || versions["n-2"][1] != 2 {
		t.Errorf("published versions %v (%d records)", versions, len(got))
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dlqpkg "github.com/herald-dispatch/herald/internal/dlq"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

func dlqRequest(id string) string {
	return `{"schema":"herald.dispatch.v1","id":"` + id + `","campaign":"c","recipient":{"email":"jane@example.com"},"channels":["email"],"content":{"subject":"hi"}}`
}

// TestDLQListShowReplay dead-letters records through the dispatcher, then
// lists, shows and replays them with `herald dlq`: filters, the dry run, a
// fix-up file, the replay record, and dedup of a replayed id that was
// already dispatched.
func TestDLQListShowReplay(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 2})
	run := startRun(t, c, "--http-addr", "off", "--stages", "dispatcher", "--log-level", "error")
	cl := c.Client(t)
	broken := []byte(`{"schema":"herald.dispatch.v1","id":"dup-1"`)
	c.Produce(t, cl,
		&kgo.Record{Topic: topology.TopicRequests, Key: []byte("dup-1"), Value: []byte(dlqRequest("dup-1"))},
		&kgo.Record{Topic: topology.TopicRequests, Key: []byte("dup-1"), Value: broken},
		&kgo.Record{Topic: topology.TopicRequests, Key: []byte("fix-1"), Value: []byte(`{"schema":"herald.dispatch.v1","id":"fix-1","campaign":"c"}`),
			Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-1")}}},
		&kgo.Record{Topic: topology.TopicRequests, Key: []byte("nul\x00"), Value: []byte(dlqRequest(`nul\u0000`))},
		&kgo.Record{Topic: topology.TopicResults, Key: []byte("dup-1"), Value: []byte(`not json`)},
	)
	raw := c.Consume(t, topology.TopicDLQ, 30*time.Second, func(rs []*kgo.Record) bool { return len(rs) >= 4 })
	if len(raw) != 4 {
		t.Fatalf("%d dead letters, want 4", len(raw))
	}
	for _, r := range raw {
		if string(r.Key) == "dup-1" && r.Headers[0].Key == contract.HeaderDLQReason && !bytes.Equal(r.Value, broken) &&
			!bytes.Equal(r.Value, []byte("not json")) {
			t.Errorf("dead letter value %q is not the original bytes", r.Value)
		}
	}
	dlq := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := runDLQ(context.Background(), stdio{out: &out, err: io.Discard}, append(args, brokersFlag(c)...)); err != nil {
			t.Fatalf("dlq %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	lines := func(s string) []map[string]any {
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil {
				out = append(out, m)
			}
		}
		return out
	}

	if got := lines(dlq("list", "--json")); len(got) != 4 {
		t.Fatalf("list: %d entries, want 4", len(got))
	}
	got := lines(dlq("list", "--json", "--reason", "malformed", "--topic", topology.TopicRequests))
	if len(got) != 1 || got[0]["key"] != "dup-1" || got[0]["replayed"] != nil {
		t.Fatalf("list --reason malformed --topic requests: %v", got)
	}
	if got := lines(dlq("list", "--json", "--reason", "invalid", "--since", "1h")); len(got) != 2 {
		t.Errorf("list --reason invalid --since 1h: %v", got)
	}
	if got := lines(dlq("list", "--json", "--until", "2020-01-01T00:00:00Z")); len(got) != 0 {
		t.Errorf("list --until 2020: %v", got)
	}
	if out := dlq("list", "--topic", topology.TopicResults); !strings.Contains(out, "herald.results/") || !strings.Contains(out, "1 dead letter(s)") {
		t.Errorf("list table:\n%s", out)
	}
	nul := lines(dlq("list", "--json", "--key", "nul\x00"))
	if len(nul) != 1 || !strings.Contains(nul[0]["error"].(string), "control characters") {
		t.Fatalf("the NUL id's dead letter: %v", nul)
	}
	if out := dlq("show", "--at", nul[0]["dlq"].(string)); !strings.Contains(out, `j***@example.com`) || strings.Contains(out, "jane@") {
		t.Errorf("show masks addresses:\n%s", out)
	}

	readAll := func(topic string) []*kgo.Record {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		recs, err := dlqpkg.ReadTopic(ctx, c.Topology.KgoOpts(), topic)
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	sendsFor := func(id string) int {
		n := 0
		for _, r := range readAll(topology.TopicSend) {
			if string(r.Key) == id {
				n++
			}
		}
		return n
	}
	countRequests := func() int { return len(readAll(topology.TopicRequests)) }
	before := countRequests()
	if out := dlq("replay", "--dry-run", "--topic", topology.TopicRequests); !strings.Contains(out, "0 replayed, 0 would be replayed, 3 skipped") ||
		!strings.Contains(out, "still not a valid request: malformed record") {
		t.Errorf("dry run without fixes:\n%s", out)
	}
	fix := filepath.Join(t.TempDir(), "fix.jsonl")
	os.WriteFile(fix, []byte("# corrected\n"+dlqRequest("dup-1")+"\n"+dlqRequest("fix-1")+"\n"), 0o600)
	if out := dlq("replay", "--dry-run", "--fix", fix); !strings.Contains(out, "0 replayed, 2 would be replayed, 2 skipped") {
		t.Errorf("dry run with fixes:\n%s", out)
	}
	if n := countRequests(); n != before {
		t.Fatalf("the dry run published: %d requests, was %d", n, before)
	}
	// A replay asks first, naming the cluster; no answer, or "n",
	// publishes nothing.
	for _, answer := range []string{"", "n\n"} {
		var out, msgs bytes.Buffer
		err := runDLQ(context.Background(), stdio{in: strings.NewReader(answer), out: &out, err: &msgs},
			append([]string{"replay", "--fix", fix}, brokersFlag(c)...))
		if !errors.Is(err, errNotConfirmed) {
			t.Fatalf("replay answered %q: err = %v", answer, err)
		}
		if want := "Replay 2 dead letter(s) into herald.requests of the Kafka cluster at " + strings.Join(c.Brokers, ","); !strings.Contains(msgs.String(), want) {
			t.Errorf("the question is %q, want it to say %q", msgs.String(), want)
		}
	}
	if n := countRequests(); n != before {
		t.Fatalf("an unconfirmed replay published: %d requests, was %d", n, before)
	}
	var confirmed, msgs bytes.Buffer
	if err := runDLQ(context.Background(), stdio{in: strings.NewReader("y\n"), out: &confirmed, err: &msgs},
		append([]string{"replay", "--fix", fix}, brokersFlag(c)...)); err != nil {
		t.Fatalf("confirmed replay: %v\n%s", err, msgs.String())
	}
	out := confirmed.String()
	if !strings.Contains(out, "2 replayed, 0 would be replayed, 2 skipped") || !strings.Contains(out, "only requests are replayed") ||
		!strings.Contains(out, "no fix for key") {
		t.Fatalf("replay --fix:\n%s", out)
	}
	// dup-1 was dispatched before: its replay is a duplicate; fix-1 is
	// sent once.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		run.waitFor(30*time.Second, what, cond)
	}
	waitFor("fix-1 sent", func() bool { return sendsFor("fix-1") == 1 })
	duplicates := func(id string, n int) func() bool {
		return func() bool {
			for _, r := range readAll(string(topology.TableDispatcher)) {
				if st, err := contract.DecodeState(r.Value); err == nil && st.ID == id && st.Duplicates == n {
					return true
				}
			}
			return false
		}
	}
	waitFor("dup-1's replay counted as a duplicate", duplicates("dup-1", 1))
	if n := sendsFor("dup-1"); n != 1 {
		t.Errorf("dup-1 has %d send commands after its replay, want 1 (a duplicate)", n)
	}
	// The replays are recorded: the same command replays nothing now.
	if out := dlq("replay", "--fix", fix, "--yes"); !strings.Contains(out, "0 replayed, 0 would be replayed, 4 skipped") || !strings.Contains(out, "replayed already") {
		t.Errorf("second replay:\n%s", out)
	}
	if got := lines(dlq("list", "--json", "--key", "fix-1")); len(got) != 1 || got[0]["replayed"] == nil {
		t.Errorf("list after replay: %v", got)
	}
	if out := dlq("replay", "--fix", fix, "--again", "--key", "fix-1", "--yes"); !strings.Contains(out, "1 replayed") {
		t.Errorf("--again:\n%s", out)
	}
	waitFor("fix-1's second replay counted as a duplicate", duplicates("fix-1", 1))
	if n := sendsFor("fix-1"); n != 1 {
		t.Errorf("fix-1 has %d send commands after a second replay, want 1", n)
	}
}

// Reading the DLQ of a cluster without it fails and creates nothing.
func TestDLQListCreatesNothing(t *testing.T) {
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1})
	ctx := context.Background()
	adm := kadm.NewClient(c.Client(t))
	if _, err := adm.DeleteTopics(ctx, topology.TopicDLQ, topology.TopicDLQReplays); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := runDLQ(ctx, stdio{out: &out, err: io.Discard}, append([]string{"list"}, brokersFlag(c)...))
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("list without a DLQ topic: %v", err)
	}
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has(topology.TopicDLQ) || topics.Has(topology.TopicDLQReplays) {
		t.Errorf("dlq list created a topic: %v", topics.Names())
	}
}

// `herald dlq show` prints a dead-lettered record of Herald's, which is
// binary, as its JSON: by its topic, or by the topic a delay tier's record
// was bound for; a request stays as it was.
func TestDLQShowDecodesHeraldsRecords(t *testing.T) {
	at := time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)
	res, err := contract.EncodeResult(&contract.SendResult{ID: "r-1", Attempt: 1, Channel: contract.ChannelEmail,
		Outcome: contract.OutcomeTransient, Error: "503 for jane@example.com", At: at})
	if err != nil {
		t.Fatal(err)
	}
	wake, err := contract.EncodeWakeup(&contract.Wakeup{ID: "w-1", Kind: contract.WakeupHold, Due: at})
	if err != nil {
		t.Fatal(err)
	}
	entries := []dlqpkg.Entry{
		{Letter: contract.DeadLetter{Topic: topology.TopicResults, Key: []byte("r-1"), Value: res}},
		{Letter: contract.DeadLetter{Topic: topology.TierTopics()[0], Key: []byte("w-1"), Value: wake,
			Headers: []contract.Header{{Key: "herald-target", Value: []byte(topology.TopicWakeups)}}}},
		{Letter: contract.DeadLetter{Topic: topology.TopicRequests, Key: []byte("q-1"), Value: []byte(dlqRequest("q-1"))}},
	}
	var out bytes.Buffer
	if err := printDLQShow(&out, entries, true, false, nil); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&out)
	var values []string
	for range entries {
		var row struct{ Value string }
		if err := dec.Decode(&row); err != nil {
			t.Fatal(err)
		}
		values = append(values, row.Value)
	}
	if !strings.Contains(values[0], `"outcome":"transient"`) || !strings.Contains(values[0], "j***@example.com") {
		t.Errorf("result shown as %q", values[0])
	}
	if !strings.Contains(values[1], `"kind":"hold"`) {
		t.Errorf("parked wake-up shown as %q", values[1])
	}
	if values[2] != strings.ReplaceAll(dlqRequest("q-1"), "jane@example.com", "j***@example.com") {
		t.Errorf("request shown as %q", values[2])
	}
}

// Without --brokers, `herald dlq` reads the cluster `herald run` would
// start at HERALD_BROKER_ADDR (not whatever answers at 127.0.0.1:9092), and
// says which cluster it reads.
func TestDLQFollowsRunsBrokerAddr(t *testing.T) {
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1})
	t.Setenv("HERALD_BROKER_ADDR", c.Brokers[0])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, msgs bytes.Buffer
	if err := runDLQ(ctx, stdio{out: &out, err: &msgs}, []string{"list"}); err != nil {
		t.Fatalf("dlq list with HERALD_BROKER_ADDR=%s: %v", c.Brokers[0], err)
	}
	if want := "the Kafka cluster at " + c.Brokers[0] + " (--broker-addr"; !strings.Contains(msgs.String(), want) {
		t.Errorf("dlq list said %q, want %q", msgs.String(), want)
	}
	if !strings.Contains(out.String(), "0 dead letter(s)") {
		t.Errorf("dlq list:\n%s", out.String())
	}
}

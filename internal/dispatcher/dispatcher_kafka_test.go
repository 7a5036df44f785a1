package dispatcher_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	heralddlq "github.com/herald-dispatch/herald/internal/dlq"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/gokax"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

// requestJSON renders a valid v1 request.
func requestJSON(id string) []byte {
	return []byte(fmt.Sprintf(`{"schema":"herald.dispatch.v1","id":%q,"campaign":"billing-2026-01",
		"recipient":{"email":"user@example.com","phone":"+821012345678","tz":"Asia/Seoul"},
		"channels":["email","sms"],"content":{"subject":"Your bill"},
		"policy":{"id":"billing","version":3}}`, id))
}

// badRecords are the malformed or invalid records of the foundation test,
// each with the DLQ reason it must get.
func badRecords(n int) (recs []*kgo.Record, reasons map[string]string) {
	reasons = map[string]string{}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("bad-%03d", i)
		var key, val string
		reason := contract.ReasonInvalid
		switch i % 6 {
		case 0:
			key, val, reason = id, `{"schema":"herald.dispatch.v1","id":`, contract.ReasonMalformed
		case 1:
			key, val = id, `{"schema":"herald.dispatch.v1","campaign":"c","recipient":{"email":"a@b.c"},"channels":["email"],"content":{}}`
		case 2:
			key, val = id, fmt.Sprintf(`{"schema":"herald.dispatch.v1","id":%q,"campaign":"c","recipient":{"email":"a@b.c"},"channels":["fax"],"content":{}}`, id)
		case 3:
			key, val = id, fmt.Sprintf(`{"schema":"herald.dispatch.v1","id":%q,"campaign":"c","recipient":{"email":"a@b.c","tz":"Mars/Olympus"},"channels":["email"],"content":{}}`, id)
		case 4:
			key, val = id, fmt.Sprintf(`{"schema":"herald.dispatch.v1","id":%q,"campaign":"c","recipient":{"email":"a@b.c"},"channels":["email"],"content":{},"blackout":[{"from":"22:00","to":"22:00"}]}`, id)
		case 5:
			key, val, reason = id+"-other-key", string(requestJSON(id)), contract.ReasonKeyMismatch
		}
		recs = append(recs, &kgo.Record{Topic: topology.TopicRequests, Key: []byte(key), Value: []byte(val)})
		reasons[key] = reason
	}
	return recs, reasons
}

// TestDispatcherFoundation is the foundation issue's acceptance test:
// 10,000 valid requests of which 2,000 repeat earlier ids, plus 100
// malformed or invalid records, published around a restart of the
// dispatcher. Exactly one send command per unique id, exactly 100 dead
// letters with their reasons, and duplicates published after the restart
// are still recognised from the recovered table.
func TestDispatcherFoundation(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test")
	}
	const unique, dups, bad = 8000, 2000, 100
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 4})
	storage := filepath.Join(t.TempDir(), "goka")
	cl := c.Client(t)

	ids := make([]string, unique)
	for i := range ids {
		ids[i] = fmt.Sprintf("2026-01:user-%05d:bill", i)
	}
	// First wave: 6,000 unique ids, 1,000 duplicates of them, half the bad records.
	var first, second []*kgo.Record
	for i := 0; i < 6000; i++ {
		first = append(first, &kgo.Record{Topic: topology.TopicRequests, Key: []byte(ids[i]), Value: requestJSON(ids[i])})
		if i%6 == 5 {
			first = append(first, &kgo.Record{Topic: topology.TopicRequests, Key: []byte(ids[i-3]), Value: requestJSON(ids[i-3])})
		}
	}
	badRecs, reasons := badRecords(bad)
	first = append(first, badRecs[:bad/2]...)
	// Second wave, after the restart: the other 2,000 ids, and 1,000
	// duplicates of ids from the first wave.
	for i := 6000; i < unique; i++ {
		second = append(second, &kgo.Record{Topic: topology.TopicRequests, Key: []byte(ids[i]), Value: requestJSON(ids[i])})
	}
	for i := 0; i < 1000; i++ {
		id := ids[i*6]
		second = append(second, &kgo.Record{Topic: topology.TopicRequests, Key: []byte(id), Value: requestJSON(id)})
	}
	second = append(second, badRecs[bad/2:]...)
	if got := len(first) + len(second); got != unique+dups+bad {
		t.Fatalf("test setup: %d records, want %d", got, unique+dups+bad)
	}

	d := heraldtest.StartDispatcher(t, c, heraldtest.DispatcherOptions{Storage: storage})
	start := time.Now()
	c.Produce(t, cl, first...)
	// Stop mid-stream: once some, but not all, commands are out.
	heraldtest.WaitFor(t, 60*time.Second, "the first commands", func() bool { return c.Count(t, topology.TopicSend) > 1000 })
	d.Stop()
	t.Logf("first wave stopped after %v", time.Since(start))

	c.Produce(t, cl, second...)
	heraldtest.StartDispatcher(t, c, heraldtest.DispatcherOptions{Storage: storage})

	sends := c.Consume(t, topology.TopicSend, 90*time.Second, func(rs []*kgo.Record) bool { return len(rs) >= unique })
	dlq := c.Consume(t, topology.TopicDLQ, 30*time.Second, func(rs []*kgo.Record) bool { return len(rs) >= bad })
	t.Logf("all commands out after %v", time.Since(start))
	// Give a wrongly duplicated command a moment to show up.
	time.Sleep(2 * time.Second)
	if n := c.Count(t, topology.TopicSend); n != unique {
		t.Errorf("herald.send has %d commands, want exactly %d", n, unique)
	}
	seen := map[string]bool{}
	for _, r := range sends {
		cmd, err := contract.DecodeCommand(r.Key, r.Value)
		if err != nil {
			t.Fatalf("send command: %v", err)
		}
		if seen[cmd.ID] {
			t.Errorf("two send commands for %s", cmd.ID)
		}
		seen[cmd.ID] = true
		if string(r.Key) != cmd.ID || cmd.Attempt != 1 || cmd.Channel != contract.ChannelEmail || cmd.Address != "user@example.com" {
			t.Errorf("bad command %+v (key %s)", cmd, r.Key)
		}
		if want := topology.Partition(cmd.ID, c.Topology.Partitions); r.Partition != want {
			t.Errorf("command %s on partition %d, want %d (co-partitioning)", cmd.ID, r.Partition, want)
		}
	}
	if len(seen) != unique {
		t.Errorf("%d distinct ids commanded, want %d", len(seen), unique)
	}

	if n := c.Count(t, topology.TopicDLQ); n != bad {
		t.Errorf("herald.dlq has %d records, want exactly %d", n, bad)
	}
	for _, r := range dlq {
		dl, err := heralddlq.Parse(r)
		if err != nil {
			t.Fatalf("dead letter: %v", err)
		}
		if want := reasons[string(dl.Key)]; dl.Reason != want {
			t.Errorf("dead letter %s: reason %q, want %q (%s)", dl.Key, dl.Reason, want, dl.Error)
		}
		if dl.Topic != topology.TopicRequests || dl.Error == "" || len(dl.Value) == 0 {
			t.Errorf("dead letter %s lacks its source or bytes: %+v", dl.Key, dl)
		}
	}

	// The table counts every duplicate exactly once, across the restart.
	view := c.TableView(t)
	total := 0
	for _, id := range ids {
		s := view.State(id)
		if s == nil {
			t.Fatalf("no state for %s", id)
		}
		total += s.Duplicates
		if s.Status != contract.StatusSending || s.Attempts != 1 {
			t.Errorf("%s: status %s attempts %d, want sending/1", id, s.Status, s.Attempts)
		}
	}
	if total != dups {
		t.Errorf("table counts %d duplicates, want %d", total, dups)
	}
}

// BenchmarkDispatcherKafka measures the dispatcher's throughput on the
// embedded broker: b.N requests are published first, then a dispatcher
// starts and the clock runs until every send command is out. It reports
// requests per second.
func BenchmarkDispatcherKafka(b *testing.B) {
	c := heraldtest.StartKafka(b, heraldtest.Options{Partitions: 12})
	cl := c.Client(b)
	n := b.N
	if n < 20000 {
		n = 20000
	}
	recs := make([]*kgo.Record, n)
	for i := range recs {
		id := fmt.Sprintf("bench-%07d", i)
		recs[i] = &kgo.Record{Topic: topology.TopicRequests, Key: []byte(id), Value: requestJSON(id)}
	}
	c.Produce(b, cl, recs...)
	b.ResetTimer()
	start := time.Now()
	d := heraldtest.StartDispatcher(b, c, heraldtest.DispatcherOptions{Log: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	adm := kadm.NewClient(c.Client(b))
	for {
		ends, err := adm.ListEndOffsets(ctx, topology.TopicSend)
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		ends.Each(func(o kadm.ListedOffset) { got += int(o.Offset) })
		if got >= n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	d.Stop()
	b.ReportMetric(float64(n)/el.Seconds(), "requests/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRestartToReady measures how long a dispatcher takes from its
// start to ready (every partition's table recovered) when its local store
// already holds N states it wrote itself: HERALD_BENCH_STATES, default
// 100,000. Goka stores the changelog offset of its own writes, so the
// restart reads only what is new; a producer wrapper that dropped the
// acknowledged message made every restart read all N again, which is what
// cold-recovery-s (the same start with an empty store) measures.
func BenchmarkRestartToReady(b *testing.B) {
	n := 100000
	if v := os.Getenv("HERALD_BENCH_STATES"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil {
			b.Fatalf("HERALD_BENCH_STATES=%q: %v", v, err)
		}
	}
	c := heraldtest.StartKafka(b, heraldtest.Options{Partitions: 12})
	cl := c.Client(b)
	for start := 0; start < n; start += 10000 {
		var recs []*kgo.Record
		for i := start; i < min(n, start+10000); i++ {
			id := fmt.Sprintf("bench-%07d", i)
			recs = append(recs, &kgo.Record{Topic: topology.TopicRequests, Key: []byte(id), Value: requestJSON(id)})
		}
		c.Produce(b, cl, recs...)
	}
	dir := b.TempDir()
	log := slog.New(slog.DiscardHandler)
	run := func(dir string, until func(*gokax.Supervisor) bool) time.Duration {
		start := time.Now()
		d := heraldtest.StartDispatcher(b, c, heraldtest.DispatcherOptions{Storage: dir, Log: log})
		for !until(d.Supervisor) {
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(start)
		d.Stop()
		return took
	}
	adm := kadm.NewClient(cl)
	first := run(dir, func(*gokax.Supervisor) bool {
		ends, err := adm.ListEndOffsets(context.Background(), string(topology.TableDispatcher))
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		ends.Each(func(o kadm.ListedOffset) { got += int(o.Offset) })
		return got >= n
	})
	b.ResetTimer()
	restart := run(dir, func(s *gokax.Supervisor) bool { return s.Ready() })
	b.StopTimer()
	// The same start with an empty local store reads all N states from the
	// changelog: what every restart cost while the producer wrapper
	// dropped the acknowledged message (everything written since the
	// previous recovery was read again), and what a new instance taking
	// over the partitions costs today.
	cold := run(b.TempDir(), func(s *gokax.Supervisor) bool { return s.Ready() })
	b.ReportMetric(first.Seconds(), "dispatch-s")
	b.ReportMetric(restart.Seconds(), "restart-to-ready-s")
	b.ReportMetric(cold.Seconds(), "cold-recovery-s")
	b.ReportMetric(float64(n), "states")
	b.ReportMetric(0, "ns/op")
}

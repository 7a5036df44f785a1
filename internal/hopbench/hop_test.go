package hopbench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/delay"
	"github.com/herald-dispatch/herald/internal/dispatcher"
	"github.com/herald-dispatch/herald/internal/gokax"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/migrations"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/herald-dispatch/herald/internal/sender"
	"github.com/herald-dispatch/herald/internal/sink"
	"github.com/herald-dispatch/herald/internal/statusfeed"
	"github.com/herald-dispatch/herald/internal/tableview"
	"github.com/herald-dispatch/herald/internal/topology"
)

// The throwaway PostgreSQL of the sink's hop is started on first use, once
// per test binary: a run without benchmarks starts nothing.
func TestMain(m *testing.M) { heraldtest.PostgresMain(m) }

// partitions of every topic: Herald's default, and the load test's.
const partitions = 12

// dispatchConfig is the dispatcher's configuration in every hop.
var dispatchConfig = dispatcher.DispatchConfig{DefaultLoc: time.UTC, SendTimeout: time.Hour}

// requestJSON is a billing notification: two channels, a zone, a policy
// with backoff; with a not_before when nb is not zero.
func requestJSON(id string, nb time.Time) []byte {
	notBefore := ""
	if !nb.IsZero() {
		notBefore = fmt.Sprintf(`,"not_before":%q`, nb.UTC().Format(time.RFC3339Nano))
	}
	return fmt.Appendf(nil, `{"schema":"herald.dispatch.v1","id":%q,"campaign":"billing-2026-01",`+
		`"recipient":{"email":"jane@example.com","phone":"+821012345678","tz":"Asia/Seoul"},"channels":["email","sms"],`+
		`"content":{"template":"statement","amount":"42.00","currency":"EUR","period":"2026-01"},`+
		`"policy":{"id":"billing","version":3,"attempts_per_channel":3,"backoff":{"initial":"1s","multiplier":2,"max":"10m"}}%s}`,
		id, notBefore)
}

func id(i int) string { return fmt.Sprintf("2026-01:acct-%07d:bill", i) }

// requests are n requests for ids 0..n-1.
func requests(n int, nb time.Time) []*kgo.Record {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topology.TopicRequests, Key: []byte(id(i)), Value: requestJSON(id(i), nb)}
	}
	return recs
}

// successes are the provider's successes for the first send command of
// ids 0..n-1, as the sender publishes them.
func successes(b *testing.B, n int) []*kgo.Record {
	now := time.Now()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		v, err := contract.EncodeResult(&contract.SendResult{ID: id(i), Attempt: 1, Channel: contract.ChannelEmail,
			Outcome: contract.OutcomeSuccess, Code: 202, At: now, Latency: contract.Duration(30 * time.Millisecond)})
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: topology.TopicResults, Key: []byte(id(i)), Value: v}
	}
	return recs
}

// sentStates are the changelog records of n notifications sent on their
// first attempt: each made by Dispatch from a request and a success, as
// the dispatcher writes them.
func sentStates(b *testing.B, n int) []*kgo.Record {
	now := time.Now()
	recs := make([]*kgo.Record, n)
	results := successes(b, n)
	for i := range recs {
		s := sentState(b, id(i), results[i].Value, now)
		v, err := contract.EncodeState(s)
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: string(topology.TableDispatcher), Key: []byte(s.ID), Value: v}
	}
	return recs
}

// sentState is Dispatch's state after a request and the success result.
func sentState(b *testing.B, id string, result []byte, now time.Time) *contract.State {
	req, err := contract.Decode([]byte(id), requestJSON(id, time.Time{}))
	if err != nil {
		b.Fatal(err)
	}
	res, err := contract.DecodeResult([]byte(id), result)
	if err != nil {
		b.Fatal(err)
	}
	d := dispatcher.Dispatch(nil, dispatcher.Event{Source: contract.Position{Topic: topology.TopicRequests, Offset: 1}, Request: req}, now, dispatchConfig)
	d = dispatcher.Dispatch(d.State, dispatcher.Event{Source: contract.Position{Topic: topology.TopicResults, Offset: 1}, Result: res}, now, dispatchConfig)
	if d.State == nil || d.State.Status != contract.StatusSent {
		b.Fatalf("set-up: %s is not sent after its success (%s)", id, d.Verdict)
	}
	return d.State
}

// cluster starts the test broker in a process of its own and publishes
// recs to it.
func cluster(b *testing.B, recs ...*kgo.Record) *brokerProcess {
	b.Helper()
	c := startBroker(b)
	produce(b, c.Cluster, recs...)
	return c
}

func produce(b *testing.B, c *heraldtest.Cluster, recs ...*kgo.Record) {
	b.Helper()
	if len(recs) > 0 {
		c.Produce(b, c.Client(b, kgo.MaxBufferedRecords(len(recs)+1)), recs...)
	}
}

// startDispatcher runs the dispatcher as herald run wires it, with its
// storage in dir, clock now (nil: the wall clock) and observer obs (nil:
// none).
func startDispatcher(b *testing.B, c *heraldtest.Cluster, dir string, now func() time.Time, obs dispatcher.DispatchObserver) *heraldtest.Dispatcher {
	return heraldtest.StartDispatcher(b, c, heraldtest.DispatcherOptions{Config: dispatchConfig, Now: now, Observer: obs, Storage: dir})
}

// events counts the records the dispatcher's callback decided on: a
// drain's taken.
type events struct{ n atomic.Int64 }

func (e *events) Event(string, dispatcher.Verdict)                             { e.n.Add(1) }
func (e *events) Transition(contract.Status, contract.Status, *contract.State) {}
func (e *events) DeadLetter(string, string)                                    {}

// noDeadLetters fails the benchmark when a hop dead-lettered anything: its
// figures would not be those of the hop.
func noDeadLetters(b *testing.B, c *heraldtest.Cluster) {
	b.Helper()
	if n := records(b, c, topology.TopicDLQ, 0)(); n != 0 {
		b.Fatalf("%d records went to %s", n, topology.TopicDLQ)
	}
}

// BenchmarkHop1Request: a new request -> the dispatcher: the request
// decoded, a state written to the table, a send command emitted.
func BenchmarkHop1Request(b *testing.B) {
	c := cluster(b, requests(b.N, time.Time{})...)
	var ev events
	d := drain(b, b.N, c, func() { startDispatcher(b, c.Cluster, b.TempDir(), nil, &ev) }, ev.n.Load, records(b, c.Cluster, topology.TopicSend, 0))
	noDeadLetters(b, c.Cluster)
	d.report(b)
}

// BenchmarkHop2Result: a success result for a sending state -> the
// dispatcher: the state written as sent, nothing emitted.
func BenchmarkHop2Result(b *testing.B) {
	c := cluster(b, requests(b.N, time.Time{})...)
	dir := b.TempDir()
	disp := startDispatcher(b, c.Cluster, dir, nil, nil)
	waitRecords(b, c.Cluster, topology.TopicSend, int64(b.N))
	waitRecords(b, c.Cluster, string(topology.TableDispatcher), int64(b.N))
	disp.Stop()
	produce(b, c.Cluster, successes(b, b.N)...)
	var ev events
	d := drain(b, b.N, c, func() { startDispatcher(b, c.Cluster, dir, nil, &ev) }, ev.n.Load, records(b, c.Cluster, string(topology.TableDispatcher), int64(b.N)))
	noDeadLetters(b, c.Cluster)
	d.report(b)
}

// BenchmarkHop3Wakeup: the due hold wake-up of a scheduled state -> the
// dispatcher: the state written as sending, a send command emitted. The
// wake-ups are the ones the dispatcher scheduled (copied from the delay
// tiers to herald.wakeups, as the delay stage releases them), and the
// dispatcher's clock is moved past their due time.
func BenchmarkHop3Wakeup(b *testing.B) {
	notBefore := time.Now().Add(time.Hour)
	c := cluster(b, requests(b.N, notBefore)...)
	dir := b.TempDir()
	clock := new(heraldtest.ShiftedClock)
	disp := startDispatcher(b, c.Cluster, dir, clock.Now, nil)
	waitRecords(b, c.Cluster, string(topology.TableDispatcher), int64(b.N))
	var wakeups []*kgo.Record
	for _, t := range topology.TierTopics() {
		if records(b, c.Cluster, t, 0)() > 0 {
			for _, r := range c.ReadAll(b, t) {
				wakeups = append(wakeups, &kgo.Record{Topic: topology.TopicWakeups, Key: r.Key, Value: r.Value})
			}
		}
	}
	disp.Stop()
	if len(wakeups) != b.N {
		b.Fatalf("set-up: %d wake-ups scheduled for %d requests", len(wakeups), b.N)
	}
	produce(b, c.Cluster, wakeups...)
	clock.ShiftTo(notBefore.Add(time.Minute))
	var ev events
	d := drain(b, b.N, c, func() { startDispatcher(b, c.Cluster, dir, clock.Now, &ev) }, ev.n.Load, records(b, c.Cluster, topology.TopicSend, 0))
	noDeadLetters(b, c.Cluster)
	d.report(b)
}

// BenchmarkHop4Sender: a send command -> the sender -> the in-process mock
// provider answering at once (mock://, no latency) -> the result published.
// The commands are the dispatcher's; the sender checks each against a view
// of the table first, as herald run does by default (--send-stale-check).
func BenchmarkHop4Sender(b *testing.B) {
	c := cluster(b, requests(b.N, time.Time{})...)
	disp := startDispatcher(b, c.Cluster, b.TempDir(), nil, nil)
	waitRecords(b, c.Cluster, topology.TopicSend, int64(b.N))
	waitRecords(b, c.Cluster, string(topology.TableDispatcher), int64(b.N))
	disp.Stop()
	set, err := provider.OpenSet([]string{"email=mock://?latency=0", "sms=mock://?latency=0"}, provider.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { set.Close() })
	view, err := tableview.NewStateView(c.Topology, b.TempDir(), heraldtest.QuietLog())
	if err != nil {
		b.Fatal(err)
	}
	counts := &clientCounts{in: topology.TopicSend, out: topology.TopicResults}
	s, err := sender.New(sender.Config{Topology: c.Topology, Providers: set, State: tableview.ProgressReader{View: view}, Log: heraldtest.QuietLog(),
		ClientOpts: []kgo.Opt{counts.hooks()}})
	if err != nil {
		b.Fatal(err)
	}
	d := drain(b, b.N, c, func() {
		heraldtest.Background(b, "view", view.Run)
		heraldtest.Background(b, "sender", s.Run)
	}, counts.taken.Load, counts.output.Load)
	noDeadLetters(b, c.Cluster)
	d.report(b)
}

// BenchmarkHop5Delay: a wake-up in a delay tier, already due -> the delay
// stage -> released to herald.wakeups.
func BenchmarkHop5Delay(b *testing.B) {
	due := time.Now().Add(-time.Second)
	tier := topology.TierTopic(time.Second)
	recs := make([]*kgo.Record, b.N)
	for i := range recs {
		v, err := contract.EncodeWakeup(&contract.Wakeup{ID: id(i), Kind: contract.WakeupHold, Due: due})
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: tier, Key: []byte(id(i)), Value: v, Headers: []kgo.RecordHeader{
			{Key: topology.HeaderDue, Value: topology.FormatDue(due)},
			{Key: topology.HeaderTarget, Value: []byte(topology.TopicWakeups)},
		}}
	}
	c := cluster(b, recs...)
	counts := &clientCounts{in: tier, out: topology.TopicWakeups}
	d := drain(b, b.N, c, func() {
		heraldtest.StartDelay(b, c.Cluster, func(cfg *delay.Config) { cfg.ClientOpts = append(cfg.ClientOpts, counts.hooks()) })
	}, counts.taken.Load, counts.output.Load)
	noDeadLetters(b, c.Cluster)
	d.report(b)
}

// BenchmarkHop6Sink: a changelog record (a sent state with its attempt) ->
// the sink -> PostgreSQL, in the sink's default batches. Its op is one
// batch of sink.DefaultBatchSize records (a few records would only measure
// the batch interval); the per-record figures (ns/op, cpu-ns/record, B/op,
// allocs/op) are per record like every hop's, beside records per COPY
// batch and ns per batch (the process's side: PostgreSQL's CPU is not
// included).
func BenchmarkHop6Sink(b *testing.B) {
	n := b.N * sink.DefaultBatchSize
	c := cluster(b, sentStates(b, n)...)
	dsn := heraldtest.Postgres(b)
	ctx := context.Background()
	if _, err := migrations.Migrate(ctx, dsn, heraldtest.QuietLog()); err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	counts := &clientCounts{in: string(topology.TableDispatcher)}
	var batches sinkBatches
	s, err := sink.New(sink.Config{Topology: c.Topology, Pool: pool, Observer: &batches, Log: heraldtest.QuietLog(),
		KgoOpts: []kgo.Opt{counts.hooks()}})
	if err != nil {
		b.Fatal(err)
	}
	d := drain(b, n, c, func() { heraldtest.Background(b, "sink", s.Run) }, counts.taken.Load, batches.records.Load)
	var rows int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM dispatch_status WHERE status = 'sent'").Scan(&rows); err != nil {
		b.Fatal(err)
	}
	if rows != n {
		b.Fatalf("%d sent rows in dispatch_status, want %d", rows, n)
	}
	noDeadLetters(b, c.Cluster)
	d.report(b)
	per := float64(n) / float64(batches.batches.Load())
	b.ReportMetric(per, "records/batch")
	b.ReportMetric(per*float64(d.elapsed.Nanoseconds())/float64(d.records), "ns/batch")
}

// sinkBatches counts the sink's committed batches and their records: a
// drain's progress.
type sinkBatches struct{ batches, records atomic.Int64 }

func (s *sinkBatches) Batch(records int, _ time.Duration, _, _, _ int64) {
	s.batches.Add(1)
	s.records.Add(int64(records))
}
func (s *sinkBatches) Retry()            {}
func (s *sinkBatches) CommitFailed()     {}
func (s *sinkBatches) DeadLetter(string) {}

// BenchmarkHop7View: a changelog record -> a view of the dispatcher table,
// as the API, the sender and the sweep keep one (VersionedUpdate into
// LevelDB).
func BenchmarkHop7View(b *testing.B) {
	c := cluster(b, sentStates(b, b.N)...)
	var updates atomic.Int64
	count := func(ctx goka.UpdateContext, s storage.Storage, key string, value []byte) error {
		updates.Add(1)
		return gokax.VersionedUpdate(ctx, s, key, value)
	}
	v, err := goka.NewView(c.Brokers, topology.TableDispatcher, new(codec.Bytes),
		append(gokax.ViewOptions(c.Topology, "hopbench-view", heraldtest.QuietLog()),
			goka.WithViewStorageBuilder(gokax.Storage(filepath.Join(b.TempDir(), "view"))),
			goka.WithViewCallback(count))...)
	if err != nil {
		b.Fatal(err)
	}
	d := drain(b, b.N, c, func() { heraldtest.Background(b, "view", v.Run) }, updates.Load, updates.Load)
	d.report(b)
}

// BenchmarkHop7StatusFeed: a changelog record -> the status feed -> a
// herald.status record (the default mode: one per change).
func BenchmarkHop7StatusFeed(b *testing.B) {
	c := cluster(b, sentStates(b, b.N)...)
	counts := &clientCounts{in: string(topology.TableDispatcher), out: topology.TopicStatus}
	f, err := statusfeed.New(statusfeed.Config{Topology: c.Topology, Mask: contract.MaskText, Log: heraldtest.QuietLog(),
		KgoOpts: []kgo.Opt{counts.hooks()}})
	if err != nil {
		b.Fatal(err)
	}
	d := drain(b, b.N, c, func() { heraldtest.Background(b, "status feed", f.Run) }, counts.taken.Load, counts.output.Load)
	d.report(b)
}

// BenchmarkHop8FloorGoka is the floor of a dispatcher hop: a Goka
// processor with Herald's settings (gokax.GokaOptions: acks=all,
// idempotent producer, ordered commits, LevelDB) whose callback only
// writes the record to its table and emits it, with the request's bytes.
func BenchmarkHop8FloorGoka(b *testing.B) {
	const group, in, out = "hopbench-floor", "hopbench.floor.in", "hopbench.floor.out"
	c := startBroker(b)
	adm := kadm.NewClient(c.Client(b))
	for _, t := range []string{in, out, string(goka.GroupTable(group))} {
		if _, err := adm.CreateTopic(context.Background(), partitions, 1, nil, t); err != nil {
			b.Fatalf("create %s: %v", t, err)
		}
	}
	recs := requests(b.N, time.Time{})
	for _, r := range recs {
		r.Topic = in
	}
	produce(b, c.Cluster, recs...)
	var taken atomic.Int64
	graph := goka.DefineGroup(group,
		goka.Input(goka.Stream(in), new(codec.Bytes), func(ctx goka.Context, msg any) {
			taken.Add(1)
			ctx.SetValue(msg)
			ctx.Emit(goka.Stream(out), ctx.Key(), msg)
		}),
		goka.Persist(new(codec.Bytes)),
		goka.Output(goka.Stream(out), new(codec.Bytes)),
	)
	sup := gokax.NewSupervisor(graph, c.Topology, b.TempDir(), heraldtest.QuietLog(), new(gokax.Fence))
	d := drain(b, b.N, c, func() { heraldtest.Background(b, "floor processor", sup.Run) }, taken.Load, records(b, c.Cluster, out, 0))
	d.report(b)
}

// BenchmarkHop8Dispatch is the pure transition of each dispatcher hop,
// without Kafka, decoding or encoding: a new request, a success result for
// the sending state, a due wake-up of a scheduled state.
func BenchmarkHop8Dispatch(b *testing.B) {
	now := time.Now()
	nb := now.Add(time.Hour)
	src := func(topic string) contract.Position { return contract.Position{Topic: topic, Offset: 1} }
	decode := func(nb time.Time) *contract.Request {
		r, err := contract.Decode([]byte(id(1)), requestJSON(id(1), nb))
		if err != nil {
			b.Fatal(err)
		}
		return r
	}
	req := decode(time.Time{})
	b.Run("request", func(b *testing.B) {
		cpuLoop(b, func() {
			dispatcher.Dispatch(nil, dispatcher.Event{Source: src(topology.TopicRequests), Request: req}, now, dispatchConfig)
		})
	})
	sending := dispatcher.Dispatch(nil, dispatcher.Event{Source: src(topology.TopicRequests), Request: req}, now, dispatchConfig).State
	res, err := contract.DecodeResult([]byte(id(1)), successes(b, 2)[1].Value)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("result", func(b *testing.B) {
		cpuLoop(b, func() {
			dispatcher.Dispatch(sending, dispatcher.Event{Source: src(topology.TopicResults), Result: res}, now, dispatchConfig)
		})
	})
	held := dispatcher.Dispatch(nil, dispatcher.Event{Source: src(topology.TopicRequests), Request: decode(nb)}, now, dispatchConfig)
	if held.State.Status != contract.StatusScheduled || len(held.Emits.Wakeups) != 1 {
		b.Fatalf("set-up: a request with not_before is %s with %d wake-ups", held.State.Status, len(held.Emits.Wakeups))
	}
	w := held.Emits.Wakeups[0]
	b.Run("wakeup", func(b *testing.B) {
		cpuLoop(b, func() {
			dispatcher.Dispatch(held.State, dispatcher.Event{Source: src(topology.TopicWakeups), Wakeup: &w}, nb.Add(time.Second), dispatchConfig)
		})
	})
}

// BenchmarkHop8Codec is the decoding and encoding each dispatcher hop
// pays besides Goka: the request's decoding (hop 1), and the state's
// encoding (every table write) and decoding (every hop on an existing
// state, the sink, the status feed) and the reading of its version alone
// (every view's and the table's update callback), for a state sent on its
// first attempt (the sink's and the status feed's usual record).
func BenchmarkHop8Codec(b *testing.B) {
	key, raw := []byte(id(1)), requestJSON(id(1), time.Time{})
	b.Run("request-decode", func(b *testing.B) {
		cpuLoop(b, func() {
			if _, err := contract.Decode(key, raw); err != nil {
				b.Fatal(err)
			}
		})
		b.ReportMetric(float64(len(raw)), "bytes/request")
	})
	s := sentState(b, id(1), successes(b, 2)[1].Value, time.Now())
	enc, err := contract.EncodeState(s)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("state-encode", func(b *testing.B) {
		cpuLoop(b, func() {
			if _, err := contract.EncodeState(s); err != nil {
				b.Fatal(err)
			}
		})
		b.ReportMetric(float64(len(enc)), "bytes/state")
	})
	b.Run("state-decode", func(b *testing.B) {
		cpuLoop(b, func() {
			if _, err := contract.DecodeState(enc); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("state-version", func(b *testing.B) { // what VersionedUpdate reads of every changelog record
		cpuLoop(b, func() {
			if _, err := contract.StateVersion(enc); err != nil {
				b.Fatal(err)
			}
		})
	})
}

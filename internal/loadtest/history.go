package loadtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dispatcher"
	"github.com/herald-dispatch/herald/internal/topology"
)

// History is a past of the dispatcher table, written straight into its
// changelog (topology.TableDispatcher) before any herald starts, so that
// a run measures a table that has lived for months without running them
// through the pipeline (a year at the seed's 1,000,000 a month is
// 12,000,000 notifications: hours on two cores).
//
// Faithful where it matters to the table, and what it is not:
//   - Every record is made by the dispatcher's own transition
//     (dispatcher.Dispatch) and encoded with the table's codec
//     (contract.EncodeState): a request of the load test's shape is
//     dispatched, its send command answered with a success a provider
//     latency later, so the state is sent and shed (no content, no
//     recipient); one older than StateRetention then gets the sweep's
//     retire wake-up and becomes its remembered record. Only the last
//     form of each id is written: the changelog as compaction leaves it.
//     Kafka compacts lazily (half the log may be uncompacted by its
//     default min.cleanable.dirty.ratio), so a real changelog holds up to
//     three records for the newest ids: this is the least a recovery
//     reads, not the most.
//   - Keys are placed as the dispatcher's table places them: by the
//     producer settings of its changelog writes (topology.KgoProducerOpts,
//     the Java client's murmur2), so each id is on the partition whose
//     owner looks it up.
//   - The positions each state records (the request and result that
//     made it, State.Applied) are offsets of a past the run's fresh
//     topics never had: a re-published history id whose new record lands
//     at or below its old offset is taken as a replay rather than a
//     duplicate. Either sends nothing; new ids are not concerned.
//   - Each record's timestamp is when the dispatcher would have written
//     it: a shed state at its last change, a remembered record at the
//     retention pass after StateRetention.
//   - It is written in full batches at full speed; a year of a real
//     table is written a few records at a time, in smaller batches with
//     less compression, so the changelog's bytes on disk are a lower
//     bound too.
//   - The groups that follow the changelog (the sink's and the status
//     feed's) are committed at its end, as a year of running leaves them
//     (CommitTableEnd); PostgreSQL gets none of the history.
type History struct {
	// States is how many final states (ids) the history holds.
	States int
	// Span is how far back their last changes go, ending at Now; they are
	// spread evenly over it (default DefaultHistorySpan).
	Span time.Duration
	// Now ends the history (default: time.Now when seeding starts).
	Now time.Time
	// Partitions of the table (default topology.DefaultPartitions).
	Partitions int
	// StateRetention is the dispatcher's --state-retention: a state whose
	// last change is older is written as its remembered record (default
	// dispatcher.DefaultStateRetention). Span must stay below its
	// --dedup-retention, or the history would hold ids the sweep deletes.
	StateRetention time.Duration
	// Epoch is the owner epoch the states were written under (default 1).
	Epoch int32
}

// Defaults of History.
const (
	// DefaultHistoryStates is a year at the seed's 1,000,000 a month.
	DefaultHistoryStates = 12_000_000
	DefaultHistorySpan   = 365 * 24 * time.Hour
	// historyLatency is the provider call of every history notification.
	historyLatency = time.Second
	// historyRetirePass is how long after StateRetention the retention
	// pass that made a remembered record ran (the sweep runs one every
	// dispatcher.DefaultRetireInterval).
	historyRetirePass = dispatcher.DefaultRetireInterval / 2
)

// WithDefaults fills h's zero fields.
func (h History) WithDefaults() History {
	if h.Span <= 0 {
		h.Span = DefaultHistorySpan
	}
	if h.Now.IsZero() {
		h.Now = time.Now()
	}
	h.Now = h.Now.UTC()
	if h.Partitions <= 0 {
		h.Partitions = topology.DefaultPartitions
	}
	if h.StateRetention <= 0 {
		h.StateRetention = dispatcher.DefaultStateRetention
	}
	if h.Epoch <= 0 {
		h.Epoch = 1
	}
	return h
}

// Validate refuses a history the dispatcher would not keep.
func (h History) Validate(dedupRetention time.Duration) error {
	h = h.WithDefaults()
	if h.States <= 0 {
		return errors.New("history: no states")
	}
	if dedupRetention <= 0 {
		dedupRetention = dispatcher.DefaultDedupRetention
	}
	if h.Span >= dedupRetention {
		return fmt.Errorf("history: a span of %s reaches past --dedup-retention (%s): the sweep would delete its oldest ids", h.Span, dedupRetention)
	}
	return nil
}

// Changed is when history notification i last changed (its provider's
// answer): the oldest first, spread evenly over Span, the newest just
// before Now.
func (h History) Changed(i int) time.Time {
	step := h.Span / time.Duration(h.States)
	return h.Now.Add(-h.Span + time.Duration(i+1)*step).Add(-time.Millisecond).Truncate(time.Millisecond)
}

// ID is history notification i's id: its month and its index, as long as
// the load test's own ids.
func (h History) ID(i int) string {
	return fmt.Sprintf("bill-%s-hist-%08d", h.Changed(i).Format("200601"), i)
}

// Remembered reports whether notification i is, at Now, only a
// remembered record (its last change older than StateRetention).
func (h History) Remembered(i int) bool {
	return h.Now.Sub(h.Changed(i)) >= h.StateRetention
}

// Record returns notification i's changelog record: the last form the
// dispatcher wrote for it, with the time it wrote it. cfg is the
// dispatcher's configuration (WithDefaults applied).
func (h History) Record(i int, cfg dispatcher.DispatchConfig) (*kgo.Record, *contract.State, error) {
	id := h.ID(i)
	answered := h.Changed(i)
	issued := answered.Add(-historyLatency)
	part := topology.Partition(id, h.Partitions)
	// Offsets of the records that made it: the i-th request and result
	// of its partition, roughly.
	off := int64(i / h.Partitions)
	d := dispatcher.Dispatch(nil, dispatcher.Event{Epoch: h.Epoch, Request: historyRequest(id, issued),
		Source: contract.Position{Topic: topology.TopicRequests, Partition: part, Offset: off}}, issued, cfg)
	cmd := d.Emits.Send
	if d.State == nil || cmd == nil {
		return nil, nil, fmt.Errorf("history: %s: the request made no send command (%s)", id, d.Verdict)
	}
	d = dispatcher.Dispatch(d.State, dispatcher.Event{Epoch: h.Epoch, Result: &contract.SendResult{
		ID: id, Attempt: cmd.Attempt, Issue: cmd.Issue, Channel: cmd.Channel, Outcome: contract.OutcomeSuccess,
		Code: 202, At: answered, Latency: contract.Duration(historyLatency)},
		Source: contract.Position{Topic: topology.TopicResults, Partition: part, Offset: off}}, answered, cfg)
	s, written := d.State, answered
	if s == nil || s.Status != contract.StatusSent {
		return nil, nil, fmt.Errorf("history: %s: the success made no sent state (%s)", id, d.Verdict)
	}
	if h.Remembered(i) {
		written = answered.Add(cfg.StateRetention + historyRetirePass)
		d = dispatcher.Dispatch(s, dispatcher.Event{Epoch: h.Epoch, Wakeup: &contract.Wakeup{ID: id,
			Kind: contract.WakeupRetire, Due: written, SeenVersion: s.Version},
			Source: contract.Position{Topic: topology.TopicWakeups, Partition: part, Offset: off}}, written, cfg)
		if d.State == nil || !d.State.Remembered {
			return nil, nil, fmt.Errorf("history: %s: the retire wake-up made no remembered record (%s)", id, d.Verdict)
		}
		s = d.State
	}
	b, err := contract.EncodeState(s)
	if err != nil {
		return nil, nil, fmt.Errorf("history: %s: %w", id, err)
	}
	return &kgo.Record{Topic: string(topology.TableDispatcher), Key: []byte(id), Value: b, Timestamp: written}, s, nil
}

// historyRequest is a request of the load test's normal shape (Plan.build):
// both channels, a zone, the billing policy and a statement's content.
func historyRequest(id string, at time.Time) *contract.Request {
	return &contract.Request{
		Schema:   contract.SchemaV1,
		ID:       id,
		Campaign: "bill-" + at.Format("200601"),
		Recipient: contract.Recipient{
			Email: "customer-" + id + "@example.com",
			Phone: "+4915123456789",
			TZ:    "Europe/Berlin",
		},
		Channels: []contract.Channel{contract.ChannelEmail, contract.ChannelSMS},
		Content: []byte(fmt.Sprintf(`{"template":"statement-ready","statement_id":"ST-%s","amount":"42.17","currency":"EUR","published_at":%q}`,
			id, at.Format(time.RFC3339Nano))),
		Policy: contract.Policy{ID: "billing-statement", Version: 3, AttemptsPerChannel: 3,
			Backoff: contract.Backoff{Initial: contract.Duration(time.Second), Multiplier: 2,
				Max: contract.Duration(time.Minute)}},
	}
}

// HistoryStats is what seeding wrote.
type HistoryStats struct {
	States     int           `json:"states"`
	Remembered int           `json:"remembered"`
	Final      int           `json:"final"`
	ValueBytes int64         `json:"value_bytes"`
	Took       time.Duration `json:"took"`
}

// Seed writes h into the changelog of the cluster tc names, with the
// producer settings of the dispatcher's own changelog writes. progress,
// if set, is called now and then with the records written so far.
func (h History) Seed(ctx context.Context, tc topology.Config, progress func(done int)) (HistoryStats, error) {
	h = h.WithDefaults()
	if err := h.Validate(0); err != nil {
		return HistoryStats{}, err
	}
	start := time.Now()
	tc.Partitions = h.Partitions
	opts := append(append(tc.WithDefaults().KgoOpts(), topology.KgoProducerOpts()...),
		kgo.ClientID("herald-loadtest-history"), kgo.MaxBufferedRecords(100_000))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return HistoryStats{}, fmt.Errorf("history: client: %w", err)
	}
	defer cl.Close()
	cfg := dispatcher.DispatchConfig{StateRetention: h.StateRetention, DedupRetention: max(dispatcher.DefaultDedupRetention, h.Span+time.Hour)}.WithDefaults()

	var (
		st       HistoryStats
		bytes    atomic.Int64
		firstErr error
		errOnce  sync.Once
		failed   atomic.Bool
	)
	fail := func(err error) { errOnce.Do(func() { firstErr = err; failed.Store(true) }) }
	// Two makers keep the broker fed while the dispatcher's transitions
	// are run for the next records; the records of one partition still go
	// out in id order within each maker, which is all compaction needs.
	const makers = 2
	var made atomic.Int64
	var wg sync.WaitGroup
	for m := range makers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := m; i < h.States && !failed.Load() && ctx.Err() == nil; i += makers {
				rec, _, err := h.Record(i, cfg)
				if err != nil {
					fail(err)
					return
				}
				bytes.Add(int64(len(rec.Value)))
				cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
					if err != nil {
						fail(fmt.Errorf("history: produce: %w", err))
					}
				})
				if n := made.Add(1); progress != nil && n%500_000 == 0 {
					progress(int(n))
				}
			}
		}()
	}
	wg.Wait()
	if err := cl.Flush(ctx); err != nil {
		fail(fmt.Errorf("history: flush: %w", err))
	}
	if firstErr != nil {
		return st, firstErr
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	st.States = h.States
	for i := 0; i < h.States; i++ { // cheap: no transition, only the clock
		if h.Remembered(i) {
			st.Remembered++
		}
	}
	st.Final = st.States - st.Remembered
	st.ValueBytes = bytes.Load()
	st.Took = time.Since(start)
	return st, nil
}

// TableFollowers are the groups that consume the dispatcher's changelog
// to follow it (the sink into PostgreSQL, the status feed).
func TableFollowers() []string { return []string{topology.GroupSink, topology.GroupStatus} }

// CommitTableEnd commits groups at the end of every partition of the
// dispatcher's changelog: where a year of running leaves the groups that
// follow it, which would otherwise start from its beginning and write the
// whole history into PostgreSQL. Call it before they start.
func CommitTableEnd(ctx context.Context, tc topology.Config, groups ...string) error {
	cl, err := kgo.NewClient(append(tc.WithDefaults().KgoOpts(), kgo.ClientID("herald-loadtest-history-admin"))...)
	if err != nil {
		return fmt.Errorf("history: admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, string(topology.TableDispatcher))
	if err != nil {
		return fmt.Errorf("history: end offsets: %w", err)
	}
	if err := ends.Error(); err != nil {
		return fmt.Errorf("history: end offsets: %w", err)
	}
	offs := ends.Offsets()
	for _, g := range groups {
		resp, err := adm.CommitOffsets(ctx, g, offs)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return fmt.Errorf("history: commit %s at the changelog's end: %w", g, err)
		}
	}
	return nil
}

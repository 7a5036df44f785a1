package views_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dlq"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/report"
	"github.com/herald-dispatch/herald/internal/sink"
	"github.com/herald-dispatch/herald/internal/topology"
	"github.com/herald-dispatch/herald/internal/views"
)

func TestMain(m *testing.M) { heraldtest.PostgresMain(m) }

// memTable is a Table in memory.
type memTable struct {
	mu         sync.Mutex
	states     map[string]*contract.State
	err        error
	recovering bool
}

func (m *memTable) Get(id string) (*contract.State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.states[id], m.err
}

func (m *memTable) Recovered() bool { return !m.recovering }

// ScanInFlight encodes every state as the dispatcher table holds it (final
// ones too: the stuck list must skip them itself).
func (m *memTable) ScanInFlight(_ context.Context, fn func([]byte)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	for _, st := range m.states {
		b, err := contract.EncodeState(st)
		if err != nil {
			return err
		}
		fn(b)
	}
	return nil
}

// memProducer records what is published, or fails with err.
type memProducer struct {
	mu   sync.Mutex
	recs []*kgo.Record
	err  error
}

func (p *memProducer) ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(kgo.ProduceResults, len(rs))
	for i, r := range rs {
		out[i] = kgo.ProduceResult{Record: r, Err: p.err}
		if p.err == nil {
			p.recs = append(p.recs, r)
		}
	}
	return out
}

func (p *memProducer) records() []*kgo.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*kgo.Record(nil), p.recs...)
}

// fixedDLQ answers what it holds.
type fixedDLQ struct{ resp views.DLQResponse }

func (d fixedDLQ) DeadLetters(limit int) views.DLQResponse { return d.resp }

// failingStore fails every read, for the 500s.
type failingStore struct{}

var errStore = errors.New("database is down")

func (failingStore) CampaignSummary(context.Context, string) (*report.Summary, error) {
	return nil, errStore
}
func (failingStore) Messages(context.Context, views.MessageQuery) (views.MessagePage, error) {
	return views.MessagePage{}, errStore
}
func (failingStore) Campaigns(context.Context, time.Time, int) ([]views.CampaignProgress, error) {
	return nil, errStore
}
func (failingStore) Campaign(context.Context, time.Time, string) (views.CampaignProgress, error) {
	return views.CampaignProgress{}, errStore
}
func (failingStore) Throughput(context.Context, string, time.Time, time.Duration) ([]views.Point, error) {
	return nil, errStore
}
func (failingStore) Held(context.Context) ([]views.HeldCount, error) { return nil, errStore }
func (failingStore) Targets(context.Context, string, []contract.Status, string, int) ([]views.Target, error) {
	return nil, errStore
}

// fixture is an API over a real Postgres the sink's writer filled, an
// in-memory table with the same notifications, and a recording producer.
type fixture struct {
	pool     *pgxpool.Pool
	table    *memTable
	producer *memProducer
	api      *views.Server
	now      time.Time
}

const fixtureToken = "console-token"

// fixtureState builds a notification's state as the dispatcher would
// have it.
func fixtureState(id, campaign string, status contract.Status, now time.Time, age time.Duration) *contract.State {
	first := now.Add(-age)
	s := &contract.State{ID: id, Campaign: campaign, Status: status, Channel: contract.ChannelEmail, Attempts: 1,
		FirstSeen: first, UpdatedAt: now.Add(-age / 2), Version: 3,
		Request: &contract.Request{Schema: contract.SchemaV1, ID: id, Campaign: campaign,
			Channels:  []contract.Channel{contract.ChannelEmail, contract.ChannelSMS},
			Recipient: contract.Recipient{Email: "jane.doe@example.com", Phone: "+821012345678"},
			Content:   json.RawMessage(`{"subject":"Your statement"}`),
			Policy:    contract.Policy{AttemptsPerChannel: 3}}}
	at := s.UpdatedAt
	switch status {
	case contract.StatusSent:
		s.SentAt = &at
		s.History = []contract.Attempt{{Attempt: 1, Channel: contract.ChannelEmail, Outcome: contract.OutcomeSuccess, Code: 250, At: at}}
	case contract.StatusFailed:
		s.Attempts = 2
		s.Channel = contract.ChannelSMS
		s.LastError = "sms attempt 2: permanent (400): +821012345678 is not a mobile number"
		s.History = []contract.Attempt{
			{Attempt: 1, Channel: contract.ChannelEmail, Outcome: contract.OutcomePermanent, Code: 550,
				Error: "550 <jane.doe@example.com>: no such user", At: first.Add(time.Second)},
			{Attempt: 2, Channel: contract.ChannelSMS, Outcome: contract.OutcomePermanent, Code: 400,
				Error: "+821012345678 is not a mobile number", At: at}}
	case contract.StatusDeferred:
		next := now.Add(3 * time.Hour)
		s.Attempts, s.NextAttemptAt, s.HoldReason = 0, &next, contract.HoldBlackout
		s.Request.Blackout = []contract.Window{{From: 22 * 60, To: 6 * 60}}
	case contract.StatusScheduled:
		next := now.Add(24 * time.Hour)
		s.Attempts, s.NextAttemptAt, s.HoldReason = 0, &next, contract.HoldSchedule
		s.Request.NotBefore = &next
	case contract.StatusRetrying:
		next := now.Add(30 * time.Second)
		s.NextAttemptAt, s.HoldReason, s.LastError = &next, contract.HoldBackoff, "email attempt 1: transient (503): unavailable"
		s.History = []contract.Attempt{{Attempt: 1, Channel: contract.ChannelEmail, Outcome: contract.OutcomeTransient, Code: 503, Error: "unavailable", At: at}}
	}
	return s
}

func startFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := heraldtest.MigratedPool(t, heraldtest.Postgres(t))
	now := time.Now().UTC().Truncate(time.Millisecond)
	f := &fixture{pool: pool, table: &memTable{states: map[string]*contract.State{}}, producer: &memProducer{}, now: now}
	var changes []sink.Change
	add := func(s *contract.State) {
		f.table.states[s.ID] = s
		b, _ := json.Marshal(s)
		changes = append(changes, sink.Change{State: s, Key: []byte(s.ID), Value: b})
	}
	for i, st := range []contract.Status{contract.StatusSent, contract.StatusSent, contract.StatusSent, contract.StatusSent,
		contract.StatusFailed, contract.StatusFailed, contract.StatusDeferred, contract.StatusScheduled, contract.StatusRetrying, contract.StatusSent} {
		add(fixtureState("billing-"+string(rune('a'+i)), "billing-2026-01", st, now, time.Duration(i+1)*10*time.Second))
	}
	add(fixtureState("welcome-a", "welcome", contract.StatusSent, now, time.Hour))
	add(fixtureState("welcome-b", "welcome", contract.StatusCanceled, now, time.Hour))
	if _, err := sink.NewWriter(pool).Write(ctx, changes); err != nil {
		t.Fatal(err)
	}
	// Stuck, as the sweep sees it, in the view only (GET /v1/stuck): a
	// send past its time-out, a retry whose wake-up is 10 min overdue.
	stuckSend := fixtureState("stuck-send", "billing-2026-01", contract.StatusSending, now, time.Hour)
	timeout := now.Add(-5 * time.Minute)
	stuckSend.TimeoutAt, stuckSend.Issue = &timeout, 1
	stuckHeld := fixtureState("stuck-held", "welcome", contract.StatusRetrying, now, time.Hour)
	overdue := now.Add(-10 * time.Minute)
	stuckHeld.NextAttemptAt = &overdue
	f.table.states[stuckSend.ID], f.table.states[stuckHeld.ID] = stuckSend, stuckHeld
	f.api = &views.Server{Config: views.Config{Token: fixtureToken}, Table: f.table, Scanner: f.table, Producer: f.producer,
		Store: views.PGStore{Q: pool}, Log: testLogger(t), Now: func() time.Time { return now },
		DLQ: fixedDLQ{views.DLQResponse{Total: 2, Reasons: []views.ReasonCount{{Reason: "invalid", DeadLetters: 1}, {Reason: "malformed", DeadLetters: 1}},
			DeadLetters: []views.DeadLetterRow{
				{DLQ: "0@0", Key: "oops", Reason: "malformed", Error: "malformed record: unexpected end of JSON input", Topic: "herald.requests", Offset: 7, At: now, ValueBytes: 42},
				{DLQ: "0@1", Key: "bad-1", Reason: "invalid", Error: "invalid request: recipient.email: missing", Topic: "herald.requests", Offset: 3, At: now.Add(-time.Minute), ValueBytes: 120,
					Problems: []contract.FieldError{{Field: "recipient.email", Message: "missing"}}}}}}}
	return f
}

// dlqCluster is an embedded broker whose herald.dlq (one partition) holds
// the dead letters of fixtureDeadLetters, in that order: 0@0 to 0@3.
type dlqCluster struct {
	*heraldtest.Cluster
	client *kgo.Client
}

// fixtureDeadLetters: a malformed request and an invalid one (both need a
// fix-up), a request dead-lettered for its key (valid: a replay publishes
// it under its id), and a malformed result (never replayed).
func fixtureDeadLetters(now time.Time) []contract.DeadLetter {
	return []contract.DeadLetter{
		{Reason: contract.ReasonMalformed, Error: "malformed record: unexpected end of JSON input", Topic: topology.TopicRequests, Offset: 7, At: now,
			Key: []byte("oops"), Value: []byte(`{"schema":"herald.dispatch.v1","id":"oops"`)},
		{Reason: contract.ReasonInvalid, Error: "invalid request: recipient.email: required by channel \"email\"", Topic: topology.TopicRequests, Offset: 3,
			At: now.Add(-time.Minute), Key: []byte("bad-1"), Value: request("bad-1", func(m map[string]any) { m["recipient"] = map[string]any{} }),
			Problems: []contract.FieldError{{Field: "recipient.email", Message: "required by channel \"email\""}}},
		{Reason: contract.ReasonKeyMismatch, Error: "key km-x is not the id km-1", Topic: topology.TopicRequests, Offset: 4, At: now,
			Key: []byte("km-x"), Value: request("km-1", nil)},
		{Reason: contract.ReasonMalformed, Error: "malformed result", Topic: topology.TopicResults, Offset: 1, At: now, Key: []byte("billing-a"), Value: []byte("not json")},
	}
}

// withDLQ starts a broker holding fixtureDeadLetters and gives f's API a
// replayer over it.
func (f *fixture) withDLQ(t *testing.T) *dlqCluster {
	t.Helper()
	c := &dlqCluster{Cluster: heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1})}
	c.client = c.Client(t)
	for _, d := range fixtureDeadLetters(f.now) {
		c.Produce(t, c.client, dlq.Record(topology.TopicDLQ, d))
	}
	f.api.Replayer = &views.DLQReplayer{ReadOpts: c.Topology.KgoOpts(), Client: c.client}
	return c
}

// requests returns the records on herald.requests.
func (c *dlqCluster) requests(t *testing.T) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs, err := dlq.ReadTopic(ctx, c.Topology.KgoOpts(), topology.TopicRequests)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

package delay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/delay"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/schedule"
	"github.com/herald-dispatch/herald/internal/topology"
)

// command is a send command seen on herald.send.
type command struct {
	cmd  contract.SendCommand
	seen time.Time // on the shifted clock
}

// fakeSender answers every send command on herald.send like a sender
// would: attempt 1 of the ids in transient fails, everything else
// succeeds. It records the commands and when it answered each.
type fakeSender struct {
	mu        sync.Mutex
	commands  map[string][]command   // by id, in arrival order
	answered  map[string][]time.Time // by id and attempt-1, on the shifted clock
	transient map[string]bool
}

func runFakeSender(t *testing.T, c *heraldtest.Cluster, clock func() time.Time, transient map[string]bool) *fakeSender {
	t.Helper()
	f := &fakeSender{commands: map[string][]command{}, answered: map[string][]time.Time{}, transient: transient}
	in := c.Client(t, kgo.ConsumeTopics(topology.TopicSend), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond))
	out := c.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := in.PollFetches(ctx)
			now := clock()
			var results []*kgo.Record
			fs.EachRecord(func(r *kgo.Record) {
				cmd, err := contract.DecodeCommand(r.Key, r.Value)
				if err != nil {
					t.Errorf("send command: %v", err)
					return
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				f.commands[cmd.ID] = append(f.commands[cmd.ID], command{*cmd, now})
				if len(f.answered[cmd.ID]) >= cmd.Attempt {
					return // a duplicate command: already answered
				}
				res := contract.SendResult{ID: cmd.ID, Attempt: cmd.Attempt, Channel: cmd.Channel, Outcome: contract.OutcomeSuccess, At: now}
				if f.transient[cmd.ID] && cmd.Attempt == 1 {
					res.Outcome, res.Error, res.Code = contract.OutcomeTransient, "503 from the provider", 503
				}
				b, _ := json.Marshal(res)
				results = append(results, &kgo.Record{Topic: topology.TopicResults, Key: []byte(cmd.ID), Value: b})
				f.answered[cmd.ID] = append(f.answered[cmd.ID], now)
			})
			if len(results) > 0 {
				if err := out.ProduceSync(ctx, results...).FirstErr(); err != nil && ctx.Err() == nil {
					t.Errorf("produce results: %v", err)
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func (f *fakeSender) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, cs := range f.commands {
		n += len(cs)
	}
	return n
}

func request(id string, tz string, blackout []contract.Window, notBefore *time.Time) *kgo.Record {
	r := contract.Request{
		Schema: contract.SchemaV1, ID: id, Campaign: "delay-e2e",
		Recipient: contract.Recipient{Email: "user@example.com", TZ: tz},
		Channels:  []contract.Channel{contract.ChannelEmail},
		Content:   json.RawMessage(`{"subject":"Your bill"}`),
		Policy: contract.Policy{AttemptsPerChannel: 3, Backoff: contract.Backoff{
			Initial: contract.Duration(time.Second), Multiplier: 2, Max: contract.Duration(time.Minute)}},
		Blackout:  blackout,
		NotBefore: notBefore,
	}
	b, _ := json.Marshal(r)
	return &kgo.Record{Topic: topology.TopicRequests, Key: []byte(id), Value: b}
}

func clockOf(t time.Time) contract.Clock { return contract.Clock(t.Hour()*60 + t.Minute()) }

// TestDispatcherHoldsAndReleases is issue 4's integration test with the
// real dispatcher: notifications held by a blackout window (in several
// zones), by not_before, and by retry backoff after an injected transient
// failure, all 1-5 s ahead. The dispatcher is stopped and started again
// (same storage) while they are held. Each attempt produces exactly one
// send command, never before its due time, and every notification ends
// sent.
func TestDispatcherHoldsAndReleases(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test")
	}
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 4})
	dir := filepath.Join(t.TempDir(), "goka")
	var clk heraldtest.ShiftedClock
	sup := heraldtest.StartDispatcher(t, c, heraldtest.DispatcherOptions{Storage: dir, Now: clk.Now, Log: testLog()})
	stage := startStage(t, c, func(cfg *delay.Config) { cfg.Now = clk.Now })
	heraldtest.WaitFor(t, 60*time.Second, "dispatcher and delay stage ready", func() bool { return sup.Ready() && stage.Ready() })

	// Move the clock to 5 s before a minute boundary: the windows that
	// cover the current minute end there.
	boundary := clk.BeforeMinute(5 * time.Second)
	start := clk.Now()

	type expect struct {
		attempts int
		due      time.Time // of attempt 1 (and of attempt 2 for retries, a lower bound set later)
		kind     string
	}
	want := map[string]*expect{}
	transient := map[string]bool{}
	var reqs []*kgo.Record
	zones := []string{"UTC", "Asia/Seoul", "America/New_York", "Asia/Kolkata", "Europe/Berlin"}
	for i := range 10 {
		id := fmt.Sprintf("blackout-%02d", i)
		loc, err := time.LoadLocation(zones[i%len(zones)])
		if err != nil {
			t.Fatal(err)
		}
		w := contract.Window{From: clockOf(start.In(loc)), To: clockOf(boundary.In(loc))}
		reqs = append(reqs, request(id, zones[i%len(zones)], []contract.Window{w}, nil))
		want[id] = &expect{attempts: 1, due: boundary, kind: "blackout"}
	}
	for i := range 10 {
		id := fmt.Sprintf("not-before-%02d", i)
		nb := start.Add(time.Second + time.Duration(i)*400*time.Millisecond)
		reqs = append(reqs, request(id, "", nil, &nb))
		want[id] = &expect{attempts: 1, due: nb, kind: "not_before"}
	}
	for i := range 10 {
		id := fmt.Sprintf("retry-%02d", i)
		var nb *time.Time
		due := start
		if i%2 == 1 { // scheduled, then retried
			t := start.Add(2 * time.Second)
			nb, due = &t, t
		}
		reqs = append(reqs, request(id, "", nil, nb))
		want[id] = &expect{attempts: 2, due: due, kind: "retry"}
		transient[id] = true
	}
	sender := runFakeSender(t, c, clk.Now, transient)
	c.Produce(t, c.Client(t), reqs...)
	t.Logf("%d requests published at %s (window end in %v)", len(reqs), start.Format("15:04:05.000"), boundary.Sub(start))

	// Restart the dispatcher while the notifications are held.
	time.Sleep(1500 * time.Millisecond)
	took := sup.Stop()
	t.Logf("dispatcher stopped %v after publishing, in %v, with %d commands out", clk.Now().Sub(start).Round(time.Millisecond), took.Round(time.Millisecond), sender.count())
	sup = heraldtest.StartDispatcher(t, c, heraldtest.DispatcherOptions{Storage: dir, Now: clk.Now, Log: testLog()})
	heraldtest.WaitFor(t, 60*time.Second, "dispatcher ready again", sup.Ready)
	t.Logf("dispatcher ready again %v after publishing", clk.Now().Sub(start).Round(time.Millisecond))

	total := 0
	for _, e := range want {
		total += e.attempts
	}
	heraldtest.WaitFor(t, 50*time.Second, "every send command", func() bool { return sender.count() >= total })
	time.Sleep(2 * time.Second) // room for a wrong duplicate

	sender.mu.Lock()
	defer sender.mu.Unlock()
	var late []time.Duration
	for id, e := range want {
		cmds := sender.commands[id]
		if len(cmds) != e.attempts {
			t.Errorf("%s (%s): %d send commands, want %d", id, e.kind, len(cmds), e.attempts)
			continue
		}
		for i, c := range cmds {
			due := e.due
			if i == 1 {
				// The retry is due at least the backoff after the failure was answered.
				p := contract.Backoff{Initial: contract.Duration(time.Second), Multiplier: 2, Max: contract.Duration(time.Minute)}
				due = sender.answered[id][0].Add(schedule.Backoff(p, 1, id))
			}
			if c.cmd.Attempt != i+1 {
				t.Errorf("%s: command %d has attempt %d", id, i+1, c.cmd.Attempt)
			}
			if c.cmd.IssuedAt.Before(due) || c.seen.Before(due) {
				t.Errorf("%s (%s) attempt %d sent early: issued %v, seen %v before due", id, e.kind, c.cmd.Attempt,
					due.Sub(c.cmd.IssuedAt), due.Sub(c.seen))
			}
			if !(e.kind == "retry" && i == 0 && e.due.Equal(start)) { // not held: sent at once
				late = append(late, c.seen.Sub(due))
			}
		}
	}
	t.Logf("send command lateness (seen by the sender, minus due; includes the dispatcher's restart): %s", quantiles(late))
	t.Logf("delay stage release lateness: %s", histogram(t, stage.Reg, "herald_delay_release_lateness_seconds"))

	// Every notification ends sent, with the attempts it made.
	v := c.TableView(t)
	for id, e := range want {
		s := v.State(id)
		if s == nil || s.Status != contract.StatusSent || s.Attempts != e.attempts {
			t.Errorf("%s: state %+v, want sent after %d attempts", id, s, e.attempts)
		}
	}
}

package sender_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	heralddlq "github.com/herald-dispatch/herald/internal/dlq"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/herald-dispatch/herald/internal/sender"
	"github.com/herald-dispatch/herald/internal/topology"
)

// quietLog logs warnings and errors to stderr.
var quietLog = heraldtest.QuietLog

func command(id string, ch contract.Channel, attempt int) *kgo.Record {
	rec, _ := commandWith(id, ch, attempt, nil)
	return rec
}

// commandWith is command with edit (if not nil) applied before the
// command is encoded; it returns the command as well.
func commandWith(id string, ch contract.Channel, attempt int, edit func(*contract.SendCommand)) (*kgo.Record, contract.SendCommand) {
	addr := map[contract.Channel]string{contract.ChannelEmail: "user@example.com",
		contract.ChannelSMS: "+821012345678", contract.ChannelPush: "tok-0123456789abcdef"}[ch]
	cmd := contract.SendCommand{ID: id, Campaign: "c", Channel: ch, Attempt: attempt, Address: addr,
		Content: json.RawMessage(`{"subject":"s","text":"t"}`), IdempotencyKey: id,
		RequestedAt: time.Now(), IssuedAt: time.Now()}
	if edit != nil {
		edit(&cmd)
	}
	b, _ := json.Marshal(cmd)
	return &kgo.Record{Topic: topology.TopicSend, Key: []byte(id), Value: b}, cmd
}

// runSender runs a sender until the returned stop is called or the test
// ends.
func runSender(t testing.TB, cfg sender.Config) (s *sender.Sender, stop func()) {
	t.Helper()
	s, err := sender.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stopped := heraldtest.Background(t, "sender", s.Run)
	return s, func() { stopped() }
}

// results reads herald.results until want records arrived (or timeout).
func results(t *testing.T, c *heraldtest.Cluster, want int, timeout time.Duration) []contract.SendResult {
	t.Helper()
	recs := c.Consume(t, topology.TopicResults, timeout, func(rs []*kgo.Record) bool { return len(rs) >= want })
	out := make([]contract.SendResult, 0, len(recs))
	for _, r := range recs {
		res, err := contract.DecodeResult(r.Key, r.Value)
		if err != nil {
			t.Fatalf("result: %v", err)
		}
		if string(r.Key) != res.ID {
			t.Fatalf("result keyed %q for id %q", r.Key, res.ID)
		}
		if want := topology.Partition(res.ID, c.Topology.Partitions); r.Partition != want {
			t.Fatalf("result for %s on partition %d, want %d (Sarama-compatible hashing)", res.ID, r.Partition, want)
		}
		out = append(out, *res)
	}
	return out
}

// settle waits until count has not moved for a second (at most 15 s).
func settle(t *testing.T, count func() int64) {
	t.Helper()
	last, since := count(), time.Now()
	for deadline := time.Now().Add(15 * time.Second); time.Since(since) < time.Second; {
		if time.Now().After(deadline) {
			t.Fatalf("still moving after 15 s: %d", last)
		}
		time.Sleep(100 * time.Millisecond)
		if n := count(); n != last {
			last, since = n, time.Now()
		}
	}
}

// committed returns the sender group's committed offset and the end offset
// of every herald.send partition.
func committed(t *testing.T, c *heraldtest.Cluster) (commits, ends map[int32]int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	adm := kadm.NewClient(c.Client(t))
	os, err := adm.FetchOffsets(ctx, sender.DefaultGroup)
	if err != nil {
		t.Fatal(err)
	}
	commits, ends = map[int32]int64{}, map[int32]int64{}
	os.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topology.TopicSend {
			commits[o.Partition] = o.At
		}
	})
	le, err := adm.ListEndOffsets(ctx, topology.TopicSend)
	if err != nil {
		t.Fatal(err)
	}
	le.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	return commits, ends
}

// staleIDs is a StateReader that shows some ids as moved past attempt 1.
type staleIDs map[string]bool

func (s staleIDs) Get(id string) (*contract.State, error) {
	if s[id] {
		return &contract.State{ID: id, Attempts: 2, Status: contract.StatusRetrying}, nil
	}
	return nil, nil
}

// TestSenderPublishesResults runs the sender alone against the embedded
// broker: every valid command gets exactly one result with the provider's
// classification, stale commands reach no provider, undecodable ones go to
// the DLQ, and a clean stop commits every offset.
func TestSenderPublishesResults(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test")
	}
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 4})
	mock, mockURL := heraldtest.MockProvider(t, provider.MockServerOptions{Simulation: provider.Simulation{Latency: 20 * time.Millisecond}})
	emailSim := provider.Simulation{Latency: 20 * time.Millisecond, Fail: 0.05, Permanent: 0.05}
	set := heraldtest.Providers(t, []string{
		"email=" + mockURL + "/email?latency=20ms&fail=0.05&permanent=0.05",
		"sms=mock://?latency=5ms",
	}, provider.Options{Concurrency: 300})

	const n = 3000
	stale := staleIDs{}
	var recs []*kgo.Record
	want := map[string]contract.Outcome{}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("n-%05d", i)
		ch := contract.ChannelEmail
		switch {
		case i%10 == 1:
			ch = contract.ChannelSMS
		case i%50 == 7:
			ch = contract.ChannelPush // no provider configured
		}
		rec := command(id, ch, 1)
		if i%100 == 5 { // its deadline passed while it queued: never sent, answered not_attempted
			rec, _ = commandWith(id, ch, 1, func(c *contract.SendCommand) { c.Deadline = time.Now().Add(-time.Second) })
		}
		recs = append(recs, rec)
		switch {
		case i%100 == 5:
			want[id] = contract.OutcomeNotAttempted
		case i%100 == 3:
			stale[id] = true
		case ch == contract.ChannelEmail:
			want[id] = emailSim.Decide(id, 1).Outcome
		case ch == contract.ChannelSMS:
			want[id] = contract.OutcomeSuccess
		default:
			want[id] = contract.OutcomePermanent
		}
	}
	bad := []*kgo.Record{
		{Topic: topology.TopicSend, Key: []byte("bad-1"), Value: []byte(`{"id":`)},
		{Topic: topology.TopicSend, Key: []byte("bad-2"), Value: []byte(`{"id":"other","channel":"email","attempt":1}`)},
		{Topic: topology.TopicSend, Key: []byte("bad-3"), Value: []byte(`{"id":"bad-3","channel":"fax","attempt":1}`)},
	}
	recs = append(recs[:n/2], append(bad, recs[n/2:]...)...)
	cl := c.Client(t)
	c.Produce(t, cl, recs...)

	start := time.Now()
	_, stop := runSender(t, sender.Config{Topology: c.Topology, Providers: set, Concurrency: 300,
		State: stale, Log: quietLog(), CommitInterval: 200 * time.Millisecond})
	got := results(t, c, len(want), 60*time.Second)
	t.Logf("%d results in %s", len(got), time.Since(start).Round(time.Millisecond))
	dlq := c.Consume(t, topology.TopicDLQ, 20*time.Second, func(rs []*kgo.Record) bool { return len(rs) >= len(bad) })
	stop()

	seen := map[string]int{}
	for _, r := range got {
		seen[r.ID]++
		if r.Outcome != want[r.ID] {
			t.Errorf("%s (%s): outcome %s, want %s (%s)", r.ID, r.Channel, r.Outcome, want[r.ID], r.Error)
		}
		if r.Attempt != 1 || r.At.IsZero() {
			t.Errorf("%s: attempt %d at %s", r.ID, r.Attempt, r.At)
		}
		if r.Channel == contract.ChannelEmail && r.Outcome != contract.OutcomeSuccess && r.Outcome != contract.OutcomeNotAttempted && r.Code == 0 {
			t.Errorf("%s: email failure without the HTTP code", r.ID)
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("%s: %d results, want 1", id, seen[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d results, want %d", len(got), len(want))
	}
	for id := range stale {
		if seen[id] != 0 {
			t.Errorf("stale %s was sent", id)
		}
	}
	reasons := map[string]string{}
	for _, r := range dlq {
		dl, err := heralddlq.Parse(r)
		if err != nil {
			t.Fatalf("dead letter: %v", err)
		}
		reasons[string(dl.Key)] = dl.Reason
		if dl.Topic != topology.TopicSend || string(r.Key) != string(dl.Key) {
			t.Errorf("dead letter %+v", dl)
		}
	}
	wantReasons := map[string]string{"bad-1": contract.ReasonMalformed, "bad-2": contract.ReasonKeyMismatch, "bad-3": contract.ReasonInvalid}
	for k, r := range wantReasons {
		if reasons[k] != r {
			t.Errorf("dead letter %s: reason %q, want %q", k, reasons[k], r)
		}
	}
	st := mock.Stats()
	emailOK := 0
	for id, o := range want {
		if o == contract.OutcomeSuccess && id != "" && !stale[id] {
			emailOK++
		}
	}
	if st.Duplicates != 0 || st.Replays != 0 {
		t.Errorf("mock provider: %d duplicates, %d replays", st.Duplicates, st.Replays)
	}
	if e := st.Channels[contract.ChannelEmail]; e == nil || int(e.Accepted) != countOutcome(got, contract.ChannelEmail, contract.OutcomeSuccess) {
		t.Errorf("mock accepted %+v, results say %d", e, countOutcome(got, contract.ChannelEmail, contract.OutcomeSuccess))
	}
	commits, ends := committed(t, c)
	for p, end := range ends {
		if commits[p] != end {
			t.Errorf("partition %d: committed %d, end %d", p, commits[p], end)
		}
	}
}

func countOutcome(rs []contract.SendResult, ch contract.Channel, o contract.Outcome) int {
	n := 0
	for _, r := range rs {
		if r.Channel == ch && r.Outcome == o {
			n++
		}
	}
	return n
}

// TestSenderStopMidwayResendsOnlyTheUncommittedWindow stops a sender while
// hundreds of slow attempts are in flight (cutting them off after a short
// drain), and starts another. Nothing is skipped: every id is delivered.
// What is sent twice lies entirely at or beyond the committed offsets, the
// window the first sender had not finished, and is only what had no
// acknowledged result at the stop: the attempts answered before it are
// remembered by the new sender (recall). The provider's idempotency key
// turns the second sends into replays, not deliveries.
func TestSenderStopMidwayResendsOnlyTheUncommittedWindow(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test")
	}
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 4})
	mock, mockURL := heraldtest.MockProvider(t, provider.MockServerOptions{Simulation: provider.Simulation{Latency: 400 * time.Millisecond, Jitter: 100 * time.Millisecond}})
	const n, conc = 1000, 200
	set := heraldtest.Providers(t, []string{"email=" + mockURL + "/"}, provider.Options{Concurrency: conc})
	var recs []*kgo.Record
	offsetOf := map[string]int{}
	for i := 0; i < n; i++ {
		recs = append(recs, command(fmt.Sprintf("m-%04d", i), contract.ChannelEmail, 1))
	}
	cl := c.Client(t)
	c.Produce(t, cl, recs...)
	// Where each id landed, to tell the committed part from the window.
	all := c.Consume(t, topology.TopicSend, 20*time.Second, func(rs []*kgo.Record) bool { return len(rs) >= n })
	part := map[string]int32{}
	for _, r := range all {
		offsetOf[string(r.Key)] = int(r.Offset)
		part[string(r.Key)] = r.Partition
	}

	cfg := sender.Config{Topology: c.Topology, Providers: set, Concurrency: conc, Log: quietLog(),
		DrainTimeout: 50 * time.Millisecond, CommitInterval: 100 * time.Millisecond}
	_, stop := runSender(t, cfg)
	deadline := time.Now().Add(30 * time.Second)
	for mock.Stats().Accepted < n/3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	// What the stop left on the wire (a request in the provider's socket,
	// a result in the broker's) lands after stop returns: wait until the
	// provider's requests and the results stand still, so that the
	// snapshot below is what the restarted sender finds.
	settle(t, func() int64 { return mock.Stats().Requests + c.Count(t, topology.TopicResults) })
	commits, _ := committed(t, c)
	replaysAtStop := mock.Stats().Replays
	before := map[string]bool{}
	for _, d := range mock.Deliveries() {
		before[d.ID] = true
	}
	// The uncommitted window: ids the first sender delivered at or beyond
	// the committed offset. Below it, everything must have been delivered.
	deliveredAbove := 0
	for id, off := range offsetOf {
		switch {
		case int64(off) >= commits[part[id]]:
			if before[id] {
				deliveredAbove++
			}
		case !before[id]:
			t.Errorf("%s (partition %d offset %d) is below the commit %d but was never delivered: skipped",
				id, part[id], off, commits[part[id]])
		}
	}
	cutOff := mock.Stats().Abandoned
	// The attempts whose success was acknowledged before the stop.
	resultsAtStop := c.Count(t, topology.TopicResults)
	answered := map[string]bool{}
	for _, r := range results(t, c, int(resultsAtStop), 30*time.Second) {
		if r.Outcome == contract.OutcomeSuccess {
			answered[r.ID] = true
		}
	}
	unanswered := 0 // delivered, with no acknowledged result: called again
	for id := range before {
		if !answered[id] {
			unanswered++
		}
	}

	runSender(t, cfg)
	deadline = time.Now().Add(40 * time.Second)
	for mock.Stats().UniqueIDs < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st := mock.Stats()
	st.Replays -= replaysAtStop
	t.Logf("stopped with %d delivered (%d without an acknowledged result) and %d attempts cut off; %d delivered beyond the commit; after the restart %d replays",
		len(before), unanswered, cutOff, deliveredAbove, st.Replays)
	if st.UniqueIDs != n || st.Duplicates != 0 {
		t.Fatalf("after restart: %d of %d ids delivered, %d duplicates", st.UniqueIDs, n, st.Duplicates)
	}
	// Exactly the deliveries without an acknowledged result are sent again
	// (and answered from the idempotency key), all beyond the commit;
	// nothing answered is.
	if int(st.Replays) != unanswered || unanswered > deliveredAbove {
		t.Errorf("%d replays after the restart, want %d (the deliveries without an acknowledged result, of %d beyond the committed offsets)",
			st.Replays, unanswered, deliveredAbove)
	}
	if cutOff == 0 {
		t.Error("the stop cut nothing off: the test did not stop mid-flight")
	}
	// The window is what was in flight at the stop plus what completed
	// behind a slower command; with even latencies that is about the
	// concurrency.
	if w := deliveredAbove + int(cutOff); w > 2*conc {
		t.Errorf("uncommitted window %d is more than twice the concurrency %d", w, conc)
	}
}

// TestSenderRebalanceDrainsBeforeRelease starts a second sender in the
// group while the first has hundreds of attempts in flight. The first
// finishes the attempts of the partitions it gives up and commits them
// before releasing them, so the second starts exactly where the first
// stopped: nothing is sent twice, nothing is skipped.
func TestSenderRebalanceDrainsBeforeRelease(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test")
	}
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 6})
	mock, mockURL := heraldtest.MockProvider(t, provider.MockServerOptions{Simulation: provider.Simulation{Latency: 300 * time.Millisecond}})
	const n, conc = 3000, 200
	set := heraldtest.Providers(t, []string{"email=" + mockURL + "/"}, provider.Options{Concurrency: 2 * conc})
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		recs = append(recs, command(fmt.Sprintf("r-%04d", i), contract.ChannelEmail, 1))
	}
	c.Produce(t, c.Client(t), recs...)

	first, second := &counting{Provider: set[contract.ChannelEmail]}, &counting{Provider: set[contract.ChannelEmail]}
	cfg := sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: first}, Concurrency: conc,
		Log: quietLog(), CommitInterval: 100 * time.Millisecond}
	start := time.Now()
	runSender(t, cfg)
	deadline := time.Now().Add(30 * time.Second)
	for mock.Stats().Accepted < n/5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cfg.Providers = provider.Set{contract.ChannelEmail: second}
	joined := time.Now()
	runSender(t, cfg)
	deadline = time.Now().Add(60 * time.Second)
	for mock.Stats().UniqueIDs < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st := mock.Stats()
	t.Logf("requests %d, accepted %d, replays %d, abandoned %d; the second sender joined after %s and sent %d, the first %d; done after %s",
		st.Requests, st.Accepted, st.Replays, st.Abandoned, joined.Sub(start).Round(time.Millisecond),
		second.n.Load(), first.n.Load(), time.Since(start).Round(time.Millisecond))
	if st.UniqueIDs != n || st.Duplicates != 0 {
		t.Fatalf("%d of %d ids delivered, %d duplicates", st.UniqueIDs, n, st.Duplicates)
	}
	if st.Replays != 0 || st.Requests != n {
		t.Errorf("%d requests with %d replays for %d commands: the rebalance re-sent attempts", st.Requests, st.Replays, n)
	}
	if first.n.Load() == 0 || second.n.Load() == 0 {
		t.Errorf("the first sender sent %d, the second %d: no rebalance happened", first.n.Load(), second.n.Load())
	}
	got := results(t, c, n, 30*time.Second)
	if len(got) != n {
		t.Errorf("%d results, want %d", len(got), n)
	}
}

// counting counts a provider's attempts.
type counting struct {
	provider.Provider
	n atomic.Int64
}

func (c *counting) Send(ctx context.Context, cmd *contract.SendCommand) provider.Result {
	c.n.Add(1)
	return c.Provider.Send(ctx, cmd)
}

// TestSenderThrottlePausesTheChannel: a provider answers the first request
// 429 with Retry-After: 1. The result says throttled with the wait, and no
// other attempt on that channel starts within the second, while another
// channel carries on.
func TestSenderThrottlePausesTheChannel(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test")
	}
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 2})
	var mu sync.Mutex
	var throttledAt time.Time
	var after []time.Duration
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if throttledAt.IsZero() {
			throttledAt = time.Now()
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		after = append(after, time.Since(throttledAt))
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	sms := provider.NewMock(provider.Simulation{})
	email, _ := provider.NewWebhook(srv.URL, provider.Options{})
	// One email first, alone, so the 429 lands before the rest start.
	c.Produce(t, c.Client(t), command("t-first", contract.ChannelEmail, 1))
	_, stop := runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: email, contract.ChannelSMS: sms},
		Concurrency: 50, Log: quietLog()})
	defer stop()
	first := results(t, c, 1, 20*time.Second)
	var recs []*kgo.Record
	for i := 0; i < 20; i++ {
		recs = append(recs, command(fmt.Sprintf("t-%02d", i), contract.ChannelEmail, 1), command(fmt.Sprintf("s-%02d", i), contract.ChannelSMS, 1))
	}
	c.Produce(t, c.Client(t), recs...)
	got := results(t, c, 41, 20*time.Second)
	if len(first) != 1 || first[0].Outcome != contract.OutcomeThrottled || first[0].RetryAfter.D() != time.Second || first[0].Code != 429 {
		t.Fatalf("first result %+v, want throttled 429 with retry after 1s", first)
	}
	var smsAt []time.Time
	for _, r := range got {
		if r.ID == "t-first" { // its throttled result; partitions are read in no set order
			continue
		}
		if r.Outcome != contract.OutcomeSuccess {
			t.Errorf("%s: %s", r.ID, r.Outcome)
		}
		if r.Channel == contract.ChannelSMS {
			smsAt = append(smsAt, r.At)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, d := range after {
		if d < 950*time.Millisecond {
			t.Errorf("an email attempt started %s after the 429, inside its Retry-After", d)
		}
	}
	if len(after) != 20 || len(smsAt) != 20 {
		t.Fatalf("%d email and %d sms attempts after the 429", len(after), len(smsAt))
	}
	for _, at := range smsAt {
		if at.Sub(throttledAt) > 900*time.Millisecond {
			t.Errorf("sms attempt answered %s after the email 429: the pause held up another channel", at.Sub(throttledAt))
		}
	}
}

// A 429 from one provider of a failover chain pauses that provider, not
// the channel: the chain's next provider takes every command while it is
// paused (Retry-After 1 h: a paused channel would answer none of them).
func TestSenderThrottlePausesOnlyTheChainedProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 2})
	var throttling atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		throttling.Add(1)
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	a, _ := provider.NewWebhook(srv.URL, provider.Options{})
	b := provider.NewMock(provider.Simulation{})
	chain := provider.NewChain(contract.ChannelSMS, []string{"a", "b"}, []provider.Provider{a, b}, provider.ChainOptions{Log: quietLog()})
	c.Produce(t, c.Client(t), command("t-first", contract.ChannelSMS, 1))
	_, stop := runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelSMS: chain},
		Concurrency: 50, Log: quietLog()})
	defer stop()
	first := results(t, c, 1, 20*time.Second)
	if len(first) != 1 || first[0].Outcome != contract.OutcomeThrottled || first[0].Provider != "a" {
		t.Fatalf("first result %+v, want a's 429", first)
	}
	var recs []*kgo.Record
	for i := range 20 {
		recs = append(recs, command(fmt.Sprintf("s-%02d", i), contract.ChannelSMS, 1))
	}
	c.Produce(t, c.Client(t), recs...)
	got := results(t, c, 21, 20*time.Second)
	if len(got) != 21 {
		t.Fatalf("%d results, want 21: the channel was paused", len(got))
	}
	for _, r := range got {
		if r.ID != "t-first" && (r.Outcome != contract.OutcomeSuccess || r.Provider != "b") {
			t.Errorf("%s: %s by %q, want success by b", r.ID, r.Outcome, r.Provider)
		}
	}
	if n := throttling.Load(); n != 1 || b.Counts().Accepted != 20 {
		t.Errorf("the throttling provider got %d calls, the other accepted %d; want 1 and 20", n, b.Counts().Accepted)
	}
}

// countingProvider records the calls it gets and answers success after a
// delay.
type countingProvider struct {
	delay time.Duration
	mu    sync.Mutex
	calls map[string]int
	until map[string]time.Time // each call's context deadline (zero: none)
	// answerAt, if it has the id, is when the provider answers instead
	// of after delay.
	answerAt map[string]time.Time
}

func newCountingProvider(delay time.Duration) *countingProvider {
	return &countingProvider{delay: delay, calls: map[string]int{}, until: map[string]time.Time{}, answerAt: map[string]time.Time{}}
}

func (p *countingProvider) Send(ctx context.Context, cmd *contract.SendCommand) provider.Result {
	p.mu.Lock()
	p.calls[fmt.Sprintf("%s#%d", cmd.ID, cmd.Attempt)]++
	dl, _ := ctx.Deadline()
	p.until[cmd.ID] = dl
	d := p.delay
	if at, ok := p.answerAt[cmd.ID]; ok {
		d = time.Until(at)
	}
	p.mu.Unlock()
	select {
	case <-time.After(d):
		return provider.Success(200)
	case <-ctx.Done():
		return provider.Unknown(ctx.Err())
	}
}

func (p *countingProvider) Close() error { return nil }

// Two copies of one command (a replay re-emitted it while the first was
// queued) reach the provider once: one call per (id, attempt) at a time.
// A command whose cut-off has passed is answered not_attempted, never
// called.
func TestSenderOneCallPerAttemptAndCutoffs(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1})
	p := newCountingProvider(300 * time.Millisecond)
	dup := command("dup", contract.ChannelEmail, 1)
	late, _ := commandWith("late", contract.ChannelEmail, 1, func(c *contract.SendCommand) {
		c.Deadline = time.Now().Add(time.Hour)
		c.Cutoff = time.Now().Add(-time.Second) // a blackout window began while it queued
	})
	c.Produce(t, c.Client(t), dup, dup, late)

	_, stop := runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: p},
		Concurrency: 10, Log: quietLog(), CommitInterval: 100 * time.Millisecond})
	got := results(t, c, 2, 30*time.Second)
	stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.calls["dup#1"] != 1 || p.calls["late#1"] != 0 {
		t.Fatalf("provider calls %v, want dup#1 once, late#1 never", p.calls)
	}
	outcomes := map[string]contract.Outcome{}
	for _, r := range got {
		outcomes[r.ID] = r.Outcome
	}
	if outcomes["dup"] != contract.OutcomeSuccess || outcomes["late"] != contract.OutcomeNotAttempted || len(got) != 2 {
		t.Fatalf("results %+v", got)
	}
}

// A call that starts before its command's cut-off and is answered after it
// (a window opens, or expires_at passes, while the provider works) is
// awaited, not cut at the cut-off: cutting it would not take the delivery
// back, only make the outcome unknown, and the dispatcher would issue the
// attempt again after the window, a second delivery at a provider that
// does not honour the idempotency key. The 1,000,000 load test saw
// exactly that: a window_queued notification called 1.01 s before its
// window, cut after 1.10 s, delivered twice. The webhook's side of the
// rule (a request not yet written at the cut-off is abandoned) is tested
// in provider.
func TestSenderAwaitsACallSpanningTheCutoff(t *testing.T) {
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1})
	p := newCountingProvider(100 * time.Millisecond)
	c.Produce(t, c.Client(t), command("warmup", contract.ChannelEmail, 1))
	_, stop := runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: p},
		Concurrency: 10, Log: quietLog(), CommitInterval: 100 * time.Millisecond, MinBudget: 100 * time.Millisecond})
	results(t, c, 1, 30*time.Second) // the sender is consuming: the next command is taken at once

	rec, cmd := commandWith("spans", contract.ChannelEmail, 1, func(c *contract.SendCommand) {
		c.Deadline = time.Now().Add(time.Hour)
		c.Cutoff = time.Now().Add(1500 * time.Millisecond) // a blackout window opens
	})
	p.mu.Lock()
	p.answerAt["spans"] = cmd.Cutoff.Add(500 * time.Millisecond) // the provider answers inside the window
	p.mu.Unlock()
	c.Produce(t, c.Client(t), rec)
	got := results(t, c, 2, 30*time.Second)
	stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	res := got[len(got)-1]
	if res.ID != "spans" || p.calls["spans#1"] != 1 {
		t.Fatalf("results %+v, calls %v: want one call for spans", got, p.calls)
	}
	if res.Outcome != contract.OutcomeSuccess || !res.At.After(cmd.Cutoff) {
		t.Fatalf("the call spanning the cut-off was answered %s at %s (cut-off %s, error %q): want the provider's success, "+
			"awaited past the cut-off", res.Outcome, res.At.Format(time.StampMilli), cmd.Cutoff.Format(time.StampMilli), res.Error)
	}
	if dl := p.until["spans"]; !dl.IsZero() {
		t.Fatalf("the call's context ends at %v, want no deadline: only a shutdown cuts a call the provider has", dl)
	}
}

// A command carries the provider timeout the dispatcher's send timeout
// assumes (CallTimeout), and the sender bounds the command's call by it
// even when its own provider's timeout is longer: a sender configured
// apart from the dispatcher (--stages, two deployments) answers before
// the dispatcher gives the attempt up and issues it again, rather than
// leaving a call running beside the re-issue's.
func TestSenderBoundsACallByTheCommandsCallTimeout(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1})
	p := newCountingProvider(time.Hour) // answers only when its context ends
	p.answerAt["quick"] = time.Now()    // no CallTimeout: no deadline, answered at once
	rec, _ := commandWith("bounded", contract.ChannelEmail, 1, func(c *contract.SendCommand) {
		c.Deadline, c.Cutoff = time.Now().Add(time.Hour), time.Now().Add(time.Hour)
		c.CallTimeout = contract.Duration(700 * time.Millisecond)
	})
	c.Produce(t, c.Client(t), rec, command("quick", contract.ChannelEmail, 1))
	before := time.Now()
	_, stop := runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: p},
		Concurrency: 10, Log: quietLog(), CommitInterval: 100 * time.Millisecond})
	got := results(t, c, 2, 30*time.Second)
	stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	byID := map[string]contract.SendResult{}
	for _, r := range got {
		byID[r.ID] = r
	}
	dl := p.until["bounded"]
	if dl.IsZero() || dl.Before(before.Add(700*time.Millisecond)) || dl.After(time.Now()) {
		t.Fatalf("the bounded call's context ends at %v (started after %v): want its CallTimeout, 700 ms after the call began", dl, before)
	}
	if r := byID["bounded"]; r.Outcome != contract.OutcomeUnknown || p.calls["bounded#1"] != 1 {
		t.Fatalf("the bounded call: result %+v, calls %v; want one call, answered unknown at its CallTimeout", r, p.calls)
	}
	if dl := p.until["quick"]; !dl.IsZero() || byID["quick"].Outcome != contract.OutcomeSuccess {
		t.Fatalf("a command without CallTimeout: deadline %v, result %+v; want no deadline and the provider's answer", dl, byID["quick"])
	}
}

// A command issued again for the same attempt (a send timeout applied
// before a lagging result) that reaches the sender while the first
// command's call or result is still in flight waits for that slot and is
// answered: skipping it, as a copy of the first, would leave it with no
// answer at all (the dispatcher sets no timer per send). The first call
// delivered, so it is answered with that success under its own issue,
// without a second call (one call per attempt, answered).
func TestSenderAnswersANewIssueOfABusyAttempt(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1})
	p := newCountingProvider(500 * time.Millisecond)
	first := command("reissued", contract.ChannelEmail, 1)
	second, _ := commandWith("reissued", contract.ChannelEmail, 1, func(c *contract.SendCommand) { c.Issue = 1 })
	c.Produce(t, c.Client(t), first, second)
	_, stop := runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: p},
		Concurrency: 10, Log: quietLog(), CommitInterval: 100 * time.Millisecond})
	got := results(t, c, 2, 30*time.Second)
	stop()
	issues := map[int]bool{}
	for _, r := range got {
		issues[r.Issue] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(got) != 2 || !issues[0] || !issues[1] || p.calls["reissued#1"] != 1 {
		t.Fatalf("results %+v and calls %v: want both issues answered, one call", got, p.calls)
	}
	for _, r := range got {
		if r.Outcome != contract.OutcomeSuccess {
			t.Fatalf("results %+v: want the first call's success for both issues", got)
		}
	}
}

// One provider call per attempt, whatever the issue number: the sweep's
// send timeout applied before a lagging success has the dispatcher issue
// the attempt again under a new issue number, and the sender that holds
// the attempt's success answers it with that success (under the new
// issue, so that the dispatcher applies it) without calling the provider
// (issue 21, item 5).
func TestSenderDoesNotCallAnAnsweredAttemptAgainUnderANewIssue(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1})
	p := newCountingProvider(10 * time.Millisecond)
	c.Produce(t, c.Client(t), command("timed-out", contract.ChannelEmail, 1))
	_, stop := runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: p},
		Concurrency: 10, Log: quietLog(), CommitInterval: 100 * time.Millisecond, State: staleIDs{}})
	results(t, c, 1, 30*time.Second)
	again, _ := commandWith("timed-out", contract.ChannelEmail, 1, func(c *contract.SendCommand) { c.Issue = 1 })
	c.Produce(t, c.Client(t), again)
	got := results(t, c, 2, 30*time.Second)
	stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.calls["timed-out#1"] != 1 {
		t.Fatalf("provider calls %v, want timed-out#1 once", p.calls)
	}
	if len(got) != 2 || got[1].Issue != 1 || got[1].Outcome != contract.OutcomeSuccess || !got[1].At.Equal(got[0].At) {
		t.Fatalf("results %+v: want the first success again, under issue 1", got)
	}
}

// The answered memory survives a restart: a new sender rebuilds it from
// herald.results for the partitions it is assigned, before it handles
// their commands, so an attempt answered by the sender before it (a kill
// -9, a partition moved) is not called again, whatever the issue number
// (issue 21, item 5: 1,765 delivered attempts called again after a kill
// during a send burst).
func TestSenderRemembersAnswersAcrossARestart(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 2})
	first := newCountingProvider(10 * time.Millisecond)
	var ids []string
	for i := range 20 {
		id := fmt.Sprintf("restart-%02d", i)
		ids = append(ids, id)
		c.Produce(t, c.Client(t), command(id, contract.ChannelEmail, 1))
	}
	_, stop := runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: first},
		Concurrency: 10, Log: quietLog(), CommitInterval: 100 * time.Millisecond})
	results(t, c, len(ids), 30*time.Second)
	stop()

	second := newCountingProvider(10 * time.Millisecond)
	for _, id := range ids {
		again, _ := commandWith(id, contract.ChannelEmail, 1, func(c *contract.SendCommand) { c.Issue = 1 })
		c.Produce(t, c.Client(t), again)
	}
	_, stop = runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: second},
		Concurrency: 10, Log: quietLog(), CommitInterval: 100 * time.Millisecond, State: staleIDs{}})
	got := results(t, c, 2*len(ids), 30*time.Second)
	stop()
	second.mu.Lock()
	defer second.mu.Unlock()
	if len(second.calls) != 0 {
		t.Fatalf("the restarted sender called the provider for answered attempts: %v", second.calls)
	}
	answered := map[string]bool{}
	for _, r := range got {
		if r.Issue == 1 && r.Outcome == contract.OutcomeSuccess {
			answered[r.ID] = true
		}
	}
	if len(answered) != len(ids) {
		t.Fatalf("%d of %d re-issued commands answered with the first success: %+v", len(answered), len(ids), got)
	}
}

// A command consumed again after it was answered (a sender commit lost in
// a rebalance, or a dispatcher replay), while the state view still shows
// the attempt sending, is not sent again by the sender that answered it.
func TestSenderDoesNotCallAgainForAnAnsweredCommand(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1})
	p := newCountingProvider(10 * time.Millisecond)
	cmd := command("again", contract.ChannelEmail, 1)
	c.Produce(t, c.Client(t), cmd)
	_, stop := runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: p},
		Concurrency: 10, Log: quietLog(), CommitInterval: 100 * time.Millisecond,
		State: staleIDs{}}) // the view knows nothing newer: Stale cannot tell
	results(t, c, 1, 30*time.Second)
	c.Produce(t, c.Client(t), &kgo.Record{Topic: cmd.Topic, Key: cmd.Key, Value: cmd.Value}) // the same command again
	other := command("other", contract.ChannelEmail, 1)
	c.Produce(t, c.Client(t), other)
	got := results(t, c, 3, 30*time.Second) // other's result: the second copy was handled before it
	stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.calls["again#1"] != 1 || p.calls["other#1"] != 1 {
		t.Fatalf("provider calls %v, want again#1 once", p.calls)
	}
	// The copy is answered with the first's result again: the dispatcher
	// may need it (answered).
	var again []contract.SendResult
	for _, r := range got {
		if r.ID == "again" {
			again = append(again, r)
		}
	}
	if len(again) != 2 || again[1].Outcome != contract.OutcomeSuccess || !again[1].At.Equal(again[0].At) {
		t.Fatalf("results for again %+v: want the first's answer, then the same answer for the copy", again)
	}
}

// A late copy of an answered command, arriving after its cut-off, is
// answered with its twin's result, not not_attempted: that answer would
// have the dispatcher issue the attempt again although its twin delivered.
func TestSenderLateCopyOfAnAnsweredCommandIsNotNotAttempted(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1})
	p := newCountingProvider(10 * time.Millisecond)
	rec, cmd := commandWith("late-copy", contract.ChannelEmail, 1, func(c *contract.SendCommand) {
		c.Cutoff = time.Now().Add(3 * time.Second) // more than the sender's minimum budget
		c.Deadline = c.Cutoff
	})
	c.Produce(t, c.Client(t), rec)
	_, stop := runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: p},
		Concurrency: 10, Log: quietLog(), CommitInterval: 100 * time.Millisecond})
	results(t, c, 1, 30*time.Second)
	time.Sleep(time.Until(cmd.Cutoff) + 100*time.Millisecond)
	c.Produce(t, c.Client(t), &kgo.Record{Topic: rec.Topic, Key: rec.Key, Value: rec.Value})
	c.Produce(t, c.Client(t), command("marker", contract.ChannelEmail, 1))
	got := results(t, c, 3, 30*time.Second)
	stop()
	for _, r := range got {
		if r.ID == "late-copy" && r.Outcome != contract.OutcomeSuccess {
			t.Fatalf("the late copy was answered %s: %+v", r.Outcome, got)
		}
	}
	if len(got) != 3 {
		t.Fatalf("%d results, want the first copy's, its answer again for the late copy, and the marker's: %+v", len(got), got)
	}
}

// A copy of a command answered not_attempted (a resend copy stamped with a
// later cut-off, say) is answered not_attempted again, never called: the
// notification is held, perhaps in a blackout window (issue 21, item 4:
// the sender did not remember not_attempted answers).
func TestSenderRemembersNotAttempted(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 1})
	p := newCountingProvider(10 * time.Millisecond)
	late, _ := commandWith("held", contract.ChannelEmail, 1, func(c *contract.SendCommand) {
		c.Issue, c.Deadline, c.Cutoff = 2, time.Now().Add(time.Hour), time.Now().Add(-time.Second)
	})
	c.Produce(t, c.Client(t), late)
	_, stop := runSender(t, sender.Config{Topology: c.Topology, Providers: provider.Set{contract.ChannelEmail: p},
		Concurrency: 10, Log: quietLog(), CommitInterval: 100 * time.Millisecond, State: staleIDs{}})
	results(t, c, 1, 30*time.Second)
	cp, _ := commandWith("held", contract.ChannelEmail, 1, func(c *contract.SendCommand) {
		c.Issue, c.Deadline, c.Cutoff = 2, time.Now().Add(time.Hour), time.Now().Add(time.Hour)
	})
	c.Produce(t, c.Client(t), cp)
	got := results(t, c, 2, 30*time.Second)
	stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.calls["held#1"] != 0 {
		t.Fatalf("provider calls %v: the copy of a command answered not_attempted was called", p.calls)
	}
	if got[1].Outcome != contract.OutcomeNotAttempted || got[1].Issue != 2 {
		t.Fatalf("results %+v: want not_attempted again for the copy", got)
	}
}

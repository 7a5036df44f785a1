package dispatcher

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/gokax"
	"github.com/herald-dispatch/herald/internal/topology"
)

// sizeRequest is the contract's benchmark request (contract/bench_test.go):
// a typical billing notification, two channels, a zone, a window, an
// expiry.
const sizeRequest = `{"schema":"herald.dispatch.v1","id":"2026-01:user-123:bill","campaign":"billing-2026-01",
 "recipient":{"email":"jane@example.com","phone":"+821012345678","tz":"Asia/Seoul"},"channels":["email","sms"],
 "content":{"template":"statement","amount":"42.00","currency":"EUR","period":"2026-01"},
 "policy":{"id":"billing","version":3,"attempts_per_channel":3,"backoff":{"initial":"1s","multiplier":2,"max":"10m"}},
 "blackout":[{"from":"22:00","to":"06:00"}],"expires_at":"2026-02-15T00:00:00Z"}`

// TestStateSizes measures the encoded bytes of one notification's state
// in the table (docs/performance.md, "Bytes per state"): a sent state with
// its payload (what releases before the shedding kept), the same state
// shed, and run with -v it reports both.
func TestStateSizes(t *testing.T) {
	cfg := testConfig()
	r, err := contract.Decode([]byte("2026-01:user-123:bill"), []byte(sizeRequest))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)
	src := func(topic string, off int64) contract.Position {
		return contract.Position{Topic: topic, Partition: 3, Offset: off}
	}
	d := Dispatch(nil, Event{Source: src(topology.TopicRequests, 1234567), Epoch: 7, Request: r}, now, cfg)
	sending := d.State
	d = Dispatch(sending, Event{Source: src(topology.TopicResults, 7654321), Epoch: 7, Result: &contract.SendResult{
		ID: r.ID, Attempt: 1, Channel: contract.ChannelEmail, Outcome: contract.OutcomeSuccess, At: now.Add(time.Second)}}, now.Add(time.Second), cfg)
	sent := d.State
	if sent == nil || sent.Status != contract.StatusSent || sent.HasPayload() {
		t.Fatalf("want a shed sent state, got %+v", sent)
	}
	kept := *sent
	kept.Request = r // the sent state as it was before shedding
	size := func(s *contract.State) int {
		b, err := contract.EncodeState(s)
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	full, shed := size(&kept), size(sent)
	payload := len(r.Content) + len(r.Recipient.Email) + len(r.Recipient.Phone)
	d = Dispatch(sent, Event{Source: src(topology.TopicWakeups, 99), Epoch: 7, Wakeup: &contract.Wakeup{ID: r.ID,
		Kind: contract.WakeupRetire, SeenVersion: sent.Version}}, now.Add(cfg.StateRetention+time.Hour), cfg)
	if d.State == nil || !d.State.Remembered {
		t.Fatalf("want a remembered record, got %+v", d)
	}
	mem := size(d.State)
	t.Logf("bytes per state (encoded): sending %d, sent with its payload %d, sent shed %d (payload %d bytes of content and addresses), remembered %d (id %d bytes)",
		size(sending), full, shed, payload, mem, len(r.ID))
	if full-shed < payload {
		t.Errorf("shedding saved %d bytes, less than the payload's %d", full-shed, payload)
	}
	if mem > len(r.ID)+40 {
		t.Errorf("remembered record of %d bytes, want a few dozen", mem)
	}
}

const day = 24 * time.Hour

// retireAt is the sweep's retire wake-up at t0+at, with the version it
// read from the changelog: the state's own (the changelog has it).
func retireAt(at time.Duration) step {
	return step{at: at, ev: func(s *contract.State) Event {
		w := &contract.Wakeup{ID: "n-1", Kind: contract.WakeupRetire, Due: t0.Add(at)}
		if s != nil {
			w.SeenVersion = s.Version
		}
		return Event{Wakeup: w}
	}}
}

// remembers checks the remembered record: status and the final state's
// last change (checkRetention checks that nothing else is kept).
func remembers(status contract.Status, last time.Time) func(t *testing.T, s *contract.State) {
	return func(t *testing.T, s *contract.State) {
		if !s.Remembered || s.Status != status || !s.UpdatedAt.Equal(last) || s.Request != nil || s.History != nil {
			t.Errorf("remembered record %+v, want %s last changed at %s", s, status, last)
		}
	}
}

func TestDispatchRetention(t *testing.T) {
	plain := newRequest(t, nil)
	sent := given(plain, result(time.Second, contract.OutcomeSuccess))
	failed := given(plain, result(time.Second, contract.OutcomePermanent), result(2*time.Second, contract.OutcomePermanent))
	held := newRequest(t, func(m map[string]any) { m["not_before"] = "2027-06-01T00:00:00Z" })
	remembered := append(append([]step(nil), sent...), retireAt(36*day))
	lateSuccess := step{at: 37 * day, ev: func(s *contract.State) Event {
		return Event{Result: &contract.SendResult{ID: "n-1", Attempt: 1, Channel: "email", Outcome: contract.OutcomeSuccess, At: t0.Add(37 * day)}}
	}}
	runRows(t, []row{
		{rule: "a sent state past --state-retention becomes its remembered record",
			given: sent,
			when:  retireAt(time.Second + stateRetention),
			want: want{verdict: VerdictRemembered, status: contract.StatusSent,
				check: remembers(contract.StatusSent, t0.Add(time.Second))}},
		{rule: "a failed state past --state-retention is remembered too: its payload goes, and a retry with it",
			given: failed,
			when:  retireAt(36 * day),
			want: want{verdict: VerdictRemembered, status: contract.StatusFailed,
				check: remembers(contract.StatusFailed, t0.Add(2*time.Second))}},
		{rule: "a canceled state past --state-retention is remembered",
			given: given(held, cancel(time.Minute)),
			when:  retireAt(36 * day),
			want: want{verdict: VerdictRemembered, status: contract.StatusCanceled,
				check: remembers(contract.StatusCanceled, t0.Add(time.Minute))}},
		{rule: "a final state within --state-retention is kept whole",
			given: sent,
			when:  retireAt(stateRetention),
			want:  want{verdict: VerdictStale}},
		{rule: "a duplicate request moves the retention's clock on",
			given: append(append([]step(nil), sent...), plain.after(30*day)),
			when:  retireAt(36 * day),
			want:  want{verdict: VerdictStale}},
		{rule: "a state that is not final is never retired, however old",
			given: given(held),
			when:  retireAt(400 * day),
			want:  want{verdict: VerdictStale}},
		{rule: "a remembered record past --dedup-retention is deleted (a tombstone)",
			given: remembered,
			when:  retireAt(time.Second + dedupRetention),
			want:  want{verdict: VerdictDeleted, delete: true}},
		{rule: "a remembered record within --dedup-retention stays",
			given: remembered,
			when:  retireAt(dedupRetention),
			want:  want{verdict: VerdictStale}},
		{rule: "a final state past --dedup-retention that was never remembered is deleted at once",
			given: sent,
			when:  retireAt(400 * day),
			want:  want{verdict: VerdictDeleted, delete: true}},
		{rule: "a request for a remembered id is a duplicate: nothing written, nothing sent",
			given: remembered,
			when:  plain.after(40 * day),
			want:  want{verdict: VerdictDuplicate}},
		{rule: "a late success for a remembered id is stale",
			given: remembered,
			when:  lateSuccess,
			want:  want{verdict: VerdictStale}},
		{rule: "a cancel for a remembered id is stale",
			given: remembered,
			when:  cancel(37 * day),
			want:  want{verdict: VerdictStale}},
		{rule: "a retry for a remembered failed id is stale: its request is gone",
			given: append(append([]step(nil), failed...), retireAt(36*day)),
			when:  retry(37*day, 2),
			want:  want{verdict: VerdictStale}},
		{rule: "after the tombstone, a request with the id is a new notification",
			given: append(append([]step(nil), remembered...), retireAt(400*day)),
			when:  plain.after(401 * day),
			want:  want{verdict: VerdictApplied, status: contract.StatusSending, channel: "email", attempts: 1, onChan: 1, emits: []string{send("email", 1)}}},
		{rule: "a retire wake-up for an id with no state is stale, never parked",
			when: retireAt(36 * day),
			want: want{verdict: VerdictStale}},
		{rule: "a retire wake-up that saw a record its owner deleted writes the tombstone again",
			when: fixed(400*day, Event{Wakeup: &contract.Wakeup{ID: "n-1", Kind: contract.WakeupRetire, Due: t0.Add(400 * day), SeenVersion: 4}}),
			want: want{verdict: VerdictHealed, delete: true}},
		{rule: "a retire wake-up that saw an older version heals the changelog and retires nothing",
			given: sent,
			when: step{at: 36 * day, ev: func(s *contract.State) Event {
				return Event{Wakeup: &contract.Wakeup{ID: s.ID, Kind: contract.WakeupRetire, Due: t0.Add(36 * day), SeenVersion: s.Version - 1}}
			}},
			want: want{verdict: VerdictHealed, repair: true}},
	})
}

// The sweep's retention pass asks to retire a final state past
// --state-retention and any record past --dedup-retention, with the
// version it read, and nothing else.
func TestRetirable(t *testing.T) {
	last := t0
	enc := func(s *contract.State) []byte {
		b, err := contract.EncodeState(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	whole := func(st contract.Status) []byte {
		return enc(&contract.State{ID: "n-1", Status: st, UpdatedAt: last, Version: 7, Request: request(t, nil)})
	}
	mem := enc(&contract.State{ID: "n-1", Status: contract.StatusSent, UpdatedAt: last, Version: 8, Remembered: true})
	for _, c := range []struct {
		name string
		b    []byte
		age  time.Duration
		want uint64 // the wake-up's SeenVersion; 0: none
	}{
		{"sent within state retention", whole(contract.StatusSent), stateRetention - time.Second, 0},
		{"sent past state retention", whole(contract.StatusSent), stateRetention, 7},
		{"failed past state retention", whole(contract.StatusFailed), stateRetention, 7},
		{"held, however old", whole(contract.StatusScheduled), 2 * dedupRetention, 0},
		{"sending, however old", whole(contract.StatusSending), 2 * dedupRetention, 0},
		{"remembered within dedup retention", mem, dedupRetention - time.Second, 0},
		{"remembered past dedup retention", mem, dedupRetention, 8},
		{"whole past dedup retention", whole(contract.StatusExpired), dedupRetention, 7},
	} {
		now := last.Add(c.age)
		w, ok := retirable(c.b, now, stateRetention, dedupRetention)
		if ok != (c.want != 0) || (ok && (w != contract.Wakeup{ID: "n-1", Kind: contract.WakeupRetire, Due: now, SeenVersion: c.want})) {
			t.Errorf("%s: %+v %v, want seen version %d", c.name, w, ok, c.want)
		}
	}
}

// BenchmarkLevelDBBytesPerState writes HERALD_BENCH_STATES (default
// 100,000) sent states into a LevelDB store as the dispatcher opens it
// (gokax.Storage), once with their payload (as releases before v1.7 kept
// them), once shed, once as remembered records, and reports the bytes on
// disk per state (docs/performance.md, "Bytes per state"):
//
//	go test -run '^$' -bench LevelDBBytesPerState -benchtime=1x ./internal/dispatcher
func BenchmarkLevelDBBytesPerState(b *testing.B) {
	n := 100_000
	if v := os.Getenv("HERALD_BENCH_STATES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	cfg := testConfig()
	now := time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)
	tmpl, err := contract.Decode(nil, []byte(sizeRequest))
	if err != nil {
		b.Fatal(err)
	}
	forms := map[string]func(sent *contract.State, r *contract.Request) *contract.State{
		"with payload": func(s *contract.State, r *contract.Request) *contract.State { k := *s; k.Request = r; return &k },
		"shed":         func(s *contract.State, _ *contract.Request) *contract.State { return s },
		"remembered": func(s *contract.State, _ *contract.Request) *contract.State {
			return &contract.State{ID: s.ID, Status: s.Status, UpdatedAt: s.UpdatedAt, Version: s.Version + 1, Remembered: true}
		},
	}
	for range b.N {
		for _, name := range []string{"with payload", "shed", "remembered"} {
			dir := b.TempDir()
			st, err := gokax.Storage(dir)(string(topology.TableDispatcher), 0)
			if err != nil {
				b.Fatal(err)
			}
			if err := st.Open(); err != nil {
				b.Fatal(err)
			}
			var encoded int64
			for i := range n {
				r := *tmpl
				r.ID = fmt.Sprintf("2026-01:user-%07d:bill", i)
				r.Recipient.Email = fmt.Sprintf("user-%07d@example.com", i)
				src := contract.Position{Topic: topology.TopicRequests, Partition: 0, Offset: int64(i)}
				d := Dispatch(nil, Event{Source: src, Epoch: 7, Request: &r}, now, cfg)
				d = Dispatch(d.State, Event{Source: contract.Position{Topic: topology.TopicResults, Offset: int64(i)}, Epoch: 7,
					Result: &contract.SendResult{ID: r.ID, Attempt: 1, Channel: contract.ChannelEmail, Outcome: contract.OutcomeSuccess, At: now}}, now, cfg)
				v, err := contract.EncodeState(forms[name](d.State, &r))
				if err != nil {
					b.Fatal(err)
				}
				encoded += int64(len(v))
				if err := st.Set(r.ID, v); err != nil {
					b.Fatal(err)
				}
			}
			if err := st.Close(); err != nil {
				b.Fatal(err)
			}
			var disk int64
			filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
				if err == nil && !e.IsDir() {
					if info, err := e.Info(); err == nil {
						disk += info.Size()
					}
				}
				return nil
			})
			b.Logf("%s: %d states, %d bytes encoded each, %d bytes on disk each", name, n, encoded/int64(n), disk/int64(n))
			b.ReportMetric(float64(disk)/float64(n), strings.ReplaceAll(name, " ", "_")+"_disk_B/state")
		}
	}
}

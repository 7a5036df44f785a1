package sink

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/report"

	"github.com/herald-dispatch/herald/contract"
)

// Versions written in any order, in one batch or across batches, any
// number of times, leave the newest; attempts are written once each.
func TestWriterNewestWinsWhateverTheOrder(t *testing.T) {
	t.Parallel()
	pool := migratedPool(t, heraldtest.Postgres(t))
	w := NewWriter(pool)
	ctx := context.Background()

	// Batch 1: versions 3, 1, 2 of a, out of order, plus b at 4 twice.
	var batch []Change
	for _, v := range []uint64{3, 1, 2} {
		batch = append(batch, change(state("a", "c1", v)))
	}
	batch = append(batch, change(state("b", "c1", 4)), change(state("b", "c1", 4)))
	res, err := w.Write(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 2 || res.Applied != 2 || res.Attempts != 3 || res.Transactions != 1 || len(res.Rejected) != 0 {
		t.Fatalf("batch 1: %+v", res)
	}
	// Batch 2: older versions of both, replayed: nothing moves back.
	res, err = w.Write(ctx, []Change{change(state("b", "c1", 2)), change(state("a", "c1", 1)), change(state("b", "c1", 3))})
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 0 || res.Attempts != 0 {
		t.Fatalf("replay applied %+v", res)
	}
	// Batch 3: a moves forward to 4, gaining its second attempt.
	if res, err = w.Write(ctx, []Change{change(state("a", "c1", 4))}); err != nil || res.Applied != 1 || res.Attempts != 1 {
		t.Fatalf("forward: %+v %v", res, err)
	}
	got := rows(t, pool)
	want := map[string]row{
		"a": {Status: "sent", Version: 4, Attempts: 2, Sent: true},
		"b": {Status: "sent", Version: 4, Attempts: 2, Sent: true},
	}
	for id, r := range want {
		if got[id] != r {
			t.Errorf("%s: got %+v want %+v", id, got[id], r)
		}
	}
	if n := countRows(t, pool, `SELECT count(*) FROM dispatch_attempts`); n != 4 {
		t.Fatalf("%d attempts, want 4", n)
	}
	// The attempts went to their month's partition, not the default one.
	if n := countRows(t, pool, `SELECT count(*) FROM dispatch_attempts_default`); n != 0 {
		t.Fatalf("%d attempts in the default partition", n)
	}
}

// A state PostgreSQL cannot take (a NUL byte) is found by bisection and
// rejected; one the sink's checks refuse never reaches PostgreSQL; the
// rest of the batch is written.
func TestWriterRejectsPoisonAndWritesTheRest(t *testing.T) {
	t.Parallel()
	pool := migratedPool(t, heraldtest.Postgres(t))
	w := NewWriter(pool)
	var batch []Change
	for _, id := range ids("n", 100) {
		batch = append(batch, change(state(id, "c1", 3)))
	}
	batch[37].State.HoldReason = "bad \x00 byte"
	// A provider's error text with a NUL or bad UTF-8 is written, mended.
	batch[38].State.LastError = "550 \x00 \xff"
	batch[80].State.Attempts = math.MaxInt32 + 1
	noID := state("", "c1", 1)
	batch = append(batch, Change{State: noID, Key: []byte("x")})

	res, err := w.Write(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, r := range res.Rejected {
		reasons[string(r.Change.Key)] = r.Reason + ": " + r.Err.Error()
	}
	if len(res.Rejected) != 3 || !strings.HasPrefix(reasons["n-0037"], ReasonRejected) ||
		!strings.HasPrefix(reasons["n-0080"], ReasonInvalid) || !strings.HasPrefix(reasons["x"], ReasonInvalid) {
		t.Fatalf("rejected: %v", reasons)
	}
	if !strings.Contains(reasons["n-0037"], "22021") {
		t.Errorf("NUL byte rejection does not carry PostgreSQL's code: %s", reasons["n-0037"])
	}
	got := rows(t, pool)
	if len(got) != 98 {
		t.Fatalf("%d rows written, want 98", len(got))
	}
	if _, ok := got["n-0037"]; ok {
		t.Fatal("poison row written")
	}
	var lastErr string
	if err := pool.QueryRow(context.Background(), `SELECT last_error FROM dispatch_status WHERE id = 'n-0038'`).Scan(&lastErr); err != nil || lastErr != "550 \uFFFD \uFFFD" {
		t.Errorf("mended provider error: %q %v", lastErr, err)
	}
	if res.Transactions < 2 || res.Transactions > 16 {
		t.Fatalf("%d transactions for one poison row in 99", res.Transactions)
	}
}

// A write against a PostgreSQL that is gone is an error to retry, not a
// rejection.
func TestWriterUnreachableIsRetryable(t *testing.T) {
	t.Parallel()
	srv := heraldtest.PostgresServer(t)
	pool := migratedPool(t, srv.URL())
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := NewWriter(pool).Write(ctx, []Change{change(state("a", "c1", 1))})
	if err == nil || len(res.Rejected) != 0 {
		t.Fatalf("write to a stopped server: %+v %v", res, err)
	}
	if isDataError(err) {
		t.Fatalf("connection error classified as data error: %v", err)
	}
}

// What the writer writes, the campaign summary (package report) reads: it
// counts per channel and status, spreads delivery times and lists failure
// reasons.
func TestCampaignSummary(t *testing.T) {
	t.Parallel()
	pool := migratedPool(t, heraldtest.Postgres(t))
	ctx := context.Background()
	var batch []Change
	for i, id := range ids("s", 10) { // sent after 4 s .. 13 s
		s := state(id, "nov", 4)
		sent := t0.Add(time.Duration(4+i) * time.Second)
		s.SentAt = &sent
		batch = append(batch, change(s))
	}
	for _, id := range ids("f", 3) {
		s := state(id, "nov", 5)
		s.Status, s.Channel, s.LastError, s.SentAt, s.History = contract.StatusFailed, contract.ChannelSMS, "sms: invalid number", nil, nil
		batch = append(batch, change(s))
	}
	batch = append(batch, change(state("w-1", "nov", 3)), change(state("other", "dec", 4)))
	if _, err := NewWriter(pool).Write(ctx, batch); err != nil {
		t.Fatal(err)
	}
	sum, err := report.CampaignSummary(ctx, pool, "nov")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Total != 14 || sum.Final != 13 || sum.ByStatus["sent"] != 10 || sum.ByStatus["failed"] != 3 || sum.ByStatus["retrying"] != 1 {
		t.Fatalf("counts: %+v", sum)
	}
	if len(sum.Counts) != 3 || sum.Counts[0] != (report.StatusCount{Channel: "email", Status: "retrying", Notifications: 1, Attempts: 1}) {
		t.Fatalf("per channel/status: %+v", sum.Counts)
	}
	d := sum.Delivery
	if d == nil || d.Sent != 10 || d.MinSeconds != 4 || d.MaxSeconds != 13 || d.P50Seconds != 8.5 || !d.LastSent.Equal(t0.Add(13*time.Second)) {
		t.Fatalf("delivery: %+v", d)
	}
	if len(sum.Failures) != 1 || sum.Failures[0] != (report.FailureReason{Status: "failed", Channel: "sms", Error: "sms: invalid number", Notifications: 3}) {
		t.Fatalf("failures: %+v", sum.Failures)
	}
	if _, err := report.CampaignSummary(ctx, pool, "nope"); !errors.Is(err, report.ErrCampaignNotFound) {
		t.Fatalf("unknown campaign: %v", err)
	}
}

// status_synced_at is when the row's current status was written: it moves
// with the status, not with a later version that keeps the status, nor
// with a stale one.
func TestWriterStatusSyncedAtMovesWithTheStatus(t *testing.T) {
	t.Parallel()
	pool := migratedPool(t, heraldtest.Postgres(t))
	w := NewWriter(pool)
	ctx := context.Background()
	stamp := func() time.Time {
		t.Helper()
		var at time.Time
		if err := pool.QueryRow(ctx, `SELECT status_synced_at FROM dispatch_status WHERE id = 'x'`).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	write := func(s *contract.State) {
		t.Helper()
		if _, err := w.Write(ctx, []Change{change(s)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // the clock moves between writes
	}
	write(state("x", "c", 2)) // sending
	sending := stamp()
	if sending.IsZero() {
		t.Fatal("no status_synced_at on insert")
	}
	write(state("x", "c", 4)) // sent
	sent := stamp()
	if !sent.After(sending) {
		t.Fatalf("status changed to sent, stamp %s not after %s", sent, sending)
	}
	dup := state("x", "c", 5) // a duplicate counted: still sent
	dup.Status, dup.Duplicates = contract.StatusSent, 1
	write(dup)
	if got := stamp(); !got.Equal(sent) {
		t.Fatalf("same status, later version: stamp moved from %s to %s", sent, got)
	}
	if got := rows(t, pool)["x"]; got.Version != 5 {
		t.Fatalf("version %d, want 5", got.Version)
	}
	write(state("x", "c", 3)) // stale: retrying at an older version
	if got := stamp(); !got.Equal(sent) {
		t.Fatalf("stale version moved the stamp from %s to %s", sent, got)
	}
}

// mergeAttempts returns the longer history as it is when it begins with
// the shorter one (no copy), and merges by attempt number otherwise (a
// history cut to contract.MaxHistory).
func TestMergeAttempts(t *testing.T) {
	t.Parallel()
	at := func(ns ...int) []contract.Attempt {
		out := make([]contract.Attempt, len(ns))
		for i, n := range ns {
			out[i] = contract.Attempt{Attempt: n}
		}
		return out
	}
	nums := func(as []contract.Attempt) []int {
		out := []int{}
		for _, a := range as {
			out = append(out, a.Attempt)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		a, b []contract.Attempt
		want []int
		same string // "a" or "b": the result is that slice itself
	}{
		{"older first, newer longer", at(1), at(1, 2), []int{1, 2}, "b"},
		{"newer first, older shorter", at(1, 2, 3), at(1, 2), []int{1, 2, 3}, "a"},
		{"no history yet", nil, at(1), []int{1}, "b"},
		{"neither has any", nil, nil, []int{}, ""},
		{"cut at the front", at(2, 3), at(1, 2), []int{2, 3, 1}, ""},
		{"same length, different", at(1, 2), at(3, 4), []int{1, 2, 3, 4}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mergeAttempts(tc.a, tc.b)
			if g := nums(got); !slices.Equal(g, tc.want) {
				t.Fatalf("got %v, want %v", g, tc.want)
			}
			switch tc.same {
			case "a":
				if &got[0] != &tc.a[0] {
					t.Fatal("a copy of a, want a itself")
				}
			case "b":
				if &got[0] != &tc.b[0] {
					t.Fatal("a copy of b, want b itself")
				}
			}
		})
	}
}

// The dispatcher's retention changes nothing in PostgreSQL: a final state
// that shed its payload (content and addresses) keeps every column,
// and the remembered record that replaces it later (id, status, version
// and its last change only) is skipped, so the row keeps the campaign,
// policy, attempts and times the reports read.
func TestWriterKeepsReportsThroughRetention(t *testing.T) {
	pool := migratedPool(t, heraldtest.Postgres(t))
	w := NewWriter(pool)
	ctx := context.Background()
	full := state("a", "c1", 4)
	full.Request.Content = []byte(`{"subject":"hi"}`)
	full.Request.Recipient = contract.Recipient{Email: "jane@example.com"}
	shed := state("a", "c1", 5)
	shed.UpdatedAt = full.UpdatedAt
	mem := &contract.State{ID: "a", Status: contract.StatusSent, UpdatedAt: full.UpdatedAt, Version: 6, Remembered: true}
	type report struct {
		Campaign, Status, Channel, Policy string
		PolicyVersion, Attempts           int
		Version                           int64
		Sent                              bool
	}
	read := func() report {
		var r report
		if err := pool.QueryRow(ctx, `SELECT campaign, status, channel, policy_id, policy_version, attempts, version, sent_at IS NOT NULL
			FROM dispatch_status WHERE id = 'a'`).Scan(&r.Campaign, &r.Status, &r.Channel, &r.Policy, &r.PolicyVersion, &r.Attempts,
			&r.Version, &r.Sent); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if _, err := w.Write(ctx, []Change{change(full)}); err != nil {
		t.Fatal(err)
	}
	want := report{Campaign: "c1", Status: "sent", Channel: "email", Policy: "statements", PolicyVersion: 7, Attempts: 2, Version: 4, Sent: true}
	if got := read(); got != want {
		t.Fatalf("whole state: %+v, want %+v", got, want)
	}
	if res, err := w.Write(ctx, []Change{change(shed)}); err != nil || res.Applied != 1 {
		t.Fatalf("shed state: %+v, %v", res, err)
	}
	want.Version = 5
	if got := read(); got != want {
		t.Fatalf("after the shed state: %+v, want %+v (only the version moves)", got, want)
	}
	// The remembered record, alone or in one batch with the shed state.
	for _, batch := range [][]Change{{change(mem)}, {change(shed), change(mem)}} {
		if res, err := w.Write(ctx, batch); err != nil || res.Applied != 0 || len(res.Rejected) != 0 {
			t.Fatalf("remembered record: %+v, %v; want nothing applied, nothing rejected", res, err)
		}
		if got := read(); got != want {
			t.Fatalf("after the remembered record: %+v, want %+v", got, want)
		}
	}
}

// roundTrips counts what a pool's connections send PostgreSQL: statements
// on their own, pgx batches (one round trip for all their statements) and
// COPYs.
type roundTrips struct {
	mu sync.Mutex
	tripCount
}

type tripCount struct {
	statements   []string
	batches      int
	batchQueries int
	copies       int
}

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statements = append(r.statements, strings.ToLower(strings.TrimSpace(d.SQL)))
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches++
	r.batchQueries += d.Batch.Len()
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}
func (r *roundTrips) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.copies++
	return ctx
}
func (r *roundTrips) TraceCopyFromEnd(context.Context, *pgx.Conn, pgx.TraceCopyFromEndData) {}

func (r *roundTrips) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tripCount = tripCount{}
}

func (r *roundTrips) count() tripCount {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tripCount
}

// A batch is one transaction of three round trips whatever its size:
// BEGIN, both INSERTs in one pgx batch (the rows as column arrays), COMMIT.
// No COPY: each COPY and each statement on its own was a round trip, and
// every round trip of a loaded process waits for the Go scheduler. The
// rows still arrive whole: NULLs where a state has no time or provider.
func TestWriterBatchIsThreeRoundTrips(t *testing.T) {
	t.Parallel()
	dsn := heraldtest.Postgres(t)
	migratedPool(t, dsn)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	trips := new(roundTrips)
	cfg.ConnConfig.Tracer = trips
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	w := NewWriter(pool)
	ctx := context.Background()
	// The first write also makes the attempts' month partition.
	if _, err := w.Write(ctx, []Change{change(state("warm", "c1", 4))}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2000} {
		trips.reset()
		var batch []Change
		for i, id := range ids(fmt.Sprintf("b%d", n), n) {
			batch = append(batch, change(state(id, "c1", uint64(1+i%4))))
		}
		res, err := w.Write(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		if res.Applied != int64(n) || res.Transactions != 1 {
			t.Fatalf("batch of %d: %+v", n, res)
		}
		got := trips.count()
		wantQueries := 2 // the attempts' INSERT and the statuses'
		if n == 1 {
			wantQueries = 1 // a scheduled state has no attempts
		}
		if !slices.Equal(got.statements, []string{"begin", "commit"}) || got.batches != 1 || got.batchQueries != wantQueries || got.copies != 0 {
			t.Fatalf("batch of %d: statements %q, %d batches of %d queries, %d COPYs; want begin and commit around one batch of %d, no COPY",
				n, got.statements, got.batches, got.batchQueries, got.copies, wantQueries)
		}
	}
	var sentNull, nextNull, sentSet, nextSet, providerNull, providerSet int
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE sent_at IS NULL), count(*) FILTER (WHERE next_attempt_at IS NULL),
		count(*) FILTER (WHERE sent_at IS NOT NULL), count(*) FILTER (WHERE next_attempt_at IS NOT NULL) FROM dispatch_status WHERE id LIKE 'b2000-%'`).
		Scan(&sentNull, &nextNull, &sentSet, &nextSet); err != nil {
		t.Fatal(err)
	}
	// Of 2,000 at versions 1-4, 500 each: 500 sent (sent_at), 500 retrying (next_attempt_at).
	if sentSet != 500 || sentNull != 1500 || nextSet != 500 || nextNull != 1500 {
		t.Fatalf("sent_at set %d, NULL %d; next_attempt_at set %d, NULL %d", sentSet, sentNull, nextSet, nextNull)
	}
	batch := []Change{change(state("prov", "c1", 4))}
	batch[0].State.History[1].Provider, batch[0].State.History[1].ProviderMessageID = "ses", "m-1"
	if _, err := w.Write(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE provider IS NULL AND provider_message_id IS NULL),
		count(*) FILTER (WHERE provider = 'ses' AND provider_message_id = 'm-1') FROM dispatch_attempts WHERE id = 'prov'`).
		Scan(&providerNull, &providerSet); err != nil || providerNull != 1 || providerSet != 1 {
		t.Fatalf("attempts' providers: %d NULL, %d set, want 1 and 1 (%v)", providerNull, providerSet, err)
	}
}

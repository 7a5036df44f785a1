package sink

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-dispatch/herald/contract"
)

// Change is one changelog record with its decoded state.
type Change struct {
	State *contract.State
	// Source is where the record was read; Key and Value are its bytes,
	// kept for the dead letter should the state be rejected.
	Source contract.Position
	Key    []byte
	Value  []byte
}

// Dead-letter reasons of the sink.
const (
	// ReasonUndecodable: the changelog value is not a JSON contract.State.
	ReasonUndecodable = "undecodable_state"
	// ReasonInvalid: the state fails the sink's checks before PostgreSQL
	// sees it (no id, id and key differ, a number out of range).
	ReasonInvalid = "invalid_state"
	// ReasonRejected: PostgreSQL refused the row for its data.
	ReasonRejected = "rejected_by_postgres"
)

// Rejection is a change that can never be written, and why.
type Rejection struct {
	Change Change
	Reason string
	Err    error
}

// WriteResult says what Write did.
type WriteResult struct {
	// Rows is the number of distinct ids (the newest version of each) that
	// were offered to dispatch_status.
	Rows int
	// Applied counts dispatch_status rows inserted or moved forward; Rows -
	// Applied were older than (or as old as) what the table holds.
	Applied int64
	// Attempts counts dispatch_attempts rows inserted.
	Attempts int64
	// Rejected are the changes left out, each to be dead-lettered.
	Rejected []Rejection
	// Transactions committed (more than one when a batch was bisected).
	Transactions int
}

// Writer writes batches of changes to dispatch_status and
// dispatch_attempts. It is safe for concurrent use.
type Writer struct {
	pool *pgxpool.Pool
	now  func() time.Time

	mu     sync.Mutex
	months map[int]bool // months (year*12+month) whose attempts partition exists

	// hook, when set (tests only), is called at named points of the
	// write; an error from it aborts the write there, as a crash would.
	hook func(point string) error
}

// NewWriter returns a Writer on pool.
func NewWriter(pool *pgxpool.Pool) *Writer {
	return &Writer{pool: pool, now: time.Now, months: map[int]bool{}}
}

// item is the newest change of one id in a batch, with every attempt any
// version of it carried.
type item struct {
	change   Change
	attempts []contract.Attempt
}

// Write writes the newest version of every id in changes, and all their
// attempts, in one transaction. Changes that can never be written are left
// out and returned in WriteResult.Rejected (the rest is written); a batch
// PostgreSQL refuses for its data is bisected to find them. An error means
// nothing may be assumed written and the same changes should be written
// again later (PostgreSQL unreachable, say).
func (w *Writer) Write(ctx context.Context, changes []Change) (WriteResult, error) {
	var res WriteResult
	items, rejected := prepare(changes)
	res.Rejected = rejected
	res.Rows = len(items)
	if len(items) == 0 {
		return res, nil
	}
	if err := w.ensurePartitions(ctx, items); err != nil {
		return res, err
	}
	if err := w.writeItems(ctx, items, &res); err != nil {
		return res, err
	}
	return res, nil
}

// prepare keeps the newest version per id (a later record wins a tie),
// skips remembered records (contract.State.Remembered), checks each, and sorts them by id so that concurrent writers lock rows in
// the same order.
func prepare(changes []Change) ([]item, []Rejection) {
	byID := make(map[string]int, len(changes))
	items := make([]item, 0, len(changes))
	var rejected []Rejection
	for _, c := range changes {
		if c.State != nil && c.State.Remembered {
			// The compact record that replaces a final state after the
			// dispatcher's --state-retention says nothing new: it drops
			// what the state held. The row keeps what the last whole
			// state wrote, for the reports.
			continue
		}
		if err := check(c); err != nil {
			rejected = append(rejected, Rejection{Change: c, Reason: ReasonInvalid, Err: err})
			continue
		}
		i, ok := byID[c.State.ID]
		if !ok {
			byID[c.State.ID] = len(items)
			items = append(items, item{change: c, attempts: c.State.History})
			continue
		}
		it := &items[i]
		it.attempts = mergeAttempts(it.attempts, c.State.History)
		if c.State.Version >= it.change.State.Version {
			it.change = c
		}
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.change.State.ID, b.change.State.ID) })
	return items, rejected
}

// mergeAttempts adds to a the attempts of b it lacks. History is
// append-only, so the newest version's history usually holds all others:
// when one of the two begins with the other, it is the answer, and nothing
// is copied (the usual case: versions in order, each history one longer).
func mergeAttempts(a, b []contract.Attempt) []contract.Attempt {
	if len(b) <= len(a) && (len(b) == 0 || a[len(b)-1].Attempt == b[len(b)-1].Attempt) {
		return a
	}
	if len(a) < len(b) && (len(a) == 0 || b[len(a)-1].Attempt == a[len(a)-1].Attempt) {
		return b
	}
	seen := make(map[int]bool, len(a)+len(b))
	out := make([]contract.Attempt, 0, len(a)+len(b))
	for _, at := range append(append([]contract.Attempt(nil), a...), b...) {
		if !seen[at.Attempt] {
			seen[at.Attempt] = true
			out = append(out, at)
		}
	}
	return out
}

// check refuses states that PostgreSQL could not take as they are or that
// break the changelog's contract.
func check(c Change) error {
	s := c.State
	switch {
	case s == nil:
		return errors.New("no state")
	case s.ID == "":
		return errors.New("state has no id")
	case c.Key != nil && string(c.Key) != s.ID:
		return fmt.Errorf("state id %q differs from its key %q", s.ID, c.Key)
	case s.Version > math.MaxInt64:
		return fmt.Errorf("version %d out of range", s.Version)
	}
	for _, f := range [...]struct {
		name string
		n    int
	}{{"attempts", s.Attempts}, {"duplicates", s.Duplicates}, {"policy.version", policyVersion(s)}} {
		if !fitsInt32(f.n) {
			return fmt.Errorf("%s %d out of range", f.name, f.n)
		}
	}
	for _, a := range s.History {
		if !fitsInt32(a.Attempt) || !fitsInt32(a.Code) {
			return fmt.Errorf("history: attempt %d code %d out of range", a.Attempt, a.Code)
		}
	}
	return nil
}

// pgText makes a provider's free text (an error quoting a response body)
// fit PostgreSQL's text, which holds no NUL and only valid UTF-8: such
// bytes become U+FFFD rather than making the whole state unwritable.
// Ids, campaigns and policy ids need no such care: the contract refuses
// control characters in them.
func pgText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// pgNullText is pgText, with NULL (nil) for an empty string.
func pgNullText(s string) *string {
	if s == "" {
		return nil
	}
	t := pgText(s)
	return &t
}

func fitsInt32(n int) bool { return n >= math.MinInt32 && n <= math.MaxInt32 }

func policyVersion(s *contract.State) int {
	if s.Request == nil {
		return 0
	}
	return s.Request.Policy.Version
}

func policyID(s *contract.State) string {
	if s.Request == nil {
		return ""
	}
	return s.Request.Policy.ID
}

// partitionWindow bounds the months whose attempts partition the writer
// creates; attempts outside it (a clock gone wrong) land in the default
// partition instead of creating odd partitions.
const (
	partitionPast   = 24 // months
	partitionFuture = 2
)

func monthOf(t time.Time) int {
	t = t.UTC()
	return t.Year()*12 + int(t.Month()) - 1
}

// ensurePartitions creates the month partitions of dispatch_attempts the
// batch's attempts need, before rows could land in the default partition.
func (w *Writer) ensurePartitions(ctx context.Context, items []item) error {
	now := monthOf(w.now())
	need := map[int]time.Time{}
	w.mu.Lock()
	for _, it := range items {
		for _, a := range it.attempts {
			m := monthOf(a.At)
			if m >= now-partitionPast && m <= now+partitionFuture && !w.months[m] {
				need[m] = a.At
			}
		}
	}
	w.mu.Unlock()
	for m, at := range need {
		if _, err := w.pool.Exec(ctx, "SELECT herald_attempts_partition($1)", at); err != nil {
			return fmt.Errorf("sink: attempts partition for %s: %w", at.UTC().Format("2006-01"), err)
		}
		w.mu.Lock()
		w.months[m] = true
		w.mu.Unlock()
	}
	return nil
}

// writeItems writes items in one transaction. When PostgreSQL rejects the
// data, it writes each half on its own, down to single rows, which are
// then rejected.
func (w *Writer) writeItems(ctx context.Context, items []item, res *WriteResult) error {
	applied, attempts, err := w.tx(ctx, items)
	if err == nil {
		res.Applied += applied
		res.Attempts += attempts
		res.Transactions++
		return nil
	}
	if !isDataError(err) {
		return err
	}
	if len(items) == 1 {
		res.Rejected = append(res.Rejected, Rejection{Change: items[0].change, Reason: ReasonRejected, Err: err})
		return nil
	}
	mid := len(items) / 2
	if err := w.writeItems(ctx, items[:mid], res); err != nil {
		return err
	}
	return w.writeItems(ctx, items[mid:], res)
}

// isDataError reports whether PostgreSQL refused the statement for the
// data it was given (which no retry can fix), as opposed to being
// unreachable, shutting down, out of resources or missing the schema.
func isDataError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) < 2 {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", // data exception: invalid encoding, NUL byte, value out of range
		"23", // integrity constraint violation
		"54": // program limit exceeded: a key too large for its index
		return true
	}
	return false
}

// The rows travel as one array per column (a parameter each) and are
// unnested by the INSERTs themselves, both statements sent together in one
// pgx batch: a transaction is three round trips to PostgreSQL (BEGIN, the
// two INSERTs, COMMIT) whatever the batch's size. The COPY into temporary
// tables it replaces took about ten: a statement each for the tables, the
// two COPYs (their rows handed in 64 KB chunks from pgx's encoding
// goroutine to the connection's) and the two INSERTs. On a loaded process
// each round trip and each hand-over waits for the Go scheduler, and in a
// zero-latency burst that wait, not PostgreSQL, was most of a batch's time
// (docs/performance.md, "What bounds the missed targets").

// upsertStatus moves a row forward only: an older or equal version leaves
// it as it is. status_synced_at moves only with the status (clock_timestamp:
// the moment the row is written, as close to the commit as a statement
// gets).
const upsertStatus = `INSERT INTO dispatch_status AS d (
	id, campaign, status, channel, attempts, duplicates, policy_id, policy_version, hold_reason, last_error,
	created_at, updated_at, sent_at, next_attempt_at, version, status_synced_at)
SELECT id, campaign, status, channel, attempts, duplicates, policy_id, policy_version, hold_reason, last_error,
	created_at, updated_at, sent_at, next_attempt_at, version, clock_timestamp()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::integer[],
	$7::text[], $8::integer[], $9::text[], $10::text[],
	$11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], $15::bigint[])
	AS u(id, campaign, status, channel, attempts, duplicates, policy_id, policy_version, hold_reason, last_error,
	created_at, updated_at, sent_at, next_attempt_at, version)
ORDER BY id
ON CONFLICT (id) DO UPDATE SET
	campaign = excluded.campaign, status = excluded.status, channel = excluded.channel,
	attempts = excluded.attempts, duplicates = excluded.duplicates,
	policy_id = excluded.policy_id, policy_version = excluded.policy_version,
	hold_reason = excluded.hold_reason, last_error = excluded.last_error,
	created_at = excluded.created_at, updated_at = excluded.updated_at, sent_at = excluded.sent_at,
	next_attempt_at = excluded.next_attempt_at, version = excluded.version, synced_at = now(),
	status_synced_at = CASE WHEN excluded.status = d.status THEN d.status_synced_at ELSE excluded.status_synced_at END
WHERE excluded.version > d.version`

const insertAttempts = `INSERT INTO dispatch_attempts (id, attempt, campaign, channel, outcome, error, code, at, provider, provider_message_id)
SELECT id, attempt, campaign, channel, outcome, error, code, at, provider, provider_message_id
FROM unnest($1::text[], $2::integer[], $3::text[], $4::text[], $5::text[], $6::text[], $7::integer[],
	$8::timestamptz[], $9::text[], $10::text[])
	AS u(id, attempt, campaign, channel, outcome, error, code, at, provider, provider_message_id)
ORDER BY id, attempt
ON CONFLICT (id, attempt, at) DO NOTHING`

// statusArgs are upsertStatus's parameters: one array per column, an
// element per item.
func statusArgs(items []item) []any {
	n := len(items)
	var (
		ids, campaigns, statuses, channels, policyIDs, holds, lastErrors = make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		attempts, duplicates, policyVersions = make([]int32, n), make([]int32, n), make([]int32, n)
		created, updated                     = make([]time.Time, n), make([]time.Time, n)
		sent, next                           = make([]*time.Time, n), make([]*time.Time, n)
		versions                             = make([]int64, n)
	)
	for i, it := range items {
		s := it.change.State
		ids[i], campaigns[i], statuses[i], channels[i] = s.ID, s.Campaign, string(s.Status), string(s.Channel)
		attempts[i], duplicates[i] = int32(s.Attempts), int32(s.Duplicates)
		policyIDs[i], policyVersions[i] = policyID(s), int32(policyVersion(s))
		holds[i], lastErrors[i] = string(s.HoldReason), pgText(s.LastError)
		created[i], updated[i], sent[i], next[i] = s.FirstSeen, s.UpdatedAt, s.SentAt, s.NextAttemptAt
		versions[i] = int64(s.Version)
	}
	return []any{ids, campaigns, statuses, channels, attempts, duplicates, policyIDs, policyVersions, holds, lastErrors,
		created, updated, sent, next, versions}
}

// attemptArgs are insertAttempts's parameters, an element per attempt of
// every item, and the number of attempts.
func attemptArgs(items []item) ([]any, int) {
	n := 0
	for _, it := range items {
		n += len(it.attempts)
	}
	var (
		ids, campaigns, channels, outcomes, errs = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n),
			make([]string, 0, n), make([]string, 0, n)
		numbers, codes         = make([]int32, 0, n), make([]int32, 0, n)
		at                     = make([]time.Time, 0, n)
		providers, providerIDs = make([]*string, 0, n), make([]*string, 0, n)
	)
	for _, it := range items {
		s := it.change.State
		for _, a := range it.attempts {
			ids, numbers, campaigns = append(ids, s.ID), append(numbers, int32(a.Attempt)), append(campaigns, s.Campaign)
			channels, outcomes = append(channels, string(a.Channel)), append(outcomes, string(a.Outcome))
			errs, codes, at = append(errs, pgText(a.Error)), append(codes, int32(a.Code)), append(at, a.At)
			providers, providerIDs = append(providers, pgNullText(a.Provider)), append(providerIDs, pgNullText(a.ProviderMessageID))
		}
	}
	return []any{ids, numbers, campaigns, channels, outcomes, errs, codes, at, providers, providerIDs}, n
}

// tx is one transaction: BEGIN, the two INSERTs in one batch, COMMIT.
func (w *Writer) tx(ctx context.Context, items []item) (applied, attempts int64, err error) {
	tx, err := w.pool.Begin(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("sink: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	// The attempts first: the statuses' status_synced_at is then stamped
	// as near to the commit as it can be.
	var b pgx.Batch
	args, nAttempts := attemptArgs(items)
	if nAttempts > 0 {
		b.Queue(insertAttempts, args...)
	}
	b.Queue(upsertStatus, statusArgs(items)...)
	br := tx.SendBatch(ctx, &b)
	if nAttempts > 0 {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return 0, 0, fmt.Errorf("sink: insert attempts: %w", err)
		}
		attempts = tag.RowsAffected()
	}
	tag, err := br.Exec()
	if err != nil {
		br.Close()
		return 0, 0, fmt.Errorf("sink: upsert statuses: %w", err)
	}
	applied = tag.RowsAffected()
	if err := br.Close(); err != nil {
		return 0, 0, fmt.Errorf("sink: batch: %w", err)
	}
	if err := w.at("upserted"); err != nil {
		return 0, 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, 0, fmt.Errorf("sink: commit: %w", err)
	}
	return applied, attempts, nil
}

func (w *Writer) at(point string) error {
	if w.hook == nil {
		return nil
	}
	return w.hook(point)
}

// Package baseline is the design Herald replaces, built as well as that
// design allows, so the load test can measure Herald against it on the
// same machine, with the same workload and the same provider, in the same
// run. It is a yardstick, not product code: nothing outside internal/loadtest/
// imports it.
//
// The design: the notification's status lives in a PostgreSQL table, and
// the table is the queue.
//
//   - The batch inserts one row per notification, status 'pending', with
//     next_attempt_at already moved past not_before and any blackout window
//     (the same schedule maths Herald uses). A re-run of the batch hits the
//     primary key: ON CONFLICT the row's duplicates counter goes up and
//     nothing is queued again.
//   - Claimers take pages of due rows with SELECT ... FOR UPDATE SKIP
//     LOCKED and mark them 'sending' in the same statement (one round trip
//     per page), as many as there are free send slots.
//   - A bounded pool of Concurrency goroutines calls the provider (the same
//     webhook client Herald's sender uses) and then updates each row with
//     its result, one UPDATE per row: sent, pending again with a backoff
//     (a transient failure), pending on the next channel (a permanent one,
//     or attempts used up), or failed.
//   - Every result UPDATE is conditional: WHERE status = 'sending' AND
//     attempts = <the attempt sent>. A result for a row that has moved on
//     (re-claimed after the send timeout) changes nothing, so a late
//     answer cannot move a row backwards or count a second delivery.
//   - Retries need no queue of their own: a transient failure sets
//     next_attempt_at and status 'pending', and the claimers' re-scan
//     picks the row up when it is due. A rescuer re-scans rows stuck in
//     'sending' longer than SendTimeout (a crashed worker) back to
//     'pending'.
//
// What this design pays for, and Herald does not: one UPDATE (and one
// commit) per provider attempt on the hot row, index churn on every status
// change, claim round trips, polling while idle, and a database that every
// worker contends on.
package baseline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/herald-dispatch/herald/internal/schedule"
)

// Defaults of Config.
const (
	DefaultPageSize    = 50
	DefaultClaimers    = 4
	DefaultSendTimeout = time.Minute
	DefaultPoll        = 200 * time.Millisecond
	DefaultMaxConns    = 32
)

// Config configures the baseline dispatcher.
type Config struct {
	// Pool is the database; Schema creates the tables.
	Pool *pgxpool.Pool
	// Concurrency is how many provider calls may be in flight at once (the
	// reference ran 180 threads).
	Concurrency int
	// PageSize is how many rows one claim takes at most.
	PageSize int
	// Claimers is how many goroutines claim pages concurrently.
	Claimers int
	// Providers per channel.
	Providers map[contract.Channel]provider.Provider
	// SendTimeout is how long a row may stay 'sending' before the rescuer
	// puts it back to 'pending'.
	SendTimeout time.Duration
	// Poll is how long a claimer waits when no row is due.
	Poll time.Duration
	// DefaultLoc is the zone of recipients without one.
	DefaultLoc *time.Location
	Log        *slog.Logger
}

// Schema creates the baseline's tables.
func Schema(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `
CREATE TABLE IF NOT EXISTS baseline_notification (
    id               text        PRIMARY KEY,
    campaign         text        NOT NULL,
    request          text        NOT NULL,
    status           text        NOT NULL,
    channel_index    integer     NOT NULL DEFAULT 0,
    channel          text        NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    channel_attempts integer     NOT NULL DEFAULT 0,
    duplicates       integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    claimed_at       timestamptz,
    last_error       text        NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX IF NOT EXISTS baseline_notification_due ON baseline_notification (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS baseline_notification_sending ON baseline_notification (claimed_at) WHERE status = 'sending';
CREATE INDEX IF NOT EXISTS baseline_notification_campaign ON baseline_notification (campaign, status, channel);
CREATE TABLE IF NOT EXISTS baseline_dead_letter (
    key    bytea,
    value  bytea,
    reason text        NOT NULL,
    error  text        NOT NULL,
    at     timestamptz NOT NULL DEFAULT now()
);`)
	if err != nil {
		return fmt.Errorf("baseline: schema: %w", err)
	}
	return nil
}

// Dispatcher is the row-lock dispatcher.
type Dispatcher struct {
	cfg   Config
	slots chan struct{}
	wg    sync.WaitGroup

	claims, claimed, sends, stale, rescued, ingested, duplicates atomic.Int64
}

// New returns a dispatcher; Run starts its workers.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Pool == nil {
		return nil, errors.New("baseline: no pool")
	}
	if cfg.Concurrency <= 0 {
		return nil, errors.New("baseline: concurrency must be positive")
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.Claimers <= 0 {
		cfg.Claimers = DefaultClaimers
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = DefaultSendTimeout
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.DefaultLoc == nil {
		cfg.DefaultLoc = time.UTC
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Dispatcher{cfg: cfg, slots: make(chan struct{}, cfg.Concurrency)}, nil
}

// Stats counts what the dispatcher did.
type Stats struct {
	// Claims is claim statements run, Claimed the rows they took.
	Claims, Claimed int64
	// Sends is provider calls; Stale counts results whose conditional
	// UPDATE found the row moved on; Rescued counts rows put back from
	// 'sending' by the rescuer.
	Sends, Stale, Rescued int64
	// Ingested counts rows inserted; Duplicates requests that hit an
	// existing row.
	Ingested, Duplicates int64
}

// Stats returns the counters.
func (d *Dispatcher) Stats() Stats {
	return Stats{Claims: d.claims.Load(), Claimed: d.claimed.Load(), Sends: d.sends.Load(),
		Stale: d.stale.Load(), Rescued: d.rescued.Load(), Ingested: d.ingested.Load(),
		Duplicates: d.duplicates.Load()}
}

// Record is one record of the batch: what would have been published.
type Record struct {
	Key, Value []byte
}

// Ingest is the batch's write: it validates each record as Herald does,
// dead-letters the bad ones, and inserts the rest as pending rows in one
// statement. A request whose id has a row already counts as a duplicate.
func (d *Dispatcher) Ingest(ctx context.Context, recs []Record) error {
	now := time.Now()
	type row struct {
		id, campaign, request, channel string
		due                            time.Time
	}
	var rows []row
	seen := map[string]int{}
	var extraDup []string
	var bad [][4]any
	for _, rec := range recs {
		r, err := contract.Decode(rec.Key, rec.Value)
		if err != nil {
			bad = append(bad, [4]any{rec.Key, rec.Value, contract.Reason(err), err.Error()})
			continue
		}
		if _, ok := seen[r.ID]; ok {
			extraDup = append(extraDup, r.ID)
			continue
		}
		due, err := d.release(r, now)
		if err != nil {
			bad = append(bad, [4]any{rec.Key, rec.Value, contract.ReasonInvalid, err.Error()})
			continue
		}
		raw, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("baseline: encode request: %w", err)
		}
		seen[r.ID] = len(rows)
		rows = append(rows, row{r.ID, r.Campaign, string(raw), string(r.Channels[0]), due})
	}
	ids := make([]string, len(rows))
	camps := make([]string, len(rows))
	reqs := make([]string, len(rows))
	chans := make([]string, len(rows))
	dues := make([]time.Time, len(rows))
	for i, r := range rows {
		ids[i], camps[i], reqs[i], chans[i], dues[i] = r.id, r.campaign, r.request, r.channel, r.due
	}
	batch := &pgx.Batch{}
	if len(rows) > 0 {
		batch.Queue(`INSERT INTO baseline_notification (id, campaign, request, status, channel, next_attempt_at)
			SELECT id, campaign, request, 'pending', channel, due
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS t(id, campaign, request, channel, due)
			ON CONFLICT (id) DO UPDATE SET duplicates = baseline_notification.duplicates + 1, updated_at = now()
			RETURNING (xmax = 0)`, ids, camps, reqs, chans, dues).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var inserted bool
				if err := rows.Scan(&inserted); err != nil {
					return err
				}
				if inserted {
					d.ingested.Add(1)
				} else {
					d.duplicates.Add(1)
				}
			}
			return rows.Err()
		})
	}
	for _, id := range extraDup {
		batch.Queue(`UPDATE baseline_notification SET duplicates = duplicates + 1, updated_at = now() WHERE id = $1`, id)
		d.duplicates.Add(1)
	}
	for _, b := range bad {
		batch.Queue(`INSERT INTO baseline_dead_letter (key, value, reason, error) VALUES ($1, $2, $3, $4)`, b[0], b[1], b[2], b[3])
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := d.cfg.Pool.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("baseline: ingest: %w", err)
	}
	return nil
}

// release is when a request may first be sent: not_before, moved past the
// recipient's blackout windows.
func (d *Dispatcher) release(r *contract.Request, now time.Time) (time.Time, error) {
	at := now
	if r.NotBefore != nil && r.NotBefore.After(at) {
		at = *r.NotBefore
	}
	loc := d.cfg.DefaultLoc
	if r.Recipient.TZ != "" {
		if l, err := contract.LoadLocation(r.Recipient.TZ); err == nil {
			loc = l
		}
	}
	return schedule.Release(at, schedule.Rule{Windows: r.Blackout, Loc: loc})
}

// Run claims and sends until ctx ends, then waits for the sends in flight.
func (d *Dispatcher) Run(ctx context.Context) error {
	var claimers sync.WaitGroup
	errc := make(chan error, d.cfg.Claimers+1)
	for range d.cfg.Claimers {
		claimers.Add(1)
		go func() {
			defer claimers.Done()
			if err := d.claimLoop(ctx); err != nil {
				errc <- err
			}
		}()
	}
	claimers.Add(1)
	go func() {
		defer claimers.Done()
		d.rescueLoop(ctx)
	}()
	claimers.Wait()
	d.wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

type claimedRow struct {
	id       string
	request  string
	channel  string
	index    int
	attempts int
	// chAttempts counts this channel's attempts, the one being made
	// included.
	chAttempts int
}

// claimLoop takes pages of due rows while send slots are free.
func (d *Dispatcher) claimLoop(ctx context.Context) error {
	for ctx.Err() == nil {
		// Wait for one free slot, then take as many as are free (up to a
		// page), so a claimed row never waits for a slot.
		select {
		case d.slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		n := 1
		for n < d.cfg.PageSize {
			select {
			case d.slots <- struct{}{}:
				n++
				continue
			default:
			}
			break
		}
		rows, err := d.claim(ctx, n)
		if err != nil {
			for range n {
				<-d.slots
			}
			if ctx.Err() != nil {
				return nil
			}
			d.cfg.Log.Warn("baseline: claim", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		for range n - len(rows) {
			<-d.slots
		}
		for _, r := range rows {
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				defer func() { <-d.slots }()
				d.send(ctx, r)
			}()
		}
		if len(rows) == 0 {
			// Nothing due: poll again shortly, jittered so the claimers
			// do not wake together.
			sleep(ctx, d.cfg.Poll/2+time.Duration(rand.Int64N(int64(d.cfg.Poll))))
		}
	}
	return nil
}

// claim takes up to n due rows and marks them sending, in one statement.
func (d *Dispatcher) claim(ctx context.Context, n int) ([]claimedRow, error) {
	d.claims.Add(1)
	rows, err := d.cfg.Pool.Query(ctx, `
WITH due AS (
    SELECT id FROM baseline_notification
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE baseline_notification n
SET status = 'sending', attempts = n.attempts + 1, channel_attempts = n.channel_attempts + 1,
    claimed_at = now(), updated_at = now()
FROM due
WHERE n.id = due.id AND n.status = 'pending'
RETURNING n.id, n.request, n.channel, n.channel_index, n.attempts, n.channel_attempts`, n)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (claimedRow, error) {
		var c claimedRow
		err := r.Scan(&c.id, &c.request, &c.channel, &c.index, &c.attempts, &c.chAttempts)
		return c, err
	})
	d.claimed.Add(int64(len(out)))
	return out, err
}

// send makes one provider attempt and writes its result to the row.
func (d *Dispatcher) send(ctx context.Context, c claimedRow) {
	var r contract.Request
	if err := json.Unmarshal([]byte(c.request), &r); err != nil {
		d.update(ctx, c, outcome{status: "failed", index: c.index, channel: c.channel, chAttempts: c.chAttempts,
			err: "undecodable request: " + err.Error()})
		return
	}
	ch := contract.Channel(c.channel)
	p := d.cfg.Providers[ch]
	var res provider.Result
	if p == nil {
		res = provider.Permanent(0, fmt.Errorf("no provider for channel %s", ch))
	} else {
		d.sends.Add(1)
		res = p.Send(ctx, &contract.SendCommand{ID: r.ID, Campaign: r.Campaign, Channel: ch, Attempt: c.attempts,
			Address: r.Recipient.Address(ch), Content: r.Content, IdempotencyKey: r.ID, IssuedAt: time.Now()})
	}
	if ctx.Err() != nil {
		return // shutting down: the rescuer puts the row back
	}
	d.update(ctx, c, decide(&r, c, res))
}

// outcome is the row's next values after an attempt.
type outcome struct {
	status     string
	index      int
	channel    string
	chAttempts int
	wait       time.Duration
	err        string
}

// decide applies the request's policy to an attempt's result: sent;
// retried on the same channel after a backoff (transient, attempts left)
// or after Retry-After (throttled, no attempt used); the next channel at
// once (permanent, or attempts used up); failed when no channel is left.
func decide(r *contract.Request, c claimedRow, res provider.Result) outcome {
	o := outcome{status: "pending", index: c.index, channel: c.channel, chAttempts: c.chAttempts}
	if res.Err != nil {
		o.err = res.Err.Error()
	}
	switch {
	case res.Outcome == contract.OutcomeSuccess:
		o.status = "sent"
		return o
	case res.Outcome == contract.OutcomeThrottled:
		o.chAttempts--
		o.wait = max(res.RetryAfter, time.Second)
		return o
	case res.Outcome == contract.OutcomeTransient && c.chAttempts < r.Policy.AttemptsPerChannel:
		o.wait = schedule.Backoff(r.Policy.Backoff, c.chAttempts, r.ID)
		return o
	}
	if c.index+1 >= len(r.Channels) {
		o.status = "failed"
		return o
	}
	o.index, o.channel, o.chAttempts = c.index+1, string(r.Channels[c.index+1]), 0
	return o
}

// update writes an attempt's outcome with one conditional UPDATE,
// retrying on errors until ctx ends. Zero rows means the row moved on
// (re-claimed after the send timeout): the result is stale and dropped.
func (d *Dispatcher) update(ctx context.Context, c claimedRow, o outcome) {
	for ctx.Err() == nil {
		tag, err := d.cfg.Pool.Exec(ctx, `UPDATE baseline_notification
			SET status = $3, channel_index = $4, channel = $5, channel_attempts = $6,
			    next_attempt_at = now() + $7 * interval '1 millisecond', last_error = $8,
			    sent_at = CASE WHEN $3 = 'sent' THEN now() END, updated_at = now()
			WHERE id = $1 AND status = 'sending' AND attempts = $2`,
			c.id, c.attempts, o.status, o.index, o.channel, o.chAttempts, o.wait.Milliseconds(), o.err)
		if err == nil {
			if tag.RowsAffected() == 0 {
				d.stale.Add(1)
			}
			return
		}
		d.cfg.Log.Warn("baseline: update", "err", err)
		sleep(ctx, 200*time.Millisecond)
	}
}

// rescueLoop re-scans rows stuck in 'sending' back to 'pending'.
func (d *Dispatcher) rescueLoop(ctx context.Context) {
	every := max(d.cfg.SendTimeout/4, time.Second)
	for sleep(ctx, every) {
		tag, err := d.cfg.Pool.Exec(ctx, `UPDATE baseline_notification SET status = 'pending', next_attempt_at = now(),
			last_error = 'send timed out', updated_at = now()
			WHERE status = 'sending' AND claimed_at < now() - $1 * interval '1 millisecond'`, d.cfg.SendTimeout.Milliseconds())
		if err == nil {
			d.rescued.Add(tag.RowsAffected())
		}
	}
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

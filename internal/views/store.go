package views

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/report"
)

// Store reads the sink's Postgres tables: lists, campaign progress, the
// held notifications, and the targets of a campaign action. PGStore is the
// real one. What it answers trails the dispatcher by the sink's lag (a
// batch, 200 ms, on a healthy system).
type Store interface {
	// CampaignSummary returns the summary, or an error wrapping
	// report.ErrCampaignNotFound.
	CampaignSummary(ctx context.Context, campaign string) (*report.Summary, error)
	// Messages returns one page of notifications, newest first.
	Messages(ctx context.Context, q MessageQuery) (MessagePage, error)
	// Campaigns returns every campaign's progress, the most recently
	// active first, at most limit.
	Campaigns(ctx context.Context, now time.Time, limit int) ([]CampaignProgress, error)
	// Campaign returns one campaign's progress, as Campaigns does, or an
	// error wrapping report.ErrCampaignNotFound.
	Campaign(ctx context.Context, now time.Time, campaign string) (CampaignProgress, error)
	// Throughput counts a campaign's notifications that became final, per
	// bucket, from since to now.
	Throughput(ctx context.Context, campaign string, since time.Time, bucket time.Duration) ([]Point, error)
	// Held counts the held notifications by hold reason and status.
	Held(ctx context.Context) ([]HeldCount, error)
	// Targets returns a campaign's notifications in one of statuses, in
	// id order after the id `after`, at most limit.
	Targets(ctx context.Context, campaign string, statuses []contract.Status, after string, limit int) ([]Target, error)
}

// MessageQuery filters GET /v1/messages. Zero fields do not filter.
// Since and Until bound when Herald first saw a notification.
type MessageQuery struct {
	Campaign   string
	Statuses   []contract.Status
	Channel    contract.Channel
	HoldReason contract.HoldReason
	Since      time.Time
	Until      time.Time
	Limit      int
	// Cursor is the page's start, from a previous page's NextCursor.
	Cursor string
}

// MessageRow is one notification in a list: its row in dispatch_status.
// last_error is masked (contract.MaskText).
type MessageRow struct {
	ID            string              `json:"id"`
	Campaign      string              `json:"campaign"`
	Status        contract.Status     `json:"status"`
	Channel       contract.Channel    `json:"channel"`
	Attempts      int                 `json:"attempts"`
	Duplicates    int                 `json:"duplicates"`
	HoldReason    contract.HoldReason `json:"hold_reason,omitempty"`
	LastError     string              `json:"last_error,omitempty"`
	FirstSeen     time.Time           `json:"first_seen"`
	UpdatedAt     time.Time           `json:"updated_at"`
	SentAt        *time.Time          `json:"sent_at,omitempty"`
	NextAttemptAt *time.Time          `json:"next_attempt_at,omitempty"`
	Version       int64               `json:"version"`
}

// MessagePage is an answer of GET /v1/messages.
type MessagePage struct {
	Messages []MessageRow `json:"messages"`
	// NextCursor fetches the next page; empty on the last one.
	NextCursor string `json:"next_cursor,omitempty"`
}

// CampaignProgress is one campaign in GET /v1/campaigns.
type CampaignProgress struct {
	Campaign string           `json:"campaign"`
	Total    int64            `json:"total"`
	ByStatus map[string]int64 `json:"by_status"`
	Final    int64            `json:"final"`
	// Done is Final/Total.
	Done float64 `json:"done"`
	// Rate is notifications that became final per second over the last
	// RateWindow.
	Rate float64 `json:"rate_per_second"`
	// Held counts the notifications waiting for their time (scheduled,
	// deferred, retrying): they end when their hold does, not at Rate.
	Held int64 `json:"held"`
	// ETASeconds estimates the time to done of the notifications not held
	// at Rate; absent when none is left or nothing moves.
	ETASeconds *float64  `json:"eta_seconds,omitempty"`
	FirstSeen  time.Time `json:"first_seen"`
	LastUpdate time.Time `json:"last_update"`
}

// RateWindow is the window of CampaignProgress.Rate.
const RateWindow = time.Minute

// Point is one bucket of a throughput series.
type Point struct {
	At    time.Time `json:"at"`
	Final int64     `json:"final"`
}

// HeldCount is one row of GET /v1/held.
type HeldCount struct {
	Reason        contract.HoldReason `json:"reason"`
	Status        contract.Status     `json:"status"`
	Notifications int64               `json:"notifications"`
	// NextAt is the earliest next attempt among them.
	NextAt *time.Time `json:"next_at,omitempty"`
}

// Target is a notification a campaign action applies to.
type Target struct {
	ID       string
	Attempts int
}

// PGStore is the Store over the sink's tables (internal/migrations/).
//
// Indexes: lists are ordered by (created_at, id), newest first, and served
// by dispatch_status_campaign_created (campaign, created_at, id) and
// dispatch_status_created (created_at, id). Both hold only columns that
// never change after the first write, so the sink's status updates stay
// HOT updates (docs/sink.md); a status or channel filter is applied to the
// campaign's rows in that order. The campaign list and the held counts
// group the whole table: their cost grows with it (docs/api.md).
type PGStore struct{ Q report.Querier }

// CampaignSummary implements Store.
func (p PGStore) CampaignSummary(ctx context.Context, campaign string) (*report.Summary, error) {
	return report.CampaignSummary(ctx, p.Q, campaign)
}

// ErrBadCursor is wrapped by Messages for a cursor it did not make.
var ErrBadCursor = errors.New("bad cursor")

func encodeCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + "\x00" + id))
}

func decodeCursor(c string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", ErrBadCursor
	}
	ts, id, ok := strings.Cut(string(b), "\x00")
	at, err := time.Parse(time.RFC3339Nano, ts)
	if !ok || err != nil {
		return time.Time{}, "", ErrBadCursor
	}
	return at, id, nil
}

// Messages implements Store.
func (p PGStore) Messages(ctx context.Context, q MessageQuery) (MessagePage, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if q.Campaign != "" {
		where = append(where, "campaign = "+arg(q.Campaign))
	}
	if len(q.Statuses) > 0 {
		ss := make([]string, len(q.Statuses))
		for i, s := range q.Statuses {
			ss[i] = string(s)
		}
		where = append(where, "status = ANY("+arg(ss)+")")
	}
	if q.Channel != "" {
		where = append(where, "channel = "+arg(string(q.Channel)))
	}
	if q.HoldReason != "" {
		where = append(where, "hold_reason = "+arg(string(q.HoldReason)))
	}
	if !q.Since.IsZero() {
		where = append(where, "created_at >= "+arg(q.Since))
	}
	if !q.Until.IsZero() {
		where = append(where, "created_at < "+arg(q.Until))
	}
	if q.Cursor != "" {
		at, id, err := decodeCursor(q.Cursor)
		if err != nil {
			return MessagePage{}, err
		}
		where = append(where, "(created_at, id) < ("+arg(at)+", "+arg(id)+")")
	}
	sql := `SELECT id, campaign, status, channel, attempts, duplicates, hold_reason, last_error,
		created_at, updated_at, sent_at, next_attempt_at, version FROM dispatch_status`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY created_at DESC, id DESC LIMIT " + arg(q.Limit+1)
	rows, err := p.Q.Query(ctx, sql, args...)
	if err != nil {
		return MessagePage{}, fmt.Errorf("views: list: %w", err)
	}
	page := MessagePage{Messages: []MessageRow{}}
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (MessageRow, error) {
		var m MessageRow
		err := r.Scan(&m.ID, &m.Campaign, &m.Status, &m.Channel, &m.Attempts, &m.Duplicates, &m.HoldReason, &m.LastError,
			&m.FirstSeen, &m.UpdatedAt, &m.SentAt, &m.NextAttemptAt, &m.Version)
		m.LastError = contract.MaskText(m.LastError)
		m.FirstSeen, m.UpdatedAt = m.FirstSeen.UTC(), m.UpdatedAt.UTC()
		return m, err
	})
	if err != nil {
		return MessagePage{}, fmt.Errorf("views: list: %w", err)
	}
	if len(ms) > q.Limit {
		ms = ms[:q.Limit]
		last := ms[len(ms)-1]
		page.NextCursor = encodeCursor(last.FirstSeen, last.ID)
	}
	page.Messages = append(page.Messages, ms...)
	return page, nil
}

var finalStatuses = func() []string {
	var out []string
	for _, s := range contract.Statuses() {
		if s.Final() {
			out = append(out, string(s))
		}
	}
	return out
}()

// Campaigns implements Store.
func (p PGStore) Campaigns(ctx context.Context, now time.Time, limit int) ([]CampaignProgress, error) {
	return p.campaigns(ctx, now, limit, "")
}

// Campaign implements Store.
func (p PGStore) Campaign(ctx context.Context, now time.Time, campaign string) (CampaignProgress, error) {
	cs, err := p.campaigns(ctx, now, 1, campaign)
	if err != nil {
		return CampaignProgress{}, err
	}
	if len(cs) == 0 {
		return CampaignProgress{}, fmt.Errorf("views: campaign %q: %w", campaign, report.ErrCampaignNotFound)
	}
	return cs[0], nil
}

// campaigns is the progress of the campaigns most recently active, at
// most limit, or of the one named only.
func (p PGStore) campaigns(ctx context.Context, now time.Time, limit int, only string) ([]CampaignProgress, error) {
	rows, err := p.Q.Query(ctx, `
		WITH c AS (
			SELECT campaign, max(updated_at) AS last_update FROM dispatch_status
			WHERE $4 = '' OR campaign = $4
			GROUP BY campaign ORDER BY last_update DESC, campaign LIMIT $3)
		SELECT s.campaign, s.status, count(*), min(s.created_at), max(s.updated_at),
		       count(*) FILTER (WHERE s.status = ANY($1) AND s.updated_at >= $2)
		FROM dispatch_status s JOIN c USING (campaign)
		GROUP BY s.campaign, s.status, c.last_update
		ORDER BY c.last_update DESC, s.campaign, s.status`, finalStatuses, now.Add(-RateWindow), limit, only)
	if err != nil {
		return nil, fmt.Errorf("views: campaigns: %w", err)
	}
	defer rows.Close()
	out := []CampaignProgress{}
	recent := map[string]int64{}
	for rows.Next() {
		var name, status string
		var n, moved int64
		var first, last time.Time
		if err := rows.Scan(&name, &status, &n, &first, &last, &moved); err != nil {
			return nil, fmt.Errorf("views: campaigns: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].Campaign != name {
			out = append(out, CampaignProgress{Campaign: name, ByStatus: map[string]int64{}, FirstSeen: first.UTC(), LastUpdate: last.UTC()})
		}
		c := &out[len(out)-1]
		c.Total += n
		c.ByStatus[status] = n
		if contract.Status(status).Final() {
			c.Final += n
		}
		if first.Before(c.FirstSeen) {
			c.FirstSeen = first.UTC()
		}
		if last.After(c.LastUpdate) {
			c.LastUpdate = last.UTC()
		}
		recent[name] += moved
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("views: campaigns: %w", err)
	}
	for i := range out {
		out[i].progress(recent[out[i].Campaign])
	}
	return out, nil
}

// progress sets Done, Rate and the ETA from the number of notifications
// that became final within the last RateWindow.
func (c *CampaignProgress) progress(recent int64) {
	if c.Total > 0 {
		c.Done = float64(c.Final) / float64(c.Total)
	}
	c.Rate = float64(recent) / RateWindow.Seconds()
	c.Held = 0
	for st, n := range c.ByStatus {
		if contract.Status(st).Held() {
			c.Held += n
		}
	}
	if left := c.Total - c.Final - c.Held; left > 0 && c.Rate > 0 {
		eta := float64(left) / c.Rate
		c.ETASeconds = &eta
	}
}

// Throughput implements Store.
func (p PGStore) Throughput(ctx context.Context, campaign string, since time.Time, bucket time.Duration) ([]Point, error) {
	rows, err := p.Q.Query(ctx, `
		SELECT to_timestamp(floor(extract(epoch FROM updated_at) / $3) * $3) AS b, count(*)
		FROM dispatch_status WHERE campaign = $1 AND status = ANY($2) AND updated_at >= $4
		GROUP BY b ORDER BY b`, campaign, finalStatuses, bucket.Seconds(), since)
	if err != nil {
		return nil, fmt.Errorf("views: throughput: %w", err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Point, error) {
		var pt Point
		err := r.Scan(&pt.At, &pt.Final)
		return pt, err
	})
	if err != nil {
		return nil, fmt.Errorf("views: throughput: %w", err)
	}
	// Every bucket, the empty ones too, so that a sparkline is to scale.
	byAt := map[int64]int64{}
	for _, pt := range got {
		byAt[pt.At.Unix()] = pt.Final
	}
	out := []Point{}
	start := since.Truncate(bucket)
	for t := start; !t.After(since.Add(ThroughputSpan)); t = t.Add(bucket) {
		out = append(out, Point{At: t.UTC(), Final: byAt[t.Unix()]})
	}
	return out, nil
}

// Held implements Store.
func (p PGStore) Held(ctx context.Context) ([]HeldCount, error) {
	rows, err := p.Q.Query(ctx, `SELECT hold_reason, status, count(*), min(next_attempt_at) FROM dispatch_status
		WHERE status IN ('scheduled', 'deferred', 'retrying') GROUP BY hold_reason, status ORDER BY count(*) DESC, 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("views: held: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (HeldCount, error) {
		var h HeldCount
		err := r.Scan(&h.Reason, &h.Status, &h.Notifications, &h.NextAt)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("views: held: %w", err)
	}
	if out == nil {
		out = []HeldCount{}
	}
	return out, nil
}

// Targets implements Store.
func (p PGStore) Targets(ctx context.Context, campaign string, statuses []contract.Status, after string, limit int) ([]Target, error) {
	ss := make([]string, len(statuses))
	for i, s := range statuses {
		ss[i] = string(s)
	}
	rows, err := p.Q.Query(ctx, `SELECT id, attempts FROM dispatch_status
		WHERE campaign = $1 AND status = ANY($2) AND id > $3 ORDER BY id LIMIT $4`, campaign, ss, after, limit)
	if err != nil {
		return nil, fmt.Errorf("views: targets: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Target, error) {
		var t Target
		err := r.Scan(&t.ID, &t.Attempts)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("views: targets: %w", err)
	}
	return out, nil
}

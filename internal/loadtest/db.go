package loadtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dispatcher"
)

// finalStatuses are the final statuses as SQL literals' values.
func finalStatuses() []string {
	var out []string
	for _, s := range contract.Statuses() {
		if s.Final() {
			out = append(out, string(s))
		}
	}
	return out
}

// dbProgress counts final rows and the duplicates column (cheap enough to
// poll: one aggregate over the table).
func dbProgress(ctx context.Context, pool *pgxpool.Pool, campaign string) (final, dups int64, err error) {
	err = pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = ANY($2)), coalesce(sum(duplicates), 0)
		FROM dispatch_status WHERE campaign = $1`, campaign, finalStatuses()).Scan(&final, &dups)
	if err != nil {
		return 0, 0, fmt.Errorf("dispatch_status progress: %w", err)
	}
	return final, dups, nil
}

// dbCounts reads what the checks compare: rows by status, sent rows by
// channel, the duplicates sum, and every row not sent.
func dbCounts(ctx context.Context, pool *pgxpool.Pool, campaign string) (DBCounts, error) {
	c := DBCounts{ByStatus: map[string]int64{}, SentByChannel: map[string]int64{}, NotSent: map[string]string{}}
	rows, err := pool.Query(ctx, `SELECT status, channel, count(*), coalesce(sum(duplicates), 0)
		FROM dispatch_status WHERE campaign = $1 GROUP BY status, channel`, campaign)
	if err != nil {
		return c, fmt.Errorf("dispatch_status counts: %w", err)
	}
	for rows.Next() {
		var status, channel string
		var n, dups int64
		if err := rows.Scan(&status, &channel, &n, &dups); err != nil {
			rows.Close()
			return c, fmt.Errorf("dispatch_status counts: %w", err)
		}
		c.Rows += n
		c.Duplicates += dups
		c.ByStatus[status] += n
		if status == string(contract.StatusSent) {
			c.SentByChannel[channel] += n
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("dispatch_status counts: %w", err)
	}
	rows, err = pool.Query(ctx, `SELECT id, status, last_error FROM dispatch_status WHERE campaign = $1 AND status <> 'sent' LIMIT 1000000`, campaign)
	if err != nil {
		return c, fmt.Errorf("dispatch_status not sent: %w", err)
	}
	defer rows.Close()
	c.UnknownAtCutoff = map[string]bool{}
	for rows.Next() {
		var id, status, lastError string
		if err := rows.Scan(&id, &status, &lastError); err != nil {
			return c, fmt.Errorf("dispatch_status not sent: %w", err)
		}
		c.NotSent[id] = status
		if strings.HasSuffix(lastError, dispatcher.UnknownAtCutoff) {
			c.UnknownAtCutoff[id] = true
		}
	}
	return c, rows.Err()
}

// dbFinalSynced maps the plan index of every notification of the run's
// campaign final as sent or failed (the statuses a provider's answer
// decides) to when the sink wrote that status (status_synced_at, Unix ns;
// 0 when unknown). It returns nil, and no error, when the table has no
// status_synced_at (a herald binary from before migration 00005).
func dbFinalSynced(ctx context.Context, pool *pgxpool.Pool, p *Plan) (map[int]int64, error) {
	rows, err := pool.Query(ctx, `SELECT id, status_synced_at FROM dispatch_status
		WHERE campaign = $1 AND status = ANY($2)`, p.W.Campaign, []string{string(contract.StatusSent), string(contract.StatusFailed)})
	if undefinedColumn(err) {
		return nil, nil // a herald binary from before migration 00005
	}
	if err != nil {
		return nil, fmt.Errorf("dispatch_status synced: %w", err)
	}
	defer rows.Close()
	out := map[int]int64{}
	for rows.Next() {
		var id string
		var at *time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return nil, fmt.Errorf("dispatch_status synced: %w", err)
		}
		i, ok := p.Index(id)
		if !ok {
			continue
		}
		out[i] = 0
		if at != nil {
			out[i] = at.UnixNano()
		}
	}
	if err := rows.Err(); undefinedColumn(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("dispatch_status synced: %w", err)
	}
	return out, nil
}

// undefinedColumn reports PostgreSQL's undefined_column (42703).
func undefinedColumn(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42703"
}

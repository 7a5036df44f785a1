// Package report owns the reads of the PostgreSQL status tables that
// report on a campaign (CampaignSummary, over the reporting views of
// internal/migrations): what `herald report` prints and what
// GET /v1/campaigns/{campaign} serves. The sink writes those tables; this
// package only reads them, so what it answers trails the dispatcher by the
// sink's lag.
package report

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-dispatch/herald/contract"
)

// Querier is what CampaignSummary reads through: a *pgxpool.Pool, a
// *pgx.Conn or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrCampaignNotFound is returned (wrapped) by CampaignSummary for a
// campaign without any notification in dispatch_status.
var ErrCampaignNotFound = errors.New("campaign not found")

// Summary is a campaign's report: what `herald report` prints and what
// GET /v1/campaigns/{campaign} can serve. It reflects what the sink has
// written, which trails the dispatcher by the sink's lag.
type Summary struct {
	Campaign string `json:"campaign"`
	// Total notifications, and how many are in each status.
	Total    int64            `json:"total"`
	ByStatus map[string]int64 `json:"by_status"`
	// Final counts the notifications in a final status.
	Final int64 `json:"final"`
	// Counts per channel and status (campaign_status_counts).
	Counts []StatusCount `json:"counts"`
	// Delivery is the spread of delivery times of the sent ones
	// (campaign_delivery_spread); nil when none was sent.
	Delivery *DeliverySpread `json:"delivery,omitempty"`
	// Failures are the commonest reasons notifications ended unsent
	// (campaign_failures), most frequent first, at most MaxFailureReasons.
	Failures []FailureReason `json:"failures"`
	// LastUpdate is the newest updated_at of the campaign's states.
	LastUpdate time.Time `json:"last_update"`
}

// StatusCount is one row of campaign_status_counts.
type StatusCount struct {
	Channel       string `json:"channel"`
	Status        string `json:"status"`
	Notifications int64  `json:"notifications"`
	Attempts      int64  `json:"attempts"`
	Duplicates    int64  `json:"duplicates"`
}

// DeliverySpread is how long sent notifications took from first being
// seen by the dispatcher to the provider accepting them, in seconds.
type DeliverySpread struct {
	Sent       int64     `json:"sent"`
	MinSeconds float64   `json:"min_seconds"`
	P50Seconds float64   `json:"p50_seconds"`
	P90Seconds float64   `json:"p90_seconds"`
	P99Seconds float64   `json:"p99_seconds"`
	MaxSeconds float64   `json:"max_seconds"`
	FirstSent  time.Time `json:"first_sent"`
	LastSent   time.Time `json:"last_sent"`
}

// FailureReason is one row of campaign_failures.
type FailureReason struct {
	Status        string `json:"status"`
	Channel       string `json:"channel"`
	Error         string `json:"error"`
	Notifications int64  `json:"notifications"`
}

// MaxFailureReasons bounds Summary.Failures.
const MaxFailureReasons = 20

// CampaignSummary reads a campaign's report from the reporting views
// (campaign_status_counts, campaign_delivery_spread, campaign_failures).
func CampaignSummary(ctx context.Context, q Querier, campaign string) (*Summary, error) {
	sum := &Summary{Campaign: campaign, ByStatus: map[string]int64{}, Counts: []StatusCount{}, Failures: []FailureReason{}}
	rows, err := q.Query(ctx, `SELECT channel, status, notifications, attempts, duplicates, last_update
		FROM campaign_status_counts WHERE campaign = $1 ORDER BY channel, status`, campaign)
	if err != nil {
		return nil, fmt.Errorf("report: report %s: %w", campaign, err)
	}
	for rows.Next() {
		var c StatusCount
		var last time.Time
		if err := rows.Scan(&c.Channel, &c.Status, &c.Notifications, &c.Attempts, &c.Duplicates, &last); err != nil {
			rows.Close()
			return nil, fmt.Errorf("report: report %s: %w", campaign, err)
		}
		sum.Counts = append(sum.Counts, c)
		sum.Total += c.Notifications
		sum.ByStatus[c.Status] += c.Notifications
		if contract.Status(c.Status).Final() {
			sum.Final += c.Notifications
		}
		if last.After(sum.LastUpdate) {
			sum.LastUpdate = last.UTC()
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: report %s: %w", campaign, err)
	}
	if sum.Total == 0 {
		return nil, fmt.Errorf("report: %w: %q", ErrCampaignNotFound, campaign)
	}

	var d DeliverySpread
	err = q.QueryRow(ctx, `SELECT sent, min_seconds, p50_seconds, p90_seconds, p99_seconds, max_seconds, first_sent, last_sent
		FROM campaign_delivery_spread WHERE campaign = $1`, campaign).
		Scan(&d.Sent, &d.MinSeconds, &d.P50Seconds, &d.P90Seconds, &d.P99Seconds, &d.MaxSeconds, &d.FirstSent, &d.LastSent)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("report: report %s: delivery: %w", campaign, err)
	default:
		d.FirstSent, d.LastSent = d.FirstSent.UTC(), d.LastSent.UTC()
		sum.Delivery = &d
	}

	rows, err = q.Query(ctx, `SELECT status, channel, last_error, notifications FROM campaign_failures
		WHERE campaign = $1 ORDER BY notifications DESC, status, channel, last_error LIMIT $2`, campaign, MaxFailureReasons)
	if err != nil {
		return nil, fmt.Errorf("report: report %s: failures: %w", campaign, err)
	}
	defer rows.Close()
	for rows.Next() {
		var f FailureReason
		if err := rows.Scan(&f.Status, &f.Channel, &f.Error, &f.Notifications); err != nil {
			return nil, fmt.Errorf("report: report %s: failures: %w", campaign, err)
		}
		sum.Failures = append(sum.Failures, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: report %s: failures: %w", campaign, err)
	}
	return sum, nil
}

// Package statusfeed owns herald.status, Herald's public status stream:
// one versioned Record per change of a notification's state, keyed by the
// notification id, so that a producer (the billing system) consumes
// outcomes instead of polling Postgres. docs/events.md documents the
// record (schema herald.status.v1).
//
// The feed is derived from the dispatcher table's changelog, never emitted
// by the dispatcher itself (its hot path stays as it is): a Feed consumes
// the changelog in its own group ("herald-status"), maps each state to a
// Record, publishes it, and commits the changelog offsets only after the
// broker acknowledged the records.
//
// Guarantees: every change of a notification's state that the changelog
// carries is published (with ModeFinal, only final ones), at least once
// and in order per id (same key, same partition, published in changelog
// order). A crash between publishing and committing publishes the same
// records again, and log compaction can skip intermediate versions of a
// notification the feed had not read yet; consumers keep, per id, the
// record with the highest version. A duplicate request only bumps a
// counter and is not a status change: it is not published.
package statusfeed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/service"
	"github.com/herald-dispatch/herald/internal/topology"
)

// SchemaV1 names the version of Record.
const SchemaV1 = "herald.status.v1"

// Record is one change of a notification's state on herald.status. The
// recipient's addresses are never in it; LastError is masked.
type Record struct {
	Schema   string          `json:"schema"`
	ID       string          `json:"id"`
	Campaign string          `json:"campaign"`
	Status   contract.Status `json:"status"`
	// Final is true once Status can never change again.
	Final bool `json:"final"`
	// Version is the state's version: higher is newer. Keep the highest.
	Version       uint64              `json:"version"`
	Channel       contract.Channel    `json:"channel"`
	Attempts      int                 `json:"attempts"`
	HoldReason    contract.HoldReason `json:"hold_reason,omitempty"`
	NextAttemptAt *time.Time          `json:"next_attempt_at,omitempty"`
	LastError     string              `json:"last_error,omitempty"`
	SentAt        *time.Time          `json:"sent_at,omitempty"`
	// At is when the change happened (the state's updated_at).
	At time.Time `json:"at"`
}

// Mode chooses which changes the feed publishes.
type Mode string

const (
	ModeAll   Mode = "all"   // every change
	ModeFinal Mode = "final" // only changes to a final status
)

// ParseMode reads --status-feed.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAll, ModeFinal:
		return m, nil
	}
	return "", fmt.Errorf("status feed mode %q: want all or final", s)
}

// NewRecord maps a state to its record. ok is false for a version that is
// not published in mode: a duplicate request (it changes only a counter),
// a remembered record (the dispatcher's retention dropped the state's
// details; the status did not change), or, with ModeFinal, a status that
// is not final.
func NewRecord(s *contract.State, mode Mode, mask func(string) string) (Record, bool) {
	if s.Remembered {
		return Record{}, false
	}
	// A request after the first only counts a duplicate. (Versions carry
	// the owner epoch in their high bits: the first is not always 1.)
	if s.LastSource.Topic == topology.TopicRequests && s.Duplicates > 0 {
		return Record{}, false
	}
	if mode == ModeFinal && !s.Status.Final() {
		return Record{}, false
	}
	r := Record{Schema: SchemaV1, ID: s.ID, Campaign: s.Campaign, Status: s.Status, Final: s.Status.Final(),
		Version: s.Version, Channel: s.Channel, Attempts: s.Attempts, HoldReason: s.HoldReason,
		NextAttemptAt: s.NextAttemptAt, LastError: s.LastError, SentAt: s.SentAt, At: s.UpdatedAt.UTC()}
	if mask != nil {
		r.LastError = mask(r.LastError)
	}
	return r, true
}

// Defaults of Config.
const (
	DefaultGroup = topology.GroupStatus
	DefaultMode  = ModeAll
)

// Config configures a Feed.
type Config struct {
	// Topology names the brokers, how to connect, the client id and the
	// group timings (topology.Config.ConsumerOpts). Required.
	Topology topology.Config
	// Group is the consumer group (default DefaultGroup).
	Group string
	// Mode chooses the changes published (default DefaultMode).
	Mode Mode
	// Mask masks addresses in free text (contract's masker in herald run;
	// default none).
	Mask func(string) string
	// Log is the logger (default slog.Default()).
	Log *slog.Logger
	// KgoOpts are appended to the client's options (tests; default none).
	KgoOpts []kgo.Opt
}

func (c Config) withDefaults() Config {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.Mode == "" {
		c.Mode = DefaultMode
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	if len(c.Topology.Brokers) == 0 {
		return errors.New("statusfeed: no brokers")
	}
	if _, err := ParseMode(string(c.Mode)); err != nil {
		return fmt.Errorf("statusfeed: %w", err)
	}
	return nil
}

// Feed publishes herald.status from the dispatcher table's changelog.
type Feed struct {
	cfg Config
	// svc runs the sessions.
	svc service.Service
}

// New checks cfg and returns a Feed; Run starts it.
func New(cfg Config) (*Feed, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Feed{cfg: cfg, svc: service.Service{Name: "status feed", Log: cfg.Log}}, nil
}

// Run consumes and publishes until ctx ends.
func (f *Feed) Run(ctx context.Context) error { return f.svc.Run(ctx, f.session) }

// session is one membership of the group.
func (f *Feed) session(ctx context.Context) error {
	c := f.cfg
	opts := c.Topology.ConsumerOpts(topology.Consumer{Name: "status", Group: c.Group,
		Topics: []string{string(topology.TableDispatcher)}, BlockRebalance: true})
	cl, err := kgo.NewClient(append(opts, c.KgoOpts...)...)
	if err != nil {
		return service.Permanent(fmt.Errorf("statusfeed: kafka client: %w", err))
	}
	defer cl.Close()
	c.Log.Info("status feed publishing", "topic", topology.TopicStatus, "mode", c.Mode)
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			cl.AllowRebalance()
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			c.Log.Warn("status feed: fetch error", "topic", t, "partition", p, "err", err)
		})
		var out []*kgo.Record
		var consumed []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			consumed = append(consumed, r)
			if r.Value == nil {
				return
			}
			// The fields of a record only: the request and the history, most
			// of a state's bytes, are skipped.
			s, err := contract.DecodeStatus(r.Value)
			if err != nil || s.ID == "" {
				c.Log.Warn("status feed: skipping a changelog value that is not a state", "partition", r.Partition, "offset", r.Offset, "err", err)
				return
			}
			rec, ok := NewRecord(s, c.Mode, c.Mask)
			if !ok {
				return
			}
			b, err := json.Marshal(rec)
			if err != nil {
				return
			}
			out = append(out, &kgo.Record{Topic: topology.TopicStatus, Key: []byte(s.ID), Value: b})
		})
		if len(out) > 0 {
			if err := produce(ctx, cl, out, c.Log); err != nil {
				cl.AllowRebalance()
				return nil // ctx ended; nothing committed, replayed at the next start
			}
		}
		if len(consumed) > 0 {
			if err := cl.CommitRecords(ctx, consumed...); err != nil && ctx.Err() == nil {
				c.Log.Warn("status feed: commit failed; records will be published again", "err", err)
			}
		}
		cl.AllowRebalance()
	}
}

// produce publishes in order, again after a failure (the broker away)
// until ctx ends: nothing is committed before the records are in.
func produce(ctx context.Context, cl *kgo.Client, recs []*kgo.Record, log *slog.Logger) error {
	backoff := service.Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second}
	err := service.Retry(ctx, backoff, func(ctx context.Context) error {
		return cl.ProduceSync(ctx, recs...).FirstErr()
	}, func(err error, _ int, wait time.Duration) {
		log.Warn("status feed: publish failed, retrying", "records", len(recs), "backoff", wait, "err", err)
		for _, r := range recs {
			r.Partition, r.Offset = 0, 0 // placed again by the partitioner
		}
	})
	if err != nil {
		return fmt.Errorf("statusfeed: publish %d records: %w", len(recs), err)
	}
	return nil
}

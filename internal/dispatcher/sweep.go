package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/gokax"
	"github.com/herald-dispatch/herald/internal/tableview"
	"github.com/herald-dispatch/herald/internal/topology"
)

// Sweeper is the dispatcher's rescuer, after River's job rescuer: every
// Interval it scans the dispatcher table for states of the partitions this
// process owns that are overdue, and publishes their wake-up straight to
// herald.wakeups:
//   - a held state whose hold wake-up is overdue by more than Grace (past
//     its next_attempt_at: the delay tiers lost or have not yet released
//     it), the wake-up again;
//   - a sending state past its TimeoutAt (cut-off + provider timeout +
//     margin), its send timeout. This is the only source of send timeouts:
//     the dispatcher sets no timer per send, because the sender answers
//     every command it takes (effects, dispatch.go). The sweep times out
//     only what nobody answered: a command record lost, a sender that
//     never came back.
//
// The test of what is overdue, and the wake-up each gets, is
// tableview.Overdue, which GET /v1/stuck applies too, so that the API's
// stuck list is what the sweep rescues.
//
// Self-healing: each wake-up carries the version the sweep read from the
// changelog (Wakeup.SeenVersion). An owner whose own state is newer knows
// the changelog is behind it and writes its state again (Dispatch,
// onWakeup), so the processor and the changelog never disagree for good,
// whatever lost the write.
//
// Guarantee: no non-final state is stuck for good. A held state waits for
// its wake-up, and whatever lost it (a delay record past retention, an
// operator who deleted a topic, a bug) the sweep makes it again; a sending
// state waits for its result, and at most Interval after its TimeoutAt the
// sweep times it out. A second copy is harmless: a wake-up is checked
// against the state when it comes, so the later of the two is stale.
//
// Retention: when StateRetention is set, a sweep every RetireInterval
// (the first one RetireInterval after the first sweep) also publishes a retire wake-up for each final state of
// an owned partition whose last change is older than StateRetention (and
// not yet remembered), and for each remembered record older than
// DedupRetention, at most RetireBatch per pass (the rest go at the next
// one). The owner decides (Dispatch, onRetire): it replaces the state with
// its remembered record, or deletes it with a tombstone, so the changelog
// compacts and the local stores shrink. These wake-ups carry the version
// the sweep read too, so a remembered record or a tombstone the changelog
// missed is written again by the next pass.
//
// Cost: with InFlight (the process's tableview.StateView), a sweep reads
// only the states in flight of the partitions this process owns, one Get
// each: the work in flight, not the table, which keeps every notification
// for --dedup-retention. A retention pass, and a sweep without InFlight,
// iterate the whole view instead; final states are skipped after a look at
// their status, without decoding them, except in a retention pass, which
// reads their last change and stops there (contract.DecodeRetention: the
// request and the history are skipped by their length).
type Sweeper struct {
	// View is a view of the dispatcher table with raw values (codec.Bytes).
	View interface {
		Iterator() (goka.Iterator, error)
		Get(key string) (any, error)
	}
	// InFlight, if set, lists the ids of a partition's non-final states in
	// View (tableview.StateView.InFlight); a sweep that is not a retention
	// pass then reads only those. Nil: every sweep iterates the view.
	InFlight func(partition int32) []string
	// Fence says which partitions this process owns; only their states
	// are swept.
	Fence *gokax.Fence
	// Partitions is the table's partition count.
	Partitions int
	// Publish writes the wake-ups (keyed by id, placed by Herald's hash).
	Publish func(ctx context.Context, ws []contract.Wakeup) error
	// Interval between sweeps (default DefaultSweepInterval) and Grace, how
	// overdue a wake-up must be (default DefaultSweepGrace).
	Interval, Grace time.Duration
	Now             func() time.Time
	Log             *slog.Logger
	// Observe, if set, is told how many wake-ups each sweep made again.
	Observe func(rescued int)
	// StateRetention and DedupRetention are the dispatcher's
	// (DispatchConfig); zero StateRetention: no retention pass.
	StateRetention, DedupRetention time.Duration
	// RetireInterval is the least time between two retention passes
	// (default DefaultRetireInterval); RetireBatch bounds the retire
	// wake-ups of one pass (default DefaultRetireBatch).
	RetireInterval time.Duration
	RetireBatch    int
	// ObserveRetire, if set, is told how many retire wake-ups each
	// retention pass published.
	ObserveRetire func(retiring int)

	lastRetire time.Time // when the last retention pass ran
}

// Defaults of Sweeper.
const (
	DefaultSweepInterval = time.Minute
	DefaultSweepGrace    = tableview.DefaultGrace
	// DefaultRetireInterval is an hour: a retention pass iterates every
	// state of the owned partitions (2.6 µs each, half a minute of a core
	// over a year at the seed's volume), and retention is counted in days.
	DefaultRetireInterval = time.Hour
	// DefaultRetireBatch bounds a pass at 100,000 wake-ups (a few MB to
	// publish): 2,400,000 a day, far above the seed's 1,000,000 a month,
	// and a year's backlog after an upgrade is retired within a week.
	DefaultRetireBatch = 100_000
)

// Run sweeps every Interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context) error {
	every := s.Interval
	if every <= 0 {
		every = DefaultSweepInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := s.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log().Warn("sweep failed; trying again at the next interval", "err", err)
		case n > 0:
			s.log().Warn("sweep found states whose wake-up was overdue, and woke them", "count", n)
		}
	}
}

// Sweep makes one pass and returns how many overdue wake-ups it
// published (retire wake-ups, of a retention pass, are not counted: they
// are the table's upkeep, not a rescue).
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	grace := s.Grace
	if grace <= 0 {
		grace = DefaultSweepGrace
	}
	every, batch := s.RetireInterval, s.RetireBatch
	if every <= 0 {
		every = DefaultRetireInterval
	}
	if batch <= 0 {
		batch = DefaultRetireBatch
	}
	if s.StateRetention > 0 && s.lastRetire.IsZero() {
		// The first retention pass waits one RetireInterval: a rolling
		// upgrade has that long to replace the instances that do not
		// know remembered records (docs/operations.md, Upgrades).
		s.lastRetire = now
	}
	retain := s.StateRetention > 0 && now.Sub(s.lastRetire) >= every
	var (
		due, retiring []contract.Wakeup
		err           error
	)
	if s.InFlight != nil && !retain {
		due, err = s.scanInFlight(ctx, now, grace)
	} else {
		due, retiring, err = s.scanAll(ctx, now, grace, retain, batch)
	}
	if err != nil {
		return 0, err
	}
	if len(due) > 0 {
		if err := s.Publish(ctx, due); err != nil {
			return 0, fmt.Errorf("sweep: publish %d wake-ups: %w", len(due), err)
		}
	}
	if s.Observe != nil {
		s.Observe(len(due))
	}
	if retain {
		if err := s.publishRetiring(ctx, retiring); err != nil {
			return len(due), err
		}
		s.lastRetire = now
	}
	return len(due), nil
}

// scanInFlight returns the overdue wake-ups among the states in flight of
// the owned partitions, reading each state again from the view (the
// index is a snapshot: a state gone final since is skipped by Overdue).
func (s *Sweeper) scanInFlight(ctx context.Context, now time.Time, grace time.Duration) ([]contract.Wakeup, error) {
	var due []contract.Wakeup
	for p := range int32(s.Partitions) {
		if !s.Fence.Owns(p) {
			continue
		}
		for _, id := range s.InFlight(p) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			v, err := s.View.Get(id)
			if err != nil {
				continue
			}
			if b, _ := v.([]byte); b != nil {
				if w, ok := tableview.Overdue(b, now, grace); ok {
					due = append(due, w)
				}
			}
		}
	}
	return due, nil
}

// scanAll iterates the whole view: the overdue wake-ups of the owned
// partitions' states in flight and, in a retention pass (retain), the
// retire wake-ups of their final states, at most batch.
func (s *Sweeper) scanAll(ctx context.Context, now time.Time, grace time.Duration, retain bool, batch int) (due, retiring []contract.Wakeup, err error) {
	it, err := s.View.Iterator()
	if err != nil {
		return nil, nil, fmt.Errorf("sweep: iterate the table: %w", err)
	}
	defer it.Release()
	for it.Next() {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if !s.Fence.Owns(topology.Partition(it.Key(), s.Partitions)) {
			continue
		}
		v, err := it.Value()
		if err != nil {
			continue
		}
		b, _ := v.([]byte)
		sum, err := contract.DecodeSummary(b)
		switch {
		case err != nil:
		case !sum.Status.Final():
			if w, ok := tableview.Overdue(b, now, grace); ok {
				due = append(due, w)
			}
		case retain && len(retiring) < batch:
			if w, ok := retirable(b, now, s.StateRetention, max(s.DedupRetention, s.StateRetention)); ok {
				retiring = append(retiring, w)
			}
		}
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("sweep: iterate the table: %w", err)
	}
	return due, retiring, nil
}

// publishRetiring publishes a retention pass's retire wake-ups.
func (s *Sweeper) publishRetiring(ctx context.Context, retiring []contract.Wakeup) error {
	if len(retiring) > 0 {
		if err := s.Publish(ctx, retiring); err != nil {
			return fmt.Errorf("sweep: publish %d retire wake-ups: %w", len(retiring), err)
		}
		s.log().Info("retention: final states past their retention sent to be remembered or deleted", "count", len(retiring))
	}
	if s.ObserveRetire != nil {
		s.ObserveRetire(len(retiring))
	}
	return nil
}

// retirable returns the retire wake-up an encoded final state needs at
// now: a whole state past stateRet, or any past dedupRet, since its last
// change. The owner decides again from its own state (onRetire).
func retirable(b []byte, now time.Time, stateRet, dedupRet time.Duration) (contract.Wakeup, bool) {
	r, err := contract.DecodeRetention(b)
	if err != nil || !r.Status.Final() || r.UpdatedAt.IsZero() {
		return contract.Wakeup{}, false
	}
	age := now.Sub(r.UpdatedAt)
	if age >= dedupRet || (!r.Remembered && age >= stateRet) {
		return contract.Wakeup{ID: r.ID, Kind: contract.WakeupRetire, Due: now, SeenVersion: r.Version}, true
	}
	return contract.Wakeup{}, false
}

func (s *Sweeper) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// PublishWakeups returns a Sweeper.Publish that writes wake-ups to
// herald.wakeups through cl (built with topology.KgoProducerOpts, so keys
// are placed by Herald's hash) and waits for every acknowledgement.
func PublishWakeups(cl *kgo.Client) func(ctx context.Context, ws []contract.Wakeup) error {
	return func(ctx context.Context, ws []contract.Wakeup) error {
		recs := make([]*kgo.Record, len(ws))
		for i, w := range ws {
			b, err := contract.EncodeWakeup(&w)
			if err != nil {
				return err
			}
			recs[i] = &kgo.Record{Topic: topology.TopicWakeups, Key: []byte(w.ID), Value: b}
		}
		return cl.ProduceSync(ctx, recs...).FirstErr()
	}
}

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
// Guarantee: no non-final state is stuck for good. A held state waits for
// its wake-up, and whatever lost it (a delay record past retention, an
// operator who deleted a topic, a bug) the sweep makes it again; a sending
// state waits for its result, and at most Interval after its TimeoutAt the
// sweep times it out. A second copy is harmless: a wake-up is checked
// against the state when it comes, so the later of the two is stale.
//
// Cost: one pass over the table's local view per Interval; final states
// are skipped after a look at their status, without decoding them.
type Sweeper struct {
	// View is a view of the dispatcher table with raw values (codec.Bytes).
	View interface {
		Iterator() (goka.Iterator, error)
	}
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
}

// Defaults of Sweeper.
const (
	DefaultSweepInterval = time.Minute
	DefaultSweepGrace    = time.Minute
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

// Sweep makes one pass and returns how many wake-ups it published.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	grace := s.Grace
	if grace <= 0 {
		grace = DefaultSweepGrace
	}
	it, err := s.View.Iterator()
	if err != nil {
		return 0, fmt.Errorf("sweep: iterate the table: %w", err)
	}
	defer it.Release()
	var due []contract.Wakeup
	for it.Next() {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if !s.Fence.Owns(topology.Partition(it.Key(), s.Partitions)) {
			continue
		}
		v, err := it.Value()
		if err != nil {
			continue
		}
		b, _ := v.([]byte)
		if w, ok := overdue(b, now, grace); ok {
			due = append(due, w)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("sweep: iterate the table: %w", err)
	}
	if len(due) > 0 {
		if err := s.Publish(ctx, due); err != nil {
			return 0, fmt.Errorf("sweep: publish %d wake-ups: %w", len(due), err)
		}
	}
	if s.Observe != nil {
		s.Observe(len(due))
	}
	return len(due), nil
}

func (s *Sweeper) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// overdue returns the wake-up an encoded state needs at now: its send
// timeout once past TimeoutAt, its hold wake-up once overdue by more than
// grace. A final state is recognised by its summary alone and not decoded
// further.
func overdue(b []byte, now time.Time, grace time.Duration) (contract.Wakeup, bool) {
	if sum, err := contract.DecodeSummary(b); err != nil || sum.Status.Final() {
		return contract.Wakeup{}, false
	}
	st, err := contract.DecodeProgress(b)
	if err != nil {
		return contract.Wakeup{}, false
	}
	switch {
	case st.Status == contract.StatusSending && st.TimeoutAt != nil && !now.Before(*st.TimeoutAt):
		return contract.Wakeup{ID: st.ID, Kind: contract.WakeupSendTimeout, Due: *st.TimeoutAt, Attempt: st.Attempts, Issue: st.Issue}, true
	case st.Status.Held() && st.NextAttemptAt != nil && now.Sub(*st.NextAttemptAt) > grace:
		return contract.Wakeup{ID: st.ID, Kind: contract.WakeupHold, Due: *st.NextAttemptAt}, true
	}
	return contract.Wakeup{}, false
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

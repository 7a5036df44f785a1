package sender

import (
	"fmt"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// StateReader reads the dispatcher's current state of a notification; nil
// when the id is unknown. A Goka view of the dispatcher table
// (views.StateView) is the real one. If it also has a Recovered() bool
// method, the sender waits for it to report true before it consumes.
type StateReader interface {
	Get(id string) (*contract.State, error)
}

// Stale reports whether the state has moved past the attempt a command
// asks for, so that sending it would be useless at best and a duplicate at
// worst: the state counts more attempts, or counts this one but is no
// longer sending (its result, or a send timeout, has been applied).
//
// A state that lags behind (a view not yet caught up) shows fewer attempts
// and the command is sent: the check only ever skips what is certainly
// old, and the idempotency key covers the rest.
func Stale(s *contract.State, cmd *contract.SendCommand) bool {
	if s == nil {
		return false
	}
	if s.Status.Final() || s.Attempts > cmd.Attempt {
		return true // a canceled notification is final: its queued command is skipped
	}
	return s.Attempts == cmd.Attempt && (s.Status != contract.StatusSending || s.Issue > cmd.Issue)
}

// PastCutoff says why the provider may no longer be called for cmd at now,
// or "" while it may: the command's cut-off (SendCommand.Until) is less
// than budget away. A request started closer to the cut-off than the
// budget may not reach the provider before it (a new connection, a slow
// network): it would be abandoned then, or arrive at the provider just as
// the window opens. Answering not_attempted at once is definite, and costs
// nothing.
func PastCutoff(cmd *contract.SendCommand, now time.Time, budget time.Duration) string {
	until := cmd.Until()
	if until.IsZero() || until.Sub(now) >= budget && now.Before(until) {
		return ""
	}
	at := until.UTC().Format(time.RFC3339Nano)
	left := ""
	if now.Before(until) {
		left = fmt.Sprintf(" (%s left, less than the --send-min-budget of %s)", until.Sub(now).Round(time.Millisecond), budget)
	}
	if !cmd.Cutoff.IsZero() && !cmd.Deadline.IsZero() && cmd.Cutoff.Before(cmd.Deadline) {
		return "not attempted: the command's cut-off is " + at + left + " (a blackout window begins or the request expires)"
	}
	return "not attempted: the command's deadline is " + at + left
}

// TableView is the part of a Goka view of the dispatcher table (with
// codec.Bytes values, as views.StateView.Goka() returns) that ViewReader
// uses.
type TableView interface {
	Get(key string) (any, error)
	Recovered() bool
}

// ViewReader is the StateReader the sender stage uses: it reads a Goka
// view of the dispatcher table and decodes only the fields Stale looks at
// (contract.DecodeProgress), not the whole state (request, content,
// history), which is several times cheaper per command
// (contract.BenchmarkDecodeProgress).
type ViewReader struct {
	View TableView
}

// Get returns the status and attempt count of id's state, or nil.
func (r ViewReader) Get(id string) (*contract.State, error) {
	v, err := r.View.Get(id)
	if err != nil {
		return nil, fmt.Errorf("sender: state of %q: %w", id, err)
	}
	b, _ := v.([]byte)
	if b == nil {
		return nil, nil
	}
	st, err := contract.DecodeProgress(b)
	if err != nil {
		return nil, fmt.Errorf("sender: state of %q: %w", id, err)
	}
	return st, nil
}

// Recovered reports whether the view has caught up once.
func (r ViewReader) Recovered() bool { return r.View.Recovered() }

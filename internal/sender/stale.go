package sender

import (
	"fmt"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// StateReader reads the dispatcher's current state of a notification; nil
// when the id is unknown. The state needs only the fields Stale reads
// (Status, Attempts, Issue, Commands), as contract.DecodeProgress reads
// them. The process's view of the dispatcher table
// (tableview.ProgressReader) is the real one. If it also has a
// Recovered() bool method, the sender waits for it to report true before
// it consumes.
type StateReader interface {
	Get(id string) (*contract.State, error)
}

// Stale reports whether the state has moved past the command, so that
// sending it would be useless at best and a duplicate at worst:
//
//   - the notification is final (a canceled one too: its queued command is
//     skipped), or the state counts more attempts;
//   - a later command was issued (the state's issue number is higher);
//   - the state counts this attempt but is no longer sending (its result,
//     or a send timeout, has been applied);
//   - the state is held or otherwise not sending (scheduled, deferred,
//     retrying, a status this version does not know) and has issued this
//     command already: the command was answered (not_attempted gives the
//     attempt back, so the state counts fewer attempts than the command)
//     or timed out, and the dispatcher decides anew when the hold ends.
//     Sending it would call the provider while the notification waits,
//     inside a blackout window for a deferred one.
//
// A state that lags behind (a view not yet caught up with the command)
// shows fewer attempts and a command not issued yet (its Commands at most
// the command's issue), and the command is sent: the check only ever
// skips what is certainly old, and the idempotency key covers the rest.
func Stale(s *contract.State, cmd *contract.SendCommand) bool {
	switch {
	case s == nil:
		return false
	case s.Status.Final(), s.Attempts > cmd.Attempt, s.Issue > cmd.Issue:
		return true
	case s.Attempts == cmd.Attempt:
		return s.Status != contract.StatusSending
	case s.Status == contract.StatusSending:
		return false // an earlier attempt sending: the view lags
	}
	return issued(s) > cmd.Issue
}

// issued is how many commands s has issued (its issue numbers run from 0
// to issued-1): Commands, and at least one past a non-zero Issue.
func issued(s *contract.State) int {
	if s.Issue > 0 {
		return max(s.Commands, s.Issue+1)
	}
	return s.Commands
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

package sender

import "github.com/herald-dispatch/herald/contract"

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
	if s.Attempts > cmd.Attempt {
		return true
	}
	return s.Attempts == cmd.Attempt && s.Status != contract.StatusSending
}

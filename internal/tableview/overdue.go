package tableview

import (
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// DefaultGrace is how overdue a held state's wake-up must be before
// Overdue reports it: the default of the dispatcher's sweep
// (dispatcher.DefaultSweepGrace, --sweep-grace) and of GET /v1/stuck.
const DefaultGrace = time.Minute

// Overdue reports whether the encoded state b is one the dispatcher's
// sweep rescues at now, and the wake-up it makes for it: a sending state
// past its TimeoutAt gets its send timeout; a held one whose wake-up is
// overdue by more than grace gets that wake-up again. Either carries the
// version it read (SeenVersion), so that an owner holding a newer state
// writes it again. A final state, or one that does not decode, is not
// overdue.
//
// It is the sweep's own test (dispatcher.Sweeper), and what the API lists
// as stuck (GET /v1/stuck), so that both mean the same.
func Overdue(b []byte, now time.Time, grace time.Duration) (contract.Wakeup, bool) {
	st, err := contract.DecodeProgress(b)
	if err != nil {
		return contract.Wakeup{}, false
	}
	seen, err := contract.StateVersion(b)
	if err != nil {
		return contract.Wakeup{}, false
	}
	switch {
	case st.Status == contract.StatusSending && st.TimeoutAt != nil && !now.Before(*st.TimeoutAt):
		return contract.Wakeup{ID: st.ID, Kind: contract.WakeupSendTimeout, Due: *st.TimeoutAt, Attempt: st.Attempts, Issue: st.Issue,
			SeenVersion: seen}, true
	case st.Status.Held() && st.NextAttemptAt != nil && now.Sub(*st.NextAttemptAt) > grace:
		return contract.Wakeup{ID: st.ID, Kind: contract.WakeupHold, Due: *st.NextAttemptAt, SeenVersion: seen}, true
	}
	return contract.Wakeup{}, false
}

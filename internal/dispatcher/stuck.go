package dispatcher

import (
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// Overdue reports whether the encoded state b is one the sweep rescues at
// now, and the wake-up it makes for it: a sending state past its
// TimeoutAt, a held one whose wake-up is overdue by more than grace. It is
// the sweep's own test (overdue), so that what the API lists as stuck
// (GET /v1/stuck) is what the sweep means.
func Overdue(b []byte, now time.Time, grace time.Duration) (contract.Wakeup, bool) {
	return overdue(b, now, grace)
}

package tableview

import (
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// Overdue is the sweep's test: a sending state once past its time-out,
// a held one once its wake-up is overdue by more than the grace, never a
// final one or bytes that are not a state; the wake-up names the version
// it read.
func TestOverdue(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	const grace = time.Minute
	for _, tc := range []struct {
		name string
		st   contract.State
		want contract.WakeupKind // "": not overdue
		due  *time.Time
	}{
		{"sending past its time-out", contract.State{Status: contract.StatusSending, TimeoutAt: at(-time.Second), Attempts: 2, Issue: 3},
			contract.WakeupSendTimeout, at(-time.Second)},
		{"sending at its time-out", contract.State{Status: contract.StatusSending, TimeoutAt: at(0)}, contract.WakeupSendTimeout, at(0)},
		{"sending before its time-out", contract.State{Status: contract.StatusSending, TimeoutAt: at(time.Second)}, "", nil},
		{"retrying past the grace", contract.State{Status: contract.StatusRetrying, NextAttemptAt: at(-grace - time.Second)},
			contract.WakeupHold, at(-grace - time.Second)},
		{"deferred within the grace", contract.State{Status: contract.StatusDeferred, NextAttemptAt: at(-grace)}, "", nil},
		{"sent, whatever its times", contract.State{Status: contract.StatusSent, TimeoutAt: at(-time.Hour), NextAttemptAt: at(-time.Hour)}, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.st.ID, tc.st.Version = "n-1", 7
			b, err := contract.EncodeState(&tc.st)
			if err != nil {
				t.Fatal(err)
			}
			w, ok := Overdue(b, now, grace)
			if ok != (tc.want != "") {
				t.Fatalf("overdue %v, want %v (%+v)", ok, tc.want != "", w)
			}
			if !ok {
				return
			}
			if w.Kind != tc.want || !w.Due.Equal(*tc.due) || w.ID != "n-1" || w.SeenVersion != 7 {
				t.Fatalf("wake-up %+v, want kind %s due %s for n-1 at version 7", w, tc.want, tc.due)
			}
			if w.Kind == contract.WakeupSendTimeout && (w.Attempt != tc.st.Attempts || w.Issue != tc.st.Issue) {
				t.Fatalf("send timeout %+v names attempt %d issue %d", w, tc.st.Attempts, tc.st.Issue)
			}
		})
	}
	if _, ok := Overdue([]byte("not a state"), now, grace); ok {
		t.Fatal("bytes that are not a state are overdue")
	}
}

package chaos

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/loadtest"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/herald-dispatch/herald/internal/topology"
)

// Row is a notification's row in dispatch_status.
type Row struct {
	Status    string
	Channel   string
	Attempts  int
	Version   int64
	UpdatedAt time.Time
	LastError string
}

// Evidence is everything a run's verdict is taken from.
type Evidence struct {
	Plan *loadtest.Plan
	// Partitions places ids, for the failure output.
	Partitions int
	// Deliveries is the provider's delivery log; Calls every call it
	// answered (or that was abandoned), Open the calls still in progress.
	Deliveries []provider.Delivery
	Calls      []Call
	Open       []Call
	// Rows is dispatch_status for the run's campaign, by id.
	Rows   map[string]Row
	Faults []FaultEvent
	Honour bool
	// Channels is how many channels each request lists, and
	// AttemptsPerChannel its policy: a notification may legitimately end
	// failed only after the provider answered that many failures on every
	// channel.
	Channels, AttemptsPerChannel int
	// InFlightWindow: a provider call counts as in flight at a kill when it
	// was open at the kill, or delivered less than this before it (its
	// result may not have been committed yet); see inFlightAt.
	InFlightWindow time.Duration
	// T0 is the first publication; times are printed relative to it.
	T0 time.Time
	// Strict fails a run for every duplicated notification without a
	// provider call in flight at a kill, not only for more duplicates than
	// such calls.
	Strict bool
	// SendConcurrency, when set, is each instance's --send-concurrency: a
	// kill -9 or a pause of an instance leaves at most that many calls
	// without a recorded answer, a broker kill that many per instance
	// (Instances). With a provider that ignores the key, the notifications
	// delivered more than once must then be at most that bound, and at
	// most the calls in flight at the kills.
	SendConcurrency, Instances int
	// Late are ids whose status was not final when the
	// bound on all-final had passed after the last fault; explained in
	// the details (the run's finalFailure fails it).
	Late []string
	// Tail are ids not final at half that bound: not a failure, shown
	// (tailDetails of them) so that a passing run tells what bounds its
	// time to all-final.
	Tail []string
}

// tailDetails bounds the ids of Evidence.Tail explained.
const tailDetails = 5

// Verdict is a run's outcome at the provider.
type Verdict struct {
	Valid     int `json:"valid"`
	Published int `json:"published"`
	// DeliveredOnce counts valid ids delivered exactly once; Failed ids
	// legitimately final without a delivery.
	DeliveredOnce int `json:"delivered_once"`
	Failed        int `json:"failed"`
	// Lost: valid ids neither delivered nor legitimately final.
	Lost []string `json:"lost"`
	// Duplicated: ids delivered more than once; Extra the deliveries
	// beyond the first.
	Duplicated []string `json:"duplicated"`
	Extra      int      `json:"extra_deliveries"`
	// InFlightAtKills counts provider calls in flight at the kills and the
	// pause (the bound on duplicates without idempotency).
	InFlightAtKills int `json:"in_flight_at_kills"`
	// RecallBound is the send concurrency times the instances hit by
	// kills (0: not checked), see Evidence.SendConcurrency.
	RecallBound int `json:"recall_bound,omitempty"`
	// UnexplainedDuplicates: duplicated ids that had no call in flight at
	// any kill.
	UnexplainedDuplicates []string `json:"unexplained_duplicates"`
	// NotFinal: ids with no row or a status that is not final; Differs:
	// final rows that disagree with the provider.
	NotFinal []string `json:"not_final"`
	Differs  []string `json:"differs"`
	// Unknown counts deliveries of ids the run never published.
	Unknown int `json:"unknown_deliveries"`
	// Failures are the broken assertions, one line each.
	Failures []string `json:"failures"`
	// Details explain each offending id: provider calls, the row, faults.
	Details []string `json:"details"`
}

// Passed reports whether every assertion held.
func (v *Verdict) Passed() bool { return len(v.Failures) == 0 }

// maxDetails bounds the ids explained per category.
const maxDetails = 15

// killFault reports whether a fault can leave a provider call's result
// unrecorded (and so cause a second call).
func killFault(k FaultKind) bool {
	return k == KillInstance || k == KillBroker || k == PauseInstance
}

// Check takes the verdict.
func Check(e *Evidence) *Verdict {
	v := &Verdict{}
	p := e.Plan
	delivered := map[string][]provider.Delivery{}
	for _, d := range e.Deliveries {
		if i, ok := p.Index(d.ID); !ok || p.Kinds[i] == loadtest.KindMalformed {
			v.Unknown++
			continue
		}
		delivered[d.ID] = append(delivered[d.ID], d)
	}
	calls := map[string][]Call{}
	for _, c := range append(append([]Call(nil), e.Calls...), e.Open...) {
		calls[c.ID] = append(calls[c.ID], c)
	}
	inFlight := map[string]bool{}
	all := append(append([]Call(nil), e.Calls...), e.Open...)
	for _, f := range e.Faults {
		if !killFault(f.Kind) {
			continue
		}
		for _, c := range all {
			if e.inFlightAt(f, c) {
				v.InFlightAtKills++
				inFlight[c.ID] = true
			}
		}
	}
	for i, k := range p.Kinds {
		if k == loadtest.KindMalformed {
			continue
		}
		v.Valid++
		if p.Published[i].Load() != 0 {
			v.Published++
		}
		id := p.ID(i)
		ds := delivered[id]
		row, hasRow := e.Rows[id]
		final := hasRow && contract.Status(row.Status).Final()
		switch {
		case len(ds) == 0 && final && row.Status == string(contract.StatusFailed) && e.failedEverywhere(calls[id]):
			v.Failed++
		case len(ds) == 0:
			v.Lost = append(v.Lost, id)
		case len(ds) == 1:
			v.DeliveredOnce++
		default:
			v.Duplicated = append(v.Duplicated, id)
			v.Extra += len(ds) - 1
			if !inFlight[id] {
				v.UnexplainedDuplicates = append(v.UnexplainedDuplicates, id)
			}
		}
		switch {
		case !final:
			v.NotFinal = append(v.NotFinal, id)
		case len(ds) > 0 && (row.Status != string(contract.StatusSent) || row.Channel != string(ds[0].Channel)):
			v.Differs = append(v.Differs, id)
		case len(ds) == 0 && row.Status == string(contract.StatusSent):
			v.Differs = append(v.Differs, id)
		}
	}
	if n := len(v.Lost); n > 0 {
		v.Failures = append(v.Failures, fmt.Sprintf("%d of %d valid notifications lost (never delivered, not legitimately failed)", n, v.Valid))
	}
	if e.Honour && len(v.Duplicated) > 0 {
		v.Failures = append(v.Failures, fmt.Sprintf("%d notifications delivered more than once (%d extra deliveries) by a provider that honours Idempotency-Key", len(v.Duplicated), v.Extra))
	}
	if !e.Honour && v.Extra > v.InFlightAtKills {
		v.Failures = append(v.Failures, fmt.Sprintf("%d extra deliveries without idempotency, more than the %d provider calls in flight at the kills", v.Extra, v.InFlightAtKills))
	}
	if e.SendConcurrency > 0 && !e.Honour {
		v.RecallBound = e.SendConcurrency * e.instancesHit()
		if n := len(v.Duplicated); n > v.RecallBound {
			v.Failures = append(v.Failures, fmt.Sprintf("%d notifications delivered more than once without idempotency, more than the send concurrency %d times the %d instances hit by kills",
				n, e.SendConcurrency, v.RecallBound/e.SendConcurrency))
		}
		if n := len(v.Duplicated); n > v.InFlightAtKills {
			v.Failures = append(v.Failures, fmt.Sprintf("%d notifications delivered more than once without idempotency, more than the %d provider calls in flight at the kills", n, v.InFlightAtKills))
		}
	}
	if n := len(v.NotFinal); n > 0 {
		v.Failures = append(v.Failures, fmt.Sprintf("%d notifications not final in PostgreSQL (no row, or a status that is not final)", n))
	}
	if n := len(v.Differs); n > 0 {
		v.Failures = append(v.Failures, fmt.Sprintf("%d PostgreSQL statuses differ from the provider's record", n))
	}
	if e.Strict && len(v.UnexplainedDuplicates) > 0 {
		v.Failures = append(v.Failures, fmt.Sprintf("%d duplicated notifications had no provider call in flight at any kill", len(v.UnexplainedDuplicates)))
	}
	if v.Unknown > 0 {
		v.Failures = append(v.Failures, fmt.Sprintf("%d deliveries of ids the run never published", v.Unknown))
	}
	lost := map[string]bool{}
	for _, id := range v.Lost {
		lost[id] = true
	}
	var deliveredNotFinal []string // the lost ones are explained already
	for _, id := range v.NotFinal {
		if !lost[id] {
			deliveredNotFinal = append(deliveredNotFinal, id)
		}
	}
	for _, set := range []struct {
		what string
		ids  []string
	}{{"lost", v.Lost}, {"duplicated with no call in flight at a kill", v.UnexplainedDuplicates}, {"duplicated", v.Duplicated},
		{"delivered, not final in postgres", deliveredNotFinal}, {"differs", v.Differs},
		{"not final at the bound after the last fault", e.Late}} {
		for j, id := range set.ids {
			if j == maxDetails {
				v.Details = append(v.Details, fmt.Sprintf("%s: %d more not shown", set.what, len(set.ids)-maxDetails))
				break
			}
			v.Details = append(v.Details, set.what+": "+e.explain(id, delivered[id], calls[id]))
		}
	}
	for j, id := range e.Tail {
		if j == tailDetails {
			v.Details = append(v.Details, fmt.Sprintf("tail (not a failure): %d more not final at half the bound", len(e.Tail)-tailDetails))
			break
		}
		v.Details = append(v.Details, "tail (not a failure): not final at half the bound after the last fault: "+e.explain(id, delivered[id], calls[id]))
	}
	return v
}

// instancesHit counts the instances the kills and pauses hit, once per
// fault: one for an instance, every instance for the broker.
func (e *Evidence) instancesHit() int {
	n := 0
	for _, f := range e.Faults {
		switch {
		case f.Kind == KillBroker:
			n += max(e.Instances, 1)
		case killFault(f.Kind):
			n++
		}
	}
	return n
}

// inFlightAt reports whether call c was in flight at fault f: open when f
// began or reaching the provider before f ended, or delivered less than
// InFlightWindow before f began, so that its result may never have been
// recorded. A kill or pause of an instance concerns only that instance's
// calls (Call.Caller); a request it sent just before the signal can reach
// the provider's handler late on a busy machine, and a dead or stopped
// process sends nothing new. A broker kill concerns every instance's
// calls, and every call made while the broker was down (their results
// could not be written).
func (e *Evidence) inFlightAt(f FaultEvent, c Call) bool {
	if f.Kind != KillBroker && c.Caller != f.Target() {
		return false
	}
	if c.Start.After(f.End) {
		return false
	}
	if c.End.IsZero() || !c.End.Before(f.Start) {
		return true
	}
	return c.Outcome == OutcomeDelivered && !c.End.Before(f.Start.Add(-e.InFlightWindow))
}

// failedEverywhere reports whether the provider answered a failure for
// AttemptsPerChannel attempts on each of the request's channels.
func (e *Evidence) failedEverywhere(cs []Call) bool {
	failed := map[contract.Channel]map[int]bool{}
	for _, c := range cs {
		if c.Outcome == OutcomeFailed || c.Outcome == OutcomeOutage {
			if failed[c.Channel] == nil {
				failed[c.Channel] = map[int]bool{}
			}
			failed[c.Channel][c.Attempt] = true
		}
	}
	if len(failed) < e.Channels {
		return false
	}
	for _, attempts := range failed {
		if len(attempts) < e.AttemptsPerChannel {
			return false
		}
	}
	return true
}

func (e *Evidence) rel(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("t+%.3fs", t.Sub(e.T0).Seconds())
}

// explain describes one id: where it lives, when it was published, every
// provider call, the deliveries, its row and the faults around it.
func (e *Evidence) explain(id string, ds []provider.Delivery, cs []Call) string {
	var b strings.Builder
	i, _ := e.Plan.Index(id)
	pub := time.Unix(0, e.Plan.Published[i].Load())
	fmt.Fprintf(&b, "%s (partition %d) published %s", id, topology.Partition(id, e.Partitions), e.rel(pub))
	sort.Slice(cs, func(a, b int) bool { return cs[a].Start.Before(cs[b].Start) })
	last := pub
	fmt.Fprintf(&b, "\n    provider calls (%d):", len(cs))
	for _, c := range cs {
		end := e.rel(c.End)
		if c.End.IsZero() {
			end = "still open"
		}
		from := c.Caller
		if from == "" {
			from = "?"
		}
		fmt.Fprintf(&b, " [%s..%s from %s: %s attempt %d key %q: %s %d]", e.rel(c.Start), end, from, c.Channel, c.Attempt, c.Key, c.Outcome, c.Status)
		if c.Start.After(last) {
			last = c.Start
		}
	}
	fmt.Fprintf(&b, "\n    deliveries (%d):", len(ds))
	for _, d := range ds {
		fmt.Fprintf(&b, " [%s %s attempt %d]", e.rel(d.At), d.Channel, d.Attempt)
	}
	if r, ok := e.Rows[id]; ok {
		fmt.Fprintf(&b, "\n    postgres: status %s channel %q attempts %d version %d updated %s error %q",
			r.Status, r.Channel, r.Attempts, r.Version, e.rel(r.UpdatedAt), r.LastError)
	} else {
		b.WriteString("\n    postgres: no row")
	}
	b.WriteString("\n    faults: " + e.faultsAround(pub, last))
	return b.String()
}

// faultsAround names the faults active or begun between from and to (plus
// a second), or else the last one before from.
func (e *Evidence) faultsAround(from, to time.Time) string {
	var out []string
	var before *FaultEvent
	for j := range e.Faults {
		f := &e.Faults[j]
		if f.Start.After(to.Add(time.Second)) {
			continue
		}
		if f.End.Before(from) {
			if before == nil || f.Start.After(before.Start) {
				before = f
			}
			continue
		}
		out = append(out, f.String(e.T0))
	}
	if len(out) == 0 && before != nil {
		return "none while it was handled; the last before: " + before.String(e.T0)
	}
	if len(out) == 0 {
		return "none before or during"
	}
	return strings.Join(out, "; ")
}

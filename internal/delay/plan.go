package delay

import (
	"errors"
	"fmt"
	"time"

	"github.com/herald-dispatch/herald/internal/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Action is what the delay stage does with a record at the head of a tier
// partition.
type Action int

const (
	// Wait: the record may not leave its tier yet; nothing behind it may
	// either (a tier's order is its due order).
	Wait Action = iota
	// Forward: the record is due; it goes to its target topic.
	Forward
	// Hop: the record has spent its tier's delay but is not due yet; it is
	// published again to the tier Route picks for what remains.
	Hop
	// Reject: the record's headers are missing or bad; it goes to the DLQ.
	Reject
)

func (a Action) String() string {
	switch a {
	case Wait:
		return "wait"
	case Forward:
		return "forward"
	case Hop:
		return "hop"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// ErrBadRecord wraps every reason a delayed record is rejected.
var ErrBadRecord = errors.New("bad delayed record")

// Step is the decision about one record.
type Step struct {
	Action Action
	// Due is the record's topology.HeaderDue.
	Due time.Time
	// Release is when the record may leave its tier: the earlier of its
	// timestamp plus the tier's delay and Due.
	Release time.Time
	// Topic is where the record goes (Forward, Hop).
	Topic string
	// Err says why the record is rejected (Reject); it wraps ErrBadRecord.
	Err error
}

// Decide decides what happens at now to record r, held in the tier whose
// delay is tier. allowed reports whether a target topic may be released to
// (nil allows any). A record is forwarded only when now is at or after its
// due time, so nothing leaves early whatever the record's timestamp says.
func Decide(r *kgo.Record, tier time.Duration, now time.Time, allowed func(topic string) bool) Step {
	due, target, err := Headers(r)
	if err == nil && allowed != nil && !allowed(target) {
		err = fmt.Errorf("%w: %s %q is not a topic the delay stage releases to", ErrBadRecord, topology.HeaderTarget, target)
	}
	if err != nil {
		return Step{Action: Reject, Err: err, Release: now}
	}
	release := r.Timestamp.Add(tier)
	if due.Before(release) {
		release = due
	}
	st := Step{Due: due, Release: release}
	switch {
	case now.Before(release):
		st.Action = Wait
	case !now.Before(due):
		st.Action, st.Topic = Forward, target
	default:
		st.Action, st.Topic = Hop, topology.Route(due, now, target)
	}
	return st
}

// Headers reads a delayed record's due time and target topic.
func Headers(r *kgo.Record) (due time.Time, target string, err error) {
	var haveDue, haveTarget bool
	for _, h := range r.Headers {
		switch h.Key {
		case topology.HeaderDue:
			if haveDue {
				continue
			}
			haveDue = true
			if due, err = topology.ParseDue(h.Value); err != nil {
				return time.Time{}, "", fmt.Errorf("%w: %w", ErrBadRecord, err)
			}
		case topology.HeaderTarget:
			if haveTarget {
				continue
			}
			haveTarget = true
			target = string(h.Value)
		}
	}
	switch {
	case !haveDue:
		return time.Time{}, "", fmt.Errorf("%w: no %s header", ErrBadRecord, topology.HeaderDue)
	case target == "":
		return time.Time{}, "", fmt.Errorf("%w: no %s header", ErrBadRecord, topology.HeaderTarget)
	}
	return due, target, nil
}

// Plan looks at the records of one tier partition, head first, and returns
// the steps of the leading records that can leave at now (at most max, all
// of them Forward, Hop or Reject) and, if the first record it stopped at
// must wait, when that record may leave (zero when q is exhausted or max
// was reached). The caller acts on the steps in order, then calls Plan
// again; it sleeps until next when there are no steps.
func Plan(q []*kgo.Record, tier time.Duration, now time.Time, max int, allowed func(string) bool) (steps []Step, next time.Time) {
	for _, r := range q {
		if max > 0 && len(steps) >= max {
			return steps, time.Time{}
		}
		st := Decide(r, tier, now, allowed)
		if st.Action == Wait {
			return steps, st.Release
		}
		steps = append(steps, st)
	}
	return steps, time.Time{}
}

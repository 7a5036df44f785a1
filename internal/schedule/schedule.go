// Package schedule owns the time maths of dispatching: when a blackout
// window lets a notification go, and how long a retry waits. Every function
// here is pure; the caller passes the current time.
//
// Blackout windows are written in local wall-clock time and each day's
// window is the span of instants from its start to its end. The DST rules
// are:
//
//   - A window that starts or ends inside a spring-forward gap (02:30 on a
//     day the clocks jump from 02:00 to 03:00) starts or ends at the first
//     instant after the gap (03:00 new time). A window wholly inside the
//     gap does not happen that day.
//   - A window that ends inside an autumn overlap (01:30 on a day
//     01:00-02:00 happens twice) ends at the later of the two instants; one
//     that starts inside it starts at the earlier. So a window covers both
//     passes through the repeated hour, and an instant whose wall clock is
//     past the end (01:45 the first time) but which comes before the later
//     end is inside.
package schedule

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// Rule is a set of blackout windows read in one zone.
type Rule struct {
	Windows []contract.Window
	Loc     *time.Location
}

// ErrAlwaysBlackout is returned when the windows leave no instant free.
var ErrAlwaysBlackout = errors.New("blackout windows cover the whole day")

// Inside reports whether t falls inside one of the rule's windows, and if so
// the instant the latest of those windows ends. A rule without a zone reads
// its windows in UTC.
func (r Rule) Inside(t time.Time) (bool, time.Time) {
	loc := r.Loc
	if loc == nil {
		loc = time.UTC
	}
	lt := t.In(loc)
	if start, end := lt.ZoneBounds(); (start.IsZero() || t.Sub(start) > fixedSpan) && (end.IsZero() || end.Sub(t) > fixedSpan) {
		return r.insideFixed(lt)
	}
	return r.insideWall(t, loc)
}

// fixedSpan is how far from t the windows that can hold t reach: they start
// the day before t's date at the earliest and end the day after at the
// latest. With no change of the zone's offset that near, wall clock and
// instant differ by a constant and insideFixed does the maths in minutes.
const fixedSpan = 50 * time.Hour

// insideFixed is Inside for a zone whose offset does not change near lt. It
// works in local seconds: window starts and ends are whole minutes, so t is
// inside [start, end) exactly when its whole second is.
func (r Rule) insideFixed(lt time.Time) (bool, time.Time) {
	_, off := lt.Zone()
	local := lt.Unix() + int64(off)
	midnight := local - (local%86400+86400)%86400
	var latest int64
	inside := false
	for _, w := range r.Windows {
		if w.From == w.To {
			continue
		}
		length := int64(w.To) - int64(w.From)
		if length < 0 {
			length += 24 * 60
		}
		for day := int64(-1); day <= 0; day++ {
			start := midnight + day*86400 + int64(w.From)*60
			end := start + length*60
			if start <= local && local < end && (!inside || end > latest) {
				latest, inside = end, true
			}
		}
	}
	if !inside {
		return false, time.Time{}
	}
	return true, time.Unix(latest-int64(off), 0).In(lt.Location())
}

// insideWall is Inside near a change of the zone's offset: every window
// that can hold t is placed by its wall-clock start and end, with the DST
// rules of the package comment.
func (r Rule) insideWall(t time.Time, loc *time.Location) (bool, time.Time) {
	y, mo, d := t.In(loc).Date()
	var latest time.Time
	inside := false
	for _, w := range r.Windows {
		if w.From == w.To {
			continue // refused by validation; it would be empty or the whole day
		}
		fh, fm, th, tm := w.From.Hour(), w.From.Minute(), w.To.Hour(), w.To.Minute()
		// The windows that can hold t start on the day before t's local
		// date (crossing midnight), on it, or on the day after (where the
		// clocks go back over midnight). Their starts ascend.
		for day := d - 1; day <= d+1; day++ {
			start := wallTime(y, mo, day, fh, fm, loc, false)
			if start.After(t) {
				break
			}
			endDay := day
			if w.To < w.From { // crosses midnight; a 24:00 end is 00:00 here
				endDay++
			}
			end := wallTime(y, mo, endDay, th, tm, loc, true)
			if t.Before(end) && (!inside || end.After(latest)) {
				latest, inside = end, true
			}
		}
	}
	return inside, latest
}

// wallTime returns the instant the clocks in loc show y-mo-d h:m. In a
// spring-forward gap, where that wall time never happens, it is the first
// instant after the gap; in an autumn overlap, where it happens twice, it is
// the later one when later is set, else the earlier.
func wallTime(y int, mo time.Month, d, h, m int, loc *time.Location, later bool) time.Time {
	c := time.Date(y, mo, d, h, m, 0, 0, loc)
	want := time.Date(y, mo, d, h, m, 0, 0, time.UTC) // d may be 0 or 32: normalised
	if !sameWall(c, want) {
		// A gap (of an hour, or of a whole day where a zone crossed the
		// date line): time.Date normalised the wall time to one side of it.
		start, end := c.ZoneBounds()
		got := time.Date(c.Year(), c.Month(), c.Day(), c.Hour(), c.Minute(), 0, 0, time.UTC)
		if got.After(want) {
			if !start.IsZero() {
				return start
			}
		} else if !end.IsZero() {
			return end
		}
		return c
	}
	// An overlap: the same wall time in the zone period after c's (when
	// the clocks go back at its end) or before it (when they went back at
	// its start). time.Date may have picked either.
	_, off := c.Zone()
	start, end := c.ZoneBounds()
	var other time.Time
	switch {
	case later && !end.IsZero():
		if _, offAfter := end.Zone(); offAfter < off {
			other = c.Add(time.Duration(off-offAfter) * time.Second)
		}
	case !later && !start.IsZero():
		if _, offBefore := start.Add(-time.Nanosecond).Zone(); offBefore > off {
			other = c.Add(-time.Duration(offBefore-off) * time.Second)
		}
	}
	if !other.IsZero() && sameWall(other, c) {
		return other
	}
	return c
}

func sameWall(a, b time.Time) bool {
	ay, am, ad := a.Date()
	by, bm, bd := b.Date()
	return ay == by && am == bm && ad == bd && a.Hour() == b.Hour() && a.Minute() == b.Minute()
}

// Release returns the earliest instant at or after t that lies in none of
// the rules' windows. A window's end that falls inside another window moves
// on to that window's end, and so on.
func Release(t time.Time, rules ...Rule) (time.Time, error) {
	limit := t.Add(8 * 24 * time.Hour)
	for {
		moved := false
		for _, r := range rules {
			if len(r.Windows) == 0 {
				continue
			}
			if in, end := r.Inside(t); in {
				t, moved = end, true
			}
		}
		if !moved {
			return t, nil
		}
		if t.After(limit) {
			return time.Time{}, ErrAlwaysBlackout
		}
	}
}

// NextStart returns the earliest instant after t, and before limit, at
// which one of the rules' windows begins, and whether there is one. Starts
// follow the DST rules of the package comment: a start inside a
// spring-forward gap is the first instant after the gap, one inside an
// autumn overlap the earlier of its two instants, and a window wholly
// inside a gap does not begin that day. The dispatcher uses it for a send
// command's cut-off: no provider call may run into a blackout window.
func NextStart(t, limit time.Time, rules ...Rule) (time.Time, bool) {
	var best time.Time
	found := false
	for _, r := range rules {
		loc := r.Loc
		if loc == nil {
			loc = time.UTC
		}
		y, mo, d := t.In(loc).Date()
		days := int(limit.Sub(t)/(24*time.Hour)) + 2
		for _, w := range r.Windows {
			if w.From == w.To {
				continue
			}
			fh, fm, th, tm := w.From.Hour(), w.From.Minute(), w.To.Hour(), w.To.Minute()
			for day := d - 1; day <= d+days; day++ {
				start := wallTime(y, mo, day, fh, fm, loc, false)
				if !start.After(t) {
					continue
				}
				if !start.Before(limit) || (found && !start.Before(best)) {
					break
				}
				endDay := day
				if w.To < w.From {
					endDay++
				}
				if end := wallTime(y, mo, endDay, th, tm, loc, true); !end.After(start) {
					continue // wholly inside a spring-forward gap: no window that day
				}
				best, found = start, true
				break
			}
		}
	}
	return best, found
}

// Backoff returns how long the n-th retry on a channel waits (n from 1):
// initial * multiplier^(n-1), capped at max, with up to ±10% jitter. The
// jitter is derived from key and n, so the same inputs always give the same
// wait: the state transition stays a pure function, and a replay computes
// the same due time.
func Backoff(b contract.Backoff, n int, key string) time.Duration {
	if n < 1 {
		n = 1
	}
	maxWait := float64(b.Max.D())
	base := float64(b.Initial.D()) * math.Pow(b.Multiplier, float64(n-1))
	if base > maxWait || math.IsInf(base, 0) || math.IsNaN(base) {
		base = maxWait
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", key, n)
	u := float64(h.Sum64()%10001)/10000*2 - 1 // [-1, 1]
	f := base * (1 + 0.1*u)
	// Compare as floats: near the largest Duration, f may not fit in one.
	d := b.Max.D()
	if f < maxWait {
		d = time.Duration(f)
	}
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

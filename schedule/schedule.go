// Package schedule owns the time maths of dispatching: when a blackout
// window lets a notification go, and how long a retry waits. Every function
// here is pure; the caller passes the current time.
//
// Blackout windows are read in local wall-clock time. The DST rules are:
//
//   - A window that ends inside a spring-forward gap (02:30 on a day the
//     clocks jump from 02:00 to 03:00) ends at the first instant after the
//     gap (03:00 new time).
//   - A window that ends inside an autumn overlap (01:30 on a day 01:00-02:00
//     happens twice) ends at the later of the two instants.
//   - Whether an instant is inside a window is decided by its local wall
//     clock, so during an overlap both passes through the hour count.
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
// the instant that window ends.
func (r Rule) Inside(t time.Time) (bool, time.Time) {
	lt := t.In(r.Loc)
	m := contract.Clock(lt.Hour()*60 + lt.Minute())
	var latest time.Time
	inside := false
	for _, w := range r.Windows {
		var in, endsTomorrow bool
		switch {
		case w.From < w.To:
			in = m >= w.From && m < w.To
		case w.From > w.To: // crosses midnight
			in = m >= w.From || m < w.To
			endsTomorrow = m >= w.From
		}
		if !in {
			continue
		}
		y, mo, d := lt.Date()
		if endsTomorrow {
			d++
		}
		end := wallTime(y, mo, d, w.To.Hour(), w.To.Minute(), r.Loc)
		if !end.After(t) { // cannot happen outside pathological zones; never go backwards
			end = t.Add(time.Minute).Truncate(time.Minute)
		}
		if !inside || end.After(latest) {
			latest = end
		}
		inside = true
	}
	return inside, latest
}

// wallTime returns the instant the clocks in loc show y-mo-d h:m. In a
// spring-forward gap, where that wall time never happens, it is the first
// instant after the gap; in an autumn overlap, where it happens twice, it is
// the later one.
func wallTime(y int, mo time.Month, d, h, m int, loc *time.Location) time.Time {
	c := time.Date(y, mo, d, h, m, 0, 0, loc)
	if c.Hour() != h || c.Minute() != m {
		// A gap: time.Date normalised the wall time to one side of it.
		start, end := c.ZoneBounds()
		want := time.Date(y, mo, d, h, m, 0, 0, time.UTC)
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
	// An overlap: the same wall time again after the zone's end.
	_, off := c.Zone()
	if _, end := c.ZoneBounds(); !end.IsZero() {
		if _, offAfter := end.Zone(); offAfter < off {
			later := c.Add(time.Duration(off-offAfter) * time.Second)
			if later.Hour() == h && later.Minute() == m && later.Day() == c.Day() {
				return later
			}
		}
	}
	return c
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

// Backoff returns how long the n-th retry on a channel waits (n from 1):
// initial * multiplier^(n-1), capped at max, with up to ±10% jitter. The
// jitter is derived from key and n, so the same inputs always give the same
// wait: the state transition stays a pure function, and a replay computes
// the same due time.
func Backoff(b contract.Backoff, n int, key string) time.Duration {
	if n < 1 {
		n = 1
	}
	base := float64(b.Initial.D()) * math.Pow(b.Multiplier, float64(n-1))
	if max := float64(b.Max.D()); base > max || math.IsInf(base, 0) || math.IsNaN(base) {
		base = max
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", key, n)
	u := float64(h.Sum64()%10001)/10000*2 - 1 // [-1, 1]
	d := time.Duration(base * (1 + 0.1*u))
	if d > b.Max.D() {
		d = b.Max.D()
	}
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

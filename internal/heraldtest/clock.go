package heraldtest

import (
	"sync/atomic"
	"time"
)

// ShiftedClock is the wall clock moved by an offset a test sets, for the
// stages of one pipeline to share (their Now fields). Blackout windows have
// minute resolution, so a test moves "now" to a few seconds before a
// minute boundary instead of waiting for one.
type ShiftedClock struct{ off atomic.Int64 }

// Now is the shifted time.
func (c *ShiftedClock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

// ShiftTo moves the clock so that Now returns at (and then runs on).
func (c *ShiftedClock) ShiftTo(at time.Time) { c.off.Store(int64(time.Until(at))) }

// BeforeMinute moves the clock to lead before the next whole minute that
// is at least lead away, and returns that minute.
func (c *ShiftedClock) BeforeMinute(lead time.Duration) time.Time {
	m := c.Now().Add(lead).Truncate(time.Minute).Add(time.Minute)
	c.ShiftTo(m.Add(-lead))
	return m
}

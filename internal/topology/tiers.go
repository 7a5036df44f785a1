package topology

import (
	"fmt"
	"strconv"
	"time"
)

// The delay tiers are topics like any other, so their names live here, and
// so does how a record is addressed to them (the headers and the tier a
// wait goes to), which every stage that delays a record uses: the
// dispatcher routes its holds and timeouts with Route, the delay stage
// hops with it. internal/delay owns how records move through the tiers.

// TierPrefix starts every delay tier topic's name.
const TierPrefix = "herald.delay."

// Record headers of a delayed record.
const (
	// HeaderDue is the instant a delayed record may be released (Unix
	// nanoseconds, decimal; FormatDue, ParseDue).
	HeaderDue = "herald-due"
	// HeaderTarget is the topic a delayed record goes to when it is due.
	HeaderTarget = "herald-target"
)

// tiers are the fixed delays, ascending. The smallest bounds the lateness
// of the last hop; the largest bounds the number of hops a long wait takes.
var tiers = [...]time.Duration{
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// Tiers returns the fixed delays, ascending (a fresh slice each call).
func Tiers() []time.Duration { return append([]time.Duration(nil), tiers[:]...) }

// TierTopic names the topic of a tier.
func TierTopic(d time.Duration) string {
	return TierPrefix + TierLabel(d)
}

// TierTopics lists every tier topic, in tier order.
func TierTopics() []string {
	ts := make([]string, len(tiers))
	for i, d := range tiers {
		ts[i] = TierTopic(d)
	}
	return ts
}

// TierLabel is the short name of a tier (100ms, 5s, 2m, 6h), the end of its
// topic name and its metrics label.
func TierLabel(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return fmt.Sprintf("%dh", int(d.Hours()))
}

// Tier picks the tier for a record with remaining wait d: the largest tier
// not longer than d, or the smallest tier when d is shorter than all.
func Tier(d time.Duration) time.Duration {
	t := tiers[0]
	for _, tier := range tiers {
		if tier > d {
			break
		}
		t = tier
	}
	return t
}

// TierOfTopic returns the delay of a tier topic.
func TierOfTopic(topic string) (time.Duration, bool) {
	for _, d := range tiers {
		if TierTopic(d) == topic {
			return d, true
		}
	}
	return 0, false
}

// Route returns the topic a record due at due should be published to at
// now: the target itself when it is due, else a tier topic.
func Route(due, now time.Time, target string) string {
	rem := due.Sub(now)
	if rem <= 0 {
		return target
	}
	return TierTopic(Tier(rem))
}

// FormatDue encodes a due time for HeaderDue.
func FormatDue(t time.Time) []byte { return strconv.AppendInt(nil, t.UnixNano(), 10) }

// ParseDue decodes HeaderDue.
func ParseDue(b []byte) (time.Time, error) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad %s header %q: %w", HeaderDue, b, err)
	}
	return time.Unix(0, n), nil
}

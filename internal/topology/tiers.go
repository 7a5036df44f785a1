package topology

import (
	"fmt"
	"time"
)

// The delay tiers are topics like any other, so their names live here;
// internal/delay owns how records move through them.

// TierPrefix starts every delay tier topic's name.
const TierPrefix = "herald.delay."

// Tiers are the fixed delays, ascending. The smallest bounds the lateness
// of the last hop; the largest bounds the number of hops a long wait takes.
var Tiers = []time.Duration{
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// TierTopic names the topic of a tier.
func TierTopic(d time.Duration) string {
	return TierPrefix + TierLabel(d)
}

// TierTopics lists every tier topic, in tier order.
func TierTopics() []string {
	ts := make([]string, len(Tiers))
	for i, d := range Tiers {
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

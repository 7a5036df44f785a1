package delay

import (
	"fmt"
	"strconv"
	"time"

	"github.com/herald-dispatch/herald/internal/topology"
)

// Record headers of a delayed record.
const (
	HeaderDue    = "herald-due"
	HeaderTarget = "herald-target"
)

// Tier picks the tier for a record with remaining wait d: the largest tier
// not longer than d, or the smallest tier when d is shorter than all.
func Tier(d time.Duration) time.Duration {
	t := topology.Tiers[0]
	for _, tier := range topology.Tiers {
		if tier > d {
			break
		}
		t = tier
	}
	return t
}

// Route returns the topic a record due at due should be published to at
// now: the target itself when it is due, else a tier topic.
func Route(due, now time.Time, target string) string {
	rem := due.Sub(now)
	if rem <= 0 {
		return target
	}
	return topology.TierTopic(Tier(rem))
}

// FormatDue encodes a due time for HeaderDue.
func FormatDue(t time.Time) []byte { return strconv.AppendInt(nil, t.UnixNano(), 10) }

// ParseDue decodes HeaderDue.
func ParseDue(b []byte) (time.Time, error) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("delay: bad %s header %q: %w", HeaderDue, b, err)
	}
	return time.Unix(0, n), nil
}

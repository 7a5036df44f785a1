package topology

import (
	"testing"
	"time"
)

func TestTierPicksTheLargestNotLonger(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ d, want time.Duration }{
		{0, 100 * time.Millisecond},
		{50 * time.Millisecond, 100 * time.Millisecond},
		{100 * time.Millisecond, 100 * time.Millisecond},
		{999 * time.Millisecond, 500 * time.Millisecond},
		{time.Second, time.Second},
		{90 * time.Minute, time.Hour},
		{72 * time.Hour, 24 * time.Hour},
	} {
		if got := Tier(c.d); got != c.want {
			t.Errorf("Tier(%v) = %v, want %v", c.d, got, c.want)
		}
	}
}

func TestRoute(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		due  time.Time
		want string
	}{
		{now, TopicWakeups},
		{now.Add(-time.Hour), TopicWakeups},
		{now.Add(time.Nanosecond), "herald.delay.100ms"},
		{now.Add(7 * time.Second), "herald.delay.5s"},
		{now.Add(3 * time.Hour), "herald.delay.2h"},
	} {
		if got := Route(c.due, now, TopicWakeups); got != c.want {
			t.Errorf("Route(now%+v) = %s, want %s", c.due.Sub(now), got, c.want)
		}
	}
}

func TestTierOfTopic(t *testing.T) {
	t.Parallel()
	for _, d := range Tiers() {
		got, ok := TierOfTopic(TierTopic(d))
		if !ok || got != d {
			t.Errorf("TierOfTopic(%s) = %v, %v; want %v, true", TierTopic(d), got, ok, d)
		}
	}
	for _, topic := range []string{TopicWakeups, TierPrefix + "3s", ""} {
		if d, ok := TierOfTopic(topic); ok {
			t.Errorf("TierOfTopic(%q) = %v, true; want not a tier", topic, d)
		}
	}
}

func TestDueRoundTrips(t *testing.T) {
	t.Parallel()
	due := time.Date(2026, 3, 29, 1, 30, 0, 123456789, time.UTC)
	got, err := ParseDue(FormatDue(due))
	if err != nil || !got.Equal(due) {
		t.Fatalf("ParseDue(FormatDue(%v)) = %v, %v", due, got, err)
	}
	for _, bad := range []string{"", "soon", "1.5"} {
		if _, err := ParseDue([]byte(bad)); err == nil {
			t.Errorf("ParseDue(%q) parsed", bad)
		}
	}
}

func TestTiersIsACopy(t *testing.T) {
	t.Parallel()
	ts := Tiers()
	ts[0] = time.Hour
	if got := Tiers()[0]; got != 100*time.Millisecond {
		t.Fatalf("Tiers()[0] = %v after a caller changed its copy, want 100ms", got)
	}
	if got := Tier(0); got != 100*time.Millisecond {
		t.Fatalf("Tier(0) = %v after a caller changed its copy of Tiers, want 100ms", got)
	}
}

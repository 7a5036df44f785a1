package schedule

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

func zone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := contract.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func windows(t testing.TB, ws ...string) []contract.Window {
	t.Helper()
	out := make([]contract.Window, len(ws))
	for i, s := range ws {
		w, err := contract.ParseWindow(s)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = w
	}
	return out
}

// instant reads an RFC 3339 time with its offset, which is how the rows
// say which of two equal wall clocks they mean.
func instant(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rule is a rule written as a zone and windows.
type rule struct {
	zone    string
	windows []string
}

func rules(t testing.TB, rs []rule) []Rule {
	out := make([]Rule, len(rs))
	for i, r := range rs {
		out[i] = Rule{Windows: windows(t, r.windows...), Loc: zone(t, r.zone)}
	}
	return out
}

// TestRelease: one row per rule of the window maths. at and want are
// instants with the offset the zone has then, so a row shows which of two
// equal wall clocks it means.
func TestRelease(t *testing.T) {
	t.Parallel()
	seoul := []rule{{"Asia/Seoul", []string{"22:00-06:00"}}}
	tests := []struct {
		name  string
		rules []rule
		at    string
		want  string
	}{
		// Midnight crossing in Asia/Seoul (no DST).
		{"seoul before the window", seoul, "2026-01-15T21:59:59+09:00", "2026-01-15T21:59:59+09:00"},
		{"seoul window start is inside", seoul, "2026-01-15T22:00:00+09:00", "2026-01-16T06:00:00+09:00"},
		{"seoul before midnight", seoul, "2026-01-15T23:30:00+09:00", "2026-01-16T06:00:00+09:00"},
		{"seoul at midnight", seoul, "2026-01-16T00:00:00+09:00", "2026-01-16T06:00:00+09:00"},
		{"seoul after midnight", seoul, "2026-01-16T05:59:59+09:00", "2026-01-16T06:00:00+09:00"},
		{"seoul window end is outside", seoul, "2026-01-16T06:00:00+09:00", "2026-01-16T06:00:00+09:00"},
		{"seoul across a month end", seoul, "2026-01-31T23:00:00+09:00", "2026-02-01T06:00:00+09:00"},
		{"seoul across a year end", seoul, "2026-12-31T22:30:00+09:00", "2027-01-01T06:00:00+09:00"},
		{"seoul instant given in UTC", seoul, "2026-01-15T14:00:00Z", "2026-01-16T06:00:00+09:00"},

		// America/New_York spring forward, 2026-03-08: 02:00 EST -> 03:00 EDT.
		{"new york end in the gap", []rule{{"America/New_York", []string{"22:00-02:30"}}},
			"2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00"},
		{"new york end in the gap, last second before it", []rule{{"America/New_York", []string{"01:00-02:30"}}},
			"2026-03-08T01:59:59-05:00", "2026-03-08T03:00:00-04:00"},
		{"new york night window over the gap", []rule{{"America/New_York", []string{"22:00-06:00"}}},
			"2026-03-07T23:00:00-05:00", "2026-03-08T06:00:00-04:00"},
		{"new york start in the gap", []rule{{"America/New_York", []string{"02:30-04:00"}}},
			"2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"},
		{"new york window wholly in the gap never happens", []rule{{"America/New_York", []string{"02:10-02:50"}}},
			"2026-03-08T03:05:00-04:00", "2026-03-08T03:05:00-04:00"},
		{"new york the day after the gap", []rule{{"America/New_York", []string{"01:00-02:30"}}},
			"2026-03-09T02:00:00-04:00", "2026-03-09T02:30:00-04:00"},

		// America/New_York fall back, 2026-11-01: 02:00 EDT -> 01:00 EST;
		// 01:00-01:59 happens twice. A window ending 01:30 ends at the
		// later 01:30 (EST), and everything before that end is inside.
		{"new york end in the overlap", []rule{{"America/New_York", []string{"22:00-01:30"}}},
			"2026-10-31T23:00:00-04:00", "2026-11-01T01:30:00-05:00"},
		{"new york first 01:45 is before the later 01:30", []rule{{"America/New_York", []string{"22:00-01:30"}}},
			"2026-11-01T01:45:00-04:00", "2026-11-01T01:30:00-05:00"},
		{"new york second 01:10", []rule{{"America/New_York", []string{"22:00-01:30"}}},
			"2026-11-01T01:10:00-05:00", "2026-11-01T01:30:00-05:00"},
		{"new york the later 01:30 is outside", []rule{{"America/New_York", []string{"22:00-01:30"}}},
			"2026-11-01T01:30:00-05:00", "2026-11-01T01:30:00-05:00"},
		{"new york window inside the overlap hour covers both passes", []rule{{"America/New_York", []string{"01:00-01:30"}}},
			"2026-11-01T01:15:00-04:00", "2026-11-01T01:30:00-05:00"},
		{"new york start in the overlap is the earlier one", []rule{{"America/New_York", []string{"01:30-03:00"}}},
			"2026-11-01T01:10:00-05:00", "2026-11-01T03:00:00-05:00"},
		{"new york night window over the overlap", []rule{{"America/New_York", []string{"22:00-06:00"}}},
			"2026-10-31T23:00:00-04:00", "2026-11-01T06:00:00-05:00"},

		// Europe/Berlin spring forward, 2026-03-29: 02:00 CET -> 03:00 CEST.
		{"berlin end in the gap", []rule{{"Europe/Berlin", []string{"00:00-02:30"}}},
			"2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00"},
		{"berlin night window over the gap", []rule{{"Europe/Berlin", []string{"22:00-06:00"}}},
			"2026-03-28T22:00:00+01:00", "2026-03-29T06:00:00+02:00"},
		// Europe/Berlin fall back, 2026-10-25: 03:00 CEST -> 02:00 CET.
		{"berlin end in the overlap", []rule{{"Europe/Berlin", []string{"00:00-02:30"}}},
			"2026-10-25T01:00:00+02:00", "2026-10-25T02:30:00+01:00"},
		{"berlin first 02:45 is before the later 02:30", []rule{{"Europe/Berlin", []string{"00:00-02:30"}}},
			"2026-10-25T02:45:00+02:00", "2026-10-25T02:30:00+01:00"},
		{"berlin window inside the overlap hour covers both passes", []rule{{"Europe/Berlin", []string{"02:00-02:30"}}},
			"2026-10-25T02:10:00+02:00", "2026-10-25T02:30:00+01:00"},
		{"berlin start in the overlap is the earlier one", []rule{{"Europe/Berlin", []string{"02:30-04:00"}}},
			"2026-10-25T02:10:00+01:00", "2026-10-25T04:00:00+01:00"},

		// Several windows: overlapping, nested and chained ends move on.
		{"overlapping windows", []rule{{"Asia/Seoul", []string{"22:00-02:00", "01:00-06:00"}}},
			"2026-01-15T23:00:00+09:00", "2026-01-16T06:00:00+09:00"},
		{"overlapping windows, listed the other way", []rule{{"Asia/Seoul", []string{"01:00-06:00", "22:00-02:00"}}},
			"2026-01-15T23:00:00+09:00", "2026-01-16T06:00:00+09:00"},
		{"nested window", []rule{{"Asia/Seoul", []string{"22:00-06:00", "23:00-01:00"}}},
			"2026-01-15T23:30:00+09:00", "2026-01-16T06:00:00+09:00"},
		{"chained windows", []rule{{"Asia/Seoul", []string{"20:00-22:00", "22:00-23:00", "23:00-23:30"}}},
			"2026-01-15T21:00:00+09:00", "2026-01-15T23:30:00+09:00"},
		{"separate windows do not chain", []rule{{"Asia/Seoul", []string{"12:00-13:00", "13:01-14:00"}}},
			"2026-01-15T12:30:00+09:00", "2026-01-15T13:00:00+09:00"},

		// A 24:00 end is midnight of the next day.
		{"24:00 end", []rule{{"Asia/Seoul", []string{"20:00-24:00"}}},
			"2026-01-15T21:00:00+09:00", "2026-01-16T00:00:00+09:00"},
		{"24:00 end, midnight outside", []rule{{"Asia/Seoul", []string{"20:00-24:00"}}},
			"2026-01-16T00:00:00+09:00", "2026-01-16T00:00:00+09:00"},
		{"24:00 end chained into a morning window", []rule{{"Asia/Seoul", []string{"20:00-24:00", "00:00-07:00"}}},
			"2026-01-15T21:00:00+09:00", "2026-01-16T07:00:00+09:00"},

		// The global rule, in its own zone, on top of the per-message one.
		{"global window after the message's", []rule{
			{"Asia/Seoul", []string{"22:00-09:30"}}, {"UTC", []string{"00:00-06:00"}}},
			"2026-01-15T23:00:00+09:00", "2026-01-16T15:00:00+09:00"},
		{"message window after the global one", []rule{
			{"Asia/Seoul", []string{"22:30-06:00"}}, {"UTC", []string{"13:00-14:00"}}},
			"2026-01-15T22:10:00+09:00", "2026-01-16T06:00:00+09:00"},
		{"global window only", []rule{
			{"Asia/Seoul", nil}, {"UTC", []string{"00:00-06:00"}}},
			"2026-01-15T10:00:00+09:00", "2026-01-15T15:00:00+09:00"},
		// 06:00 in Seoul is 16:00 EST in New York, outside its window, until
		// New York moves to EDT: then it is 17:00, inside.
		{"global window in a DST zone, before its change", []rule{
			{"Asia/Seoul", []string{"22:00-06:00"}}, {"America/New_York", []string{"17:00-18:00"}}},
			"2026-03-08T05:30:00+09:00", "2026-03-08T06:00:00+09:00"},
		{"global window in a DST zone, after its change", []rule{
			{"Asia/Seoul", []string{"22:00-06:00"}}, {"America/New_York", []string{"17:00-18:00"}}},
			"2026-03-09T05:30:00+09:00", "2026-03-09T07:00:00+09:00"},
		// Apia skipped 2011-12-30 (from -10 to +14): the night of the 29th
		// ends, and the night of the 30th starts, at the first instant after
		// the gap, 00:00 on the 31st; so the two chain.
		{"apia windows on a skipped day", []rule{{"Pacific/Apia", []string{"22:00-06:00"}}},
			"2011-12-29T23:00:00-10:00", "2011-12-31T06:00:00+14:00"},
		{"no rules", nil, "2026-01-15T23:00:00+09:00", "2026-01-15T23:00:00+09:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at, want := instant(t, tt.at), instant(t, tt.want)
			got, err := Release(at, rules(t, tt.rules)...)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(want) {
				t.Errorf("Release(%s) = %s, want %s", tt.at, got.In(want.Location()).Format(time.RFC3339), tt.want)
			}
			// The release is free, and nothing between at and it is.
			for _, r := range rules(t, tt.rules) {
				if in, end := r.Inside(got); in {
					t.Errorf("release %s is inside a window of %v ending %s", got, r.Windows, end)
				}
			}
			for probe := at; probe.Before(got); probe = probe.Add(got.Sub(at) / 7) {
				free := true
				for _, r := range rules(t, tt.rules) {
					if in, _ := r.Inside(probe); in {
						free = false
					}
				}
				if free {
					t.Errorf("%s, before the release %s, is free", probe, got)
					break
				}
			}
		})
	}
}

func TestInside(t *testing.T) {
	t.Parallel()
	r := Rule{Windows: windows(t, "22:00-06:00", "12:00-13:00"), Loc: zone(t, "Asia/Seoul")}
	tests := []struct {
		at     string
		inside bool
		end    string
	}{
		{"2026-01-15T21:59:00+09:00", false, ""},
		{"2026-01-15T22:00:00+09:00", true, "2026-01-16T06:00:00+09:00"},
		{"2026-01-16T03:00:00+09:00", true, "2026-01-16T06:00:00+09:00"},
		{"2026-01-16T06:00:00+09:00", false, ""},
		{"2026-01-16T12:59:59+09:00", true, "2026-01-16T13:00:00+09:00"},
		{"2026-01-16T13:00:00+09:00", false, ""},
	}
	for _, tt := range tests {
		in, end := r.Inside(instant(t, tt.at))
		if in != tt.inside || (in && !end.Equal(instant(t, tt.end))) {
			t.Errorf("Inside(%s) = %v, %s; want %v, %s", tt.at, in, end, tt.inside, tt.end)
		}
	}
	// A rule without a zone reads its windows in UTC.
	noZone := Rule{Windows: windows(t, "00:00-06:00")}
	if in, end := noZone.Inside(instant(t, "2026-01-15T03:00:00Z")); !in || !end.Equal(instant(t, "2026-01-15T06:00:00Z")) {
		t.Errorf("rule without Loc: Inside = %v, %s", in, end)
	}
	if in, _ := (Rule{}).Inside(time.Now()); in {
		t.Error("a rule without windows holds nothing")
	}
}

func TestReleaseAlwaysBlackout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		rules []rule
	}{
		{"two halves", []rule{{"Asia/Seoul", []string{"00:00-12:00", "12:00-24:00"}}}},
		{"crossing windows covering the day", []rule{{"Europe/Berlin", []string{"06:00-18:30", "18:00-06:30"}}}},
		{"two zones together", []rule{{"Asia/Seoul", []string{"00:00-13:00"}}, {"UTC", []string{"03:00-16:00"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := instant(t, "2026-03-07T12:00:00Z")
			if got, err := Release(at, rules(t, tt.rules)...); !errors.Is(err, ErrAlwaysBlackout) {
				t.Errorf("Release = %s, %v; want ErrAlwaysBlackout", got, err)
			}
		})
	}
	// One free minute a day is enough.
	r := rules(t, []rule{{"Asia/Seoul", []string{"00:00-12:00", "12:01-24:00"}}})
	got, err := Release(instant(t, "2026-01-15T13:00:00+09:00"), r...)
	if err != nil || !got.Equal(instant(t, "2026-01-16T12:00:00+09:00")) {
		t.Errorf("one free minute: Release = %s, %v", got, err)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	b := contract.Backoff{Initial: contract.Duration(time.Second), Multiplier: 2, Max: contract.Duration(10 * time.Minute)}
	within := func(d, base time.Duration) bool {
		return float64(d) >= 0.9*float64(base)-1 && float64(d) <= 1.1*float64(base)+1
	}
	tests := []struct {
		name string
		b    contract.Backoff
		n    int
		base time.Duration // the wait before jitter
	}{
		{"first retry waits initial", b, 1, time.Second},
		{"second doubles", b, 2, 2 * time.Second},
		{"fifth", b, 5, 16 * time.Second},
		{"just under the cap", b, 10, 512 * time.Second},
		{"n below 1 is the first", b, 0, time.Second},
		{"multiplier 1 keeps initial", contract.Backoff{Initial: contract.Duration(3 * time.Second), Multiplier: 1, Max: contract.Duration(time.Hour)}, 40, 3 * time.Second},
		{"fractional multiplier", contract.Backoff{Initial: contract.Duration(time.Second), Multiplier: 1.5, Max: contract.Duration(time.Hour)}, 3, 2250 * time.Millisecond},
	}
	for _, tt := range tests {
		for _, key := range []string{"a", "2026-01:user-123:bill", "x/y"} {
			if d := Backoff(tt.b, tt.n, key); !within(d, tt.base) {
				t.Errorf("%s: Backoff(n=%d, %q) = %s, want %s ±10%%", tt.name, tt.n, key, d, tt.base)
			}
		}
	}
	// Capped at max: never above it, and within the jitter below it.
	for _, n := range []int{11, 12, 30, 64, 1000, 1 << 30, math.MaxInt} {
		d := Backoff(b, n, "key")
		if d > b.Max.D() || d < b.Max.D()*9/10 {
			t.Errorf("Backoff(n=%d) = %s, want within [9m, 10m]", n, d)
		}
	}
	// The largest durations do not overflow into negative or tiny waits.
	huge := contract.Backoff{Initial: contract.Duration(math.MaxInt64 / 2), Multiplier: 100, Max: contract.Duration(math.MaxInt64)}
	for _, n := range []int{1, 2, 3, 1 << 20} {
		for _, key := range []string{"a", "b", "c", "d", "e"} {
			if d := Backoff(huge, n, key); d < time.Duration(math.MaxInt64/20*9) {
				t.Errorf("Backoff(huge, n=%d, %q) = %s: overflowed", n, key, d)
			}
		}
	}
}

func TestBackoffJitter(t *testing.T) {
	t.Parallel()
	b := contract.Backoff{Initial: contract.Duration(10 * time.Second), Multiplier: 2, Max: contract.Duration(time.Hour)}
	// Deterministic: the same key and n give the same wait, so a replayed
	// transition computes the same due time.
	if first, again := Backoff(b, 3, "n-1"), Backoff(b, 3, "n-1"); first != again {
		t.Fatalf("Backoff is not deterministic: %s, then %s", first, again)
	}
	// Spread: over many keys the waits cover most of ±10% and differ.
	lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
	seen := map[time.Duration]bool{}
	for i := range 1000 {
		d := Backoff(b, 1, "notification-"+string(rune('a'+i%26))+string(rune('a'+i/26)))
		lo, hi = min(lo, d), max(hi, d)
		seen[d] = true
	}
	if lo > 9200*time.Millisecond || hi < 10800*time.Millisecond || len(seen) < 900 {
		t.Errorf("jitter spread [%s, %s] with %d distinct waits, want most of [9s, 11s]", lo, hi, len(seen))
	}
	// The n-th retries of one key differ in jitter, not only in base.
	if r := float64(Backoff(b, 2, "k")) / float64(Backoff(b, 1, "k")); r == 2 {
		t.Errorf("retries 1 and 2 of one key have the same jitter (ratio %v)", r)
	}
}

// TestReleaseProperties checks Release against its definition on random
// windows and instants in zones with unusual clocks: DST at midnight
// (Santiago), a 30-minute DST (Lord Howe), a skipped day (Apia, 2011), a
// quarter-hour offset (Kathmandu). The release is free, no earlier instant
// from t on is, and releasing again from anywhere in between gives the same.
// propertyCases is kept small for make test; 30,000 cases with seeds 1-5
// were run once by hand.
const propertyCases = 3000

func TestReleaseProperties(t *testing.T) {
	t.Parallel()
	zones := []string{"America/New_York", "Europe/Berlin", "America/Santiago", "Australia/Lord_Howe",
		"Pacific/Apia", "Asia/Kathmandu", "Asia/Seoul", "UTC"}
	rng := rand.New(rand.NewPCG(1, 2))
	base := instant(t, "2011-12-28T00:00:00Z")
	inside := func(rs []Rule, at time.Time) bool {
		for _, r := range rs {
			if in, _ := r.Inside(at); in {
				return true
			}
		}
		return false
	}
	checked := 0
	for i := 0; i < propertyCases; i++ {
		var rs []Rule
		for j := 0; j < 1+rng.IntN(2); j++ {
			var ws []contract.Window
			for k := 0; k < 1+rng.IntN(3); k++ {
				from, to := contract.Clock(rng.IntN(48)*30), contract.Clock(rng.IntN(48)*30)
				if from != to {
					ws = append(ws, contract.Window{From: from, To: to})
				}
			}
			rs = append(rs, Rule{Windows: ws, Loc: zone(t, zones[rng.IntN(len(zones))])})
		}
		// Around the DST changes of 2026 and Apia's skipped 2011-12-30.
		at := base.Add(time.Duration(rng.Int64N(int64(24 * time.Hour * 6))))
		if rng.IntN(2) == 0 {
			at = instant(t, []string{"2026-03-07T00:00:00Z", "2026-03-28T00:00:00Z", "2026-10-24T00:00:00Z",
				"2026-10-31T00:00:00Z", "2026-04-04T00:00:00Z", "2026-09-05T00:00:00Z"}[rng.IntN(6)]).
				Add(time.Duration(rng.Int64N(int64(48 * time.Hour))))
		}
		rel, err := Release(at, rs...)
		if errors.Is(err, ErrAlwaysBlackout) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		checked++
		if rel.Before(at) || inside(rs, rel) {
			t.Fatalf("Release(%s, %v) = %s: before t or inside", at, rs, rel)
		}
		if !inside(rs, at) && !rel.Equal(at) {
			t.Fatalf("Release(%s, %v) = %s, but %s is free", at, rs, rel, at)
		}
		for p := 1; p < 8 && rel.After(at); p++ {
			probe := at.Add(rel.Sub(at) * time.Duration(p) / 8)
			if !inside(rs, probe) {
				t.Fatalf("Release(%s, %v) = %s, but %s before it is free", at, rs, rel, probe)
			}
			if again, _ := Release(probe, rs...); !again.Equal(rel) {
				t.Fatalf("Release(%s) = %s, but Release(%s) = %s", at, rel, probe, again)
			}
		}
	}
	if checked < propertyCases/3 {
		t.Errorf("only %d of %d cases had a release", checked, propertyCases)
	}
}

// TestInsideFixedAgrees: away from offset changes Inside takes a shortcut in
// minutes; it must say what the wall-clock placement says.
func TestInsideFixedAgrees(t *testing.T) {
	t.Parallel()
	zones := []string{"America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kathmandu", "Asia/Seoul", "UTC"}
	rng := rand.New(rand.NewPCG(7, 8))
	year := instant(t, "2026-01-01T00:00:00Z")
	fixed := 0
	for i := 0; i < 20000; i++ {
		var ws []contract.Window
		for k := 0; k < 1+rng.IntN(3); k++ {
			ws = append(ws, contract.Window{From: contract.Clock(rng.IntN(1440)), To: contract.Clock(rng.IntN(1440))})
		}
		loc := zone(t, zones[rng.IntN(len(zones))])
		r := Rule{Windows: ws, Loc: loc}
		at := year.Add(time.Duration(rng.Int64N(int64(365 * 24 * time.Hour))))
		lt := at.In(loc)
		if start, end := lt.ZoneBounds(); !(start.IsZero() || at.Sub(start) > fixedSpan) || !(end.IsZero() || end.Sub(at) > fixedSpan) {
			continue
		}
		fixed++
		in1, end1 := r.insideFixed(lt)
		in2, end2 := r.insideWall(at, loc)
		if in1 != in2 || !end1.Equal(end2) {
			t.Fatalf("%v in %s at %s: fixed %v %s, wall %v %s", ws, loc, lt, in1, end1, in2, end2)
		}
	}
	if fixed < 10000 {
		t.Errorf("only %d cases away from offset changes", fixed)
	}
}

func TestNextStart(t *testing.T) {
	t.Parallel()
	seoul, _ := time.LoadLocation("Asia/Seoul")
	ny, _ := time.LoadLocation("America/New_York")
	night := []contract.Window{{From: 22 * 60, To: 6 * 60}}
	tests := []struct {
		name   string
		t      time.Time
		limit  time.Duration
		rules  []Rule
		want   time.Time
		wantOK bool
	}{
		{"later today", time.Date(2026, 1, 15, 21, 50, 0, 0, seoul), time.Hour, []Rule{{Windows: night, Loc: seoul}},
			time.Date(2026, 1, 15, 22, 0, 0, 0, seoul), true},
		{"beyond the limit", time.Date(2026, 1, 15, 21, 50, 0, 0, seoul), 5 * time.Minute, []Rule{{Windows: night, Loc: seoul}},
			time.Time{}, false},
		{"inside a window: the next start is tomorrow's", time.Date(2026, 1, 15, 23, 0, 0, 0, seoul), 48 * time.Hour, []Rule{{Windows: night, Loc: seoul}},
			time.Date(2026, 1, 16, 22, 0, 0, 0, seoul), true},
		{"exactly at a start is not after it", time.Date(2026, 1, 15, 22, 0, 0, 0, seoul), 25 * time.Hour, []Rule{{Windows: night, Loc: seoul}},
			time.Date(2026, 1, 16, 22, 0, 0, 0, seoul), true},
		{"earliest of two rules", time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC), 24 * time.Hour,
			[]Rule{{Windows: night, Loc: seoul}, {Windows: []contract.Window{{From: 12*60 + 30, To: 13 * 60}}, Loc: time.UTC}},
			time.Date(2026, 1, 15, 12, 30, 0, 0, time.UTC), true},
		// 2026-03-08: New York springs forward 02:00 -> 03:00.
		{"start inside the gap moves to its end", time.Date(2026, 3, 8, 1, 0, 0, 0, ny), 3 * time.Hour,
			[]Rule{{Windows: []contract.Window{{From: 2*60 + 30, To: 5 * 60}}, Loc: ny}},
			time.Date(2026, 3, 8, 3, 0, 0, 0, ny), true},
		{"window wholly inside the gap does not begin", time.Date(2026, 3, 8, 1, 0, 0, 0, ny), 3 * time.Hour,
			[]Rule{{Windows: []contract.Window{{From: 2*60 + 10, To: 2*60 + 40}}, Loc: ny}},
			time.Time{}, false},
		// 2026-11-01: New York falls back 02:00 -> 01:00; 01:30 happens twice.
		{"start inside the overlap is its earlier instant", time.Date(2026, 11, 1, 0, 30, 0, 0, ny), 3 * time.Hour,
			[]Rule{{Windows: []contract.Window{{From: 90, To: 4 * 60}}, Loc: ny}},
			time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC), true},
	}
	for _, tt := range tests {
		got, ok := NextStart(tt.t, tt.t.Add(tt.limit), tt.rules...)
		if ok != tt.wantOK || (ok && !got.Equal(tt.want)) {
			t.Errorf("%s: NextStart = %s, %v; want %s, %v", tt.name, got, ok, tt.want, tt.wantOK)
			continue
		}
		if ok {
			// Just before the start is outside every window; the start is inside one.
			for _, r := range tt.rules {
				if in, _ := r.Inside(got); in {
					goto inside
				}
			}
			t.Errorf("%s: %s is not inside a window", tt.name, got)
		inside:
		}
	}
}

package sender

import (
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// A held state (scheduled, deferred, retrying, or a non-sending status
// this version does not know) that has issued the command already is
// stale for it, though it counts fewer attempts: not_attempted gave the
// attempt back and the dispatcher holds the notification (issue 21, item
// 4: a copy of a command answered not_attempted, called inside the
// window). One that has not issued it yet is a view that lags.
func TestStaleHeld(t *testing.T) {
	t.Parallel()
	held := []contract.Status{contract.StatusScheduled, contract.StatusDeferred, contract.StatusRetrying, "paused"}
	for _, st := range held {
		cases := []struct {
			name  string
			cmd   *contract.SendCommand
			state *contract.State
			want  bool
		}{
			{"first command, answered", &contract.SendCommand{ID: "a", Attempt: 1, Issue: 0},
				&contract.State{Status: st, Attempts: 0, Issue: 0, Commands: 1}, true},
			{"first command, view behind", &contract.SendCommand{ID: "a", Attempt: 1, Issue: 0},
				&contract.State{Status: st, Attempts: 0, Issue: 0, Commands: 0}, false},
			{"a later command, answered", &contract.SendCommand{ID: "a", Attempt: 3, Issue: 4},
				&contract.State{Status: st, Attempts: 2, Issue: 4, Commands: 5}, true},
			{"a later command, answered (light decode: no Commands)", &contract.SendCommand{ID: "a", Attempt: 3, Issue: 4},
				&contract.State{Status: st, Attempts: 2, Issue: 4}, true},
			{"a later command, view behind", &contract.SendCommand{ID: "a", Attempt: 3, Issue: 4},
				&contract.State{Status: st, Attempts: 2, Issue: 3, Commands: 4}, false},
			{"superseded by a later issue", &contract.SendCommand{ID: "a", Attempt: 3, Issue: 4},
				&contract.State{Status: st, Attempts: 2, Issue: 5, Commands: 6}, true},
			{"this attempt counted", &contract.SendCommand{ID: "a", Attempt: 3, Issue: 4},
				&contract.State{Status: st, Attempts: 3, Issue: 4, Commands: 5}, true},
		}
		for _, c := range cases {
			if got := Stale(c.state, c.cmd); got != c.want {
				t.Errorf("%s, %s: Stale = %v, want %v", st, c.name, got, c.want)
			}
		}
	}
	// Sending an earlier attempt: the view lags, whatever the issue.
	if Stale(&contract.State{Status: contract.StatusSending, Attempts: 2, Issue: 3, Commands: 4},
		&contract.SendCommand{ID: "a", Attempt: 3, Issue: 4}) {
		t.Error("an earlier attempt sending: stale")
	}
}

func TestStale(t *testing.T) {
	t.Parallel()
	cmd := &contract.SendCommand{ID: "a", Attempt: 3}
	cases := []struct {
		name  string
		state *contract.State
		want  bool
	}{
		{"unknown id (view behind)", nil, false},
		{"view behind: fewer attempts", &contract.State{Attempts: 2, Status: contract.StatusRetrying}, false},
		{"this attempt, sending", &contract.State{Attempts: 3, Status: contract.StatusSending}, false},
		{"this attempt, result applied", &contract.State{Attempts: 3, Status: contract.StatusRetrying}, true},
		{"this attempt, sent", &contract.State{Attempts: 3, Status: contract.StatusSent}, true},
		{"this attempt, failed", &contract.State{Attempts: 3, Status: contract.StatusFailed}, true},
		{"this attempt, canceled", &contract.State{Attempts: 3, Status: contract.StatusCanceled}, true},
		{"a later attempt sending", &contract.State{Attempts: 4, Status: contract.StatusSending}, true},
		{"a later attempt sent", &contract.State{Attempts: 5, Status: contract.StatusSent}, true},
	}
	for _, c := range cases {
		if got := Stale(c.state, cmd); got != c.want {
			t.Errorf("%s: Stale = %v, want %v", c.name, got, c.want)
		}
	}
}

func typicalState(t testing.TB) []byte {
	now := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	r, err := contract.Decode([]byte("2026-01:acct-000042:bill"), []byte(`{"schema":"herald.dispatch.v1","id":"2026-01:acct-000042:bill",
		"campaign":"bill-2026-01","recipient":{"email":"user@example.com","phone":"+821012345678","tz":"Asia/Seoul"},
		"channels":["email","sms"],"content":{"subject":"Your January bill","text":"Amount due: 42,000 KRW. Pay by the 25th.","html":"<p>Amount due: <b>42,000 KRW</b></p>"},
		"policy":{"id":"billing","version":3,"attempts_per_channel":3},"blackout":[{"from":"22:00","to":"08:00"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	s := &contract.State{ID: r.ID, Campaign: r.Campaign, Status: contract.StatusSending, Channel: contract.ChannelEmail,
		Attempts: 2, ChannelAttempts: 2, FirstSeen: now, UpdatedAt: now, Version: 4, Request: r,
		History: []contract.Attempt{{Attempt: 1, Channel: contract.ChannelEmail, Outcome: contract.OutcomeTransient, Code: 503, Error: "unavailable", At: now}},
		Applied: map[string]contract.Position{"herald.requests": {Topic: "herald.requests", Offset: 9}}}
	b, err := contract.EncodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The state the sender reads is contract.DecodeProgress's (through
// tableview.StateView.Progress), not the whole state: Stale must judge
// both alike, a held state at issue 0 included, where only Commands tells
// a command answered from one not issued yet.
func TestStaleJudgesTheProgressLikeTheState(t *testing.T) {
	t.Parallel()
	b := typicalState(t)
	base, err := contract.DecodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	var states []*contract.State
	for _, st := range []contract.Status{contract.StatusSending, contract.StatusDeferred, contract.StatusRetrying, contract.StatusSent} {
		for _, commands := range []int{0, 1, 2, 3} {
			for _, issue := range []int{0, 1, 2} {
				s := *base
				s.Status, s.Issue, s.Commands = st, issue, commands
				states = append(states, &s)
			}
		}
	}
	for _, full := range states {
		enc, err := contract.EncodeState(full)
		if err != nil {
			t.Fatal(err)
		}
		light, err := contract.DecodeProgress(enc)
		if err != nil {
			t.Fatal(err)
		}
		for attempt := 1; attempt <= 3; attempt++ {
			for issue := 0; issue <= 3; issue++ {
				cmd := &contract.SendCommand{ID: full.ID, Attempt: attempt, Issue: issue}
				if got, want := Stale(light, cmd), Stale(full, cmd); got != want {
					t.Errorf("%s, issue %d, %d commands; command attempt %d issue %d: Stale of the progress %v, of the state %v",
						full.Status, full.Issue, full.Commands, attempt, issue, got, want)
				}
			}
		}
	}
}

// With a budget, a call is not started that close to the cut-off.
func TestPastCutoffBudget(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	cmd := &contract.SendCommand{Deadline: now.Add(time.Hour), Cutoff: now.Add(500 * time.Millisecond)}
	if why := PastCutoff(cmd, now, time.Second); !strings.Contains(why, "500ms left") {
		t.Fatalf("500 ms before the cut-off with a 1 s budget: %q", why)
	}
	if why := PastCutoff(cmd, now, 100*time.Millisecond); why != "" {
		t.Fatalf("500 ms before the cut-off with a 100 ms budget: %q", why)
	}
}

func TestPastCutoff(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		deadline, cutoff time.Time
		want             string // a word of the reason, or "" for "may call"
	}{
		{time.Time{}, time.Time{}, ""},                         // neither
		{now.Add(time.Second), time.Time{}, ""},                // within the deadline
		{now, time.Time{}, "deadline"},                         // the deadline is now
		{now.Add(time.Hour), now.Add(time.Second), ""},         // before the cut-off
		{now.Add(time.Hour), now, "blackout window"},           // a window begins now
		{now.Add(time.Hour), now.Add(-time.Minute), "expires"}, // long past
		{now.Add(-time.Minute), now.Add(-time.Minute), "deadline"},
	}
	for _, c := range cases {
		got := PastCutoff(&contract.SendCommand{Deadline: c.deadline, Cutoff: c.cutoff}, now, 0)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("PastCutoff(deadline %v, cutoff %v) = %q, want one naming %q", c.deadline, c.cutoff, got, c.want)
		}
	}
}

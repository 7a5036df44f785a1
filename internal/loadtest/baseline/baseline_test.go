package baseline

import (
	"errors"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/herald-dispatch/herald/internal/schedule"
)

func TestDecide(t *testing.T) {
	r := &contract.Request{ID: "n1", Channels: []contract.Channel{contract.ChannelEmail, contract.ChannelSMS},
		Policy: contract.Policy{AttemptsPerChannel: 3, Backoff: contract.Backoff{
			Initial: contract.Duration(time.Second), Multiplier: 2, Max: contract.Duration(time.Minute)}}}
	email := claimedRow{id: "n1", channel: "email", index: 0, attempts: 1, chAttempts: 1}
	lastEmail := claimedRow{id: "n1", channel: "email", index: 0, attempts: 3, chAttempts: 3}
	sms := claimedRow{id: "n1", channel: "sms", index: 1, attempts: 2, chAttempts: 1}
	lastSMS := claimedRow{id: "n1", channel: "sms", index: 1, attempts: 6, chAttempts: 3}
	fail := errors.New("x")
	for _, tc := range []struct {
		name string
		row  claimedRow
		res  provider.Result
		want outcome
	}{
		{"success", email, provider.Success(202), outcome{status: "sent", index: 0, channel: "email", chAttempts: 1}},
		{"transient retries after the backoff", email, provider.Transient(503, fail),
			outcome{status: "pending", index: 0, channel: "email", chAttempts: 1,
				wait: schedule.Backoff(r.Policy.Backoff, 1, "n1"), err: "x"}},
		{"transient with attempts used up falls back", lastEmail, provider.Transient(503, fail),
			outcome{status: "pending", index: 1, channel: "sms", chAttempts: 0, err: "x"}},
		{"permanent falls back at once", email, provider.Permanent(422, fail),
			outcome{status: "pending", index: 1, channel: "sms", chAttempts: 0, err: "x"}},
		{"permanent on the last channel fails", sms, provider.Permanent(422, fail),
			outcome{status: "failed", index: 1, channel: "sms", chAttempts: 1, err: "x"}},
		{"transient exhausted on the last channel fails", lastSMS, provider.Transient(0, fail),
			outcome{status: "failed", index: 1, channel: "sms", chAttempts: 3, err: "x"}},
		{"throttled waits and gives the attempt back", email,
			provider.Result{Outcome: contract.OutcomeThrottled, Code: 429, Err: fail, RetryAfter: 3 * time.Second},
			outcome{status: "pending", index: 0, channel: "email", chAttempts: 0, wait: 3 * time.Second, err: "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decide(r, tc.row, tc.res); got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

package views_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/report"
	"github.com/herald-dispatch/herald/internal/views"
)

// viewStore answers a campaign action's targets from the live view, for
// the ids it is given: the stack has no sink.
type viewStore struct {
	failingStore
	view views.Table
	ids  []string
}

func (v viewStore) CampaignSummary(context.Context, string) (*report.Summary, error) {
	return &report.Summary{}, nil
}

func (v viewStore) Targets(_ context.Context, _ string, statuses []contract.Status, after string, limit int) ([]views.Target, error) {
	var out []views.Target
	for _, id := range v.ids {
		st, err := v.view.Get(id)
		if err != nil {
			return nil, err
		}
		if id > after && st != nil && slices.Contains(statuses, st.Status) && len(out) < limit {
			out = append(out, views.Target{ID: id, Attempts: st.Attempts})
		}
	}
	return out, nil
}

// TestCampaignActionsThroughTheDispatcher: a campaign's retry reaches the
// real dispatcher over herald.control and starts a new attempt series for
// the failed notification only; asking again changes nothing; a campaign
// cancel cancels the held one and leaves the one being sent.
func TestCampaignActionsThroughTheDispatcher(t *testing.T) {
	s := startStack(t, stackOptions{})
	one := func(m map[string]any) {
		m["channels"] = []string{"email"}
		m["policy"] = map[string]any{"attempts_per_channel": 1}
	}
	s.call("POST", "/v1/messages", "", "", request("act-failed", one), nil)
	s.call("POST", "/v1/messages", "", "", request("act-sent", one), nil)
	s.call("POST", "/v1/messages", "", "", request("act-held", later(time.Hour)), nil)
	s.result(s.state("act-failed", statusIs(contract.StatusSending)), contract.OutcomePermanent, "no such user")
	s.result(s.state("act-sent", statusIs(contract.StatusSending)), contract.OutcomeSuccess, "")
	s.state("act-failed", statusIs(contract.StatusFailed))
	s.state("act-sent", statusIs(contract.StatusSent))
	s.state("act-held", statusIs(contract.StatusScheduled))
	sent, _ := s.view.Get("act-sent")
	s.api.Store = viewStore{view: s.view, ids: []string{"act-failed", "act-held", "act-sent"}}

	var a views.ActionResponse
	if code, b := s.call("POST", "/v1/campaigns/statements-2026-01/retry?status=failed", "", "", []byte(`{"reason":"provider fixed"}`), &a); code != http.StatusAccepted || a.Requested != 1 {
		t.Fatalf("retry: %d %s", code, b)
	}
	st := s.state("act-failed", statusIs(contract.StatusSending))
	last := st.History[len(st.History)-1]
	if st.Attempts != 2 || last.Outcome != contract.OutcomeRetry || last.Error != "retry requested: provider fixed" {
		t.Errorf("after retry: attempts %d, history %+v", st.Attempts, st.History)
	}
	// Again: nothing is failed any more, nothing is published; the sent
	// one was never a target.
	if code, b := s.call("POST", "/v1/campaigns/statements-2026-01/retry?status=failed", "", "", nil, &a); code != http.StatusAccepted || a.Requested != 0 {
		t.Errorf("retry again: %d %s", code, b)
	}

	// Cancel: the held one, and the retried one, sending, whose command
	// waits (this stack has no sender).
	if code, b := s.call("POST", "/v1/campaigns/statements-2026-01/cancel", "", "", nil, &a); code != http.StatusAccepted || a.Requested != 2 {
		t.Fatalf("cancel: %d %s", code, b)
	}
	held := s.state("act-held", statusIs(contract.StatusCanceled))
	if held.LastError != "canceled: campaign canceled by an operator" {
		t.Errorf("cancel reason %q", held.LastError)
	}
	s.state("act-failed", statusIs(contract.StatusCanceled))
	if code, b := s.call("POST", "/v1/campaigns/statements-2026-01/cancel", "", "", nil, &a); code != http.StatusAccepted || a.Requested != 0 {
		t.Errorf("cancel again: %d %s", code, b)
	}
	// Neither action touched the sent one.
	if st, _ := s.view.Get("act-sent"); st.Status != contract.StatusSent || st.Version != sent.Version {
		t.Errorf("the sent one moved: %s v%d, was v%d", st.Status, st.Version, sent.Version)
	}
}

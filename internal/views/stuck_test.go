package views_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/topology"
	"github.com/herald-dispatch/herald/internal/views"
)

// GET /v1/stuck lists what the dispatcher's sweep would rescue now, and
// nothing else: a send past its time-out, a wake-up overdue by more than
// the grace; not a wake-up overdue by less, nor one still to come.
func TestStuckIsWhatTheSweepRescues(t *testing.T) {
	f := startFixture(t)
	recent := fixtureState("held-30s-late", "welcome", contract.StatusRetrying, f.now, time.Hour)
	late := f.now.Add(-30 * time.Second)
	recent.NextAttemptAt = &late
	f.table.mu.Lock()
	f.table.states[recent.ID] = recent
	f.table.mu.Unlock()
	var s views.StuckResponse
	if code := getJSON(t, f.api.Handler(), "GET", "/v1/stuck", &s); code != http.StatusOK {
		t.Fatalf("%d", code)
	}
	var ids []string
	for _, r := range s.Stuck {
		ids = append(ids, r.ID+":"+string(r.Kind))
	}
	if want := []string{"stuck-held:hold", "stuck-send:send_timeout"}; s.Total != 2 || !slices.Equal(ids, want) || s.GraceSeconds != 60 {
		t.Errorf("stuck %v (total %d, grace %v s), want %v", ids, s.Total, s.GraceSeconds, want)
	}
	if r := s.Stuck[0]; r.OverdueSeconds != 600 || r.Campaign != "welcome" {
		t.Errorf("the held one: %+v", r)
	}
	getJSON(t, f.api.Handler(), "GET", "/v1/stuck?limit=1", &s)
	if s.Total != 2 || len(s.Stuck) != 1 {
		t.Errorf("limit=1: total %d, %d rows", s.Total, len(s.Stuck))
	}
}

// POST /v1/messages/{id}/retry publishes a Retry naming the attempts the
// view shows, for a failed notification only.
func TestRetryOneNotification(t *testing.T) {
	f := startFixture(t)
	var r views.RetryResponse
	if code := post(t, f.api.Handler(), "/v1/messages/billing-e/retry", `{"reason":"number fixed"}`, &r); code != http.StatusAccepted || r.Result != "requested" {
		t.Fatalf("retry: %d %+v", code, r)
	}
	recs := f.producer.records()
	if len(recs) != 1 || recs[0].Topic != topology.TopicControl || string(recs[0].Key) != "billing-e" {
		t.Fatalf("published %d records", len(recs))
	}
	_, retry, err := contract.DecodeControl(recs[0].Key, recs[0].Value)
	if err != nil || retry == nil || retry.AfterAttempts != 2 || retry.Reason != "number fixed" {
		t.Errorf("the retry record: %+v %v", retry, err)
	}
	if code := post(t, f.api.Handler(), "/v1/messages/billing-a/retry", "", &r); code != http.StatusConflict || r.Status != contract.StatusSent {
		t.Errorf("retry of a sent one: %d %+v", code, r)
	}
}

// A campaign's time to done counts the notifications not held; the held
// ones are counted apart (they end when their hold does).
func TestProgressCountsHeldApart(t *testing.T) {
	f := startFixture(t)
	var l views.CampaignList
	getJSON(t, f.api.Handler(), "GET", "/v1/campaigns", &l)
	for _, c := range l.Campaigns {
		if c.Campaign == "billing-2026-01" && c.Held != 3 {
			t.Errorf("billing held %d, want 3 (deferred, scheduled, retrying)", c.Held)
		}
	}
}

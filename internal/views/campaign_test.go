package views_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/heraldtest"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/report"
	"github.com/herald-dispatch/herald/internal/sink"
	"github.com/herald-dispatch/herald/internal/views"
)

// TestCampaigns serves a summary the real sink wrote to a real Postgres.
func TestCampaigns(t *testing.T) {
	pool := heraldtest.MigratedPool(t, heraldtest.Postgres(t))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	now := time.Now().UTC().Truncate(time.Second)
	st := func(id string, status contract.Status, lastErr string) sink.Change {
		s := &contract.State{ID: id, Campaign: "camp-1", Status: status, Channel: contract.ChannelEmail,
			Attempts: 1, FirstSeen: now.Add(-time.Minute), UpdatedAt: now, Version: 3, LastError: lastErr,
			Request: &contract.Request{ID: id, Campaign: "camp-1", Channels: []contract.Channel{contract.ChannelEmail},
				Recipient: contract.Recipient{Email: email}}}
		if status == contract.StatusSent {
			s.SentAt = &now
		}
		s.History = []contract.Attempt{{Attempt: 1, Channel: contract.ChannelEmail, Outcome: contract.OutcomeSuccess, At: now}}
		b, _ := json.Marshal(s)
		return sink.Change{State: s, Key: []byte(id), Value: b}
	}
	bounce := "email attempt 1: permanent (550): <" + email + ">: no such user"
	if _, err := sink.NewWriter(pool).Write(ctx, []sink.Change{
		st("c-1", contract.StatusSent, ""), st("c-2", contract.StatusSent, ""), st("c-3", contract.StatusFailed, bounce),
	}); err != nil {
		t.Fatal(err)
	}

	const token = "tok"
	api := &views.Server{Config: views.Config{Token: token}, Store: views.PGStore{Q: pool}, Log: testLogger(t)}
	srv := httpServer(t, api.Handler())
	get := func(path string, out any) (int, string) {
		req, _ := http.NewRequest("GET", srv+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var raw json.RawMessage
		json.NewDecoder(resp.Body).Decode(&raw)
		if out != nil {
			json.Unmarshal(raw, out)
		}
		return resp.StatusCode, string(raw)
	}

	var sum report.Summary
	code, body := get("/v1/campaigns/camp-1", &sum)
	if code != http.StatusOK || sum.Total != 3 || sum.ByStatus["sent"] != 2 || sum.ByStatus["failed"] != 1 || sum.Final != 3 {
		t.Fatalf("%d %s", code, body)
	}
	if strings.Contains(body, email) || len(sum.Failures) != 1 || !strings.Contains(sum.Failures[0].Error, "<j***@example.com>") {
		t.Errorf("failures not masked: %s", body)
	}
	// The progress is the list's, first_seen included.
	var detail views.CampaignDetail
	get("/v1/campaigns/camp-1", &detail)
	var list views.CampaignList
	get("/v1/campaigns", &list)
	if want := now.Add(-time.Minute); !detail.Progress.FirstSeen.Equal(want) || len(list.Campaigns) != 1 ||
		!list.Campaigns[0].FirstSeen.Equal(want) || detail.Progress.Total != 3 || detail.Progress.Final != 3 {
		t.Errorf("progress %+v, list %+v: want first_seen %s in both", detail.Progress, list.Campaigns, want)
	}
	code, body = get("/v1/campaigns/camp-1?reveal=1", &sum)
	if code != http.StatusOK || sum.Failures[0].Error != bounce {
		t.Errorf("reveal: %d %s", code, body)
	}
	var e map[string]any
	if code, body := get("/v1/campaigns/nope", &e); code != http.StatusNotFound || e["campaign"] != "nope" {
		t.Errorf("unknown campaign: %d %s", code, body)
	}
	pool.Close() // the database goes away: a 500, not a hang or a 404
	if code, body := get("/v1/campaigns/camp-1", nil); code != http.StatusInternalServerError {
		t.Errorf("closed pool: %d %s", code, body)
	}
}

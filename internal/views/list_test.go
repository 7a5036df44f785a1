package views_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/topology"
	"github.com/herald-dispatch/herald/internal/views"
)

func getJSON(t *testing.T, h http.Handler, method, target string, out any) int {
	t.Helper()
	req := httptest.NewRequest(method, "http://herald.test"+target, nil)
	req.Header.Set("Authorization", "Bearer "+fixtureToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, target, err, b)
		}
	}
	return rec.Code
}

func TestListMessages(t *testing.T) {
	f := startFixture(t)
	h := f.api.Handler()

	// Pages of 3 through the campaign: every notification once, newest
	// first (by first seen).
	var ids []string
	cursor := ""
	for pages := 0; ; pages++ {
		var p views.MessagePage
		if code := getJSON(t, h, "GET", "/v1/messages?campaign=billing-2026-01&limit=3&cursor="+cursor, &p); code != 200 || pages > 5 {
			t.Fatalf("page %d: %d", pages, code)
		}
		for _, m := range p.Messages {
			ids = append(ids, m.ID)
			if strings.Contains(m.LastError, "+821012345678") || strings.Contains(m.LastError, "jane.doe@") {
				t.Errorf("%s: last error not masked: %q", m.ID, m.LastError)
			}
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	want := []string{"billing-a", "billing-b", "billing-c", "billing-d", "billing-e", "billing-f", "billing-g", "billing-h", "billing-i", "billing-j"}
	if !slices.Equal(ids, want) {
		t.Errorf("pages: %v, want %v", ids, want)
	}

	for q, want := range map[string][]string{
		"status=failed":                {"billing-e", "billing-f"},
		"status=failed,canceled":       {"billing-e", "billing-f", "welcome-b"},
		"hold_reason=blackout":         {"billing-g"},
		"campaign=welcome&status=sent": {"welcome-a"},
		"channel=sms&campaign=welcome": nil,
		"campaign=billing-2026-01&since=" + f.now.Add(-25e9).Format("2006-01-02T15:04:05.999Z07:00"): {"billing-a", "billing-b"},
	} {
		var p views.MessagePage
		getJSON(t, h, "GET", "/v1/messages?"+q, &p)
		var got []string
		for _, m := range p.Messages {
			got = append(got, m.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", q, got, want)
		}
	}
	var e views.ErrorBody
	if code := getJSON(t, h, "GET", "/v1/messages?cursor=nonsense", &e); code != 400 || e.Code != views.CodeBadRequest {
		t.Errorf("bad cursor: %d %+v", code, e)
	}
}

func TestCampaignProgressAndActions(t *testing.T) {
	f := startFixture(t)
	h := f.api.Handler()

	var l views.CampaignList
	if code := getJSON(t, h, "GET", "/v1/campaigns", &l); code != 200 || len(l.Campaigns) != 2 {
		t.Fatalf("%d %+v", code, l)
	}
	b := l.Campaigns[0] // the most recently active
	// Every final one of the fixture became final within the last minute:
	// 5 sent and 2 failed, 3 left, all held (deferred, scheduled,
	// retrying): they end when their hold does, so there is no time to
	// done at the rate, and they are counted as held.
	if b.Campaign != "billing-2026-01" || b.Total != 10 || b.Final != 7 || b.ByStatus["failed"] != 2 ||
		b.Rate != 7.0/60 || b.Held != 3 || b.ETASeconds != nil {
		t.Errorf("progress %+v", b)
	}
	if w := l.Campaigns[1]; w.Campaign != "welcome" || w.Total != 2 || w.Done != 1 || w.ETASeconds != nil {
		t.Errorf("welcome %+v", w)
	}

	var d views.CampaignDetail
	getJSON(t, h, "GET", "/v1/campaigns/billing-2026-01", &d)
	var sum int64
	for _, p := range d.Throughput {
		sum += p.Final
	}
	if sum != 7 || len(d.Throughput) < 60 || d.Progress.Final != 7 || len(d.Failures) != 1 || d.Failures[0].Notifications != 2 ||
		strings.Contains(d.Failures[0].Error, "+821012345678") {
		t.Errorf("detail: throughput %d in %d buckets, progress %+v, failures %+v", sum, len(d.Throughput), d.Progress, d.Failures)
	}

	var a views.ActionResponse
	if code := getJSON(t, h, "POST", "/v1/campaigns/billing-2026-01/cancel", &a); code != 202 || a.Requested != 3 {
		t.Errorf("cancel: %d %+v", code, a)
	}
	if code := getJSON(t, h, "POST", "/v1/campaigns/billing-2026-01/retry?status=failed", &a); code != 202 || a.Requested != 2 {
		t.Errorf("retry: %d %+v", code, a)
	}
	var canceled, retried []string
	for _, r := range f.producer.records() {
		if r.Topic != topology.TopicControl {
			t.Errorf("record on %s", r.Topic)
		}
		cancel, retry, err := contract.DecodeControl(r.Key, r.Value)
		if err != nil {
			t.Errorf("control record %s: %v", r.Key, err)
			continue
		}
		var c struct {
			Kind, ID, Reason string
			AfterAttempts    int
		}
		if cancel != nil {
			c.ID, c.Reason = cancel.ID, cancel.Reason
		} else {
			c.Kind, c.ID, c.Reason, c.AfterAttempts = retry.Kind, retry.ID, retry.Reason, retry.AfterAttempts
		}
		switch c.Kind {
		case "":
			canceled = append(canceled, c.ID)
			if c.Reason != "campaign canceled by an operator" {
				t.Errorf("cancel reason %q", c.Reason)
			}
		case contract.ControlRetry:
			retried = append(retried, c.ID)
			if c.AfterAttempts != 2 {
				t.Errorf("retry of %s after %d attempts", c.ID, c.AfterAttempts)
			}
		}
	}
	if !slices.Equal(canceled, []string{"billing-g", "billing-h", "billing-i"}) || !slices.Equal(retried, []string{"billing-e", "billing-f"}) {
		t.Errorf("canceled %v, retried %v", canceled, retried)
	}

	var held views.HeldResponse
	getJSON(t, h, "GET", "/v1/held", &held)
	if len(held.Held) != 3 {
		t.Errorf("held %+v", held)
	}
}

// A query parameter an endpoint does not take is refused, named, not
// ignored: a mistyped filter would answer everything, unfiltered.
func TestListsRefuseUnknownParameters(t *testing.T) {
	f := startFixture(t)
	h := f.api.Handler()
	for _, target := range []string{"/v1/messages?campain=billing-2026-01", "/v1/campaigns?limt=5", "/v1/held?campain=x",
		"/v1/dlq?campain=x", "/v1/messages/billing-a?revael=1", "/v1/campaigns/billing-2026-01?campain=x"} {
		var e views.ErrorBody
		code := getJSON(t, h, "GET", target, &e)
		_, q, _ := strings.Cut(target, "?")
		name, _, _ := strings.Cut(q, "=")
		if code != 400 || e.Code != views.CodeBadRequest || !strings.Contains(e.Error, `"`+name+`"`) {
			t.Errorf("%s: %d %+v, want 400 naming %q", target, code, e, name)
		}
	}
	var p views.MessagePage
	if code := getJSON(t, h, "GET", "/v1/messages?campaign=welcome&limit=5", &p); code != 200 {
		t.Errorf("known parameters: %d", code)
	}
}

package views_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dlq"
	"github.com/herald-dispatch/herald/internal/topology"
	"github.com/herald-dispatch/herald/internal/views"
)

// post sends body to target with the fixture's token and decodes the
// answer into out.
func post(t *testing.T, h http.Handler, target, body string, out any) int {
	t.Helper()
	req := httptest.NewRequest("POST", "http://herald.test"+target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+fixtureToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("POST %s: %v: %s", target, err, b)
	}
	return rec.Code
}

func actions(r views.ReplayResponse) map[string]string {
	m := map[string]string{}
	for _, it := range r.Items {
		m[it.DLQ] = it.Action
	}
	return m
}

// TestReplayDLQ replays the fixture's dead letters through the API: the
// dry run publishes nothing, a fix-up replaces a value, a replay is
// recorded and not repeated without again=1, bad input is refused before
// anything is published, and a replay is audited.
func TestReplayDLQ(t *testing.T) {
	f := startFixture(t)
	c := f.withDLQ(t)
	logs := &logBuffer{}
	f.api.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := f.api.Handler()

	var r views.ReplayResponse
	if code := post(t, h, "/v1/dlq/replay?dry_run=1", "", &r); code != http.StatusOK || !r.DryRun {
		t.Fatalf("dry run: %d %+v", code, r)
	}
	want := map[string]string{"0@0": dlq.ActionSkipped, "0@1": dlq.ActionSkipped, "0@2": dlq.ActionWouldReplay, "0@3": dlq.ActionSkipped}
	if got := actions(r); !maps.Equal(got, want) || r.WouldReplay != 1 || r.Skipped != 3 {
		t.Fatalf("dry run: %v, want %v", got, want)
	}
	if it := r.Items[2]; it.ID != "km-1" || it.Key != "km-x" || it.Reason != contract.ReasonKeyMismatch || it.Published != nil {
		t.Errorf("the key mismatch: %+v", it)
	}
	if why := r.Items[0].Why; !strings.Contains(why, "still not a valid request") {
		t.Errorf("why the malformed one is skipped: %q", why)
	}
	if why := r.Items[3].Why; !strings.Contains(why, "only requests are replayed") {
		t.Errorf("why the result is skipped: %q", why)
	}
	if n := len(c.requests(t)); n != 0 {
		t.Fatalf("the dry run published %d requests", n)
	}

	// Bad input is refused and publishes nothing.
	for _, target := range []string{"/v1/dlq/replay?since=yesterday", "/v1/dlq/replay?at=7", "/v1/dlq/replay?dryrun=1",
		"/v1/dlq/replay?dry_run=maybe", "/v1/dlq/replay?since=1h&until=2h"} {
		var e views.ErrorBody
		if code := post(t, h, target, "", &e); code != http.StatusBadRequest || e.Code != views.CodeBadRequest {
			t.Errorf("%s: %d %+v", target, code, e)
		}
	}
	var e views.ErrorBody
	if code := post(t, h, "/v1/dlq/replay", `{"schema":"herald.dispatch.v1"}`, &e); code != http.StatusBadRequest || !strings.Contains(e.Error, "fix-up") {
		t.Errorf("a fix-up without id: %d %+v", code, e)
	}
	if n := len(c.requests(t)); n != 0 {
		t.Fatalf("bad input published %d requests", n)
	}

	// A fix-up for the malformed one replays it (and only it).
	fix := "# corrected\n" + string(request("oops", nil)) + "\n"
	if code := post(t, h, "/v1/dlq/replay?reason=malformed", fix, &r); code != http.StatusAccepted {
		t.Fatalf("replay with a fix: %d %+v", code, r)
	}
	if got := actions(r); !maps.Equal(got, map[string]string{"0@0": dlq.ActionReplayed, "0@3": dlq.ActionSkipped}) || r.Replayed != 1 {
		t.Fatalf("replay with a fix: %+v", r)
	}
	if it := r.Items[0]; !it.Fixed || it.ID != "oops" || it.Published == nil || it.Published.Topic != "herald.requests" {
		t.Errorf("the fixed one: %+v", it)
	}
	// The key mismatch, by position: published under its id.
	if code := post(t, h, "/v1/dlq/replay?at=0@2", "", &r); code != http.StatusAccepted || r.Replayed != 1 {
		t.Fatalf("replay at=0@2: %d %+v", code, r)
	}
	reqs := c.requests(t)
	if len(reqs) != 2 || string(reqs[0].Key) != "oops" || string(reqs[0].Value) != string(request("oops", nil)) || string(reqs[1].Key) != "km-1" {
		t.Fatalf("herald.requests after the replays: %d records", len(reqs))
	}

	// Recorded: not replayed again by accident, but with again=1.
	if code := post(t, h, "/v1/dlq/replay?at=0@0,0@2", fix, &r); code != http.StatusAccepted || r.Replayed != 0 || r.Skipped != 2 ||
		!strings.Contains(r.Items[0].Why, "replayed already") {
		t.Fatalf("a second replay: %d %+v", code, r)
	}
	if code := post(t, h, "/v1/dlq/replay?at=0@2&again=1", "", &r); code != http.StatusAccepted || r.Replayed != 1 {
		t.Fatalf("again=1: %d %+v", code, r)
	}
	if n := len(c.requests(t)); n != 3 {
		t.Errorf("%d requests after again=1, want 3", n)
	}

	out := logs.String()
	if n := strings.Count(out, `msg="audit: dlq replay"`); n != 4 {
		t.Errorf("%d audit lines for 4 replays:\n%s", n, out)
	}
	if !strings.Contains(out, `msg="audit: dlq replay" reason=malformed`) || !strings.Contains(out, "fixes=1") {
		t.Errorf("the audit line names the filter and the fix-up:\n%s", out)
	}
}

// Without herald.dlq the replay answers 503 in the error shape, and
// creates nothing.
func TestReplayDLQWithoutTopic(t *testing.T) {
	f := startFixture(t)
	c := f.withDLQ(t)
	ctx := context.Background()
	adm := kadm.NewClient(c.client)
	if _, err := adm.DeleteTopics(ctx, topology.TopicDLQ); err != nil {
		t.Fatal(err)
	}
	var r views.ReplayResponse
	if code := post(t, f.api.Handler(), "/v1/dlq/replay", "", &r); code != http.StatusServiceUnavailable ||
		r.Code != views.CodeUnavailable || !strings.Contains(r.Error, "does not exist") {
		t.Fatalf("%d %+v", code, r)
	}
	if topics, err := adm.ListTopics(ctx); err != nil || topics.Has(topology.TopicDLQ) {
		t.Errorf("the replay created herald.dlq (%v)", err)
	}
}

// Skip reasons are masked: a decode error can quote an address.
func TestReplayResponseMasks(t *testing.T) {
	r := views.NewReplayResponse(false, []dlq.Outcome{
		{Entry: dlq.Entry{Partition: 1, Offset: 2, Letter: contract.DeadLetter{Key: []byte("k")}}, Action: dlq.ActionSkipped,
			Why: "still not a valid request: <jane.doe@example.com>"},
		{Entry: dlq.Entry{Offset: 3, Err: errors.New("x")}, Action: dlq.ActionReplayed, Replay: &dlq.Replay{ID: "k2", Topic: "t", Offset: 9}}})
	if r.Items[0].Why != "still not a valid request: <j***@example.com>" || r.Items[0].DLQ != "1@2" {
		t.Errorf("%+v", r.Items[0])
	}
	if r.Replayed != 1 || r.Skipped != 1 || r.Items[1].Published == nil || r.Items[1].Published.Offset != 9 {
		t.Errorf("%+v", r)
	}
}

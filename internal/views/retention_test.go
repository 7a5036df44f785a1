package views_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/views"
)

// The API answers for an id whose state the dispatcher's retention
// reduced: a final state without its payload says so, and a remembered
// id answers its status and a note, to GET and to a cancel (409, or 200
// for a canceled one), and nothing is published.
func TestAPIAnswersForRetiredStates(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	body := `{"schema":"herald.dispatch.v1","id":"shed","campaign":"billing","recipient":{"email":"jane@example.com"},` +
		`"channels":["email"],"content":{"subject":"Your statement"},"policy":{"attempts_per_channel":3}}`
	decoded, err := contract.Decode([]byte("shed"), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	shed := fixtureState("shed", "billing", contract.StatusSent, now, time.Hour)
	r := *decoded
	r.Content, r.Recipient = nil, contract.Recipient{}
	shed.Request = &r
	table := &memTable{states: map[string]*contract.State{
		"shed":     shed,
		"whole":    fixtureState("whole", "billing", contract.StatusFailed, now, time.Hour),
		"mem-sent": {ID: "mem-sent", Status: contract.StatusSent, UpdatedAt: now.Add(-40 * 24 * time.Hour), Version: 9, Remembered: true},
		"mem-can":  {ID: "mem-can", Status: contract.StatusCanceled, UpdatedAt: now.Add(-40 * 24 * time.Hour), Version: 9, Remembered: true},
	}}
	prod := &memProducer{}
	srv := httptest.NewServer((&views.Server{Table: table, Producer: prod, Log: testLogger(t), Now: func() time.Time { return now }}).Handler())
	t.Cleanup(srv.Close)
	call := func(method, path string, out any) int {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	for id, want := range map[string]struct {
		status     contract.Status
		remembered bool
		note       string
	}{
		"shed":     {contract.StatusSent, false, views.NoteShed},
		"whole":    {contract.StatusFailed, false, ""},
		"mem-sent": {contract.StatusSent, true, views.NoteRemembered},
	} {
		var m views.Message
		if code := call("GET", "/v1/messages/"+id, &m); code != http.StatusOK || m.Status != want.status || !m.Final ||
			m.Remembered != want.remembered || m.Note != want.note {
			t.Errorf("GET %s: %d %+v; want %s, remembered %v, note %q", id, code, m, want.status, want.remembered, want.note)
		}
	}
	var cr views.CancelResponse
	if code := call("POST", "/v1/messages/mem-sent/cancel", &cr); code != http.StatusConflict || cr.Status != contract.StatusSent ||
		cr.Result != views.CancelConflict || cr.Note != views.NoteRemembered {
		t.Errorf("cancel of a remembered sent id: %d %+v", code, cr)
	}
	cr = views.CancelResponse{}
	if code := call("POST", "/v1/messages/mem-can/cancel", &cr); code != http.StatusOK || cr.Result != views.CancelDone ||
		cr.Note != views.NoteRemembered {
		t.Errorf("cancel of a remembered canceled id: %d %+v", code, cr)
	}
	if n := len(prod.records()); n != 0 {
		t.Errorf("%d records published for ids that are final", n)
	}

	// A re-run of the shed notification's request is a duplicate with the
	// same payload (its content and addresses are not there to compare);
	// one with another policy differs. A remembered id is a duplicate.
	other := strings.Replace(body, `"attempts_per_channel":3`, `"attempts_per_channel":2`, 1)
	mem := strings.ReplaceAll(body, `"shed"`, `"mem-sent"`)
	var ir views.IngestResponse
	req, _ := http.NewRequest("POST", srv.URL+"/v1/messages", strings.NewReader(body+"\n"+other+"\n"+mem+"\n"))
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&ir); err != nil {
		t.Fatal(err)
	}
	if len(ir.Items) != 3 || ir.Duplicates != 3 || ir.Items[0].PayloadDiffers || !ir.Items[1].PayloadDiffers ||
		ir.Items[2].PayloadDiffers || ir.Items[2].Status != contract.StatusSent {
		t.Errorf("re-run of retired ids: %d %+v", resp.StatusCode, ir)
	}
	if n := len(prod.records()); n != 0 {
		t.Errorf("%d records published for known ids", n)
	}
}

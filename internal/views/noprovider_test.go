package views_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/ingest"
	"github.com/herald-dispatch/herald/internal/views"
)

// A request naming a channel this Herald has no provider for is refused
// (422, code no_provider, the channel named), not accepted to fail later;
// in a batch it is one rejected item. Without Channels nothing is checked.
func TestIngestRefusesChannelWithoutProvider(t *testing.T) {
	prod := &memProducer{}
	api := &views.Server{Config: views.Config{Channels: []contract.Channel{contract.ChannelEmail}},
		Table: &memTable{states: map[string]*contract.State{}}, Producer: prod, Log: testLogger(t)}
	h := api.Handler()
	post := func(body []byte) (int, views.IngestResponse) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "http://herald.test/v1/messages", bytes.NewReader(body)))
		var resp views.IngestResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		return rec.Code, resp
	}
	sms := func(m map[string]any) { m["channels"] = []string{"email", "sms"} }
	code, resp := post(request("np-sms", sms))
	if code != http.StatusUnprocessableEntity || resp.Code != views.CodeNoProvider || resp.Channel != contract.ChannelSMS ||
		len(resp.Items) != 1 || !hasField(resp.Items[0].Errors, "channels") {
		t.Fatalf("sms without a provider: %d %+v", code, resp)
	}
	emailOnly := func(m map[string]any) { m["channels"] = []string{"email"} }
	if code, resp := post(request("np-email", emailOnly)); code != http.StatusAccepted {
		t.Fatalf("email: %d %+v", code, resp)
	}
	code, resp = post(append(append(request("np-b1", emailOnly), '\n'), request("np-b2", func(m map[string]any) { m["channels"] = []string{"push"} })...))
	if code != http.StatusOK || resp.Accepted != 1 || resp.Rejected != 1 || resp.Items[1].Result != ingest.ResultRejected {
		t.Fatalf("batch: %d %+v", code, resp)
	}
	if n := len(prod.records()); n != 2 {
		t.Errorf("%d records published, want np-email and np-b1", n)
	}

	api = &views.Server{Table: &memTable{states: map[string]*contract.State{}}, Producer: &memProducer{}, Log: testLogger(t)}
	h = api.Handler()
	if code, resp := post(request("np-unchecked", sms)); code != http.StatusAccepted {
		t.Errorf("without Channels: %d %+v", code, resp)
	}
}

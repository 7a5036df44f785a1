package views_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/ingest"
	"github.com/herald-dispatch/herald/internal/views"
)

// TestAPIOneFace covers what a new user met in the API (issue 17): items
// lost with one bad array element, unknown fields accepted silently, a
// duplicate with another payload, a lower-case bearer scheme, sizes.
func TestAPIOneFace(t *testing.T) {
	const token = "s3cret"
	s := startStack(t, stackOptions{token: token})

	t.Run("a malformed array element loses nothing else", func(t *testing.T) {
		body := "[" + string(request("arr-1", later(time.Hour))) + `, {"id": "arr-bad",}, ` + string(request("arr-2", later(time.Hour))) + "]"
		var r views.IngestResponse
		code, b := s.call("POST", "/v1/messages", token, "application/json", []byte(body), &r)
		if code != http.StatusOK || r.Accepted != 2 || r.Rejected != 1 || r.Items[1].Result != ingest.ResultRejected ||
			r.Items[0].ID != "arr-1" || r.Items[2].ID != "arr-2" {
			t.Fatalf("%d %s", code, b)
		}
		s.state("arr-2", statusIs(contract.StatusScheduled))
	})

	t.Run("unknown fields are warnings, strict refuses them", func(t *testing.T) {
		typo := request("typo-1", func(m map[string]any) { m["sendAt"] = "2030-01-01T00:00:00Z" })
		var r views.IngestResponse
		code, b := s.call("POST", "/v1/messages?strict=1", token, "", typo, &r)
		if code != http.StatusUnprocessableEntity || r.Code != views.CodeInvalid || r.Rejected != 1 ||
			len(r.Items[0].Errors) != 1 || r.Items[0].Errors[0].Field != "sendAt" {
			t.Errorf("strict: %d %s", code, b)
		}
		code, b = s.call("POST", "/v1/messages", token, "", typo, &r)
		if code != http.StatusAccepted || r.Accepted != 1 || len(r.Items[0].Warnings) != 1 ||
			!strings.Contains(r.Items[0].Warnings[0], "sendAt") {
			t.Errorf("lenient: %d %s", code, b)
		}
		if code, b := s.call("POST", "/v1/messages?strict=maybe", token, "", typo, nil); code != http.StatusBadRequest {
			t.Errorf("strict=maybe: %d %s", code, b)
		}
	})

	t.Run("a duplicate says whether its payload differs", func(t *testing.T) {
		s.call("POST", "/v1/messages", token, "", request("dup-1", later(time.Hour)), nil)
		st := s.state("dup-1", statusIs(contract.StatusScheduled))
		same := request("dup-1", func(m map[string]any) { m["not_before"] = st.Request.NotBefore.Format(time.RFC3339Nano) })
		other := request("dup-1", func(m map[string]any) {
			m["not_before"] = st.Request.NotBefore.Format(time.RFC3339Nano)
			m["content"] = map[string]any{"template": "other"}
		})
		body := string(same) + "\n" + string(other) + "\n" + string(request("dup-2", later(time.Hour))) + "\n" +
			string(request("dup-2", later(2*time.Hour))) + "\n"
		var r views.IngestResponse
		code, b := s.call("POST", "/v1/messages", token, "application/x-ndjson", []byte(body), &r)
		if code != http.StatusOK || r.Duplicates != 3 || r.Items[0].PayloadDiffers || !r.Items[1].PayloadDiffers ||
			r.Items[2].Result != ingest.ResultAccepted || !r.Items[3].PayloadDiffers || r.Items[0].Status != contract.StatusScheduled {
			t.Errorf("%d %s", code, b)
		}
	})

	t.Run("bearer scheme in any case", func(t *testing.T) {
		for _, scheme := range []string{"bearer", "BEARER", "Bearer"} {
			req, _ := http.NewRequest("GET", s.srv.URL+"/v1/messages/dup-1", nil)
			req.Header.Set("Authorization", scheme+" "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: %d", scheme, resp.StatusCode)
			}
		}
		var e views.ErrorBody
		if code, _ := s.call("GET", "/v1/messages/dup-1", "wrong", "", nil, &e); code != http.StatusUnauthorized || e.Code != views.CodeUnauthorized {
			t.Errorf("wrong token: %d %+v", code, e)
		}
	})

	t.Run("a request over contract.MaxRequestBytes is 413, in a batch rejected alone", func(t *testing.T) {
		big := request("big-1", func(m map[string]any) {
			m["content"] = map[string]any{"text": strings.Repeat("x", contract.MaxRequestBytes)}
		})
		var r views.IngestResponse
		code, b := s.call("POST", "/v1/messages", token, "", big, &r)
		if code != http.StatusRequestEntityTooLarge || r.Code != views.CodeTooLarge || r.Items[0].ID != "big-1" {
			t.Errorf("single: %d %.300s", code, b)
		}
		body := string(big) + "\n" + string(request("big-2", later(time.Hour))) + "\n"
		code, b = s.call("POST", "/v1/messages", token, "application/x-ndjson", []byte(body), &r)
		if code != http.StatusOK || r.Rejected != 1 || r.Accepted != 1 {
			t.Errorf("batch: %d %.300s", code, b)
		}
	})
}

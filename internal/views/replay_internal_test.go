package views

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A second replay while one runs is refused with 503, before it reads or
// publishes anything (so it cannot replay what the first is replaying).
func TestReplayWhileAnotherRuns(t *testing.T) {
	d := &DLQReplayer{}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &Server{Replayer: d}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/v1/dlq/replay?key=k", strings.NewReader("")))
	var r ReplayResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusServiceUnavailable || r.Code != CodeUnavailable || !strings.Contains(r.Error, "another replay is running") ||
		rec.Header().Get("Retry-After") == "" {
		t.Fatalf("%d %+v", rec.Code, r)
	}
}

package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestHandlerServesSelfContainedFiles: the console's files are served
// under Path with a CSP that allows only the console's origin, and none of
// them refers to another origin (the browser test checks the same at run
// time, where Chromium is installed).
func TestHandlerServesSelfContainedFiles(t *testing.T) {
	h := Handler()
	external := regexp.MustCompile(`(?:src|href|url)\s*[=(]\s*["']?(?:https?:)?//`)
	for _, name := range []string{"", "app.js", "app.css"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", Path+name, nil))
		body, _ := io.ReadAll(rec.Result().Body)
		if rec.Code != http.StatusOK || len(body) == 0 {
			t.Fatalf("%s: %d", Path+name, rec.Code)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "http") {
			t.Errorf("%s: CSP %q", name, csp)
		}
		if m := external.Find(body); m != nil {
			t.Errorf("%s refers to another origin: %s", name, m)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", Path+"nope.js", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("a missing file: %d", rec.Code)
	}
}

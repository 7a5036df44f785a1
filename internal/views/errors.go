package views

import (
	"net/http"
	"strings"
)

// Error codes: the stable "code" of every error answer. The message
// ("error") is for people and may change; the code may not.
const (
	CodeBadRequest       = "bad_request"        // a parameter or body that does not parse
	CodeInvalid          = "invalid_request"    // a dispatch request that fails validation
	CodeNoProvider       = "no_provider"        // a dispatch request names a channel this Herald has no provider for ("channel" names it)
	CodeUnauthorized     = "unauthorized"       // no or wrong bearer token
	CodeForbidden        = "forbidden"          // reveal without a configured token
	CodeNotFound         = "not_found"          // no such route
	CodeUnknownID        = "unknown_id"         // no such notification
	CodeUnknownCampaign  = "unknown_campaign"   // no such campaign
	CodeMethodNotAllowed = "method_not_allowed" // the route exists with other methods
	CodeTooLarge         = "payload_too_large"  // a body or a request over its limit
	CodeConflict         = "conflict"           // too late to cancel
	CodeUnavailable      = "unavailable"        // recovering, no database, or publishing failed: try again
	CodeInternal         = "internal"           // a bug or a broken dependency
)

// ErrorBody is the one shape of every error answer, inside /v1 and out:
// {"code": "...", "error": "...", ...details}. Details name what the
// error is about (an "id", a "campaign").
type ErrorBody struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

// msgUnknownID is the one wording of a 404 for an id.
const msgUnknownID = "unknown notification (one published a moment ago may not be in the view yet)"

// writeError writes the error shape: {"code", "error", ...extra}.
func writeError(w http.ResponseWriter, status int, code, msg string, extra map[string]any) {
	m := map[string]any{"code": code, "error": msg}
	for k, v := range extra {
		m[k] = v
	}
	writeJSON(w, status, m)
}

// NotFound answers every request with the error shape's 404. Mount it at
// "/" beside the API so that nothing on the server answers text/plain.
func NotFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such route: "+r.Method+" "+r.URL.Path, nil)
	})
}

var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// fallback answers what mux has no route for: 405 with Allow when the path
// exists with other methods, 404 otherwise, both in the error shape.
// catchAll is the pattern this handler is registered under.
func fallback(mux *http.ServeMux, catchAll string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range methods {
			if m == r.Method {
				continue
			}
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, p := mux.Handler(probe); p != "" && p != catchAll {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
				r.Method+" is not allowed on "+r.URL.Path+" (allowed: "+strings.Join(allow, ", ")+")", nil)
			return
		}
		writeError(w, http.StatusNotFound, CodeNotFound, "no such route: "+r.Method+" "+r.URL.Path, nil)
	}
}

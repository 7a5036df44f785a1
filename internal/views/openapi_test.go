package views_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/views"
)

// TestOpenAPIConformance checks the OpenAPI document against the server:
// it is a valid OpenAPI 3 document, it lists exactly the routes the server
// serves, every answer of the cases below (each route, each error) is one
// the document describes, status and body, and every response the
// document describes is met by some case.
func TestOpenAPIConformance(t *testing.T) {
	ctx := context.Background()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(views.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("not a valid OpenAPI 3 document: %v", err)
	}
	// Generated clients name their methods by operationId; linters want
	// a license.
	if doc.Info.License == nil || doc.Info.License.Name == "" {
		t.Error("info.license is missing")
	}
	opIDs := map[string]string{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", method, path)
			} else if other, dup := opIDs[op.OperationID]; dup {
				t.Errorf("operationId %s on %s %s and %s", op.OperationID, method, path, other)
			}
			opIDs[op.OperationID] = method + " " + path
		}
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}

	f := startFixture(t)
	f.withDLQ(t)
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	served := f.api.Routes()
	sort.Strings(documented)
	sort.Strings(served)
	if !slices.Equal(documented, served) {
		t.Errorf("routes served:\n  %s\ndocumented:\n  %s", strings.Join(served, "\n  "), strings.Join(documented, "\n  "))
	}

	// Servers in the states the errors need.
	full := f.api.Handler()
	noStore := *f.api
	noStore.Store, noStore.DLQ, noStore.Replayer, noStore.Scanner = nil, nil, nil, nil
	broken := *f.api
	broken.Store = failingStore{}
	broken.Table = &memTable{err: fmt.Errorf("leveldb: closed")}
	broken.Scanner = &memTable{err: fmt.Errorf("leveldb: closed")}
	failing := *f.api
	failing.Producer = &memProducer{err: kerr.RequestTimedOut}
	tooBig := *f.api
	tooBig.Producer = &memProducer{err: kerr.MessageTooLarge}
	tiny := *f.api
	tiny.MaxBody = 64
	noToken := *f.api
	noToken.Token = ""
	recovering := *f.api
	recovering.Table = &memTable{recovering: true}
	h := map[string]http.Handler{"recovering": recovering.Handler(), "": full, "nostore": noStore.Handler(), "broken": broken.Handler(), "failing": failing.Handler(),
		"toobig": tooBig.Handler(), "tiny": tiny.Handler(), "notoken": noToken.Handler()}

	good := string(request("new-1", nil))
	big := string(request("big", func(m map[string]any) {
		m["content"] = map[string]any{"t": strings.Repeat("x", contract.MaxRequestBytes)}
	}))
	cases := []struct {
		server, method, target, body string
		noAuth                       bool
		want                         int
	}{
		{"", "GET", "/v1/openapi.json", "", false, 200},
		{"", "GET", "/v1/openapi.json", "", true, 401},
		{"", "GET", "/v1/messages?campaign=billing-2026-01&status=failed,sent&limit=2", "", false, 200},
		{"", "GET", "/v1/messages?channel=email&since=2020-01-01T00:00:00Z&until=2100-01-01T00:00:00Z&hold_reason=blackout", "", false, 200},
		{"", "GET", "/v1/messages?status=lost", "", false, 400},
		{"", "GET", "/v1/messages", "", true, 401},
		{"broken", "GET", "/v1/messages", "", false, 500},
		{"nostore", "GET", "/v1/messages", "", false, 503},
		{"", "GET", "/v1/messages/billing-e", "", false, 200},
		{"", "GET", "/v1/messages/billing-e?reveal=1", "", false, 200},
		{"", "GET", "/v1/messages/billing-e?reveal=x", "", false, 400},
		{"", "GET", "/v1/messages/billing-e", "", true, 401},
		{"notoken", "GET", "/v1/messages/billing-e?reveal=1", "", false, 403},
		{"", "GET", "/v1/messages/nope", "", false, 404},
		{"broken", "GET", "/v1/messages/billing-e", "", false, 500},
		{"recovering", "GET", "/v1/messages/billing-e", "", false, 503},
		{"recovering", "POST", "/v1/messages/lookup", `{"ids":["billing-a"]}`, false, 503},
		{"", "POST", "/v1/messages/lookup", `{"ids":["billing-a","nope"]}`, false, 200},
		{"", "POST", "/v1/messages/lookup", `{"ids":[]}`, false, 400},
		{"", "POST", "/v1/messages/lookup", `{}`, true, 401},
		{"notoken", "POST", "/v1/messages/lookup?reveal=1", `{"ids":["billing-a"]}`, false, 403},
		{"tiny", "POST", "/v1/messages/lookup", `{"ids":["` + strings.Repeat("a", 100) + `"]}`, false, 413},
		{"broken", "POST", "/v1/messages/lookup", `{"ids":["billing-a"]}`, false, 500},
		{"", "POST", "/v1/messages", good + "\n" + string(request("billing-a", nil)) + "\n{", false, 200},
		{"", "POST", "/v1/messages?strict=0", string(request("new-2", nil)), false, 202},
		{"", "POST", "/v1/messages", "hello", false, 400},
		{"", "POST", "/v1/messages", good, true, 401},
		{"", "POST", "/v1/messages", big, false, 413},
		{"tiny", "POST", "/v1/messages", good, false, 413},
		{"toobig", "POST", "/v1/messages", string(request("new-3", nil)), false, 413},
		{"", "POST", "/v1/messages", `{"id":"x"}`, false, 422},
		{"broken", "POST", "/v1/messages", good, false, 500},
		{"failing", "POST", "/v1/messages", string(request("new-4", nil)), false, 503},
		{"", "POST", "/v1/messages/billing-h/cancel", `{"reason":"closed"}`, false, 202},
		{"", "POST", "/v1/messages/welcome-b/cancel", "", false, 200},
		{"", "POST", "/v1/messages/billing-a/cancel", "", false, 409},
		{"", "POST", "/v1/messages/billing-h/cancel?wait=31s", "", false, 400},
		{"", "POST", "/v1/messages/billing-h/cancel", "", true, 401},
		{"", "POST", "/v1/messages/nope/cancel", "", false, 404},
		{"tiny", "POST", "/v1/messages/billing-h/cancel", `{"reason":"` + strings.Repeat("a", 100) + `"}`, false, 413},
		{"broken", "POST", "/v1/messages/billing-h/cancel", "", false, 500},
		{"failing", "POST", "/v1/messages/billing-h/cancel", "", false, 503},
		{"", "GET", "/v1/campaigns", "", false, 200},
		{"", "GET", "/v1/campaigns?limit=0", "", false, 400},
		{"", "GET", "/v1/campaigns", "", true, 401},
		{"broken", "GET", "/v1/campaigns", "", false, 500},
		{"nostore", "GET", "/v1/campaigns", "", false, 503},
		{"", "GET", "/v1/campaigns/billing-2026-01", "", false, 200},
		{"", "GET", "/v1/campaigns/billing-2026-01?reveal=2", "", false, 400},
		{"", "GET", "/v1/campaigns/billing-2026-01", "", true, 401},
		{"notoken", "GET", "/v1/campaigns/billing-2026-01?reveal=1", "", false, 403},
		{"", "GET", "/v1/campaigns/nope", "", false, 404},
		{"broken", "GET", "/v1/campaigns/billing-2026-01", "", false, 500},
		{"nostore", "GET", "/v1/campaigns/billing-2026-01", "", false, 503},
		{"", "POST", "/v1/campaigns/billing-2026-01/cancel", `{"reason":"stop"}`, false, 202},
		{"", "POST", "/v1/campaigns/billing-2026-01/cancel", `{`, false, 400},
		{"", "POST", "/v1/campaigns/billing-2026-01/cancel", "", true, 401},
		{"", "POST", "/v1/campaigns/nope/cancel", "", false, 404},
		{"tiny", "POST", "/v1/campaigns/billing-2026-01/cancel", `{"reason":"` + strings.Repeat("a", 100) + `"}`, false, 413},
		{"broken", "POST", "/v1/campaigns/billing-2026-01/cancel", "", false, 500},
		{"failing", "POST", "/v1/campaigns/billing-2026-01/cancel", "", false, 503},
		{"", "POST", "/v1/campaigns/billing-2026-01/retry?status=failed", "", false, 202},
		{"", "POST", "/v1/campaigns/billing-2026-01/retry?status=sent", "", false, 400},
		{"", "POST", "/v1/campaigns/billing-2026-01/retry?status=failed", "", true, 401},
		{"", "POST", "/v1/campaigns/nope/retry?status=failed", "", false, 404},
		{"tiny", "POST", "/v1/campaigns/billing-2026-01/retry?status=failed", `{"reason":"` + strings.Repeat("a", 100) + `"}`, false, 413},
		{"broken", "POST", "/v1/campaigns/billing-2026-01/retry?status=failed", "", false, 500},
		{"failing", "POST", "/v1/campaigns/billing-2026-01/retry?status=failed", "", false, 503},
		{"", "GET", "/v1/held", "", false, 200},
		{"", "GET", "/v1/held", "", true, 401},
		{"", "GET", "/v1/held?campain=x", "", false, 400},
		{"broken", "GET", "/v1/held", "", false, 500},
		{"nostore", "GET", "/v1/held", "", false, 503},
		{"", "GET", "/v1/stuck?limit=5", "", false, 200},
		{"", "GET", "/v1/stuck?limit=0", "", false, 400},
		{"", "GET", "/v1/stuck", "", true, 401},
		{"broken", "GET", "/v1/stuck", "", false, 500},
		{"nostore", "GET", "/v1/stuck", "", false, 503},
		{"", "POST", "/v1/messages/billing-e/retry", `{"reason":"fixed the number"}`, false, 202},
		{"", "POST", "/v1/messages/billing-a/retry", "", false, 409},
		{"", "POST", "/v1/messages/billing-e/retry", `{`, false, 400},
		{"", "POST", "/v1/messages/billing-e/retry", "", true, 401},
		{"", "POST", "/v1/messages/nope/retry", "", false, 404},
		{"tiny", "POST", "/v1/messages/billing-e/retry", `{"reason":"` + strings.Repeat("a", 100) + `"}`, false, 413},
		{"broken", "POST", "/v1/messages/billing-e/retry", "", false, 500},
		{"failing", "POST", "/v1/messages/billing-e/retry", "", false, 503},
		{"", "GET", "/v1/dlq?limit=5", "", false, 200},
		{"", "GET", "/v1/dlq?limit=x", "", false, 400},
		{"", "GET", "/v1/dlq", "", true, 401},
		{"nostore", "GET", "/v1/dlq", "", false, 503},
		{"", "POST", "/v1/dlq/replay?dry_run=1&topic=herald.requests&since=24h&until=2100-01-01T00:00:00Z", "", false, 200},
		{"", "POST", "/v1/dlq/replay?reason=malformed&again=0", string(request("oops", nil)) + "\n", false, 202},
		{"", "POST", "/v1/dlq/replay?at=0@2&at=0@3", "", false, 202},
		{"", "POST", "/v1/dlq/replay?since=yesterday", "", false, 400},
		{"", "POST", "/v1/dlq/replay?dryrun=1", "", false, 400},
		{"", "POST", "/v1/dlq/replay?dry_run=1", "", true, 401},
		{"tiny", "POST", "/v1/dlq/replay?dry_run=1", string(request("oops", nil)), false, 413},
		{"nostore", "POST", "/v1/dlq/replay?dry_run=1", "", false, 503},
	}
	met := map[string]bool{}
	for _, c := range cases {
		name := fmt.Sprintf("%s %s %s", c.server, c.method, c.target)
		req := httptest.NewRequest(c.method, "http://herald.test"+c.target, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		if !c.noAuth {
			req.Header.Set("Authorization", "Bearer "+fixtureToken)
		}
		rec := httptest.NewRecorder()
		h[c.server].ServeHTTP(rec, req)
		res := rec.Result()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != c.want {
			t.Errorf("%s: %d, want %d: %.300s", name, res.StatusCode, c.want, body)
			continue
		}
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Errorf("%s: not in the document: %v", name, err)
			continue
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, ExcludeRequestBody: true}}
		err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
			Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{IncludeResponseStatus: true}})
		if err != nil {
			t.Errorf("%s: answer %d not as documented: %v\n%.500s", name, res.StatusCode, err, body)
		}
		met[fmt.Sprintf("%s %s %d", c.method, route.Path, res.StatusCode)] = true
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code := range op.Responses.Map() {
				if k := method + " " + path + " " + code; !met[k] {
					t.Errorf("documented but no case answers it: %s", k)
				}
			}
		}
	}
}

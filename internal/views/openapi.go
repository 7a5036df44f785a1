package views

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3 document of the /v1 routes. TestOpenAPIConformance
// checks that it lists exactly the routes Handler serves, and every answer
// of theirs, errors included, against it.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI document.
func OpenAPI() []byte { return openAPI }

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(openAPI)
}

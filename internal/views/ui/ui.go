// Package ui owns Herald's web console: static files (HTML, CSS and
// JavaScript, embedded in the binary, no build step, nothing loaded from
// another origin) that `herald run` serves under /ui/. The pages read the
// /v1 API with the API's bearer token, which the user types in once per
// browser tab (kept in sessionStorage); they never ask for ?reveal, so
// addresses stay masked. The console finds a notification by id and shows
// campaigns with live progress and a throughput sparkline, a campaign's or
// the held notifications a page at a time with a status filter, a
// message's attempt history and hold reason, the held notifications by
// reason, the stuck ones (what the dispatcher's sweep would rescue) and
// the DLQ by reason; it can cancel or retry one notification, cancel a
// campaign, retry its failures, and replay dead letters (a dry run first,
// then a confirm that replays what the dry run showed).
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

// Path is where the console is mounted.
const Path = "/ui/"

//go:embed static
var files embed.FS

// Handler serves the console under Path. Its Content-Security-Policy
// allows nothing from another origin, so the console works without a
// network and cannot leak to one.
func Handler() http.Handler {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	fsrv := http.StripPrefix(Path, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		fsrv.ServeHTTP(w, r)
	})
}

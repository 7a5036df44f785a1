// Package views owns Herald's HTTP API and its console: reads of the
// dispatcher's live state through the process's view of its group table
// (package tableview), ingestion of dispatch requests (package ingest,
// refusing a channel with no provider when it knows the providers),
// cancellation (one notification or a campaign's), an operator's retry
// (one failed notification or a campaign's failures), the stuck
// notifications as the dispatcher's sweep defines them (tableview.Overdue
// over the view), lists and campaign progress read from the sink's
// Postgres tables (campaign reports through package report), the dead
// letters of herald.dlq and their replay (through package dlq's Replayer),
// the OpenAPI document (/v1/openapi.json) and the web console under /ui
// (package internal/views/ui). It never changes a notification's state itself:
// every change is an event on a co-partitioned topic that the dispatcher
// applies (a request on herald.requests, a replayed one too, a Cancel on
// herald.control), so the dispatcher stays the only writer of its table.
// docs/api.md is the prose form of this package.
//
// Security: every /v1 route needs "Authorization: Bearer <token>" when a
// token is configured (compared in constant time). Recipients' addresses
// are masked in answers and never logged; ?reveal=1 shows them, and only
// to a token holder (without a token nobody can reveal). Bodies are
// size-limited, and each dispatch request in them to
// contract.MaxRequestBytes; the server's timeouts are the caller's
// (cmd/herald).
//
// One face: every answer is JSON, every error has the shape of ErrorBody
// with a stable code (errors.go), a query parameter a route does not take
// is refused (params), and every route and error answer is in
// openapi.json, which TestOpenAPIConformance checks against the server.
package views

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/ingest"
	"github.com/herald-dispatch/herald/internal/tableview"
	"github.com/herald-dispatch/herald/internal/topology"
)

// Defaults of Config.
const (
	DefaultMaxBody       = 16 << 20
	DefaultMaxLookup     = 1000
	DefaultMaxCancelWait = 30 * time.Second
)

// Config tunes the API.
type Config struct {
	// Token, when set, is required as a bearer token on every /v1 route,
	// and allows ?reveal=1 (default none: no authentication).
	Token string
	// MaxBody bounds a request body in bytes (default DefaultMaxBody).
	MaxBody int64
	// MaxLookup bounds the ids of one lookup (default DefaultMaxLookup).
	MaxLookup int
	// MaxCancelWait bounds a cancel's ?wait= (default
	// DefaultMaxCancelWait).
	MaxCancelWait time.Duration
	// StuckGrace is how overdue a held notification's wake-up must be to
	// count as stuck (GET /v1/stuck): the dispatcher's --sweep-grace
	// (default tableview.DefaultGrace).
	StuckGrace time.Duration
	// Channels, when not nil, are the channels with a provider: a request
	// naming another is refused (422, code no_provider). nil: not checked
	// (the API does not know the sender's providers).
	Channels []contract.Channel
}

// Observer is told what the API does, for metrics.
type Observer interface {
	// Request is called once per /v1 request with its route pattern ("" when
	// no route was reached) and status code.
	Request(route string, code int, elapsed time.Duration)
	// Items counts ingested items by result.
	Items(result string, n int)
	// Cancel counts cancel requests by outcome: requested, canceled,
	// conflict, unknown.
	Cancel(outcome string)
}

// Cancel outcomes, as counted by Observer.Cancel.
const (
	CancelRequested = "requested" // published; the dispatcher will cancel unless the state moves on first
	CancelDone      = "canceled"  // the view shows it canceled (with ?wait)
	CancelConflict  = "conflict"  // final: too late
	CancelUnknown   = "unknown"   // no such id
)

// Server is the HTTP API. Mount Handler under /v1/.
type Server struct {
	Config
	Table    Table
	Producer ingest.Producer
	Store    Store // nil: lists and campaigns answer 503
	DLQ      DLQ   // nil: /v1/dlq answers 503
	// Scanner reads the dispatcher table for GET /v1/stuck; nil: 503.
	Scanner RawScanner
	// Replayer replays dead letters; nil: /v1/dlq/replay answers 503.
	Replayer *DLQReplayer
	// Observer is told what the API does (default: nothing).
	Observer Observer
	// Log is the logger (default slog.Default()).
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// withDefaults fills s's zero fields when its handler is built (Handler):
// the handlers use them as they are. It writes only zero fields, so a
// second Handler changes nothing.
func (s *Server) withDefaults() {
	if s.MaxBody <= 0 {
		s.MaxBody = DefaultMaxBody
	}
	if s.MaxLookup <= 0 {
		s.MaxLookup = DefaultMaxLookup
	}
	if s.MaxCancelWait <= 0 {
		s.MaxCancelWait = DefaultMaxCancelWait
	}
	if s.Observer == nil {
		s.Observer = nopObserver{}
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.StuckGrace <= 0 {
		s.StuckGrace = tableview.DefaultGrace
	}
}

type nopObserver struct{}

func (nopObserver) Request(string, int, time.Duration) {}
func (nopObserver) Items(string, int)                  {}
func (nopObserver) Cancel(string)                      {}

type route struct {
	pattern string
	handler http.HandlerFunc
}

func (s *Server) routes() []route {
	return []route{
		{"GET /v1/openapi.json", serveOpenAPI},
		{"GET /v1/messages", params(s.needStore(s.listMessages), "campaign", "cursor", "limit", "since", "until", "status", "channel", "hold_reason")},
		{"GET /v1/messages/{id}", params(s.needView(s.getMessage), "reveal")},
		{"POST /v1/messages/lookup", s.needView(s.lookup)},
		{"POST /v1/messages", s.needView(s.ingest)},
		{"POST /v1/messages/{id}/cancel", s.needView(s.cancel)},
		{"GET /v1/campaigns", params(s.needStore(s.listCampaigns), "limit")},
		{"GET /v1/campaigns/{campaign}", params(s.needStore(s.campaign), "reveal")},
		{"POST /v1/campaigns/{campaign}/cancel", s.needStore(s.cancelCampaign)},
		{"POST /v1/campaigns/{campaign}/retry", s.needStore(s.retryCampaign)},
		{"GET /v1/held", params(s.needStore(s.held))},
		{"GET /v1/stuck", params(s.needView(s.stuck), "limit")},
		{"POST /v1/messages/{id}/retry", s.needView(s.retry)},
		{"GET /v1/dlq", params(s.dlq, "limit")},
		{"POST /v1/dlq/replay", s.replayDLQ},
	}
}

// params refuses, with 400 naming it, a query parameter the endpoint does
// not take: a mistyped filter (?campain=x) would otherwise answer 200 with
// everything, as if it had been applied.
func params(h http.HandlerFunc, names ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for name := range r.URL.Query() {
			if !slices.Contains(names, name) {
				want := "no parameters"
				if len(names) > 0 {
					want = "want " + strings.Join(names, ", ")
				}
				writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("unknown parameter %q (%s)", name, want),
					map[string]any{"parameter": name})
				return
			}
		}
		h(w, r)
	}
}

// Routes lists the patterns Handler serves ("GET /v1/messages/{id}").
func (s *Server) Routes() []string {
	var out []string
	for _, r := range s.routes() {
		out = append(out, r.pattern)
	}
	return out
}

// Handler applies s's defaults and returns the /v1 routes, with
// authentication and metrics. A path it has no route for answers 404, or
// 405 with Allow when the path has routes with other methods, in the error
// shape.
func (s *Server) Handler() http.Handler {
	s.withDefaults()
	mux := http.NewServeMux()
	for _, r := range s.routes() {
		mux.HandleFunc(r.pattern, r.handler)
	}
	mux.HandleFunc("/v1/", fallback(mux, "/v1/"))
	mux.HandleFunc("/v1", fallback(mux, "/v1"))
	return s.observe(s.Authenticate(mux))
}

// Authenticate checks the bearer token, when one is configured. The
// scheme is matched case-insensitively (RFC 9110: "bearer" is "Bearer").
// The console's pages are wrapped in it too, minus its static files.
func (s *Server) Authenticate(next http.Handler) http.Handler {
	if s.Token == "" {
		return next
	}
	want := sha256.Sum256([]byte(s.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		ok = ok && strings.EqualFold(scheme, "Bearer")
		// Hashing first makes the comparison constant-time in the token's
		// length too.
		g := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !ok || subtle.ConstantTimeCompare(g[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
			writeError(w, http.StatusUnauthorized, CodeUnauthorized, "missing or wrong bearer token", nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		// A shallow copy, so that the pattern read below is the one our
		// mux matched, not that of a mux this handler is mounted on.
		r = r.WithContext(r.Context())
		r.Pattern = ""
		next.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		route := r.Pattern // set in place by the ServeMux
		s.Observer.Request(route, sw.code, time.Since(start))
		s.Log.Debug("api request", "method", r.Method, "route", route, "code", sw.code,
			"elapsed", time.Since(start).Round(time.Microsecond), "remote", r.RemoteAddr)
	})
}

// needView answers 503 until the view has recovered: before that a missing
// id is not proof of an unknown one.
func (s *Server) needView(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.Table.Recovered() {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "the view of the dispatcher table is still recovering", nil)
			return
		}
		h(w, r)
	}
}

// needStore answers 503 without the sink's database.
func (s *Server) needStore(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.Store == nil {
			writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "lists and campaigns need the Postgres sink's database (--database-url)", nil)
			return
		}
		h(w, r)
	}
}

// reveal reads ?reveal=1. It answers 403 itself, and returns ok=false,
// when revealing is not allowed.
func (s *Server) reveal(w http.ResponseWriter, r *http.Request) (reveal, ok bool) {
	v := r.URL.Query().Get("reveal")
	if v == "" {
		return false, true
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "reveal: want 1 or 0", nil)
		return false, false
	}
	if b && s.Token == "" {
		writeError(w, http.StatusForbidden, CodeForbidden, "reveal needs an API token: set HERALD_API_TOKEN and send it as a bearer token", nil)
		return false, false
	}
	return b, true
}

func (s *Server) getMessage(w http.ResponseWriter, r *http.Request) {
	reveal, ok := s.reveal(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	st, err := s.Table.Get(id)
	if err != nil {
		s.internal(w, "get", err)
		return
	}
	if st == nil {
		writeError(w, http.StatusNotFound, CodeUnknownID, msgUnknownID, map[string]any{"id": id})
		return
	}
	if reveal {
		s.Log.Info("api: addresses revealed", "id", id, "remote", r.RemoteAddr)
	}
	writeJSON(w, http.StatusOK, NewMessage(st, reveal))
}

// LookupRequest is the body of POST /v1/messages/lookup.
type LookupRequest struct {
	IDs []string `json:"ids"`
}

// LookupResponse answers a lookup: the known messages in the order asked,
// and the ids that are unknown.
type LookupResponse struct {
	Messages []Message `json:"messages"`
	Unknown  []string  `json:"unknown"`
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) {
	reveal, ok := s.reveal(w, r)
	if !ok {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req LookupRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "want {\"ids\": [...]}: "+err.Error(), nil)
		return
	}
	max := s.MaxLookup
	if len(req.IDs) == 0 || len(req.IDs) > max {
		writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("want 1 to %d ids, got %d", max, len(req.IDs)), nil)
		return
	}
	resp := LookupResponse{Messages: []Message{}, Unknown: []string{}}
	seen := make(map[string]bool, len(req.IDs))
	for _, id := range req.IDs {
		if seen[id] {
			continue
		}
		seen[id] = true
		st, err := s.Table.Get(id)
		if err != nil {
			s.internal(w, "lookup", err)
			return
		}
		if st == nil {
			resp.Unknown = append(resp.Unknown, id)
			continue
		}
		resp.Messages = append(resp.Messages, NewMessage(st, reveal))
	}
	if reveal && len(resp.Messages) > 0 {
		ids := make([]string, len(resp.Messages))
		for i, m := range resp.Messages {
			ids[i] = m.ID
		}
		s.Log.Info("api: addresses revealed", "ids", ids, "remote", r.RemoteAddr)
	}
	writeJSON(w, http.StatusOK, resp)
}

// IngestResponse answers POST /v1/messages: counts, and one result per item
// in the order sent. Code and Error are set when the answer is an error (a
// single request rejected, or publishing failed), so that it has the error
// shape too.
type IngestResponse struct {
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
	// Channel names the channel with no provider (code no_provider).
	Channel    contract.Channel    `json:"channel,omitempty"`
	Accepted   int                 `json:"accepted"`
	Duplicates int                 `json:"duplicates"`
	Rejected   int                 `json:"rejected"`
	Failed     int                 `json:"failed"`
	Items      []ingest.ItemResult `json:"items"`
}

// NewIngestResponse counts results.
func NewIngestResponse(rs []ingest.ItemResult) IngestResponse {
	t := ingest.Tally(rs)
	return IngestResponse{Accepted: t[ingest.ResultAccepted], Duplicates: t[ingest.ResultDuplicate],
		Rejected: t[ingest.ResultRejected], Failed: t[ingest.ResultFailed], Items: rs}
}

// boolParam reads a 1/0 query parameter; it answers 400 itself.
func boolParam(w http.ResponseWriter, r *http.Request, name string) (v, ok bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return false, true
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, name+": want 1 or 0", nil)
		return false, false
	}
	return b, true
}

func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	strict, ok := boolParam(w, r, "strict")
	if !ok {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	items, batch, err := ingest.SplitBody(body, r.Header.Get("Content-Type"))
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error(), nil)
		return
	}
	in := ingest.Ingester{Table: s.Table, Producer: s.Producer, Strict: strict, Channels: s.Channels}
	rs, err := in.Ingest(r.Context(), items)
	if err != nil {
		s.internal(w, "ingest", err)
		return
	}
	resp := NewIngestResponse(rs)
	for result, n := range ingest.Tally(rs) {
		s.Observer.Items(result, n)
	}
	level := slog.LevelDebug // one line per batch: herald send makes thousands
	if resp.Rejected+resp.Failed > 0 {
		level = slog.LevelInfo
	}
	s.Log.Log(r.Context(), level, "api: requests ingested", "items", len(rs), "accepted", resp.Accepted,
		"duplicates", resp.Duplicates, "rejected", resp.Rejected, "failed", resp.Failed, "remote", r.RemoteAddr)
	code := http.StatusOK
	switch {
	case resp.Failed > 0:
		// Sending the same body again is safe: what was published is a
		// duplicate then.
		code = http.StatusServiceUnavailable
		resp.Code, resp.Error = CodeUnavailable, fmt.Sprintf("%d requests could not be published; sending the same body again is safe", resp.Failed)
		w.Header().Set("Retry-After", "1")
	case batch:
	case resp.Accepted == 1:
		code = http.StatusAccepted
	case resp.Rejected == 1:
		code = http.StatusUnprocessableEntity
		resp.Code, resp.Error = CodeInvalid, "the request is not valid: see items[0].errors"
		if rs[0].TooLarge {
			code, resp.Code, resp.Error = http.StatusRequestEntityTooLarge, CodeTooLarge, "the request is too large: see items[0].errors"
		}
		if ch := rs[0].NoProvider; ch != "" {
			resp.Code, resp.Channel = CodeNoProvider, ch
			resp.Error = fmt.Sprintf("no provider configured for channel %s: see items[0].errors", ch)
		}
	}
	writeJSON(w, code, resp)
}

// CancelRequest is the optional body of POST /v1/messages/{id}/cancel.
type CancelRequest struct {
	Reason string `json:"reason,omitempty"`
}

// CancelResponse answers a cancel. A 409 carries Code and Error, the error
// shape's fields.
type CancelResponse struct {
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
	ID    string `json:"id"`
	// Result is requested (published; the dispatcher cancels it unless the
	// state moves on first), canceled (seen in the view: with ?wait, or
	// because it already was), or conflict.
	Result string          `json:"result"`
	Status contract.Status `json:"status"`
	// Note explains what a cancel of a sending notification can and
	// cannot stop, or that the id is only remembered (NoteRemembered).
	Note string `json:"note,omitempty"`
}

// waitParam reads ?wait=, at most max; it answers 400 itself.
func waitParam(w http.ResponseWriter, r *http.Request, max time.Duration) (time.Duration, bool) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "wait: want a duration such as 5s", nil)
		return 0, false
	}
	if d > max {
		writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("wait: at most %v", max), nil)
		return 0, false
	}
	return d, true
}

// decodeReason reads an optional {"reason": "..."} body; it answers 400
// itself.
func (s *Server) decodeReason(w http.ResponseWriter, r *http.Request) (string, bool) {
	body, ok := s.readBody(w, r)
	if !ok {
		return "", false
	}
	var req CancelRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "want {\"reason\": \"...\"} or no body: "+err.Error(), nil)
			return "", false
		}
	}
	return req.Reason, true
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wait, ok := waitParam(w, r, s.MaxCancelWait)
	if !ok {
		return
	}
	reason, ok := s.decodeReason(w, r)
	if !ok {
		return
	}
	st, err := s.Table.Get(id)
	if err != nil {
		s.internal(w, "cancel", err)
		return
	}
	if st == nil {
		s.cancelOutcome(CancelUnknown)
		writeError(w, http.StatusNotFound, CodeUnknownID, msgUnknownID, map[string]any{"id": id})
		return
	}
	if st.Status == contract.StatusCanceled {
		// Idempotent: the answer a cancel that saw it happen gets.
		s.cancelOutcome(CancelDone)
		writeJSON(w, http.StatusOK, CancelResponse{ID: id, Result: CancelDone, Status: st.Status, Note: rememberedNote(st)})
		return
	}
	if st.Status.Final() {
		s.conflict(w, st)
		return
	}
	b, err := contract.EncodeCancel(&contract.Cancel{ID: id, Reason: reason, RequestedAt: s.Now().UTC()})
	if err != nil {
		s.internal(w, "cancel", err)
		return
	}
	rec := &kgo.Record{Topic: topology.TopicControl, Key: []byte(id), Value: b}
	if err := s.Producer.ProduceSync(r.Context(), rec).FirstErr(); err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "publish the cancel: "+err.Error(), map[string]any{"id": id})
		return
	}
	s.Log.Info("api: cancel requested", "id", id, "status", st.Status, "version", st.Version)
	if wait > 0 {
		if cur := s.awaitChange(r.Context(), id, st.Version, wait); cur != nil {
			if cur.Status == contract.StatusCanceled {
				s.cancelOutcome(CancelDone)
				writeJSON(w, http.StatusOK, CancelResponse{ID: id, Result: CancelDone, Status: cur.Status})
				return
			}
			if cur.Status.Final() {
				s.conflict(w, cur)
				return
			}
		}
	}
	s.cancelOutcome(CancelRequested)
	resp := CancelResponse{ID: id, Result: CancelRequested, Status: st.Status}
	if st.Status == contract.StatusSending {
		resp.Note = sendingCancelNote
	}
	writeJSON(w, http.StatusAccepted, resp)
}

// sendingCancelNote is what a cancel of a sending notification is told.
const sendingCancelNote = "the notification is sending: its command is stopped before the provider call if that call has not started; a call already started cannot be taken back, and if it delivers the notification ends sent"

// conflict answers 409 for a notification that can no longer be canceled.
func (s *Server) conflict(w http.ResponseWriter, st *contract.State) {
	s.cancelOutcome(CancelConflict)
	writeJSON(w, http.StatusConflict, CancelResponse{Code: CodeConflict, Error: "already final", ID: st.ID, Result: CancelConflict,
		Status: st.Status, Note: rememberedNote(st)})
}

// rememberedNote is the note of a cancel's answer for an id that is only
// remembered (NoteRemembered), or "".
func rememberedNote(st *contract.State) string {
	if st.Remembered {
		return NoteRemembered
	}
	return ""
}

// awaitChange polls the view until id's state is newer than version and
// no longer held (the dispatcher has answered the cancel, or moved on
// before it came), or until wait passes. It returns the last state seen
// that is newer than version, or nil.
func (s *Server) awaitChange(ctx context.Context, id string, version uint64, wait time.Duration) *contract.State {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var last *contract.State
	for {
		select {
		case <-ctx.Done():
			return last
		case <-t.C:
		}
		cur, err := s.Table.Get(id)
		if err != nil || cur == nil || cur.Version <= version {
			continue
		}
		last = cur
		if cur.Status.Final() {
			return cur
		}
	}
}

func (s *Server) cancelOutcome(o string) {
	s.Observer.Cancel(o)
}

// readBody reads a size-limited body, answering 413 itself when it is too
// large.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := s.MaxBody
	tooLarge := func() ([]byte, bool) {
		writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("body larger than %d bytes (--api-max-body)", limit), nil)
		return nil, false
	}
	if r.ContentLength > limit {
		return tooLarge()
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge()
		}
		writeError(w, http.StatusBadRequest, CodeBadRequest, "read body: "+err.Error(), nil)
		return nil, false
	}
	return b, true
}

func (s *Server) internal(w http.ResponseWriter, what string, err error) {
	s.Log.Error("api: "+what, "err", err)
	writeError(w, http.StatusInternalServerError, CodeInternal, what+": "+err.Error(), nil)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

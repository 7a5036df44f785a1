// Package views owns Herald's HTTP API: reads of the dispatcher's live
// state through a Goka view of its group table, ingestion of dispatch
// requests, cancellation, and campaign summaries read from the sink's
// Postgres tables. It never changes a notification's state itself: every
// change is an event on a co-partitioned topic that the dispatcher applies
// (a request on herald.requests, a Cancel on herald.control), so the
// dispatcher stays the only writer of its table. docs/api.md is the prose
// form of this package.
//
// Security: every /v1 route needs "Authorization: Bearer <token>" when a
// token is configured (compared in constant time). Recipients' addresses
// are masked in answers and never logged; ?reveal=1 shows them, and only
// to a token holder (without a token nobody can reveal). Bodies are
// size-limited; the server's timeouts are the caller's (cmd/herald).
package views

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/sink"
	"github.com/herald-dispatch/herald/topology"
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
	// and allows ?reveal=1.
	Token string
	// MaxBody bounds a request body in bytes (DefaultMaxBody).
	MaxBody int64
	// MaxLookup bounds the ids of one lookup (DefaultMaxLookup).
	MaxLookup int
	// MaxCancelWait bounds a cancel's ?wait= (DefaultMaxCancelWait).
	MaxCancelWait time.Duration
}

// Campaigns reads campaign summaries from the sink's tables. PGCampaigns
// is the real one.
type Campaigns interface {
	// CampaignSummary returns the summary, or an error wrapping
	// sink.ErrCampaignNotFound.
	CampaignSummary(ctx context.Context, campaign string) (*sink.Summary, error)
}

// PGCampaigns reads summaries with sink.CampaignSummary.
type PGCampaigns struct{ Q sink.Querier }

// CampaignSummary implements Campaigns.
func (c PGCampaigns) CampaignSummary(ctx context.Context, campaign string) (*sink.Summary, error) {
	return sink.CampaignSummary(ctx, c.Q, campaign)
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
	Table     Table
	Producer  Producer
	Campaigns Campaigns // nil: campaign summaries answer 503
	Observer  Observer  // nil: not observed
	Log       *slog.Logger
	Now       func() time.Time
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func (s *Server) maxBody() int64 {
	if s.MaxBody > 0 {
		return s.MaxBody
	}
	return DefaultMaxBody
}

// Handler returns the /v1 routes, with authentication and metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/messages/{id}", s.needView(s.getMessage))
	mux.HandleFunc("POST /v1/messages/lookup", s.needView(s.lookup))
	mux.HandleFunc("POST /v1/messages", s.needView(s.ingest))
	mux.HandleFunc("POST /v1/messages/{id}/cancel", s.needView(s.cancel))
	mux.HandleFunc("GET /v1/campaigns/{campaign}", s.campaign)
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such route: "+r.Method+" "+r.URL.Path, nil)
	})
	return s.observe(s.authenticate(mux))
}

// authenticate checks the bearer token, when one is configured.
func (s *Server) authenticate(next http.Handler) http.Handler {
	if s.Token == "" {
		return next
	}
	want := sha256.Sum256([]byte(s.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Hashing first makes the comparison constant-time in the token's
		// length too.
		g := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !ok || subtle.ConstantTimeCompare(g[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token", nil)
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
		if s.Observer != nil {
			s.Observer.Request(route, sw.code, time.Since(start))
		}
		s.log().Debug("api request", "method", r.Method, "route", route, "code", sw.code,
			"elapsed", time.Since(start).Round(time.Microsecond), "remote", r.RemoteAddr)
	})
}

// needView answers 503 until the view has recovered: before that a missing
// id is not proof of an unknown one.
func (s *Server) needView(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.Table.Recovered() {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "the view of the dispatcher table is still recovering", nil)
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
		writeError(w, http.StatusBadRequest, "reveal: want 1 or 0", nil)
		return false, false
	}
	if b && s.Token == "" {
		writeError(w, http.StatusForbidden, "reveal needs an API token: set HERALD_API_TOKEN and send it as a bearer token", nil)
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
		writeError(w, http.StatusNotFound, "unknown notification (one published a moment ago may not be in the view yet)", map[string]any{"id": id})
		return
	}
	if reveal {
		s.log().Info("api: addresses revealed", "id", id, "remote", r.RemoteAddr)
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
		writeError(w, http.StatusBadRequest, "want {\"ids\": [...]}: "+err.Error(), nil)
		return
	}
	max := s.MaxLookup
	if max <= 0 {
		max = DefaultMaxLookup
	}
	if len(req.IDs) == 0 || len(req.IDs) > max {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("want 1 to %d ids, got %d", max, len(req.IDs)), nil)
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
		s.log().Info("api: addresses revealed", "ids", ids, "remote", r.RemoteAddr)
	}
	writeJSON(w, http.StatusOK, resp)
}

// IngestResponse answers POST /v1/messages: counts, and one result per item
// in the order sent.
type IngestResponse struct {
	Accepted   int          `json:"accepted"`
	Duplicates int          `json:"duplicates"`
	Rejected   int          `json:"rejected"`
	Failed     int          `json:"failed"`
	Items      []ItemResult `json:"items"`
}

// NewIngestResponse counts results.
func NewIngestResponse(rs []ItemResult) IngestResponse {
	t := Tally(rs)
	return IngestResponse{Accepted: t[ResultAccepted], Duplicates: t[ResultDuplicate],
		Rejected: t[ResultRejected], Failed: t[ResultFailed], Items: rs}
}

func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	items, batch, err := SplitBody(body, r.Header.Get("Content-Type"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	in := Ingester{Table: s.Table, Producer: s.Producer}
	rs, err := in.Ingest(r.Context(), items)
	if err != nil {
		s.internal(w, "ingest", err)
		return
	}
	resp := NewIngestResponse(rs)
	if s.Observer != nil {
		for result, n := range Tally(rs) {
			s.Observer.Items(result, n)
		}
	}
	level := slog.LevelDebug // one line per batch: herald send makes thousands
	if resp.Rejected+resp.Failed > 0 {
		level = slog.LevelInfo
	}
	s.log().Log(r.Context(), level, "api: requests ingested", "items", len(rs), "accepted", resp.Accepted,
		"duplicates", resp.Duplicates, "rejected", resp.Rejected, "failed", resp.Failed, "remote", r.RemoteAddr)
	code := http.StatusOK
	switch {
	case resp.Failed > 0:
		// Sending the same body again is safe: what was published is a
		// duplicate then.
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	case batch:
	case resp.Accepted == 1:
		code = http.StatusAccepted
	case resp.Rejected == 1:
		code = http.StatusUnprocessableEntity
	}
	writeJSON(w, code, resp)
}

// CancelRequest is the optional body of POST /v1/messages/{id}/cancel.
type CancelRequest struct {
	Reason string `json:"reason,omitempty"`
}

// CancelResponse answers a cancel.
type CancelResponse struct {
	ID string `json:"id"`
	// Result is requested (published; the dispatcher cancels it unless the
	// state moves on first), canceled (seen in the view, with ?wait), or
	// conflict.
	Result string          `json:"result"`
	Status contract.Status `json:"status"`
	Error  string          `json:"error,omitempty"`
	// Note explains what a cancel of a sending notification can and
	// cannot stop.
	Note string `json:"note,omitempty"`
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, "wait: want a duration such as 5s", nil)
			return
		}
		maxWait := s.MaxCancelWait
		if maxWait <= 0 {
			maxWait = DefaultMaxCancelWait
		}
		wait = min(d, maxWait)
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req CancelRequest
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, "want {\"reason\": \"...\"} or no body: "+err.Error(), nil)
			return
		}
	}
	st, err := s.Table.Get(id)
	if err != nil {
		s.internal(w, "cancel", err)
		return
	}
	if st == nil {
		s.cancelOutcome(CancelUnknown)
		writeError(w, http.StatusNotFound, "unknown notification", map[string]any{"id": id})
		return
	}
	if st.Status.Final() {
		s.conflict(w, st)
		return
	}
	c := contract.Cancel{ID: id, Reason: req.Reason, RequestedAt: s.now().UTC()}
	b, err := json.Marshal(c)
	if err != nil {
		s.internal(w, "cancel", err)
		return
	}
	rec := &kgo.Record{Topic: topology.TopicControl, Key: []byte(id), Value: b}
	if err := s.Producer.ProduceSync(r.Context(), rec).FirstErr(); err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "publish the cancel: "+err.Error(), map[string]any{"id": id})
		return
	}
	s.log().Info("api: cancel requested", "id", id, "status", st.Status, "version", st.Version)
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
	why := "already final"
	writeJSON(w, http.StatusConflict, CancelResponse{ID: st.ID, Result: CancelConflict, Status: st.Status, Error: why})
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
	if s.Observer != nil {
		s.Observer.Cancel(o)
	}
}

func (s *Server) campaign(w http.ResponseWriter, r *http.Request) {
	reveal, ok := s.reveal(w, r)
	if !ok {
		return
	}
	if s.Campaigns == nil {
		writeError(w, http.StatusServiceUnavailable, "campaign summaries need the Postgres sink's database (--database-url)", nil)
		return
	}
	name := r.PathValue("campaign")
	sum, err := s.Campaigns.CampaignSummary(r.Context(), name)
	switch {
	case errors.Is(err, sink.ErrCampaignNotFound):
		writeError(w, http.StatusNotFound, "unknown campaign (the sink writes statuses in batches, a moment after they happen)", map[string]any{"campaign": name})
	case err != nil:
		s.internal(w, "campaign", err)
	default:
		if reveal {
			s.log().Info("api: provider errors revealed", "campaign", name, "remote", r.RemoteAddr)
		} else {
			// Provider errors quote addresses ("550 <jane@...>: no such
			// user"); a summary has no recipient to match them against.
			for i := range sum.Failures {
				sum.Failures[i].Error = MaskText(sum.Failures[i].Error)
			}
		}
		writeJSON(w, http.StatusOK, sum)
	}
}

// readBody reads a size-limited body, answering 413 itself when it is too
// large.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := s.maxBody()
	tooLarge := func() ([]byte, bool) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes (--api-max-body)", limit), nil)
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
		writeError(w, http.StatusBadRequest, "read body: "+err.Error(), nil)
		return nil, false
	}
	return b, true
}

func (s *Server) internal(w http.ResponseWriter, what string, err error) {
	s.log().Error("api: "+what, "err", err)
	writeError(w, http.StatusInternalServerError, what+": "+err.Error(), nil)
}

// writeError writes {"error": msg, ...extra}.
func writeError(w http.ResponseWriter, code int, msg string, extra map[string]any) {
	m := map[string]any{"error": msg}
	for k, v := range extra {
		m[k] = v
	}
	writeJSON(w, code, m)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

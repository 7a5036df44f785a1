package views

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/tableview"
	"github.com/herald-dispatch/herald/internal/topology"
)

// RawScanner reads the encoded state of every notification in flight in
// the dispatcher table (*tableview.StateView: its index of the non-final
// states, the only ones the sweep can find overdue).
type RawScanner interface {
	ScanInFlight(ctx context.Context, fn func(raw []byte)) error
}

// StuckRow is a notification the dispatcher's sweep would rescue now
// (tableview.Overdue): sending past its time-out with no result
// (kind send_timeout), or held past its wake-up by more than the sweep's
// grace (kind hold).
type StuckRow struct {
	ID         string              `json:"id"`
	Campaign   string              `json:"campaign"`
	Status     contract.Status     `json:"status"`
	Channel    contract.Channel    `json:"channel"`
	Attempts   int                 `json:"attempts"`
	HoldReason contract.HoldReason `json:"hold_reason,omitempty"`
	// Kind is the wake-up the sweep makes: send_timeout or hold.
	Kind contract.WakeupKind `json:"kind"`
	// Due is when it was due: the send time-out, or the hold's wake-up.
	Due            time.Time `json:"due"`
	OverdueSeconds float64   `json:"overdue_seconds"`
	LastError      string    `json:"last_error,omitempty"`
}

// StuckResponse answers GET /v1/stuck: the most overdue first.
type StuckResponse struct {
	// Total counts every stuck notification; Stuck holds the first limit.
	Total        int        `json:"total"`
	GraceSeconds float64    `json:"grace_seconds"`
	Stuck        []StuckRow `json:"stuck"`
}

// stuck scans the table for what the sweep would rescue now. A
// notification stuck for longer than a sweep interval means the sweep is
// not running (no dispatcher owns its partition) or cannot publish.
func (s *Server) stuck(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	if s.Scanner == nil {
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "this API cannot scan the dispatcher table", nil)
		return
	}
	grace := s.StuckGrace
	now := s.Now()
	resp := StuckResponse{Stuck: []StuckRow{}, GraceSeconds: grace.Seconds()}
	var decodeErr error
	err := s.Scanner.ScanInFlight(r.Context(), func(b []byte) {
		wk, ok := tableview.Overdue(b, now, grace)
		if !ok {
			return
		}
		resp.Total++
		st, err := contract.DecodeState(b)
		if err != nil {
			decodeErr = err
			return
		}
		resp.Stuck = append(resp.Stuck, StuckRow{ID: st.ID, Campaign: st.Campaign, Status: st.Status, Channel: st.Channel,
			Attempts: st.Attempts, HoldReason: st.HoldReason, Kind: wk.Kind, Due: wk.Due.UTC(),
			OverdueSeconds: now.Sub(wk.Due).Seconds(), LastError: contract.MaskText(st.LastError)})
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		s.internal(w, "stuck", err)
		return
	}
	sort.Slice(resp.Stuck, func(i, j int) bool {
		a, b := resp.Stuck[i], resp.Stuck[j]
		if !a.Due.Equal(b.Due) {
			return a.Due.Before(b.Due)
		}
		return a.ID < b.ID
	})
	if len(resp.Stuck) > limit {
		resp.Stuck = resp.Stuck[:limit]
	}
	writeJSON(w, http.StatusOK, resp)
}

// RetryResponse answers POST /v1/messages/{id}/retry. A 409 carries Code
// and Error, the error shape's fields.
type RetryResponse struct {
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
	ID    string `json:"id"`
	// Result is requested (published: the dispatcher starts a new attempt
	// series unless the state has moved on) or conflict (not failed).
	Result string          `json:"result"`
	Status contract.Status `json:"status"`
}

// retry publishes a Retry for one failed notification, naming the attempts
// the view shows, so that a second call for the same failure is stale in
// the dispatcher (idempotent) and a sent notification is never sent again.
// Only a failed notification is retried (409 otherwise).
func (s *Server) retry(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	reason, ok := s.decodeReason(w, r)
	if !ok {
		return
	}
	st, err := s.Table.Get(id)
	if err != nil {
		s.internal(w, "retry", err)
		return
	}
	if st == nil {
		writeError(w, http.StatusNotFound, CodeUnknownID, msgUnknownID, map[string]any{"id": id})
		return
	}
	if st.Status != contract.StatusFailed {
		writeJSON(w, http.StatusConflict, RetryResponse{Code: CodeConflict, Error: "only a failed notification is retried",
			ID: id, Result: "conflict", Status: st.Status})
		return
	}
	b, err := contract.EncodeRetry(&contract.Retry{ID: id, AfterAttempts: st.Attempts, Reason: reason, RequestedAt: s.Now().UTC()})
	if err != nil {
		s.internal(w, "retry", err)
		return
	}
	rec := &kgo.Record{Topic: topology.TopicControl, Key: []byte(id), Value: b}
	if err := s.Producer.ProduceSync(r.Context(), rec).FirstErr(); err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "publish the retry: "+err.Error(), map[string]any{"id": id})
		return
	}
	s.Log.Info("audit: retry", "id", id, "attempts", st.Attempts, "reason", reason, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusAccepted, RetryResponse{ID: id, Result: "requested", Status: st.Status})
}

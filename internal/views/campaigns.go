package views

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/report"
	"github.com/herald-dispatch/herald/internal/topology"
)

// List limits.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
	// ThroughputSpan and ThroughputBucket shape a campaign's throughput
	// series (the console's sparkline).
	ThroughputSpan   = 30 * time.Minute
	ThroughputBucket = 30 * time.Second
	// actionPage is how many targets a campaign action reads and
	// publishes at a time.
	actionPage = 1000
)

func badRequest(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusBadRequest, CodeBadRequest, msg, nil)
}

// limitParam reads ?limit= (1 to MaxListLimit); it answers 400 itself.
func limitParam(w http.ResponseWriter, r *http.Request) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return DefaultListLimit, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxListLimit {
		badRequest(w, fmt.Sprintf("limit: want 1 to %d", MaxListLimit))
		return 0, false
	}
	return n, true
}

func timeParam(w http.ResponseWriter, r *http.Request, name string) (time.Time, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, true
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		badRequest(w, name+`: want an RFC 3339 time such as "2026-01-31T09:00:00Z"`)
		return time.Time{}, false
	}
	return t, true
}

func (s *Server) listMessages(w http.ResponseWriter, r *http.Request) {
	q := MessageQuery{Campaign: r.URL.Query().Get("campaign"), Cursor: r.URL.Query().Get("cursor")}
	var ok bool
	if q.Limit, ok = limitParam(w, r); !ok {
		return
	}
	if q.Since, ok = timeParam(w, r, "since"); !ok {
		return
	}
	if q.Until, ok = timeParam(w, r, "until"); !ok {
		return
	}
	if v := r.URL.Query().Get("status"); v != "" {
		for _, st := range strings.Split(v, ",") {
			if !known(contract.Status(st)) {
				badRequest(w, fmt.Sprintf("status: unknown status %q (want one of %v, comma-separated)", st, contract.Statuses()))
				return
			}
			q.Statuses = append(q.Statuses, contract.Status(st))
		}
	}
	if v := contract.Channel(r.URL.Query().Get("channel")); v != "" {
		if !v.Valid() {
			badRequest(w, fmt.Sprintf("channel: unknown channel %q", v))
			return
		}
		q.Channel = v
	}
	if v := contract.HoldReason(r.URL.Query().Get("hold_reason")); v != "" {
		switch v {
		case contract.HoldSchedule, contract.HoldBlackout, contract.HoldBackoff, contract.HoldRateLimit:
		default:
			badRequest(w, fmt.Sprintf("hold_reason: unknown reason %q", v))
			return
		}
		q.HoldReason = v
	}
	page, err := s.Store.Messages(r.Context(), q)
	switch {
	case errors.Is(err, ErrBadCursor):
		badRequest(w, "cursor: not one this API made (use next_cursor as it came)")
	case err != nil:
		s.internal(w, "list", err)
	default:
		writeJSON(w, http.StatusOK, page)
	}
}

func known(st contract.Status) bool {
	for _, s := range contract.Statuses() {
		if s == st {
			return true
		}
	}
	return false
}

// CampaignList answers GET /v1/campaigns.
type CampaignList struct {
	Campaigns []CampaignProgress `json:"campaigns"`
}

func (s *Server) listCampaigns(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	cs, err := s.Store.Campaigns(r.Context(), s.Now(), limit)
	if err != nil {
		s.internal(w, "campaigns", err)
		return
	}
	writeJSON(w, http.StatusOK, CampaignList{Campaigns: cs})
}

// CampaignDetail answers GET /v1/campaigns/{campaign}: the summary of
// `herald report`, its progress, and its throughput over the last
// ThroughputSpan.
type CampaignDetail struct {
	*report.Summary
	Progress   CampaignProgress `json:"progress"`
	Throughput []Point          `json:"throughput"`
}

func (s *Server) campaign(w http.ResponseWriter, r *http.Request) {
	reveal, ok := s.reveal(w, r)
	if !ok {
		return
	}
	name := r.PathValue("campaign")
	sum, err := s.Store.CampaignSummary(r.Context(), name)
	switch {
	case errors.Is(err, report.ErrCampaignNotFound):
		writeError(w, http.StatusNotFound, CodeUnknownCampaign, "unknown campaign (the sink writes statuses in batches, a moment after they happen)", map[string]any{"campaign": name})
		return
	case err != nil:
		s.internal(w, "campaign", err)
		return
	}
	if reveal {
		s.Log.Info("api: provider errors revealed", "campaign", name, "remote", r.RemoteAddr)
	} else {
		// Provider errors quote addresses ("550 <jane@...>: no such
		// user"); a summary has no recipient to match them against.
		for i := range sum.Failures {
			sum.Failures[i].Error = contract.MaskText(sum.Failures[i].Error)
		}
	}
	now := s.Now()
	tp, err := s.Store.Throughput(r.Context(), name, now.Add(-ThroughputSpan), ThroughputBucket)
	if err != nil {
		s.internal(w, "campaign", err)
		return
	}
	// The progress is the list's (GET /v1/campaigns): the same counts,
	// rate and first_seen.
	prog, err := s.Store.Campaign(r.Context(), now, name)
	if err != nil {
		s.internal(w, "campaign", err)
		return
	}
	d := CampaignDetail{Summary: sum, Throughput: tp, Progress: prog}
	writeJSON(w, http.StatusOK, d)
}

// ActionResponse answers a campaign's cancel or retry.
type ActionResponse struct {
	Campaign string `json:"campaign"`
	// Action is cancel or retry.
	Action string `json:"action"`
	// Requested counts the notifications a Cancel or Retry was published
	// for; the dispatcher applies each unless the state has moved on.
	Requested int    `json:"requested"`
	Reason    string `json:"reason,omitempty"`
}

// cancelCampaign publishes a Cancel for every notification of the campaign
// the sink has seen not final: held (scheduled, deferred, retrying) or
// sending, whose command is stopped if its provider call has not started
// (a call already started cannot be taken back, and if it delivers the
// notification ends sent). Idempotent: again, it publishes cancels for
// what is still not final, and the dispatcher ignores a cancel of what is
// final.
func (s *Server) cancelCampaign(w http.ResponseWriter, r *http.Request) {
	reason, ok := s.decodeReason(w, r)
	if !ok {
		return
	}
	name := r.PathValue("campaign")
	why := "campaign canceled by an operator"
	if reason != "" {
		why += ": " + reason
	}
	now := s.Now().UTC()
	s.campaignAction(w, r, name, "cancel", reason,
		[]contract.Status{contract.StatusScheduled, contract.StatusDeferred, contract.StatusRetrying, contract.StatusSending},
		func(t Target) ([]byte, error) {
			return contract.EncodeCancel(&contract.Cancel{ID: t.ID, Reason: why, RequestedAt: now})
		})
}

// retryCampaign publishes a Retry for every failed notification of the
// campaign, naming the attempts the operator saw failed, so that a second
// call for the same failure is stale in the dispatcher (idempotent), and a
// sent notification is never sent again.
func (s *Server) retryCampaign(w http.ResponseWriter, r *http.Request) {
	if st := r.URL.Query().Get("status"); st != string(contract.StatusFailed) {
		badRequest(w, "status: want status=failed (only failed notifications are retried)")
		return
	}
	reason, ok := s.decodeReason(w, r)
	if !ok {
		return
	}
	name := r.PathValue("campaign")
	now := s.Now().UTC()
	s.campaignAction(w, r, name, "retry", reason, []contract.Status{contract.StatusFailed},
		func(t Target) ([]byte, error) {
			return contract.EncodeRetry(&contract.Retry{ID: t.ID, AfterAttempts: t.Attempts, Reason: reason, RequestedAt: now})
		})
}

// campaignAction publishes one control record per target, a page at a
// time, and logs the action as an audit line (who asked is the remote
// address; the records on herald.control and each state's history are the
// rest of the trail).
func (s *Server) campaignAction(w http.ResponseWriter, r *http.Request, name, action, reason string,
	statuses []contract.Status, record func(Target) ([]byte, error)) {
	if _, err := s.Store.CampaignSummary(r.Context(), name); errors.Is(err, report.ErrCampaignNotFound) {
		writeError(w, http.StatusNotFound, CodeUnknownCampaign, "unknown campaign (the sink writes statuses in batches, a moment after they happen)", map[string]any{"campaign": name})
		return
	} else if err != nil {
		s.internal(w, action, err)
		return
	}
	resp := ActionResponse{Campaign: name, Action: action, Reason: reason}
	after := ""
	for {
		ts, err := s.Store.Targets(r.Context(), name, statuses, after, actionPage)
		if err != nil {
			s.internal(w, action, err)
			return
		}
		if len(ts) == 0 {
			break
		}
		recs := make([]*kgo.Record, len(ts))
		for i, t := range ts {
			b, err := record(t)
			if err != nil {
				s.internal(w, action, err)
				return
			}
			recs[i] = &kgo.Record{Topic: topology.TopicControl, Key: []byte(t.ID), Value: b}
		}
		if err := s.Producer.ProduceSync(r.Context(), recs...).FirstErr(); err != nil {
			w.Header().Set("Retry-After", "1")
			s.Log.Warn("audit: campaign "+action+" interrupted", "campaign", name, "requested", resp.Requested, "err", err, "remote", r.RemoteAddr)
			writeError(w, http.StatusServiceUnavailable, CodeUnavailable,
				fmt.Sprintf("publish the %s records: %v (%d published; calling again is safe)", action, err, resp.Requested),
				map[string]any{"campaign": name})
			return
		}
		resp.Requested += len(ts)
		after = ts[len(ts)-1].ID
	}
	s.Log.Info("audit: campaign "+action, "campaign", name, "requested", resp.Requested, "reason", reason, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusAccepted, resp)
}

// HeldResponse answers GET /v1/held.
type HeldResponse struct {
	Held []HeldCount `json:"held"`
}

func (s *Server) held(w http.ResponseWriter, r *http.Request) {
	h, err := s.Store.Held(r.Context())
	if err != nil {
		s.internal(w, "held", err)
		return
	}
	writeJSON(w, http.StatusOK, HeldResponse{Held: h})
}

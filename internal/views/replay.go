package views

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dlq"
	"github.com/herald-dispatch/herald/internal/topology"
)

// DLQReplayer replays dead letters for POST /v1/dlq/replay with the code
// of `herald dlq replay`: dlq.Read selects them, dlq.Replayer checks each
// against the contract, publishes it to herald.requests and records the
// replay in herald.dlq.replays (which `herald run` and `herald api` create
// at start).
//
// One replay (not dry run) runs at a time in a process, so two calls
// cannot both replay a dead letter: the second reads the first's records
// and skips what it replayed. Two API processes replaying the same dead
// letter at the same moment can both publish it; the dispatcher then
// counts the second as a duplicate, never a second send.
type DLQReplayer struct {
	// ReadOpts are the options of the clients that read herald.dlq and
	// herald.dlq.replays (the topology's KgoOpts).
	ReadOpts []kgo.Opt
	// Client publishes, with Herald's producer settings
	// (topology.KgoProducerOpts).
	Client *kgo.Client

	mu sync.Mutex
}

// ReplayQuery is what POST /v1/dlq/replay asks for.
type ReplayQuery struct {
	Filter dlq.Filter
	// Fixes replace values by key (dlq.ReadFixes); with fixes, only the
	// dead letters they fix are replayed.
	Fixes  map[string][]byte
	Again  bool
	DryRun bool
}

// errReplayBusy is returned while another replay runs in this process.
var errReplayBusy = errors.New("another replay is running in this process")

// Replay replays what q selects; see dlq.Replayer.Replay.
func (d *DLQReplayer) Replay(ctx context.Context, q ReplayQuery, now func() time.Time) ([]dlq.Outcome, error) {
	if !q.DryRun {
		if !d.mu.TryLock() {
			return nil, errReplayBusy
		}
		defer d.mu.Unlock()
	}
	entries, err := dlq.Read(ctx, d.ReadOpts, topology.TopicDLQ, topology.TopicDLQReplays, q.Filter)
	if err != nil {
		return nil, err
	}
	rp := &dlq.Replayer{Client: d.Client, IntakeTopic: topology.TopicRequests, ReplaysTopic: topology.TopicDLQReplays,
		Fixes: q.Fixes, Again: q.Again, DryRun: q.DryRun, Now: now}
	return rp.Replay(ctx, entries)
}

// ReplayItem is what a replay did, or would do, with one dead letter.
type ReplayItem struct {
	// DLQ is the dead letter's PARTITION@OFFSET in herald.dlq (what ?at=
	// takes).
	DLQ string `json:"dlq"`
	// Action is "replayed", "would replay" (a dry run) or "skipped".
	Action string `json:"action"`
	// Key, Reason and Topic are the dead letter's: the original key, why
	// it was dead-lettered, and the topic it came from.
	Key    string `json:"key"`
	Reason string `json:"reason,omitempty"`
	Topic  string `json:"topic,omitempty"`
	// ID is the request id it is (or would be) published with.
	ID string `json:"id,omitempty"`
	// Fixed is true when a fix-up replaced the value.
	Fixed bool `json:"fixed,omitempty"`
	// Why says why it was skipped (masked).
	Why string `json:"why,omitempty"`
	// Published is where it was published to.
	Published *Published `json:"published,omitempty"`
}

// Published is a record's place in a topic.
type Published struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// ReplayResponse answers POST /v1/dlq/replay. Code and Error are set when
// the replay stopped on an error (the error shape's fields); Items then
// says what was done before.
type ReplayResponse struct {
	Code        string       `json:"code,omitempty"`
	Error       string       `json:"error,omitempty"`
	DryRun      bool         `json:"dry_run"`
	Replayed    int          `json:"replayed"`
	WouldReplay int          `json:"would_replay"`
	Skipped     int          `json:"skipped"`
	Items       []ReplayItem `json:"items"`
}

// NewReplayResponse counts outcomes; skip reasons are masked (a decode
// error can quote an address).
func NewReplayResponse(dryRun bool, outs []dlq.Outcome) ReplayResponse {
	resp := ReplayResponse{DryRun: dryRun, Items: make([]ReplayItem, 0, len(outs))}
	for _, o := range outs {
		d := o.Entry.Letter
		it := ReplayItem{DLQ: o.Entry.Pos(), Action: o.Action, Key: string(d.Key), Reason: d.Reason, Topic: d.Topic, Why: contract.MaskText(o.Why)}
		if r := o.Replay; r != nil {
			it.ID, it.Fixed = r.ID, r.Fixed
			if o.Action == dlq.ActionReplayed {
				it.Published = &Published{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
			}
		}
		switch o.Action {
		case dlq.ActionReplayed:
			resp.Replayed++
		case dlq.ActionWouldReplay:
			resp.WouldReplay++
		default:
			resp.Skipped++
		}
		resp.Items = append(resp.Items, it)
	}
	return resp
}

// replayParams are the query parameters POST /v1/dlq/replay knows. Any
// other is refused: a mistyped dry_run must not replay for real.
var replayParams = map[string]bool{"reason": true, "topic": true, "key": true, "since": true, "until": true, "at": true, "dry_run": true, "again": true}

// replayQuery reads the query and the fix-up body; it answers 400 (or
// 413) itself.
func (s *Server) replayQuery(w http.ResponseWriter, r *http.Request) (ReplayQuery, bool) {
	v := r.URL.Query()
	for name := range v {
		if !replayParams[name] {
			badRequest(w, fmt.Sprintf("unknown parameter %q (want reason, topic, key, since, until, at, dry_run, again)", name))
			return ReplayQuery{}, false
		}
	}
	q := ReplayQuery{Filter: dlq.Filter{Reason: v.Get("reason"), Topic: v.Get("topic"), Key: v.Get("key")}}
	for _, a := range v["at"] {
		for _, p := range strings.Split(a, ",") {
			if p = strings.TrimSpace(p); p != "" {
				q.Filter.At = append(q.Filter.At, p)
			}
		}
	}
	now := s.Now()
	var err error
	if q.Filter.Since, err = dlq.ParseWhen(v.Get("since"), now); err != nil {
		badRequest(w, "since: "+err.Error())
		return q, false
	}
	if q.Filter.Until, err = dlq.ParseWhen(v.Get("until"), now); err != nil {
		badRequest(w, "until: "+err.Error())
		return q, false
	}
	if err := q.Filter.Check(); err != nil {
		badRequest(w, err.Error())
		return q, false
	}
	var ok bool
	if q.DryRun, ok = boolParam(w, r, "dry_run"); !ok {
		return q, false
	}
	if q.Again, ok = boolParam(w, r, "again"); !ok {
		return q, false
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return q, false
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		if q.Fixes, err = dlq.ReadFixes(body); err != nil {
			badRequest(w, "fix-up body (JSON Lines of corrected requests): "+err.Error())
			return q, false
		}
	}
	return q, true
}

// replayDLQ serves POST /v1/dlq/replay. A replay is audited (an "audit:
// dlq replay" log line with the filter, the counts and the remote
// address; herald.dlq.replays holds each replay); a dry run is not an
// action and is logged at debug level.
func (s *Server) replayDLQ(w http.ResponseWriter, r *http.Request) {
	q, ok := s.replayQuery(w, r)
	if !ok {
		return
	}
	if s.Replayer == nil {
		writeJSON(w, http.StatusServiceUnavailable, ReplayResponse{Code: CodeUnavailable, Error: "no DLQ replayer is configured in this process",
			DryRun: q.DryRun, Items: []ReplayItem{}})
		return
	}
	outs, err := s.Replayer.Replay(r.Context(), q, s.Now)
	resp := NewReplayResponse(q.DryRun, outs)
	f := q.Filter
	attrs := []any{"reason", f.Reason, "topic", f.Topic, "key", f.Key, "since", f.Since, "until", f.Until, "at", f.At,
		"fixes", len(q.Fixes), "again", q.Again, "replayed", resp.Replayed, "would_replay", resp.WouldReplay,
		"skipped", resp.Skipped, "remote", r.RemoteAddr}
	if err != nil {
		w.Header().Set("Retry-After", "1")
		resp.Code, resp.Error = CodeUnavailable, "replay: "+err.Error()
		switch {
		case errors.Is(err, dlq.ErrNoTopic):
			resp.Error = "replay: " + err.Error() + " (is this the cluster herald runs on?)"
		case resp.Replayed > 0:
			resp.Error += fmt.Sprintf(" (%d replayed and recorded before; calling again skips them)", resp.Replayed)
		}
		if !q.DryRun {
			s.Log.Warn("audit: dlq replay interrupted", append(attrs, "err", err)...)
		}
		writeJSON(w, http.StatusServiceUnavailable, resp)
		return
	}
	if q.DryRun {
		s.Log.Debug("dlq replay dry run", attrs...)
		writeJSON(w, http.StatusOK, resp)
		return
	}
	s.Log.Info("audit: dlq replay", attrs...)
	writeJSON(w, http.StatusAccepted, resp)
}

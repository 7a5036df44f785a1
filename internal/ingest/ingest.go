// Package ingest owns the way into Herald: it cuts a body or a file into
// dispatch requests (SplitBody), validates each with the dispatcher's own
// decoder, answers duplicates it can see early, and publishes the valid
// ones to herald.requests, placed where the dispatcher keeps their state
// (Ingester). POST /v1/messages (package views) and `herald send` share
// it, so both accept and refuse the same requests.
package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/topology"
)

// Producer publishes records. *kgo.Client built with
// topology.KgoProducerOpts is the real one: its partitioner places a key
// where the dispatcher keeps its state (murmur2, topology.Partition).
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// Item is one dispatch request of a body or file, as its producer wrote it.
type Item struct {
	// Index is the item's position in its batch, from 0.
	Index int
	// Line is the item's line in a JSONL body or file, from 1; 0 otherwise.
	Line int
	Raw  []byte
}

// Item results.
const (
	ResultAccepted  = "accepted"  // published to herald.requests
	ResultDuplicate = "duplicate" // the id is already known (or repeated in the batch): not published
	ResultRejected  = "rejected"  // invalid: not published; Errors says why
	ResultFailed    = "failed"    // valid, but publishing failed; safe to send again
)

// ItemResult is the answer for one item.
type ItemResult struct {
	Index int    `json:"index"`
	Line  int    `json:"line,omitempty"`
	ID    string `json:"id,omitempty"`
	// Result is accepted, duplicate, rejected or failed.
	Result string `json:"result"`
	// Status is a duplicate's current status ("" when the duplicate is
	// within the batch itself or not in the view yet).
	Status contract.Status `json:"status,omitempty"`
	// Errors lists a rejected item's problems, one per field.
	Errors []contract.FieldError `json:"errors,omitempty"`
	// Error says why publishing failed.
	Error string `json:"error,omitempty"`
	// Warnings name what was ignored: fields v1 does not define.
	Warnings []string `json:"warnings,omitempty"`
	// PayloadDiffers is set on a duplicate whose request differs from the
	// one Herald has under its id (or the first one in the batch): the
	// new payload is not used. Reuse an id only for the same notification.
	PayloadDiffers bool `json:"payload_differs,omitempty"`

	// TooLarge: rejected for its size, which a single request over HTTP
	// answers 413.
	TooLarge bool `json:"-"`
	// NoProvider: rejected for naming this channel, which has no provider.
	NoProvider contract.Channel `json:"-"`
}

// ErrBody is wrapped by SplitBody's errors: the body as a whole is not a
// request, an array of requests or JSONL.
var ErrBody = errors.New("bad request body")

// IsJSONL reports whether a Content-Type names JSON Lines.
func IsJSONL(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines", "application/json-lines":
		return true
	}
	return false
}

// SplitBody cuts a request body into items. It accepts one JSON object, a
// JSON array of objects, or JSONL (one object a line; named by the
// Content-Type or recognised by a second value after the first). batch is
// false only for a single object. A JSONL line, or an array element, that
// is not JSON is an item of its own (rejected later), so one bad item does
// not lose the others.
func SplitBody(body []byte, contentType string) (items []Item, batch bool, err error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, false, fmt.Errorf("%w: empty", ErrBody)
	}
	if IsJSONL(contentType) {
		return splitLines(body), true, nil
	}
	switch trimmed[0] {
	case '[':
		return splitArray(trimmed), true, nil
	case '{':
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		var first json.RawMessage
		if err := dec.Decode(&first); err == nil && dec.InputOffset() == int64(len(trimmed)) {
			return []Item{{Raw: first}}, false, nil
		}
		if bytes.IndexByte(trimmed, '\n') < 0 {
			// One line that is not one object: reject it as an item, so
			// the answer names the JSON error like any other.
			return []Item{{Raw: trimmed}}, false, nil
		}
		return splitLines(body), true, nil
	}
	return nil, false, fmt.Errorf("%w: want a JSON object, a JSON array of objects, or JSONL", ErrBody)
}

// splitArray cuts a JSON array into its elements without parsing them, so
// that a malformed element is rejected on its own and the good ones are
// kept. It follows strings and nesting; an element is what lies between
// two commas at the top level. An unclosed array ends at the end of the
// body (its last element is then most likely malformed, and rejected).
func splitArray(b []byte) []Item {
	var items []Item
	add := func(raw []byte) {
		items = append(items, Item{Index: len(items), Raw: bytes.TrimSpace(raw)})
	}
	depth, start, inString, escaped := 0, 1, false, false
	for i := 1; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case (c == '}' || c == ']') && depth > 0:
			depth--
		case c == ',' && depth == 0:
			add(b[start:i])
			start = i + 1
		case c == ']' && depth == 0:
			if last := bytes.TrimSpace(b[start:i]); len(last) > 0 || len(items) > 0 {
				add(last)
			}
			if rest := bytes.TrimSpace(b[i+1:]); len(rest) > 0 {
				add(rest) // trailing data: rejected as an item of its own
			}
			return items
		}
	}
	if rest := bytes.TrimSpace(b[start:]); len(rest) > 0 {
		add(rest)
	}
	return items
}

// splitLines returns the non-blank lines of a JSONL body.
func splitLines(body []byte) []Item {
	var items []Item
	line := 0
	for len(body) > 0 {
		line++
		l := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			l, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		if l = bytes.TrimSpace(l); len(l) > 0 {
			items = append(items, Item{Index: len(items), Line: line, Raw: l})
		}
	}
	return items
}

// Table answers which ids the dispatcher already knows: the state of one
// notification, or nil when the id is unknown (tableview.StateView).
type Table interface {
	Get(id string) (*contract.State, error)
}

// Ingester validates dispatch requests with the dispatcher's own decoder
// (contract.Decode) and publishes the valid ones to herald.requests, keyed
// by id, byte for byte as they came.
//
// Duplicates: an id the table already knows, or one repeated within the
// batch, is answered "duplicate" and not published, with payload_differs
// when its request is not the one Herald has. That is an early answer, not
// the guarantee: an id published a moment ago may not be in the view yet
// and is published again, and the dispatcher (which owns the state) drops
// it. Exactly-once is the dispatcher's, never the API's.
//
// Unknown fields are warnings (the dispatcher ignores them), or, with
// Strict, the reason the request is rejected. A request larger than
// contract.MaxRequestBytes is rejected, and so is one the broker refuses
// for good (a record too large for it): sending it again cannot help.
type Ingester struct {
	// Table, when set, answers which ids are known. Without it nothing is
	// reported as a duplicate of an earlier batch.
	Table    Table
	Producer Producer
	// Topic defaults to topology.TopicRequests.
	Topic string
	// Strict rejects requests with fields v1 does not define.
	Strict bool
	// Channels, when not nil, are the channels with a provider: a request
	// naming another is rejected (it would only fail over to its next
	// channel, or end failed with "no provider configured for channel").
	Channels []contract.Channel
}

// unconfigured returns the first of the request's channels with no
// provider, or "".
func (in *Ingester) unconfigured(req *contract.Request) contract.Channel {
	if in.Channels == nil {
		return ""
	}
	for _, ch := range req.Channels {
		if !slices.Contains(in.Channels, ch) {
			return ch
		}
	}
	return ""
}

// Ingest answers every item, in order. The error is only for a failure to
// read the table; a publish failure is an item result ("failed").
func (in *Ingester) Ingest(ctx context.Context, items []Item) ([]ItemResult, error) {
	topic := in.Topic
	if topic == "" {
		topic = topology.TopicRequests
	}
	out := make([]ItemResult, len(items))
	first := make(map[string]*contract.Request, len(items))
	var recs []*kgo.Record
	var idx []int
	for i, it := range items {
		res, req, err := in.check(it, first)
		if err != nil {
			return nil, err
		}
		if res.Result == ResultAccepted {
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(req.ID), Value: bytes.TrimSpace(it.Raw)})
			idx = append(idx, i)
		}
		out[i] = res
	}
	in.publish(ctx, recs, idx, out)
	return out, nil
}

// check answers one item: rejected (too large, invalid, or naming a
// channel with no provider), a duplicate (of an item earlier in the batch,
// in first, or of a notification the table knows), or accepted, which
// returns the request to publish and records it in first. The error is
// only for a failure to read the table.
func (in *Ingester) check(it Item, first map[string]*contract.Request) (ItemResult, *contract.Request, error) {
	res := ItemResult{Index: it.Index, Line: it.Line}
	if len(it.Raw) > contract.MaxRequestBytes {
		res.Result, res.ID, res.TooLarge = ResultRejected, idOf(it.Raw), true
		res.Errors = []contract.FieldError{{Field: "request", Message: fmt.Sprintf("%d bytes, more than the %d a request may have", len(it.Raw), contract.MaxRequestBytes)}}
		return res, nil, nil
	}
	req, err := in.decode(it.Raw, &res)
	var noProvider contract.Channel
	if err == nil {
		noProvider = in.unconfigured(req)
	}
	switch {
	case err != nil:
		res.Result = ResultRejected
		res.ID = idOf(it.Raw)
		res.Errors = problems(err)
		res.Warnings = nil
	case noProvider != "":
		res.Result, res.ID, res.NoProvider = ResultRejected, req.ID, noProvider
		res.Errors = []contract.FieldError{{Field: "channels", Message: fmt.Sprintf("no provider configured for channel %s (this Herald sends %v)", noProvider, in.Channels)}}
	case first[req.ID] != nil:
		res.ID, res.Result = req.ID, ResultDuplicate
		res.PayloadDiffers = !samePayload(first[req.ID], req)
	default:
		res.ID = req.ID
		first[req.ID] = req
		if in.Table != nil {
			st, err := in.Table.Get(req.ID)
			if err != nil {
				return res, nil, err
			}
			if st != nil {
				res.Result, res.Status = ResultDuplicate, st.Status
				res.PayloadDiffers = st.Request != nil && !samePayload(st.Request, comparable(st, req))
				return res, nil, nil
			}
		}
		res.Result = ResultAccepted
		return res, req, nil
	}
	return res, nil, nil
}

// decode decodes and validates one request with the dispatcher's decoder.
// Fields v1 does not define are warnings on res, or, with Strict, the
// error.
func (in *Ingester) decode(raw []byte, res *ItemResult) (*contract.Request, error) {
	req, err := contract.Decode(nil, raw)
	unknown := contract.UnknownFields(raw)
	if err == nil && in.Strict && len(unknown) > 0 {
		ve := &contract.ValidationError{}
		for _, f := range unknown {
			ve.Problems = append(ve.Problems, contract.FieldError{Field: f, Message: "unknown field (strict=1 refuses it)"})
		}
		err = ve
	}
	for _, f := range unknown {
		if !in.Strict {
			res.Warnings = append(res.Warnings, "unknown field "+f+": ignored")
		}
	}
	return req, err
}

// publish produces recs (the accepted items, at out[idx[j]]) and turns
// the items whose produce failed into failed results, or rejected ones
// when the broker refuses the record for what it is.
func (in *Ingester) publish(ctx context.Context, recs []*kgo.Record, idx []int, out []ItemResult) {
	if len(recs) == 0 {
		return
	}
	pos := make(map[*kgo.Record]int, len(recs))
	for j, r := range recs {
		pos[r] = idx[j]
	}
	for _, pr := range in.Producer.ProduceSync(ctx, recs...) {
		if pr.Err == nil {
			continue
		}
		i := pos[pr.Record]
		if permanent(pr.Err) {
			out[i].Result = ResultRejected
			out[i].TooLarge = errors.Is(pr.Err, kerr.MessageTooLarge) || errors.Is(pr.Err, kerr.RecordListTooLarge)
			out[i].Errors = []contract.FieldError{{Field: "request", Message: "the broker refuses it: " + pr.Err.Error()}}
			continue
		}
		out[i].Result, out[i].Error = ResultFailed, pr.Err.Error()
	}
}

// permanent reports whether the broker refuses a record for what it is,
// so that publishing it again cannot succeed.
func permanent(err error) bool {
	for _, e := range []error{kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.CorruptMessage,
		kerr.InvalidTimestamp} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// samePayload reports whether two decoded requests are the same
// notification: equal after decoding and defaults, whatever the spacing or
// field order of their JSON.
// comparable is req as the state st can be compared with: without its
// content and addresses when st has shed them (a final state keeps
// neither, contract.State.HasPayload), so that a re-run of the same
// request is not reported as a different one. A remembered state keeps no
// request, and is not compared.
func comparable(st *contract.State, req *contract.Request) *contract.Request {
	if st.HasPayload() {
		return req
	}
	r := *req
	r.Content = nil
	r.Recipient = contract.Recipient{TZ: r.Recipient.TZ}
	return &r
}

func samePayload(a, b *contract.Request) bool {
	return bytes.Equal(canonical(a), canonical(b))
}

func canonical(r *contract.Request) []byte {
	c := *r
	var content bytes.Buffer
	if json.Compact(&content, r.Content) == nil {
		c.Content = content.Bytes()
	}
	if c.NotBefore != nil {
		t := c.NotBefore.UTC()
		c.NotBefore = &t
	}
	if c.ExpiresAt != nil {
		t := c.ExpiresAt.UTC()
		c.ExpiresAt = &t
	}
	b, _ := json.Marshal(c)
	return b
}

// problems turns a Decode error into field errors.
func problems(err error) []contract.FieldError {
	var ve *contract.ValidationError
	if errors.As(err, &ve) {
		return ve.Problems
	}
	return []contract.FieldError{{Field: "json", Message: err.Error()}}
}

// idOf digs the id out of an item that did not validate, if it has one,
// so the answer can name it.
func idOf(raw []byte) string {
	var v struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	var id string
	if json.Unmarshal(v.ID, &id) != nil || len(id) > contract.MaxIDLength {
		return ""
	}
	return id
}

// Tally counts item results by result.
func Tally(rs []ItemResult) map[string]int {
	m := map[string]int{ResultAccepted: 0, ResultDuplicate: 0, ResultRejected: 0, ResultFailed: 0}
	for _, r := range rs {
		m[r.Result]++
	}
	return m
}

package views

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/topology"
)

// Producer publishes records. *kgo.Client built with
// topology.KgoProducerOpts is the real one: its partitioner places a key
// where Sarama (and so the dispatcher) expects it.
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
// false only for a single object. A JSONL line that is not JSON is an item
// of its own (rejected later), so one bad line does not lose the others; an
// array that does not parse is an error for the whole body.
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
		var raws []json.RawMessage
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, true, fmt.Errorf("%w: JSON array: %v", ErrBody, err)
		}
		items = make([]Item, len(raws))
		for i, r := range raws {
			items[i] = Item{Index: i, Raw: r}
		}
		return items, true, nil
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

// Ingester validates dispatch requests with the dispatcher's own decoder
// (contract.Decode) and publishes the valid ones to herald.requests, keyed
// by id, byte for byte as they came.
//
// Duplicates: an id the table already knows, or one repeated within the
// batch, is answered "duplicate" and not published. That is an early
// answer, not the guarantee: an id published a moment ago may not be in the
// view yet and is published again, and the dispatcher (which owns the
// state) drops it. Exactly-once is the dispatcher's, never the API's.
type Ingester struct {
	// Table, when set, answers which ids are known. Without it nothing is
	// reported as a duplicate of an earlier batch.
	Table    Table
	Producer Producer
	// Topic defaults to topology.TopicRequests.
	Topic string
}

// Ingest answers every item, in order. The error is only for a failure to
// read the table; a publish failure is an item result ("failed").
func (in *Ingester) Ingest(ctx context.Context, items []Item) ([]ItemResult, error) {
	topic := in.Topic
	if topic == "" {
		topic = topology.TopicRequests
	}
	out := make([]ItemResult, len(items))
	seen := make(map[string]bool, len(items))
	var recs []*kgo.Record
	var idx []int
	for i, it := range items {
		res := ItemResult{Index: it.Index, Line: it.Line}
		req, err := contract.Decode(nil, it.Raw)
		switch {
		case err != nil:
			res.Result = ResultRejected
			res.ID = idOf(it.Raw)
			res.Errors = problems(err)
		case seen[req.ID]:
			res.ID, res.Result = req.ID, ResultDuplicate
		default:
			res.ID = req.ID
			seen[req.ID] = true
			if in.Table != nil {
				st, err := in.Table.Get(req.ID)
				if err != nil {
					return nil, err
				}
				if st != nil {
					res.Result, res.Status = ResultDuplicate, st.Status
					break
				}
			}
			res.Result = ResultAccepted
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(req.ID), Value: bytes.TrimSpace(it.Raw)})
			idx = append(idx, i)
		}
		out[i] = res
	}
	if len(recs) == 0 {
		return out, nil
	}
	pos := make(map[*kgo.Record]int, len(recs))
	for j, r := range recs {
		pos[r] = idx[j]
	}
	for _, pr := range in.Producer.ProduceSync(ctx, recs...) {
		if pr.Err != nil {
			i := pos[pr.Record]
			out[i].Result, out[i].Error = ResultFailed, pr.Err.Error()
		}
	}
	return out, nil
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

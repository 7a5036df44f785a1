package views

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/gokax"
	"github.com/herald-dispatch/herald/internal/topology"
)

// Table is what the API reads of the dispatcher's state. StateView is the
// real one, a Goka view over the dispatcher's group table.
type Table interface {
	// Get returns the state of one notification, or nil when the id is
	// unknown.
	Get(id string) (*contract.State, error)
	// Recovered reports whether the table has caught up with its changelog
	// once, so that a missing id really is unknown.
	Recovered() bool
}

// StateView is a Goka view over topology.TableDispatcher: a local, LevelDB
// backed copy of every notification's state, kept up to date from the
// table's changelog. Reads never go to Kafka.
//
// Freshness: the view lags the dispatcher by the changelog's produce flush
// (5 ms) plus a fetch, a few milliseconds on a healthy cluster. A request
// accepted a moment ago can therefore still read as unknown; the API says
// so in its answers instead of pretending otherwise.
//
// Storage: the view keeps its copy and the changelog offset it has read up
// to under its storage dir. Like the processors' storage, it must be wiped
// together with the broker's log, never alone the other way round (goka
// issue 415). Two processes cannot share one storage dir (LevelDB locks it).
type StateView struct {
	view *goka.View
}

// NewStateView builds a view of the dispatcher table with Herald's Sarama
// settings and its storage under storageDir. Run it with Run.
func NewStateView(tc topology.Config, storageDir string, log *slog.Logger) (*StateView, error) {
	tc = tc.WithDefaults()
	v, err := goka.NewView(tc.Brokers, topology.TableDispatcher, new(codec.Bytes),
		append(gokax.ViewOptions(tc, tc.ClientID+"-view", log),
			goka.WithViewClientID(tc.ClientID+"-view"),
			goka.WithViewStorageBuilder(gokax.Storage(filepath.Clean(storageDir))),
			goka.WithViewAutoReconnect(),
		)...)
	if err != nil {
		return nil, fmt.Errorf("views: dispatcher table view: %w", err)
	}
	return &StateView{view: v}, nil
}

// Run keeps the view up to date until ctx ends. With auto-reconnect, it
// only returns early when the view cannot even start.
func (v *StateView) Run(ctx context.Context) error {
	if err := v.view.Run(ctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("views: dispatcher table view: %w", err)
	}
	return nil
}

// Recovered reports whether every partition has caught up once.
func (v *StateView) Recovered() bool { return v.view.Recovered() }

// Goka returns the underlying view, for Goka's monitor.
func (v *StateView) Goka() *goka.View { return v.view }

// Get returns the state stored for id, or nil.
func (v *StateView) Get(id string) (*contract.State, error) {
	raw, err := v.view.Get(id)
	if err != nil {
		return nil, fmt.Errorf("views: get %q: %w", id, err)
	}
	b, _ := raw.([]byte)
	if b == nil {
		return nil, nil
	}
	return topology.DecodeState(b)
}

// Summary is the light part of a state that a scan decodes.
type Summary struct {
	Status     contract.Status     `json:"status"`
	HoldReason contract.HoldReason `json:"hold_reason"`
}

// DecodeSummary reads the status and hold reason of an encoded state
// without decoding the rest, which is mostly the request and the history
// (BenchmarkSummary: many times faster than json.Unmarshal, which scans
// every byte even into a two-field struct).
//
// It relies on how encoding/json writes a contract.State: fields in
// declaration order, no spaces, quotes inside strings escaped. So the
// first `"version":` is the top-level key (nothing nested comes before it),
// and `"status":"` and `"hold_reason":"` before it are the top-level keys
// too: a string value cannot contain an unescaped quote. Anything else (a
// value with escapes, a missing key) falls back to json.Unmarshal.
// TestDecodeSummary checks it against json.Unmarshal, and fails if
// contract.State's fields are reordered so that this no longer holds.
func DecodeSummary(b []byte) (Summary, error) {
	var s Summary
	if v := bytes.Index(b, []byte(`"version":`)); v > 0 {
		head := b[:v]
		status, ok1 := stringAfter(head, `"status":"`)
		reason, ok2 := stringAfter(head, `"hold_reason":"`)
		if ok1 && status != "" && (ok2 || !bytes.Contains(head, []byte(`"hold_reason":`))) {
			s.Status, s.HoldReason = contract.Status(status), contract.HoldReason(reason)
			return s, nil
		}
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("views: state: %w", err)
	}
	return s, nil
}

// stringAfter returns the plain string (no escapes) that follows the first
// occurrence of key in b.
func stringAfter(b []byte, key string) (string, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// Scan calls fn with the status and hold reason of every notification in
// the view, decoding only the start of each state (DecodeSummary).
func (v *StateView) Scan(ctx context.Context, fn func(Summary)) error {
	it, err := v.view.Iterator()
	if err != nil {
		return fmt.Errorf("views: scan: %w", err)
	}
	defer it.Release()
	var n int
	for it.Next() {
		if n++; n%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		raw, err := it.Value()
		if err != nil {
			return fmt.Errorf("views: scan %q: %w", it.Key(), err)
		}
		b, _ := raw.([]byte)
		if b == nil {
			continue
		}
		s, err := DecodeSummary(b)
		if err != nil {
			return fmt.Errorf("views: scan %q: %w", it.Key(), err)
		}
		fn(s)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("views: scan: %w", err)
	}
	return nil
}

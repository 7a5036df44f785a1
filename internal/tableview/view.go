// Package tableview owns the process's read-only copy of the dispatcher's
// group table (StateView, a Goka view over topology.TableDispatcher) and
// the rules for reading its encoded states without decoding them whole: a
// state's version (Version: the dispatcher's check of the changelog before
// it sends a replayed command again), the status summaries (Scan: the held
// gauge), which states are in flight (InFlight: an index of the non-final
// states the view keeps as it stores them, so the sweep reads the work in
// flight and not a year of history), and which states are overdue
// (Overdue: the dispatcher's sweep rescues them, GET /v1/stuck lists
// them). The sender's stale check reads the progress of the states
// (Progress, ProgressReader): from the index for a state in flight,
// from the store for any other.
//
// It holds no HTTP and no stage: the API (package views), the sender, the
// dispatcher and the metrics each read the table through it, or through an
// interface of their own that StateView implements, so that one process
// keeps one copy of the table.
package tableview

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/gokax"
	"github.com/herald-dispatch/herald/internal/topology"
)

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
//
// In flight: the view keeps an index of its non-final states per partition
// (InFlight, inflight.go), so the sweep looks at the work in flight and not
// at the whole table.
type StateView struct {
	view *goka.View
	ix   *inFlight
}

// NewStateView builds a view of the dispatcher table with Herald's Sarama
// settings and its storage under storageDir. Run it with Run.
func NewStateView(tc topology.Config, storageDir string, log *slog.Logger) (*StateView, error) {
	tc = tc.WithDefaults()
	ix := newInFlight()
	v, err := goka.NewView(tc.Brokers, topology.TableDispatcher, new(codec.Bytes),
		append(gokax.ViewOptions(tc, tc.ClientID+"-view", log),
			goka.WithViewClientID(tc.ClientID+"-view"),
			goka.WithViewStorageBuilder(ix.builder(gokax.Storage(filepath.Clean(storageDir)))),
			// After ViewOptions, so it replaces its VersionedUpdate: the
			// same rule, reporting each stored value to the index.
			goka.WithViewCallback(gokax.VersionedUpdateObserved(ix)),
			goka.WithViewAutoReconnect(),
		)...)
	if err != nil {
		return nil, fmt.Errorf("tableview: dispatcher table view: %w", err)
	}
	return &StateView{view: v, ix: ix}, nil
}

// Run keeps the view up to date until ctx ends. With auto-reconnect, it
// only returns early when the view cannot even start.
func (v *StateView) Run(ctx context.Context) error {
	if err := v.view.Run(ctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("tableview: dispatcher table view: %w", err)
	}
	return nil
}

// Recovered reports whether every partition has caught up once.
func (v *StateView) Recovered() bool { return v.view.Recovered() }

// InFlight returns the ids of partition's states that are not final (held,
// queued, sending, or unreadable), sorted: the only states the sweep can
// find overdue. It is the index's snapshot; a state may have become final
// since, so a reader reads each state again (the sweep does).
func (v *StateView) InFlight(partition int32) []string { return v.ix.ids(partition) }

// Counts returns how many states the view holds of each status, and of
// each hold reason among the held ones, from the index the view keeps as
// it stores them: what a Scan would count, without reading the table
// (metrics.Held reads it).
func (v *StateView) Counts() (map[contract.Status]int, map[contract.HoldReason]int) {
	return v.ix.counts()
}

// Goka returns the underlying view, for Goka's monitor.
func (v *StateView) Goka() *goka.View { return v.view }

// Get returns the state stored for id, or nil.
func (v *StateView) Get(id string) (*contract.State, error) {
	raw, err := v.view.Get(id)
	if err != nil {
		return nil, fmt.Errorf("tableview: get %q: %w", id, err)
	}
	b, _ := raw.([]byte)
	if b == nil {
		return nil, nil
	}
	return contract.DecodeState(b)
}

// Progress returns where id's state stands: a State with only ID, Status,
// HoldReason, Attempts, Issue, Commands and Version set, as
// contract.DecodeProgress reads them; nil when the view holds no state for
// id. It is the sender's stale check (sender.Stale), for every command.
// A state in flight (the index's, inflight.go) is answered from memory;
// any other (final, unknown, unreadable in the index) is read from the
// store and decoded. In a burst the store's read was most of the check's
// cost, and with compactions running it waited on LevelDB's table cache
// (docs/performance.md).
func (v *StateView) Progress(id string) (*contract.State, error) {
	if p, ok := v.ix.progress(id); ok {
		status, hold := p.summary()
		return &contract.State{ID: id, Status: status, HoldReason: hold, Attempts: int(p.attempts), Issue: int(p.issue),
			Commands: int(p.commands), Version: p.version}, nil
	}
	raw, err := v.view.Get(id)
	if err != nil {
		return nil, fmt.Errorf("tableview: progress of %q: %w", id, err)
	}
	b, _ := raw.([]byte)
	if b == nil {
		return nil, nil
	}
	st, err := contract.DecodeProgress(b)
	if err != nil {
		return nil, fmt.Errorf("tableview: progress of %q: %w", id, err)
	}
	return &contract.State{ID: st.ID, Status: st.Status, HoldReason: st.HoldReason, Attempts: st.Attempts, Issue: st.Issue,
		Commands: st.Commands, Version: st.Version}, nil
}

// ProgressReader is v as the sender's StateReader: Get is v.Progress.
type ProgressReader struct{ View *StateView }

// Get returns v.Progress(id).
func (r ProgressReader) Get(id string) (*contract.State, error) { return r.View.Progress(id) }

// Recovered reports whether the view has caught up once: the sender waits
// for it before it consumes.
func (r ProgressReader) Recovered() bool { return r.View.Recovered() }

// Version returns the version of id's state in the view, reading only
// the version (contract.StateVersion); ok is false when the view has no
// state for id or cannot read it. It is the dispatcher's
// Dispatcher.Changelog.
func (v *StateView) Version(id string) (version uint64, ok bool) {
	raw, err := v.view.Get(id)
	if err != nil {
		return 0, false
	}
	b, _ := raw.([]byte)
	if b == nil {
		return 0, false
	}
	version, err = contract.StateVersion(b)
	return version, err == nil
}

// Scan calls fn with the status and hold reason of every notification in
// the view, decoding only those (contract.DecodeSummary).
func (v *StateView) Scan(ctx context.Context, fn func(contract.Summary)) error {
	return v.scan(ctx, func(key string, b []byte) error {
		s, err := contract.DecodeSummary(b)
		if err != nil {
			return fmt.Errorf("tableview: scan %q: %w", key, err)
		}
		fn(s)
		return nil
	})
}

// scan calls fn with the key and the encoded state of every notification
// in the view, and stops at fn's first error or when ctx ends.
func (v *StateView) scan(ctx context.Context, fn func(key string, b []byte) error) error {
	it, err := v.view.Iterator()
	if err != nil {
		return fmt.Errorf("tableview: scan: %w", err)
	}
	defer it.Release()
	var n int
	for it.Next() {
		if n++; n%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		raw, err := it.Value()
		if err != nil {
			return fmt.Errorf("tableview: scan %q: %w", it.Key(), err)
		}
		if b, _ := raw.([]byte); b != nil {
			if err := fn(it.Key(), b); err != nil {
				return err
			}
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("tableview: scan: %w", err)
	}
	return nil
}

// ScanInFlight calls fn with the encoded state of every notification in
// flight (InFlight, every partition), read from the view now: the only
// states Overdue can find overdue, so GET /v1/stuck costs the work in
// flight, not the table. A state that went final since the index was read
// is passed as it is now; one deleted since is skipped.
func (v *StateView) ScanInFlight(ctx context.Context, fn func(raw []byte)) error {
	for _, p := range v.ix.partitions() {
		for _, id := range v.ix.ids(p) {
			if err := ctx.Err(); err != nil {
				return err
			}
			raw, err := v.view.Get(id)
			if err != nil {
				return fmt.Errorf("tableview: get %q: %w", id, err)
			}
			if b, _ := raw.([]byte); b != nil {
				fn(b)
			}
		}
	}
	return nil
}

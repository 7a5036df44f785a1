package tableview

import (
	"fmt"
	"slices"
	"sync"

	"github.com/lovoo/goka/storage"

	"github.com/herald-dispatch/herald/contract"
)

// inFlight is the index of the view's states in flight: per partition,
// the ids whose state is not final (held, queued or sending). The sweep
// reads it instead of iterating the whole view (InFlight): the table holds
// every notification for --dedup-retention, a year of them at the seed's
// volume, and a pass over them every minute cost more than half a core
// (docs/performance.md, A year of history), while the states that can be
// overdue are only those in flight.
//
// Guarantee: after a partition's storage is opened, the index holds
// exactly the ids of its non-final states, as the view's storage does.
//   - At open (seed), the partition's local store is read once, whole,
//     before Goka recovers anything into it, and its set replaced.
//   - Every later change of the storage comes through the view's update
//     callback (gokax.VersionedUpdateObserved), which reports a value
//     after storing it: a non-final state adds its id, a final or
//     remembered one or a tombstone removes it. The view writes its
//     storage through nothing else.
//   - A value that does not decode stays in the index (the sweep reads
//     the stored state again and skips what it cannot read), so the index
//     errs on the side of being looked at.
//
// A crash loses nothing: the index lives in memory and is rebuilt from
// the local store at the next open.
type inFlight struct {
	mu    sync.RWMutex
	parts map[int32]map[string]struct{}
}

func newInFlight() *inFlight { return &inFlight{parts: map[int32]map[string]struct{}{}} }

// stored is the update callback's report: value was stored for key in
// partition (nil: deleted).
func (ix *inFlight) stored(partition int32, key string, value []byte) {
	live := value != nil && inFlightValue(value)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	p := ix.parts[partition]
	if live {
		if p == nil {
			p = map[string]struct{}{}
			ix.parts[partition] = p
		}
		p[key] = struct{}{}
	} else if p != nil {
		delete(p, key)
	}
}

// inFlightValue reports whether an encoded state may still need the
// sweep: not final, or unreadable.
func inFlightValue(b []byte) bool {
	s, err := contract.DecodeSummary(b)
	return err != nil || !s.Status.Final()
}

// seed replaces partition's set with the non-final states of st.
func (ix *inFlight) seed(partition int32, st storage.Storage) error {
	it, err := st.Iterator()
	if err != nil {
		return fmt.Errorf("tableview: index partition %d: %w", partition, err)
	}
	defer it.Release()
	set := map[string]struct{}{}
	for it.Next() {
		v, err := it.Value()
		if err != nil {
			return fmt.Errorf("tableview: index partition %d: %w", partition, err)
		}
		if v != nil && inFlightValue(v) {
			set[string(it.Key())] = struct{}{}
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("tableview: index partition %d: %w", partition, err)
	}
	ix.mu.Lock()
	ix.parts[partition] = set
	ix.mu.Unlock()
	return nil
}

// ids returns the ids in flight in partition, sorted (a copy).
func (ix *inFlight) ids(partition int32) []string {
	ix.mu.RLock()
	p := ix.parts[partition]
	out := make([]string, 0, len(p))
	for id := range p {
		out = append(out, id)
	}
	ix.mu.RUnlock()
	slices.Sort(out)
	return out
}

// builder wraps b so that each partition's storage seeds the index when
// it is opened, before Goka reads or recovers into it.
func (ix *inFlight) builder(b storage.Builder) storage.Builder {
	return func(topic string, partition int32) (storage.Storage, error) {
		st, err := b(topic, partition)
		if err != nil {
			return nil, err
		}
		return &seedingStorage{Storage: st, ix: ix, partition: partition}, nil
	}
}

// seedingStorage is a partition's storage that seeds the index at Open.
type seedingStorage struct {
	storage.Storage
	ix        *inFlight
	partition int32
}

func (s *seedingStorage) Open() error {
	if err := s.Storage.Open(); err != nil {
		return err
	}
	return s.ix.seed(s.partition, s.Storage)
}

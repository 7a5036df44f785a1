package tableview

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/lovoo/goka/storage"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/topology"
)

// inFlight is the index of the view's states: per partition, the ids
// whose state is not final (held, queued or sending) with the progress of
// each (status, attempts, issue, commands, version), and how many states
// there are of each status and hold reason. The sweep reads the ids
// instead of iterating the whole view (InFlight), the sender's stale check
// the progress instead of a read of the store for every command
// (Progress), and the held gauge the counts (Counts): the table holds every notification for
// --dedup-retention, a year of them at the seed's volume, and a pass over
// them every minute cost more than half a core (docs/performance.md, A
// year of history), while the states that can be overdue are only those
// in flight.
//
// Guarantee: after a partition's storage is opened, the index describes
// exactly what the view's storage holds for it.
//   - At open (seed), the partition's local store is read once, whole,
//     before Goka recovers anything into it, and its entry replaced.
//   - Every later change of the storage comes through the view's update
//     callback (gokax.VersionedUpdateObserved), which reports the value it
//     stored and the one it replaced, after storing it, in the partition's
//     order: the replaced one is taken out of the counts and the set, the
//     stored one put in. The view writes its storage through nothing
//     else, and one goroutine writes a partition. For a key the index
//     holds in flight, the callback judges the record by the index's
//     version (Version) without reading the store, and the entry stands
//     for the replaced value: it was put in from that value, and nothing
//     but this partition's callback changes it.
//   - A value whose summary does not decode is counted under no status
//     and stays in the set (the sweep reads the stored state again and
//     skips what it cannot read), so the index errs on the side of being
//     looked at. Its progress, or that of an in-flight value whose
//     progress does not decode, is marked unreadable, and Progress reads
//     the store for it.
//   - A reader can see the index one stored value behind the store (the
//     callback runs after the Put): the same as reading the store a moment
//     earlier, which every reader of a view already allows for, since the
//     view itself lags the changelog.
//
// A crash loses nothing: the index lives in memory and is rebuilt from
// the local store at the next open.
type inFlight struct {
	mu    sync.RWMutex
	parts map[int32]*partIndex
}

// partIndex is one partition's part of the index.
type partIndex struct {
	ids    map[string]progress
	status map[contract.Status]int
	held   map[contract.HoldReason]int
}

// progress is what the index keeps of a state in flight: the fields of
// contract.DecodeProgress that the sender's stale check reads (Progress),
// in 24 bytes, since a backlog puts every notification of a burst in
// flight at once (a 1,000,000 burst held about 600,000 entries). status
// and hold are 1 + their index in heldOrSending and holdReasons; status 0
// marks an entry the index has no progress for (a state that does not
// decode, a status or hold reason this version does not know, a count
// beyond int32): Progress and Version read the store for it.
type progress struct {
	version                   uint64
	attempts, issue, commands int32
	status, hold              uint8
}

// The statuses and hold reasons an entry's progress can name (the
// statuses of a state in flight).
var (
	heldOrSending = [...]contract.Status{contract.StatusScheduled, contract.StatusDeferred, contract.StatusSending,
		contract.StatusRetrying}
	holdReasons = [...]contract.HoldReason{"", contract.HoldSchedule, contract.HoldBlackout, contract.HoldBackoff,
		contract.HoldRateLimit}
)

// newProgress is the entry of a state in flight whose summary is s and
// progress st (nil: it did not decode). Status and hold reason are the
// summary's, which counted the state in, so that the entry counts it out
// alike.
func newProgress(s contract.Summary, st *contract.State) progress {
	status, hold := slices.Index(heldOrSending[:], s.Status), slices.Index(holdReasons[:], s.HoldReason)
	if st == nil || status < 0 || hold < 0 || !fitsInt32(st.Attempts, st.Issue, st.Commands) {
		return progress{}
	}
	return progress{version: st.Version, attempts: int32(st.Attempts), issue: int32(st.Issue), commands: int32(st.Commands),
		status: uint8(status + 1), hold: uint8(hold + 1)}
}

func fitsInt32(ns ...int) bool {
	for _, n := range ns {
		if n != int(int32(n)) {
			return false
		}
	}
	return true
}

// ok reports whether the entry holds the state's progress.
func (e progress) ok() bool { return e.status != 0 }

// summary is the entry's status and hold reason; e.ok() must be true.
func (e progress) summary() (contract.Status, contract.HoldReason) {
	return heldOrSending[e.status-1], holdReasons[e.hold-1]
}

func newPartIndex() *partIndex {
	return &partIndex{ids: map[string]progress{}, status: map[contract.Status]int{}, held: map[contract.HoldReason]int{}}
}

// count counts a state of status s (held for hold) in (n 1) or out (n -1).
func (p *partIndex) count(s contract.Status, hold contract.HoldReason, n int) {
	p.status[s] += n
	if s.Held() {
		p.held[hold] += n
	}
}

// remove counts the encoded state b out of p.
func (p *partIndex) remove(b []byte) {
	if s, err := contract.DecodeSummary(b); err == nil {
		p.count(s.Status, s.HoldReason, -1)
	}
}

// add counts the encoded state b of key in, and keeps its progress while
// it is in flight.
// It counts by the same decoder as remove (DecodeSummary), so that a
// state counted in is counted out alike.
func (p *partIndex) add(key string, b []byte) {
	s, err := contract.DecodeSummary(b)
	if err != nil {
		p.ids[key] = progress{}
		return
	}
	p.count(s.Status, s.HoldReason, 1)
	if s.Status.Final() {
		return
	}
	st, err := contract.DecodeProgress(b)
	if err != nil {
		st = nil
	}
	p.ids[key] = newProgress(s, st)
}

func newInFlight() *inFlight { return &inFlight{parts: map[int32]*partIndex{}} }

// Version is the index's side of gokax.StoreObserver: the version of
// key's stored state in partition, when the index holds it in flight and
// readable (the version DecodeProgress read from the stored value).
func (ix *inFlight) Version(partition int32, key string) (uint64, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if p := ix.parts[partition]; p != nil {
		if e, ok := p.ids[key]; ok && e.ok() {
			return e.version, true
		}
	}
	return 0, false
}

// Stored is the update callback's report (gokax.StoreObserver): value was
// stored for key in partition (nil: deleted) in place of old (nil: none,
// or the entry the index holds for key, whose Version the update used).
func (ix *inFlight) Stored(partition int32, key string, old, value []byte) {
	ix.stored(partition, key, old, value)
}

// stored records that value was stored for key in partition (nil:
// deleted) in place of old (nil: none, or the index's own entry for key).
func (ix *inFlight) stored(partition int32, key string, old, value []byte) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	p := ix.parts[partition]
	if p == nil {
		p = newPartIndex()
		ix.parts[partition] = p
	}
	if old != nil {
		p.remove(old)
	} else if e, ok := p.ids[key]; ok && e.ok() {
		// The update judged the record by the entry's Version and did not
		// read the value it replaced: the entry is its summary.
		status, hold := e.summary()
		p.count(status, hold, -1)
	}
	delete(p.ids, key)
	if value != nil {
		p.add(key, value)
	}
}

// seed replaces partition's entry with what st holds.
func (ix *inFlight) seed(partition int32, st storage.Storage) error {
	it, err := st.Iterator()
	if err != nil {
		return fmt.Errorf("tableview: index partition %d: %w", partition, err)
	}
	defer it.Release()
	p := newPartIndex()
	for it.Next() {
		v, err := it.Value()
		if err != nil {
			return fmt.Errorf("tableview: index partition %d: %w", partition, err)
		}
		if v != nil {
			p.add(string(it.Key()), v)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("tableview: index partition %d: %w", partition, err)
	}
	ix.mu.Lock()
	ix.parts[partition] = p
	ix.mu.Unlock()
	return nil
}

// ids returns the ids in flight in partition, sorted (a copy).
func (ix *inFlight) ids(partition int32) []string {
	ix.mu.RLock()
	var out []string
	if p := ix.parts[partition]; p != nil {
		out = make([]string, 0, len(p.ids))
		for id := range p.ids {
			out = append(out, id)
		}
	}
	ix.mu.RUnlock()
	slices.Sort(out)
	return out
}

// progress returns the progress of key's state when the index holds it in
// flight and readable, looking in the partition topology.Partition gives
// the key among the partitions the index has seen (a view holds every
// partition of the table). ok is false otherwise: the state is final,
// unknown, or unreadable, and the caller reads the store.
func (ix *inFlight) progress(key string) (p progress, ok bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if len(ix.parts) == 0 {
		return p, false
	}
	if part := ix.parts[topology.Partition(key, len(ix.parts))]; part != nil {
		p, ok = part.ids[key]
	}
	return p, ok && p.ok()
}

// partitions returns the partitions the index has seen, sorted.
func (ix *inFlight) partitions() []int32 {
	ix.mu.RLock()
	out := slices.Collect(maps.Keys(ix.parts))
	ix.mu.RUnlock()
	slices.Sort(out)
	return out
}

// counts returns the states of every partition by status, and the held
// ones by hold reason (copies).
func (ix *inFlight) counts() (map[contract.Status]int, map[contract.HoldReason]int) {
	status, held := map[contract.Status]int{}, map[contract.HoldReason]int{}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	for _, p := range ix.parts {
		for s, n := range p.status {
			status[s] += n
		}
		for r, n := range p.held {
			held[r] += n
		}
	}
	return status, held
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

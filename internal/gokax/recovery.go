package gokax

import (
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/lovoo/goka/storage"
	"github.com/syndtr/goleveldb/leveldb"
	ldbiter "github.com/syndtr/goleveldb/leveldb/iterator"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/util"
)

// offsetKey is where a table's database keeps the changelog offset it has
// stored up to: Goka's own key and format (a decimal string), so that a
// data dir written by Goka's storage is read by this one and the other way
// round.
const offsetKey = "__offset"

// RecoveryBatchBytes is how many bytes of keys and values RecoveryStorage
// gathers while it recovers before it writes them to LevelDB in one batch:
// half the table write buffer, so that a batch always goes through the
// journal and the memtable like a single write (a batch larger than the
// write buffer would be written as a LevelDB transaction instead), and
// costs a few hundred KiB a database while it is gathered.
const RecoveryBatchBytes = TableWriteBuffer / 2

// RecoveryWriteBuffer is the write buffer (memtable) of each database while
// it recovers: eight times TableWriteBuffer. LevelDB's compaction of a
// recovery's random keys rewrites about all of level 1 for each handful of
// level-0 tables, so its cost falls with the size of the tables the
// memtable is flushed into (BenchmarkRecovery: a third less CPU a record
// with 4 MiB than with 512 KiB, 5.9 against 8.6 µs). Options are fixed
// when LevelDB opens a database, so MarkRecovered reopens it with
// tableOptions: the larger buffer is held only while recovering (see
// RecoveryStorage).
const RecoveryWriteBuffer = 8 * TableWriteBuffer

// RecoveryKeyFilterBytes is the size of the filter of the keys a
// RecoveryStorage has written since it opened an empty database (a new
// instance, a wiped store). While recovering, VersionedUpdate reads every
// key before it writes it, and most keys of a changelog are new: the
// filter answers "never written" without LevelDB, whose Get of a missing
// key walks the memtable's skip list and a bloom filter per table (21% of
// a recovery's CPU in BenchmarkRecovery). 1 MiB a database holds
// 1,000,000 keys (a year at the seed's volume over 12 partitions) at about
// 2% false positives, which only cost the LevelDB Get they would have
// made anyway; the filter is dropped at MarkRecovered. A database that
// held anything at Open gets no filter: every Get goes to LevelDB.
const RecoveryKeyFilterBytes = 1 << 20

// keyFilter is a bloom filter of keys: mayHave is false only for a key
// never added.
type keyFilter struct {
	bits []uint64
	mask uint64 // len(bits)*64 - 1: the size is a power of two
	seed maphash.Seed
}

// keyFilterProbes is the filter's number of hash functions (seven: the
// fewest false positives at about ten bits a key).
const keyFilterProbes = 7

func newKeyFilter(bytes int) *keyFilter {
	n := 1
	for n*8 < bytes {
		n *= 2
	}
	return &keyFilter{bits: make([]uint64, n), mask: uint64(n)*64 - 1, seed: maphash.MakeSeed()}
}

// hashes derive the filter's positions from one 64-bit hash (double
// hashing: h1 + i·h2).
func (f *keyFilter) hashes(key string) (uint64, uint64) {
	h := maphash.String(f.seed, key)
	return h, h>>32 | 1
}

func (f *keyFilter) add(key string) {
	h1, h2 := f.hashes(key)
	for i := range uint64(keyFilterProbes) {
		b := (h1 + i*h2) & f.mask
		f.bits[b/64] |= 1 << (b % 64)
	}
}

func (f *keyFilter) mayHave(key string) bool {
	h1, h2 := f.hashes(key)
	for i := range uint64(keyFilterProbes) {
		b := (h1 + i*h2) & f.mask
		if f.bits[b/64]&(1<<(b%64)) == 0 {
			return false
		}
	}
	return true
}

// recoveryOptions are tableOptions with RecoveryWriteBuffer.
func recoveryOptions() *opt.Options {
	o := tableOptions()
	o.WriteBuffer = RecoveryWriteBuffer
	return o
}

// RecoveryStorage is the LevelDB storage of every Goka table and view Herald
// opens (Storage builds it): Goka's storage.Storage with the same data
// layout, but a recovery that writes in batches.
//
// While a partition recovers (from Open to MarkRecovered), Goka stores every
// changelog record through Set or Delete and then SetOffset. Goka's own
// storage writes each record to LevelDB alone (a journal write a record:
// its Set was a third of a recovery's CPU in BenchmarkRecovery, half of
// that the journal's write calls) and keeps the offset in
// memory, persisting it every 30 s and at MarkRecovered. This one gathers
// the writes in a leveldb.Batch of up to RecoveryBatchBytes and writes the
// batch in one call, with the latest offset given to SetOffset as the
// batch's last entry. Reads (Get, Has) see the pending writes; an iterator
// first writes them out. If the database was empty when it opened, a
// filter of the keys written since (RecoveryKeyFilterBytes) answers the
// reads of keys never written without asking LevelDB. While recovering,
// the database is open with RecoveryWriteBuffer; MarkRecovered closes it
// and opens it again with tableOptions, so each database's larger memtables (up to two of 4 MiB,
// the one being flushed included) are garbage once it is recovered; a
// database with an iterator open at MarkRecovered (a scan of the view
// while it recovers) is not reopened, and keeps the larger buffer.
//
// Guarantee (a crash mid-recovery): LevelDB applies a batch whole or not at
// all (it is one journal record), and a batch ends with the offset given to
// SetOffset last. Goka calls SetOffset after storing each record, and a
// batch is written when a record's Set or Delete fills it, so the stored
// table is always the changelog's up to the stored offset, or up to the one
// record after it: never behind the offset. A process killed between two
// batches loses the pending ones and the offset that goes with them, and
// the next recovery reads them again from the stored offset (the record
// after it included). Reading a record again is harmless because the
// dispatcher table's update callback (VersionedUpdate) stores an equal
// version again and never lets a lower one replace a higher. Close and
// MarkRecovered write the pending batch and the latest offset before they
// return. TestRecoveryStorageCrashNeverStoresAnOffsetAheadOfItsData
// kills a storage mid-recovery and checks this.
//
// Once recovered, every Set, Delete and SetOffset is one LevelDB write, as
// with Goka's storage (a crash between a record and its offset re-reads
// that record).
//
// Like every Goka storage, it is safe for any number of concurrent readers
// with one writer.
type RecoveryStorage struct {
	path       string      // the database's directory; empty: not reopened
	db         *leveldb.DB // replaced by MarkRecovered under mu, before recovered is set
	batchBytes int         // RecoveryBatchBytes; tests and benchmarks vary it
	recovered  atomic.Bool

	mu        sync.RWMutex // guards what follows, and orders reads with batch writes
	batch     leveldb.Batch
	pending   map[string]pendingWrite // the batch's writes by key, the last one of each
	written   *keyFilter              // every key Set since Open, if the database was empty then; nil otherwise
	size      int                     // bytes of keys and values in the batch
	liveIters int                     // iterators opened while recovering and not released
	offset    int64                   // the last offset SetOffset was given
	hasOff    bool                    // SetOffset was called
	closed    bool
}

// pendingWrite is a write in the batch: a value, or a delete.
type pendingWrite struct {
	value   []byte
	deleted bool
}

var _ storage.Storage = (*RecoveryStorage)(nil)

// NewRecoveryStorage returns a RecoveryStorage over db, recovering until
// MarkRecovered. It owns db: Close closes it. It keeps db's options.
func NewRecoveryStorage(db *leveldb.DB) *RecoveryStorage {
	s := &RecoveryStorage{db: db, batchBytes: RecoveryBatchBytes, pending: make(map[string]pendingWrite)}
	it := db.NewIterator(nil, nil)
	if !it.First() && it.Error() == nil {
		s.written = newKeyFilter(RecoveryKeyFilterBytes)
	}
	it.Release()
	return s
}

// OpenRecoveryStorage opens the database in path with RecoveryWriteBuffer
// for its recovery; MarkRecovered reopens it with tableOptions.
func OpenRecoveryStorage(path string) (*RecoveryStorage, error) {
	db, err := leveldb.OpenFile(path, recoveryOptions())
	if err != nil {
		return nil, fmt.Errorf("leveldb: open %s: %w", path, err)
	}
	s := NewRecoveryStorage(db)
	s.path = path
	return s, nil
}

// Open does nothing: the offset is persisted with each batch, not by a
// ticker.
func (s *RecoveryStorage) Open() error { return nil }

// Get returns key's value, nil if it has none; a pending write wins over
// the database.
func (s *RecoveryStorage) Get(key string) ([]byte, error) {
	if !s.recovered.Load() {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if w, ok := s.pending[key]; ok {
			if w.deleted {
				return nil, nil
			}
			return append(make([]byte, 0, len(w.value)), w.value...), nil
		}
		if s.written != nil && !s.written.mayHave(key) {
			return nil, nil // never written to a database that was empty
		}
	}
	v, err := s.db.Get([]byte(key), nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("leveldb: get %q: %w", key, err)
	}
	return v, nil
}

// Has reports whether key has a value.
func (s *RecoveryStorage) Has(key string) (bool, error) {
	if !s.recovered.Load() {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if w, ok := s.pending[key]; ok {
			return !w.deleted, nil
		}
		if s.written != nil && !s.written.mayHave(key) {
			return false, nil
		}
	}
	ok, err := s.db.Has([]byte(key), nil)
	if err != nil {
		return false, fmt.Errorf("leveldb: has %q: %w", key, err)
	}
	return ok, nil
}

// Set stores key's value: into the batch while recovering, else straight
// into the database.
func (s *RecoveryStorage) Set(key string, value []byte) error {
	if s.recovered.Load() {
		if err := s.db.Put([]byte(key), value, nil); err != nil {
			return fmt.Errorf("leveldb: set %q: %w", key, err)
		}
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batch.Put([]byte(key), value)
	s.pending[key] = pendingWrite{value: append(make([]byte, 0, len(value)), value...)}
	if s.written != nil {
		s.written.add(key)
	}
	s.size += len(key) + len(value)
	return s.flushIfFullLocked()
}

// Delete removes key: in the batch while recovering, else straight from
// the database.
func (s *RecoveryStorage) Delete(key string) error {
	if s.recovered.Load() {
		if err := s.db.Delete([]byte(key), nil); err != nil {
			return fmt.Errorf("leveldb: delete %q: %w", key, err)
		}
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batch.Delete([]byte(key))
	s.pending[key] = pendingWrite{deleted: true}
	s.size += len(key)
	return s.flushIfFullLocked()
}

// GetOffset returns the offset stored up to, def if none is.
func (s *RecoveryStorage) GetOffset(def int64) (int64, error) {
	s.mu.RLock()
	off, ok := s.offset, s.hasOff
	s.mu.RUnlock()
	if ok {
		return off, nil
	}
	v, err := s.db.Get([]byte(offsetKey), nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return def, nil
	}
	if err != nil {
		return 0, fmt.Errorf("leveldb: get the offset: %w", err)
	}
	off, err = strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("leveldb: the stored offset %q: %w", v, err)
	}
	return off, nil
}

// SetOffset records that everything up to offset is stored: in memory
// while recovering (the next batch persists it), else in the database.
func (s *RecoveryStorage) SetOffset(offset int64) error {
	s.mu.Lock()
	s.offset, s.hasOff = offset, true
	s.mu.Unlock()
	if s.recovered.Load() {
		return s.putOffset(offset)
	}
	return nil
}

func (s *RecoveryStorage) putOffset(offset int64) error {
	if err := s.db.Put([]byte(offsetKey), strconv.AppendInt(nil, offset, 10), nil); err != nil {
		return fmt.Errorf("leveldb: store offset %d: %w", offset, err)
	}
	return nil
}

// MarkRecovered writes the pending batch and its offset, reopens the
// database with tableOptions (if OpenRecoveryStorage opened it), and from
// then on writes every change at once. Readers wait for the reopen; a
// database with an iterator open is not reopened (see RecoveryStorage).
func (s *RecoveryStorage) MarkRecovered() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recovered.Load() {
		return nil
	}
	if err := s.flushLocked(); err != nil {
		return err
	}
	if s.path != "" && s.liveIters == 0 {
		if err := s.db.Close(); err != nil {
			return fmt.Errorf("leveldb: close %s to reopen it after its recovery: %w", s.path, err)
		}
		db, err := leveldb.OpenFile(s.path, tableOptions())
		if err != nil {
			s.closed = true // nothing left to close
			return fmt.Errorf("leveldb: reopen %s after its recovery: %w", s.path, err)
		}
		s.db = db
	}
	s.written = nil
	s.recovered.Store(true)
	return nil
}

// flushIfFullLocked writes the batch once it holds RecoveryBatchBytes.
func (s *RecoveryStorage) flushIfFullLocked() error {
	if s.size < s.batchBytes {
		return nil
	}
	return s.flushLocked()
}

// flushLocked writes the batch and the offset given to SetOffset last, in
// one LevelDB write. The offset goes last, so that it is the batch's value
// of offsetKey.
func (s *RecoveryStorage) flushLocked() error {
	if s.batch.Len() == 0 && !s.hasOff {
		return nil
	}
	if s.hasOff {
		s.batch.Put([]byte(offsetKey), strconv.AppendInt(nil, s.offset, 10))
	}
	if err := s.db.Write(&s.batch, nil); err != nil {
		return fmt.Errorf("leveldb: write %d recovered records: %w", len(s.pending), err)
	}
	s.batch.Reset()
	clear(s.pending)
	s.size = 0
	return nil
}

// Iterator iterates over a snapshot of the whole table (the offset
// excluded), the pending batch written first.
func (s *RecoveryStorage) Iterator() (storage.Iterator, error) {
	return s.newIterator(nil, &opt.ReadOptions{DontFillCache: true})
}

// IteratorWithRange iterates over [start, limit), or over the keys
// prefixed with start when limit is empty (Goka's storage does the same).
func (s *RecoveryStorage) IteratorWithRange(start, limit []byte) (storage.Iterator, error) {
	if len(limit) > 0 {
		return s.newIterator(&util.Range{Start: start, Limit: limit}, nil)
	}
	return s.newIterator(util.BytesPrefix(start), nil)
}

// newIterator writes the pending batch and opens a LevelDB iterator. One
// opened while recovering is counted until released: MarkRecovered does
// not reopen a database with an iterator open (LevelDB must not be
// closed under one), and keeps the recovery's options for it instead.
func (s *RecoveryStorage) newIterator(slice *util.Range, ro *opt.ReadOptions) (storage.Iterator, error) {
	if s.recovered.Load() {
		return &iterator{it: s.db.NewIterator(slice, ro)}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.batch.Len() > 0 {
		if err := s.flushLocked(); err != nil {
			return nil, err
		}
	}
	it := &iterator{it: s.db.NewIterator(slice, ro)}
	if !s.recovered.Load() {
		s.liveIters++
		it.release = func() {
			s.mu.Lock()
			s.liveIters--
			s.mu.Unlock()
		}
	}
	return it, nil
}

// Close writes the pending batch and its offset, then closes the database.
// Once recovered, every change is already written.
func (s *RecoveryStorage) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var ferr error
	if !s.recovered.Load() {
		ferr = s.flushLocked()
	}
	if err := s.db.Close(); err != nil {
		return errors.Join(ferr, fmt.Errorf("leveldb: close: %w", err))
	}
	return ferr
}

// iterator is a LevelDB iterator that skips offsetKey, as Goka's does.
type iterator struct {
	it      ldbiter.Iterator
	release func() // once, at Release; nil: nothing to do
}

func (i *iterator) Next() bool {
	next := i.it.Next()
	if next && string(i.it.Key()) == offsetKey {
		next = i.it.Next()
	}
	return next
}
func (i *iterator) Err() error             { return i.it.Error() }
func (i *iterator) Key() []byte            { return i.it.Key() }
func (i *iterator) Value() ([]byte, error) { return i.it.Value(), nil }
func (i *iterator) Release() {
	i.it.Release()
	if r := i.release; r != nil {
		i.release = nil
		r()
	}
}
func (i *iterator) Seek(key []byte) bool { return i.it.Seek(key) }

package gokax

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
	"github.com/syndtr/goleveldb/leveldb"

	"github.com/herald-dispatch/herald/contract"
)

// openRecovery opens a RecoveryStorage over a database in dir with batches
// of batchBytes (0: the default).
func openRecovery(t *testing.T, dir string, batchBytes int) *RecoveryStorage {
	t.Helper()
	db, err := leveldb.OpenFile(dir, tableOptions())
	if err != nil {
		t.Fatal(err)
	}
	s := NewRecoveryStorage(db)
	if batchBytes > 0 {
		s.batchBytes = batchBytes
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	return s
}

// state is an encoded state of version v (JSON, which StateVersion reads),
// tagged so that two states of the same version differ.
func state(v uint64, tag string) []byte {
	return fmt.Appendf(nil, `{"version":%d,"tag":%q}`, v, tag)
}

// The versions rule of VersionedUpdate holds the same in every path of
// RecoveryStorage: while recovering with the writes still in the batch,
// while recovering across batch writes (a batch of one write), and once
// recovered (straight to LevelDB); and the same as over Goka's own storage.
func TestRecoveryStorageKeepsTheVersionsRule(t *testing.T) {
	t.Parallel()
	type write struct {
		key   string
		value []byte // nil: a tombstone
	}
	rows := []struct {
		name   string
		writes []write
		want   map[string][]byte // nil value: no value
	}{
		{"new key is stored", []write{{"a", state(3, "x")}}, map[string][]byte{"a": state(3, "x")}},
		{"higher replaces lower", []write{{"a", state(3, "x")}, {"a", state(4, "y")}}, map[string][]byte{"a": state(4, "y")}},
		{"lower never replaces higher", []write{{"a", state(4, "y")}, {"a", state(3, "x")}}, map[string][]byte{"a": state(4, "y")}},
		{"equal is stored (a repair)", []write{{"a", state(4, "y")}, {"a", state(4, "z")}}, map[string][]byte{"a": state(4, "z")}},
		{"tombstone deletes", []write{{"a", state(4, "y")}, {"a", nil}}, map[string][]byte{"a": nil}},
		{"a lower version after a tombstone is stored", []write{{"a", state(4, "y")}, {"a", nil}, {"a", state(1, "w")}}, map[string][]byte{"a": state(1, "w")}},
		{"a value that does not decode is stored", []write{{"a", state(4, "y")}, {"a", []byte("garbage")}}, map[string][]byte{"a": []byte("garbage")}},
		{"keys apart", []write{{"a", state(4, "y")}, {"b", state(1, "q")}, {"a", state(2, "x")}, {"b", nil}},
			map[string][]byte{"a": state(4, "y"), "b": nil}},
		{"a key written twice, then lower, higher, lower", []write{{"a", state(2, "x")}, {"a", state(5, "y")}, {"a", state(3, "z")}, {"a", state(6, "v")}, {"a", state(5, "u")}},
			map[string][]byte{"a": state(6, "v")}},
	}
	builders := map[string]func(t *testing.T) storage.Storage{
		"goka": func(t *testing.T) storage.Storage {
			st, err := GokaStorage(t.TempDir())("table", 0)
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		"one batch": func(t *testing.T) storage.Storage {
			return openRecovery(t, filepath.Join(t.TempDir(), "db"), 1<<30)
		},
		"a batch a write": func(t *testing.T) storage.Storage {
			return openRecovery(t, filepath.Join(t.TempDir(), "db"), 1)
		},
		"recovered": func(t *testing.T) storage.Storage {
			s := openRecovery(t, filepath.Join(t.TempDir(), "db"), 0)
			if err := s.MarkRecovered(); err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for bname, open := range builders {
		for _, r := range rows {
			t.Run(bname+"/"+r.name, func(t *testing.T) {
				st := open(t)
				defer st.Close()
				for i, w := range r.writes {
					if err := VersionedUpdate(nil, st, w.key, w.value); err != nil {
						t.Fatal(err)
					}
					if err := st.SetOffset(int64(i)); err != nil {
						t.Fatal(err)
					}
				}
				checkStored(t, st, r.want)
			})
			// The same through VersionedUpdateObserved, with an observer
			// that holds the version of every stored value: the rule is
			// judged by it, and the store is never read for a key it
			// answers.
			t.Run(bname+"/observed/"+r.name, func(t *testing.T) {
				st := &countingStorage{Storage: open(t)}
				defer st.Close()
				o := &versionObserver{versions: map[string]uint64{}}
				update := VersionedUpdateObserved(o)
				for i, w := range r.writes {
					if err := update(partitionCtx{}, st, w.key, w.value); err != nil {
						t.Fatal(err)
					}
					if err := st.SetOffset(int64(i)); err != nil {
						t.Fatal(err)
					}
				}
				if st.gets != len(r.writes)-o.answered {
					t.Errorf("%d reads of the store for %d records of which the observer answered %d", st.gets, len(r.writes), o.answered)
				}
				if o.oldWhenAnswered > 0 {
					t.Errorf("Stored was given the replaced value %d times for a key whose version the observer answered", o.oldWhenAnswered)
				}
				checkStored(t, st, r.want)
			})
		}
	}
}

// partitionCtx is the update context of partition 0 (DefaultUpdate reads
// nothing else of it).
type partitionCtx struct{ goka.UpdateContext }

func (partitionCtx) Partition() int32 { return 0 }

// countingStorage counts the reads of its values.
type countingStorage struct {
	storage.Storage
	gets int
}

func (s *countingStorage) Get(key string) ([]byte, error) {
	s.gets++
	return s.Storage.Get(key)
}

// versionObserver holds the version of every value stored whose version
// decodes, as tableview's index does for the states in flight.
type versionObserver struct {
	versions        map[string]uint64
	answered        int // Version calls answered
	last            string
	oldWhenAnswered int // Stored calls with old set for a key just answered
}

func (o *versionObserver) Version(_ int32, key string) (uint64, bool) {
	v, ok := o.versions[key]
	o.last = ""
	if ok {
		o.answered++
		o.last = key
	}
	return v, ok
}

func (o *versionObserver) Stored(_ int32, key string, old, value []byte) {
	if old != nil && key == o.last {
		o.oldWhenAnswered++
	}
	delete(o.versions, key)
	if value != nil {
		if v, err := contract.StateVersion(value); err == nil {
			o.versions[key] = v
		}
	}
}

// checkStored compares what st holds with want (nil value: no value).
func checkStored(t *testing.T, st storage.Storage, want map[string][]byte) {
	t.Helper()
	for k, w := range want {
		got, err := st.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w) || (got == nil) != (w == nil) {
			t.Errorf("%s = %q, want %q", k, got, w)
		}
		has, err := st.Has(k)
		if err != nil || has != (w != nil) {
			t.Errorf("Has(%s) = %v, %v; want %v", k, has, err, w != nil)
		}
	}
}

// A storage that dies mid-recovery (its pending batch lost, nothing
// closed properly) leaves an offset that is not past what it stored, and
// reading the changelog again from there, through VersionedUpdate, ends
// in the same table as an uninterrupted recovery.
func TestRecoveryStorageCrashNeverStoresAnOffsetAheadOfItsData(t *testing.T) {
	t.Parallel()
	// The changelog: 3,000 records over 500 keys, versions rising per key,
	// with a tombstone now and then.
	type rec struct {
		key   string
		value []byte
	}
	var log []rec
	version := map[string]uint64{}
	for i := range 3000 {
		k := fmt.Sprintf("n-%03d", (i*7)%500)
		version[k]++
		v := state(version[k], fmt.Sprint(i))
		if i%97 == 0 {
			v = nil
		}
		log = append(log, rec{k, v})
	}
	apply := func(t *testing.T, st storage.Storage, from, to int) {
		t.Helper()
		for o := from; o < to; o++ {
			if err := VersionedUpdate(nil, st, log[o].key, log[o].value); err != nil {
				t.Fatal(err)
			}
			if err := st.SetOffset(int64(o)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The table an uninterrupted recovery ends with.
	want := map[string][]byte{}
	for _, r := range log {
		want[r.key] = r.value
	}

	for _, crashAt := range []int{1, 150, 1234, 2999} {
		t.Run(fmt.Sprint(crashAt), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "db")
			s := openRecovery(t, dir, 2<<10) // batches of 2 KiB: about 60 records
			apply(t, s, 0, crashAt)
			// The process dies: the database is closed under the storage,
			// without its Close, so the pending batch is lost.
			if err := s.db.Close(); err != nil {
				t.Fatal(err)
			}

			s = openRecovery(t, dir, 2<<10)
			defer s.Close()
			off, err := s.GetOffset(-1)
			if err != nil {
				t.Fatal(err)
			}
			if off >= int64(crashAt) {
				t.Fatalf("stored offset %d, but only records up to %d were given", off, crashAt-1)
			}
			// The table is the changelog's up to the stored offset, or up to
			// the record after it (a batch is written when a record fills
			// it, before Goka gives that record's offset): never behind the
			// offset, and whole batches only.
			stored := map[string][]byte{}
			it, err := s.Iterator()
			if err != nil {
				t.Fatal(err)
			}
			for it.Next() {
				v, _ := it.Value()
				stored[string(it.Key())] = bytes.Clone(v)
			}
			it.Release()
			upTo := func(last int64) map[string][]byte {
				m := map[string][]byte{}
				for o := int64(0); o <= last && o < int64(len(log)); o++ {
					if log[o].value == nil {
						delete(m, log[o].key)
					} else {
						m[log[o].key] = log[o].value
					}
				}
				return m
			}
			if !sameTable(stored, upTo(off)) && !sameTable(stored, upTo(off+1)) {
				t.Fatalf("after the crash the table (%d keys) is neither the changelog up to the stored offset %d nor up to the next record", len(stored), off)
			}
			// Goka reads on from the stored offset (from the start if none),
			// and the table ends as an uninterrupted recovery leaves it.
			apply(t, s, int(off+1), len(log))
			if err := s.MarkRecovered(); err != nil {
				t.Fatal(err)
			}
			for k, v := range want {
				got, err := s.Get(k)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, v) {
					t.Fatalf("after recovering again, %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

// While recovering, reads see the writes still in the batch; Close and
// MarkRecovered write the batch and its offset; an iterator sees every
// write and never the offset; once recovered, a write goes straight to
// LevelDB.
func TestRecoveryStorageBatchesUntilRecovered(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "db")
	s := openRecovery(t, dir, 0)
	for i := range 10 {
		if err := s.Set(fmt.Sprintf("k%d", i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetOffset(int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete("k3"); err != nil {
		t.Fatal(err)
	}
	// The writes are pending, not in LevelDB yet.
	if _, err := s.db.Get([]byte("k1"), nil); err != leveldb.ErrNotFound {
		t.Fatalf("k1 in LevelDB before the batch is written: %v", err)
	}
	if v, err := s.Get("k1"); err != nil || !bytes.Equal(v, []byte{1}) {
		t.Fatalf("Get(k1) = %v, %v; want the pending write", v, err)
	}
	if v, err := s.Get("k3"); err != nil || v != nil {
		t.Fatalf("Get(k3) = %v, %v; want the pending delete", v, err)
	}
	// The value Get returns is the caller's: changing it changes nothing.
	v, _ := s.Get("k2")
	v[0] = 99
	if v, _ := s.Get("k2"); v[0] != 2 {
		t.Fatalf("Get(k2) = %v after the caller changed its copy", v)
	}
	if off, err := s.GetOffset(-1); err != nil || off != 9 {
		t.Fatalf("GetOffset = %d, %v; want 9", off, err)
	}

	it, err := s.Iterator()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for it.Next() {
		keys = append(keys, string(it.Key()))
	}
	it.Release()
	if fmt.Sprint(keys) != "[k0 k1 k2 k4 k5 k6 k7 k8 k9]" {
		t.Fatalf("iterator: %v", keys)
	}

	if err := s.Set("k10", []byte{10}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOffset(10); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openRecovery(t, dir, 0)
	if off, err := s.GetOffset(-1); err != nil || off != 10 {
		t.Fatalf("after Close mid-recovery, GetOffset = %d, %v; want 10", off, err)
	}
	if v, err := s.Get("k10"); err != nil || !bytes.Equal(v, []byte{10}) {
		t.Fatalf("after Close mid-recovery, k10 = %v, %v", v, err)
	}

	if err := s.Set("k11", []byte{11}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOffset(11); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRecovered(); err != nil {
		t.Fatal(err)
	}
	if v, err := s.db.Get([]byte("k11"), nil); err != nil || !bytes.Equal(v, []byte{11}) {
		t.Fatalf("after MarkRecovered, k11 in LevelDB = %v, %v", v, err)
	}
	if v, err := s.db.Get([]byte(offsetKey), nil); err != nil || string(v) != "11" {
		t.Fatalf("after MarkRecovered, the stored offset = %q, %v; want 11", v, err)
	}
	if err := s.Set("k12", []byte{12}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOffset(12); err != nil {
		t.Fatal(err)
	}
	if v, err := s.db.Get([]byte("k12"), nil); err != nil || !bytes.Equal(v, []byte{12}) {
		t.Fatalf("recovered: k12 in LevelDB = %v, %v; want it written at once", v, err)
	}
	if v, err := s.db.Get([]byte(offsetKey), nil); err != nil || string(v) != "12" {
		t.Fatalf("recovered: the stored offset = %q, %v; want 12 at once", v, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// A data dir written by Goka's own storage is read by RecoveryStorage and
// the other way round: the same offset key and format.
func TestRecoveryStorageReadsGokasDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g, err := GokaStorage(dir)("table", 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Set("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := g.SetOffset(41); err != nil {
		t.Fatal(err)
	}
	if err := g.MarkRecovered(); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Storage(dir)("table", 3)
	if err != nil {
		t.Fatal(err)
	}
	if off, err := s.GetOffset(-1); err != nil || off != 41 {
		t.Fatalf("GetOffset = %d, %v; want Goka's 41", off, err)
	}
	if v, err := s.Get("a"); err != nil || string(v) != "1" {
		t.Fatalf("Get(a) = %q, %v", v, err)
	}
	if err := s.SetOffset(42); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	g, err = GokaStorage(dir)("table", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if off, err := g.GetOffset(-1); err != nil || off != 42 {
		t.Fatalf("Goka's GetOffset = %d, %v; want 42", off, err)
	}
}

func sameTable(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// newestJournal is the number of the newest LevelDB journal in dir: it
// grows each time the database rotates its memtable (when it is full).
func newestJournal(t *testing.T, dir string) int {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	n := -1
	for _, l := range logs {
		var i int
		if _, err := fmt.Sscanf(filepath.Base(l), "%d.log", &i); err == nil && i > n {
			n = i
		}
	}
	if n < 0 {
		t.Fatalf("no journal in %s: %v", dir, logs)
	}
	return n
}

// A storage from Storage recovers with RecoveryWriteBuffer (3 MiB of
// writes fill no memtable) and runs with TableWriteBuffer once recovered
// (the same 3 MiB rotate it several times), its data and offset kept
// through the reopen.
func TestRecoveryStorageHoldsTheLargerBufferOnlyWhileRecovering(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := Storage(dir)("table", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	path := filepath.Join(dir, "table.0")
	value := bytes.Repeat([]byte("x"), 1000)
	write := func(from, to int) {
		for i := from; i < to; i++ {
			if err := st.Set(fmt.Sprintf("k%05d", i), value); err != nil {
				t.Fatal(err)
			}
			if err := st.SetOffset(int64(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	j0 := newestJournal(t, path)
	write(0, 3000)
	if j := newestJournal(t, path); j != j0 {
		t.Fatalf("3 MiB recovered rotated the memtable (journal %d, then %d): not the %d-byte recovery buffer", j0, j, RecoveryWriteBuffer)
	}
	if err := st.MarkRecovered(); err != nil {
		t.Fatal(err)
	}
	j1 := newestJournal(t, path)
	write(3000, 6000)
	if j := newestJournal(t, path); j <= j1+2 {
		t.Fatalf("3 MiB written once recovered rotated the memtable %d times: not the %d-byte table buffer", j-j1, TableWriteBuffer)
	}
	for _, k := range []string{"k00000", "k02999", "k05999"} {
		if v, err := st.Get(k); err != nil || !bytes.Equal(v, value) {
			t.Fatalf("%s: %d bytes, %v", k, len(v), err)
		}
	}
	if off, err := st.GetOffset(-1); err != nil || off != 5999 {
		t.Fatalf("GetOffset = %d, %v; want 5999", off, err)
	}
}

// The filter of written keys never says "never written" for a key that
// was, and says it for most keys that were not.
func TestKeyFilter(t *testing.T) {
	t.Parallel()
	f := newKeyFilter(128 << 10) // 1,048,576 bits
	for i := range 100_000 {
		f.add(fmt.Sprintf("bill-%08d", i))
	}
	for i := range 100_000 {
		if !f.mayHave(fmt.Sprintf("bill-%08d", i)) {
			t.Fatalf("bill-%08d was added, the filter says never", i)
		}
	}
	fp := 0
	for i := range 100_000 {
		if f.mayHave(fmt.Sprintf("other-%08d", i)) {
			fp++
		}
	}
	if fp > 2_000 { // about 1% at ten bits a key
		t.Fatalf("%d of 100,000 keys never added may be there, want about 1,000", fp)
	}
}

// A storage that opened an empty database answers a read of a key it never
// wrote from its filter, without LevelDB; one that opened a database with
// data reads LevelDB; and so does any storage once recovered.
func TestRecoveryStorageReadsOfNewKeysSkipLevelDB(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "db")
	s := openRecovery(t, dir, 1)
	if s.written == nil {
		t.Fatal("an empty database at Open, but no filter of written keys")
	}
	if err := s.Set("mine", []byte("1")); err != nil {
		t.Fatal(err)
	}
	// A key in LevelDB that the storage did not write (only possible
	// behind its back) is not seen: the read never went to LevelDB.
	if err := s.db.Put([]byte("behind"), []byte("2"), nil); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get("behind"); err != nil || v != nil {
		t.Fatalf("Get(behind) = %q, %v; want nil from the filter", v, err)
	}
	if v, err := s.Get("mine"); err != nil || string(v) != "1" {
		t.Fatalf("Get(mine) = %q, %v", v, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openRecovery(t, dir, 1)
	defer s.Close()
	if s.written != nil {
		t.Fatal("a database with data at Open got a filter of written keys")
	}
	if v, err := s.Get("behind"); err != nil || string(v) != "2" {
		t.Fatalf("Get(behind) = %q, %v; want LevelDB's value", v, err)
	}
}

// An iterator opened while the storage recovers (a scan of a view that is
// still recovering) keeps working through MarkRecovered: the database is
// not reopened under it, and the storage goes on working.
func TestRecoveryStorageIteratorOutlivesMarkRecovered(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := Storage(dir)("table", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// 12 MiB: most of it in tables on disk, beyond the recovery's
	// memtables.
	const n = 12_000
	value := bytes.Repeat([]byte("v"), 1000)
	for i := range n {
		if err := st.Set(fmt.Sprintf("k%05d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	it, err := st.Iterator()
	if err != nil {
		t.Fatal(err)
	}
	if !it.Next() {
		t.Fatalf("empty iterator: %v", it.Err())
	}
	if err := st.MarkRecovered(); err != nil {
		t.Fatal(err)
	}
	got := 1
	for it.Next() {
		if v, _ := it.Value(); !bytes.Equal(v, value) {
			t.Fatalf("%s: %d bytes", it.Key(), len(v))
		}
		got++
	}
	if err := it.Err(); err != nil || got != n {
		t.Fatalf("iterated %d of %d across MarkRecovered: %v", got, n, err)
	}
	it.Release()
	if err := st.Set("after", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if v, err := st.Get("after"); err != nil || string(v) != "1" {
		t.Fatalf("Get(after) = %q, %v", v, err)
	}
}

package gokax

import (
	"fmt"
	"path/filepath"

	"github.com/lovoo/goka/storage"
	"github.com/syndtr/goleveldb/leveldb/filter"
	"github.com/syndtr/goleveldb/leveldb/opt"
)

// LevelDB sizing of every Goka table and view Herald opens. Goka opens one
// LevelDB per partition, and a process holds two copies of the dispatcher
// table (the processor's and the view's), so with 12 partitions it opens
// 24 databases, and LevelDB's defaults, sized for one database per
// process, cost about 16 MiB each before a single state is stored: a
// 4 MiB write buffer (twice, while one is flushed) and an 8 MiB block
// cache. A heap profile of a 100,000-notification run showed 184 MiB of
// cached blocks and 112 MiB in write buffers; with the values below,
// 30 MiB and 23 MiB. The states are small and read mostly right after
// they are written, from the write buffer or the OS page cache. The price
// is compaction: smaller write buffers flush more often, and compaction
// took 10-12% of the process's CPU in such a run (docs/performance.md).
// While a database recovers, RecoveryStorage opens it with a larger write
// buffer (RecoveryWriteBuffer) and reopens it with these options once it
// has recovered: a recovery writes far more than a burst.
//
// LevelDB's buffer pool stays on: it holds at most 15 block buffers per
// database (a few hundred KiB), and without it every block a Get or a
// compaction reads is a new allocation, 1.4 GB in a 100,000-notification
// burst, 22% of all the process allocated (BenchmarkTableChurn: 19 KB
// allocated per notification without it, 6.7 KB with it).
const (
	// TableWriteBuffer is the write buffer (memtable) of each database.
	TableWriteBuffer = 512 << 10
	// TableBlockCache is the block cache of each database.
	TableBlockCache = 1 << 20
)

// tableOptions are the LevelDB options of every table and view database.
func tableOptions() *opt.Options {
	return &opt.Options{
		WriteBuffer:        TableWriteBuffer,
		BlockCacheCapacity: TableBlockCache,
		// Most Gets of a new notification's id miss: a bloom filter (10
		// bits a key, about 1% false positives) answers them without
		// reading a block of every table.
		Filter: filter.NewBloomFilter(10),
	}
}

// Storage is the storage builder of every Goka processor and view: a
// RecoveryStorage over LevelDB under dir, one database per topic-partition
// in the directory Goka's own builder uses (<dir>/<topic>.<partition>),
// sized by recoveryOptions while it recovers and by tableOptions after.
func Storage(dir string) storage.Builder {
	return func(topic string, partition int32) (storage.Storage, error) {
		return OpenRecoveryStorage(filepath.Join(dir, fmt.Sprintf("%s.%d", topic, partition)))
	}
}

package gokax

import (
	"github.com/lovoo/goka/storage"
	"github.com/syndtr/goleveldb/leveldb/filter"
	"github.com/syndtr/goleveldb/leveldb/opt"
)

// LevelDB sizing of every Goka table and view Herald opens. Goka opens one
// LevelDB per partition, and a process holds two copies of the dispatcher
// table (the processor's and the view's), so with 12 partitions it opens
// 24 databases, and LevelDB's defaults, sized for one database per
// process, cost about 16 MiB each before a single state is stored: a
// 4 MiB write buffer (twice, while one is flushed), an 8 MiB block cache,
// and a buffer pool that keeps the blocks it has read. A heap profile of
// a 100,000-notification run showed 184 MiB in that pool and 112 MiB in
// write buffers; with the values below, 30 MiB and 23 MiB. The states are
// small and read mostly right after they are written, from the write
// buffer or the OS page cache. The price is compaction: smaller write
// buffers flush more often, and compaction took 12% of the process's CPU
// in that run (docs/performance.md).
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
		// The pool keeps every block buffer it ever handed out; without it
		// a read allocates, and the garbage collector returns the memory.
		DisableBufferPool: true,
		// Most Gets of a new notification's id miss: a bloom filter (10
		// bits a key, about 1% false positives) answers them without
		// reading a block of every table.
		Filter: filter.NewBloomFilter(10),
	}
}

// Storage is the storage builder of every Goka processor and view: LevelDB
// under dir, one database per topic-partition, sized by tableOptions.
func Storage(dir string) storage.Builder {
	return storage.BuilderWithOptions(dir, tableOptions())
}

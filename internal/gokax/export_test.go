package gokax

import (
	"fmt"
	"path/filepath"

	"github.com/lovoo/goka/storage"
	"github.com/syndtr/goleveldb/leveldb"
)

// GokaStorage is the storage Herald used before RecoveryStorage: Goka's
// own LevelDB storage with the same options (BenchmarkRecovery's
// comparison).
func GokaStorage(dir string) storage.Builder {
	return storage.BuilderWithOptions(dir, tableOptions())
}

// StorageWithBatch is Storage with recovery batches of batchBytes.
func StorageWithBatch(dir string, batchBytes int) storage.Builder {
	return func(topic string, partition int32) (storage.Storage, error) {
		db, err := leveldb.OpenFile(filepath.Join(dir, fmt.Sprintf("%s.%d", topic, partition)), tableOptions())
		if err != nil {
			return nil, err
		}
		s := NewRecoveryStorage(db)
		s.batchBytes = batchBytes
		return s, nil
	}
}

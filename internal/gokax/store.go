package gokax

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// cleanMark is the file a processor's local store directory holds while
// no processor runs on it and everything in it is in the changelog.
const cleanMark = "CLEAN"

// localStore is a processor's local table directory (one LevelDB per
// partition below it) and its clean mark: see Supervisor.session.
type localStore struct{ dir string }

// open readies the store for a processor: a store without the clean mark
// (a crash, a failed write, or a store from before the mark existed) is
// wiped, and the mark of a clean one is removed, so that a crash while
// the processor runs leaves the store unmarked. It reports whether it
// wiped anything.
func (s localStore) open() (wiped bool, err error) {
	mark := filepath.Join(s.dir, cleanMark)
	_, err = os.Stat(mark)
	switch {
	case err == nil:
		if err := os.Remove(mark); err != nil {
			return false, fmt.Errorf("local store: remove the clean mark: %w", err)
		}
		return false, syncDir(s.dir)
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("local store: %w", err)
	}
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) == 0) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("local store: %w", err)
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return false, fmt.Errorf("local store: wipe %s: %w", s.dir, err)
	}
	return true, nil
}

// markClean marks the store clean; the processor must have stopped.
func (s localStore) markClean() error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("local store: %w", err)
	}
	f, err := os.Create(filepath.Join(s.dir, cleanMark))
	if err != nil {
		return fmt.Errorf("local store: write the clean mark: %w", err)
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("local store: write the clean mark: %w", err)
	}
	return syncDir(s.dir)
}

// syncDir makes a file created or removed in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("local store: %w", err)
	}
	return errors.Join(d.Sync(), d.Close())
}

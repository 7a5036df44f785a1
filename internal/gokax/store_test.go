package gokax

import (
	"os"
	"path/filepath"
	"testing"
)

// A store is trusted only when its last processor marked it clean: a crash
// (no mark) or a store from before the mark is wiped, and a running
// processor's store carries no mark.
func TestLocalStoreTrustsOnlyACleanClose(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "processor")
	s := localStore{dir: dir}
	if wiped, err := s.open(); err != nil || wiped {
		t.Fatalf("a new store: wiped %v, err %v; want nothing to wipe", wiped, err)
	}
	part := filepath.Join(dir, "herald-dispatcher-table.0")
	write := func() {
		t.Helper()
		if err := os.MkdirAll(part, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(part, "000001.log"), []byte("state"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write()
	// A clean close, then a start: kept, and unmarked while it runs.
	if err := s.markClean(); err != nil {
		t.Fatal(err)
	}
	if wiped, err := s.open(); err != nil || wiped {
		t.Fatalf("after a clean close: wiped %v, err %v; want the store kept", wiped, err)
	}
	if _, err := os.Stat(filepath.Join(part, "000001.log")); err != nil {
		t.Fatalf("the store's files after a clean close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, cleanMark)); !os.IsNotExist(err) {
		t.Fatalf("the clean mark is still there while a processor runs (stat: %v)", err)
	}
	// A crash: the next start finds no mark and wipes.
	if wiped, err := s.open(); err != nil || !wiped {
		t.Fatalf("after a crash: wiped %v, err %v; want the store wiped", wiped, err)
	}
	if _, err := os.Stat(part); !os.IsNotExist(err) {
		t.Fatalf("the partition's store survived a crash (stat: %v)", err)
	}
}

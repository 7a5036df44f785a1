package gokax

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/syndtr/goleveldb/leveldb"
)

// Every table and view database reuses its block buffers: without the
// pool, each block a Get or a compaction reads is a new allocation (a
// 100,000-notification burst allocated 1.4 GB of them, 22% of the herald
// process's allocations; BenchmarkTableChurn).
func TestTableOptionsPoolBlockBuffers(t *testing.T) {
	t.Parallel()
	db, err := leveldb.OpenFile(filepath.Join(t.TempDir(), "t.0"), tableOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := db.GetProperty("leveldb.blockpool")
	if err != nil {
		t.Fatal(err)
	}
	if p == "<nil>" {
		t.Fatalf("leveldb.blockpool = %s: block buffers are not pooled", p)
	}
}

// BenchmarkTableChurn runs one partition's table through a burst's churn,
// per notification: the first state is written (a Get that misses, a Set),
// and, a few thousand notifications later, read again and overwritten
// (the result: a Get, a Set), so that most second reads come from the
// tables on disk, as in a backlog; compactions run meanwhile. It reports
// the allocations and the process's CPU per notification, the background
// compactions included.
func BenchmarkTableChurn(b *testing.B) {
	const lag = 4000 // notifications between the first and second write
	st, err := Storage(b.TempDir())("herald-dispatcher-table", 0)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	// About a state's size and make-up: mostly fields that repeat from one
	// notification to the next, and an id, an address and times that do not.
	val := func(i, v int) []byte {
		return fmt.Appendf(nil, "%d|n-%d|sending|email|user-%d@example.com|%d|%d|Your statement for November is ready. "+
			"Log in to see it.|billing-2026-11|policy-default|v3|attempt %d at %d|%0160d",
			v, i, rng.Uint64(), rng.Int64(), rng.Int64(), v, rng.Int64(), i)
	}
	key := func(i int) string { return fmt.Sprintf("n-%016x", uint64(i)*0x9e3779b97f4a7c15) }
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	for i := range b.N + lag {
		if i < b.N {
			if _, err := st.Get(key(i)); err != nil {
				b.Fatal(err)
			}
			if err := st.Set(key(i), val(i, 1)); err != nil {
				b.Fatal(err)
			}
		}
		if j := i - lag; j >= 0 {
			if v, err := st.Get(key(j)); err != nil || v == nil {
				b.Fatalf("get %d: %v, %d bytes", j, err, len(v))
			}
			if err := st.Set(key(j), val(j, 2)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is heraldtest.ProcessCPU (which this package's tests cannot
// import: heraldtest imports gokax).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

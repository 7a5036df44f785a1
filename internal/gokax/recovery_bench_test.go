package gokax_test

import (
	"context"
	"os"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"

	"github.com/herald-dispatch/herald/internal/gokax"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/loadtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

// BenchmarkRecovery measures what a new instance's readiness waits for on
// a long history: a view of the dispatcher table recovering, into an empty
// storage dir, a changelog seeded with loadtest.History (the year of
// docs/performance.md in miniature: remembered records and shed final
// states in the same proportions), twice at once, as `herald run`
// recovers its processor's table and its view. Each op is one whole recovery of
// HERALD_BENCH_RECOVERY_STATES records (default 300,000); run it with
// -benchtime=1x. It reports records/s, the wall clock and the process's
// CPU per record read (each copy reads every record: 2n reads an op); the in-process broker serves the fetches, so the CPU
// includes its share (a CPU profile separates them). "goka" is Goka's own
// LevelDB storage, "gokax" RecoveryStorage.
func BenchmarkRecovery(b *testing.B) {
	n := 300_000
	if s := os.Getenv("HERALD_BENCH_RECOVERY_STATES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("HERALD_BENCH_RECOVERY_STATES=%q: want a positive count", s)
		}
		n = v
	}
	c := heraldtest.StartKafka(b, heraldtest.Options{Partitions: topology.DefaultPartitions})
	ctx := context.Background()
	if _, err := (loadtest.History{States: n, Partitions: topology.DefaultPartitions}).Seed(ctx, c.Topology, nil); err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name    string
		builder func(dir string) storage.Builder
	}{
		{"goka", gokax.GokaStorage},
		{"gokax", gokax.Storage},
	}
	// HERALD_BENCH_RECOVERY_BATCH adds a run with batches of that many
	// bytes (beyond the write buffer, LevelDB writes a batch as a
	// transaction: straight into level-0 tables, without the journal).
	if s := os.Getenv("HERALD_BENCH_RECOVERY_BATCH"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("HERALD_BENCH_RECOVERY_BATCH=%q: want a positive byte count", s)
		}
		cases = append(cases, struct {
			name    string
			builder func(dir string) storage.Builder
		}{"gokax-batch-" + s, func(dir string) storage.Builder { return gokax.StorageWithBatch(dir, v) }})
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			var wall, cpu time.Duration
			for range b.N {
				// Two copies at once, as `herald run` recovers its
				// processor's table and its view of all partitions.
				var views []*goka.View
				for range 2 {
					v, err := goka.NewView(c.Brokers, topology.TableDispatcher, new(codec.Bytes),
						append(gokax.ViewOptions(c.Topology, "bench-view", nil), goka.WithViewStorageBuilder(bc.builder(b.TempDir())))...)
					if err != nil {
						b.Fatal(err)
					}
					views = append(views, v)
				}
				stopProfile := startProfile(b, bc.name)
				rctx, cancel := context.WithCancel(ctx)
				done := make(chan error, len(views))
				start, cpu0 := time.Now(), processCPU()
				for _, v := range views {
					go func() { done <- v.Run(rctx) }()
				}
				recovered := func() bool {
					for _, v := range views {
						if !v.Recovered() {
							return false
						}
					}
					return true
				}
				for !recovered() {
					select {
					case err := <-done:
						cancel()
						b.Fatalf("a view stopped before it recovered: %v", err)
					case <-time.After(5 * time.Millisecond):
					}
				}
				wall += time.Since(start)
				cpu += processCPU() - cpu0
				stopProfile()
				cancel()
				for range views {
					if err := <-done; err != nil {
						b.Fatal(err)
					}
				}
			}
			per := float64(b.N * n * 2)
			b.ReportMetric(per/wall.Seconds(), "records/s")
			b.ReportMetric(float64(wall.Nanoseconds())/per, "ns/record")
			b.ReportMetric(float64(cpu.Nanoseconds())/per, "cpu-ns/record")
		})
	}
}

// startProfile writes a CPU profile of the recovery alone (the seeding
// excluded) to $HERALD_BENCH_RECOVERY_PROFILE.name, when that is set.
func startProfile(b *testing.B, name string) (stop func()) {
	base := os.Getenv("HERALD_BENCH_RECOVERY_PROFILE")
	if base == "" {
		return func() {}
	}
	f, err := os.Create(base + "." + name)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

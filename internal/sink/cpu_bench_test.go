package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

// changelog returns the records the dispatcher writes for n notifications
// taken through versions 1 to 4 (scheduled, sending, retrying, sent), in
// the interleaved order of a burst: every notification's version 1, then
// every version 2, and so on, in the table's binary encoding. The requests
// carry a recipient, two channels and a content body, as the load test's
// do.
func changelog(n int) []*kgo.Record {
	content := json.RawMessage(`{"template":"statement","data":{"name":"Ada Lovelace","amount":"1,234.56","due":"2026-12-01","account":"GB82WEST12345698765432"}}`)
	recs := make([]*kgo.Record, 0, 4*n)
	for v := uint64(1); v <= 4; v++ {
		for i := 0; i < n; i++ {
			s := state(fmt.Sprintf("bench-%07d", i), "bench", v)
			s.Request.Recipient = contract.Recipient{Email: "ada@example.com", Phone: "+447700900123", TZ: "Europe/London"}
			s.Request.Channels = []contract.Channel{contract.ChannelEmail, contract.ChannelSMS}
			s.Request.Content = content
			value, err := contract.EncodeState(s) // the table's encoding
			if err != nil {
				panic(err)
			}
			recs = append(recs, &kgo.Record{Topic: string(topology.TableDispatcher), Key: []byte(s.ID), Value: value,
				Partition: int32(i % 12), Offset: int64(v)*int64(n) + int64(i)})
		}
	}
	return recs
}

// BenchmarkSinkCPU is the sink's CPU per changelog record without
// PostgreSQL's share: decoding the states and preparing the batch's rows
// (newest version per id, checks, sort, the INSERTs' column arrays), per batch size.
// cpu-ns/record (the process's CPU time) is the figure to compare.
func BenchmarkSinkCPU(b *testing.B) {
	for _, size := range []int{500, 5000, 10000} {
		recs := changelog(size / 4)
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := heraldtest.ProcessCPU()
			for i := 0; i < b.N; i++ {
				changes, dead := decode(recs)
				items, rejected := prepare(changes)
				if len(dead)+len(rejected) > 0 || len(items) != size/4 {
					b.Fatalf("%d dead, %d rejected, %d rows", len(dead), len(rejected), len(items))
				}
				statusArgs(items)
				attemptArgs(items)
			}
			b.ReportMetric(float64((heraldtest.ProcessCPU()-cpu0).Nanoseconds())/float64(b.N*len(recs)), "cpu-ns/record")
		})
	}
}

// BenchmarkSinkWrite is the sink's decode and Writer.Write per batch size
// against the test PostgreSQL (durability off: the CPU of both sides, not
// the disk), 20,000 records of 5,000 notifications per iteration:
// ns/record is the wall clock, sink-cpu-ns/record this process's CPU
// (PostgreSQL's is its own processes'). The
// larger the batch, the more of a notification's versions it collapses
// into one row.
func BenchmarkSinkWrite(b *testing.B) {
	const n = 5000
	recs := changelog(n)
	for _, size := range []int{50, 500, 5000, 10000, 20000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			pool := migratedPool(b, heraldtest.Postgres(b))
			w := NewWriter(pool)
			ctx := context.Background()
			var rows int
			var cpu time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i > 0 {
					b.StopTimer()
					if _, err := pool.Exec(ctx, "TRUNCATE dispatch_status, dispatch_attempts"); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				cpu0 := heraldtest.ProcessCPU()
				for j := 0; j < len(recs); j += size {
					changes, _ := decode(recs[j:min(j+size, len(recs))])
					res, err := w.Write(ctx, changes)
					if err != nil {
						b.Fatal(err)
					}
					rows += res.Rows
				}
				cpu += heraldtest.ProcessCPU() - cpu0
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*len(recs)), "sink-cpu-ns/record")
			b.ReportMetric(float64(rows)/float64(b.N), "rows/op")
		})
	}
}

package tableview

import (
	"fmt"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/gokax"
)

// BenchmarkInFlightStored is what the index adds to each changelog record
// the view stores: the summaries of the replaced and the stored state
// decoded, the counts and the set updated under the lock. A notification
// writes its state about five times (docs/performance.md, Kafka records per
// notification).
func BenchmarkInFlightStored(b *testing.B) {
	ix := newInFlight()
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	enc := func(id string, st contract.Status, v uint64) []byte {
		s := &contract.State{ID: id, Campaign: "billing-2026-12", Status: st, Version: v, Channel: contract.ChannelEmail, Attempts: 1,
			UpdatedAt: at, FirstSeen: at, Request: &contract.Request{ID: id, Campaign: "billing-2026-12",
				Recipient: contract.Recipient{Email: "jane@example.com"}, Channels: []contract.Channel{contract.ChannelEmail}}}
		raw, err := contract.EncodeState(s)
		if err != nil {
			b.Fatal(err)
		}
		return raw
	}
	const n = 1024
	ids := make([]string, n)
	sending, sent := make([][]byte, n), make([][]byte, n)
	for i := range n {
		ids[i] = fmt.Sprintf("2026-12:user-%06d:bill", i)
		sending[i], sent[i] = enc(ids[i], contract.StatusSending, 2), enc(ids[i], contract.StatusSent, 3)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := i % n
		if i/n%2 == 0 {
			ix.stored(int32(k%12), ids[k], sent[k], sending[k])
		} else {
			ix.stored(int32(k%12), ids[k], sending[k], sent[k])
		}
	}
}

// BenchmarkProgress is the sender's stale check of one command, a state in
// flight among 100,000 in a partition's store: answered from the index
// (StateView.Progress now) against a read of the store and a light decode
// (what it did before). The store here is small and hot; in a burst its
// reads also wait for compactions (docs/performance.md).
func BenchmarkProgress(b *testing.B) {
	st, err := gokax.Storage(b.TempDir())("herald-dispatcher-table", 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Open(); err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	const n = 100_000
	ids := make([]string, n)
	ix := newInFlight()
	for i := range n {
		ids[i] = fmt.Sprintf("2026-12:user-%06d:bill", i)
		s := &contract.State{ID: ids[i], Campaign: "billing-2026-12", Status: contract.StatusSending, Version: 2, Channel: contract.ChannelEmail,
			Attempts: 1, Commands: 1, UpdatedAt: at, FirstSeen: at, Request: &contract.Request{ID: ids[i], Campaign: "billing-2026-12",
				Recipient: contract.Recipient{Email: "jane@example.com"}, Channels: []contract.Channel{contract.ChannelEmail}}}
		raw, err := contract.EncodeState(s)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Set(ids[i], raw); err != nil {
			b.Fatal(err)
		}
		ix.stored(0, ids[i], nil, raw)
	}
	b.Run("index", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			if p, ok := ix.progress(ids[i*7919%n]); !ok || p.attempts != 1 {
				b.Fatal("not in the index")
			}
		}
	})
	b.Run("store", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			raw, err := st.Get(ids[i*7919%n])
			if err != nil {
				b.Fatal(err)
			}
			if p, err := contract.DecodeProgress(raw); err != nil || p.Attempts != 1 {
				b.Fatal(err)
			}
		}
	})
}

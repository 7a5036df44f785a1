package tableview

import (
	"fmt"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
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

package tableview

import (
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// The index answers the progress of a state in flight from memory, with
// the fields DecodeProgress reads, and has no answer once the state is
// final or deleted, or when its progress does not decode: the store is
// read for those (StateView.Progress).
func TestIndexKeepsTheProgressInFlight(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	enc := func(st contract.Status, version uint64) []byte {
		b, err := contract.EncodeState(&contract.State{ID: "n1", Status: st, HoldReason: map[contract.Status]contract.HoldReason{
			contract.StatusDeferred: contract.HoldBlackout}[st], Attempts: 2, Issue: 1, Commands: 3, Version: version, UpdatedAt: at})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ix := newInFlight()
	deferred, sending, sent := enc(contract.StatusDeferred, 1), enc(contract.StatusSending, 2), enc(contract.StatusSent, 3)
	ix.stored(0, "n1", nil, deferred)
	if p, ok := ix.progress("n1"); !ok || p.attempts != 2 || p.issue != 1 || p.commands != 3 || p.version != 1 {
		t.Fatalf("deferred: %+v %v", p, ok)
	} else if st, hold := p.summary(); st != contract.StatusDeferred || hold != contract.HoldBlackout {
		t.Fatalf("deferred: %s, %s", st, hold)
	}
	ix.stored(0, "n1", deferred, sending)
	if p, ok := ix.progress("n1"); !ok || p.version != 2 {
		t.Fatalf("sending: %+v %v", p, ok)
	} else if st, hold := p.summary(); st != contract.StatusSending || hold != "" {
		t.Fatalf("sending: %s, %s", st, hold)
	}
	// A status this version does not know, and a count beyond int32,
	// keep the id in flight without progress.
	for _, s := range []*contract.State{{ID: "n3", Status: "paused", Version: 1, UpdatedAt: at},
		{ID: "n3", Status: contract.StatusSending, Attempts: 1 << 40, Version: 1, UpdatedAt: at}} {
		b, err := contract.EncodeState(s)
		if err != nil {
			t.Fatal(err)
		}
		ix.stored(0, "n3", nil, b)
		if p, ok := ix.progress("n3"); ok {
			t.Fatalf("%s, %d attempts: the index answered %+v", s.Status, s.Attempts, p)
		}
		ix.stored(0, "n3", b, nil)
	}
	ix.stored(0, "n1", sending, sent)
	if p, ok := ix.progress("n1"); ok {
		t.Fatalf("sent: the index answered %+v", p)
	}
	ix.stored(0, "n1", sent, sending)
	ix.stored(0, "n1", sending, nil)
	if p, ok := ix.progress("n1"); ok {
		t.Fatalf("deleted: the index answered %+v", p)
	}
	// A state whose summary decodes and whose progress does not (a broken
	// time) stays in the set, without an answer.
	broken := append([]byte(nil), sending...)
	broken = append(broken, 0x4a, 0x02, 0xff, 0xff) // next_attempt_at (9): a Time with a bad field
	ix.stored(0, "n2", nil, broken)
	if _, err := contract.DecodeSummary(broken); err != nil {
		t.Fatalf("the broken state's summary: %v", err)
	}
	if _, err := contract.DecodeProgress(broken); err == nil {
		t.Fatal("the broken state's progress decoded")
	}
	if p, ok := ix.progress("n2"); ok {
		t.Fatalf("unreadable progress: the index answered %+v", p)
	}
	if ids := ix.ids(0); len(ids) != 1 || ids[0] != "n2" {
		t.Fatalf("in flight: %v", ids)
	}
}

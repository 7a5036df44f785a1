package sender

import (
	"context"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// A copy of a command whose call is in flight (same attempt and issue)
// waits for that call instead of being skipped: when the call is cut
// without an answer (its session ended at a broker restart), the copy
// must take the attempt's slot and be answered, or nobody answers it
// until the sweep's send timeout. Before, the copy was skipped at once.
func TestCopyOfACallInFlightWaitsForIt(t *testing.T) {
	s := &Sender{obs: nopObserver{}}
	cmd := &contract.SendCommand{ID: "n", Attempt: 1, Issue: 0, Channel: contract.ChannelEmail}
	first := newCall(context.Background(), cmd)
	ss := &session{s: s}
	if v := ss.gateInFlight(first); v != verdictNext || !first.flying {
		t.Fatalf("the first command: verdict %d, flying %v; want it through", v, first.flying)
	}
	copyCall := newCall(context.Background(), cmd)
	got := make(chan verdict, 1)
	go func() { got <- ss.gateInFlight(copyCall) }()
	select {
	case v := <-got:
		t.Fatalf("the copy was decided (verdict %d) while its twin's call was in flight; want it to wait", v)
	case <-time.After(100 * time.Millisecond):
	}
	s.leave(first) // the twin's call is cut: no answer
	select {
	case v := <-got:
		if v != verdictNext || !copyCall.flying {
			t.Fatalf("the copy after its twin was cut: verdict %d, flying %v; want it through to call", v, copyCall.flying)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the copy still waits after its twin left")
	}
}

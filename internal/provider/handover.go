package provider

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// The cut-off rule every provider follows, enforced here (handOverBy)
// and in each Send:
//
//   - A command's cut-off (contract.SendCommand.Until: the earliest of its
//     deadline, the next blackout window's start and expires_at) bounds
//     when the request may reach the provider. A request not handed over
//     by then is abandoned, and the answer is NotAttempted: nothing
//     reached the provider, so no call was made inside the window or after
//     expiry, and no attempt is used up.
//   - The hand-over is the point after which the provider can no longer
//     be stopped from delivering: for the webhook, the request written
//     whole (httptrace WroteRequest; a request read and not answered is
//     never sent again by the transport, notReplayable); for SMTP, the
//     final dot that ends DATA (smtp.go Send: a session the cut-off finds
//     before it is closed without the dot, and the server drops the
//     unfinished message).
//   - Once the request has been handed over, the call is no longer bound by
//     the cut-off: the provider has been called before it, and cutting the
//     call would not take the delivery back. It would only turn the
//     provider's answer into an unknown outcome, which the dispatcher
//     issues again: a second delivery at a provider that does not honour
//     the idempotency key. The call is bounded by the provider timeout
//     (Options.Timeout) instead, so its answer is in before the
//     dispatcher's send timeout (cut-off + provider timeout + margin).
//
// A process shutting down still cuts every call through ctx; the sender
// then publishes no answer, and the next owner issues the command again.

// errNotHandedOver is the cause of a call's context canceled at the
// command's cut-off before its request reached the provider.
var errNotHandedOver = errors.New("the command's cut-off came before the request reached the provider")

// handOver tracks one call against its command's cut-off: whether the
// request was handed over to the provider before it.
type handOver struct {
	state atomic.Int32 // 0 pending, 1 handed over, 2 cut off
	timer *time.Timer
	stop  context.CancelCauseFunc
}

// handOverBy returns a context for one call under parent, canceled at
// until unless handedOver was called first, and the handOver to report
// the hand-over to. release must be called when the call ends. A zero
// until sets no cut-off; an until already past cuts the call at once.
func handOverBy(parent context.Context, until time.Time) (context.Context, *handOver) {
	ctx, cancel := context.WithCancelCause(parent)
	h := &handOver{stop: cancel}
	switch left := time.Until(until); {
	case until.IsZero():
	case left <= 0:
		h.state.Store(2)
		cancel(errNotHandedOver)
	default:
		h.timer = time.AfterFunc(left, func() {
			if h.state.CompareAndSwap(0, 2) {
				cancel(errNotHandedOver)
			}
		})
	}
	return ctx, h
}

// handedOver records that the request has reached the provider; from now
// on the cut-off does not end the call. It reports false if the cut-off
// came first. A request written in full just as the cut-off fires is
// cut with an unknown outcome (the provider may have it): a window of
// microseconds, since no call starts within --send-min-budget of the
// cut-off.
func (h *handOver) handedOver() bool {
	return h.state.CompareAndSwap(0, 1) || h.state.Load() == 1
}

// cutOff reports whether the cut-off ended the call before its request
// was handed over.
func (h *handOver) cutOff() bool { return h.state.Load() == 2 }

// release stops the cut-off timer and frees the call's context.
func (h *handOver) release() {
	if h.timer != nil {
		h.timer.Stop()
	}
	h.stop(nil)
}

// NotAttempted is an attempt abandoned before its request reached the
// provider, because the command's cut-off came: nothing was delivered,
// and no attempt is used up.
func NotAttempted(err error) Result {
	return Result{Outcome: contract.OutcomeNotAttempted, Err: err}
}

// notHandedOver is the NotAttempted result of a call whose cut-off came,
// after waited, before its request reached the provider.
func notHandedOver(prefix string, waited time.Duration) Result {
	return NotAttempted(fmt.Errorf("%s: not attempted: %w (after %s)", prefix, errNotHandedOver, waited.Round(time.Millisecond)))
}

package sender

import (
	"sync"

	"github.com/herald-dispatch/herald/contract"
)

// answered remembers the commands this sender has answered (a provider
// call made and its result acknowledged by the brokers), the newest
// capacity of them, first in first out.
//
// Why: a command can reach the sender again after it was answered. The
// sender's offset commit can be lost in a rebalance (its generation ended
// before the commit landed), so the partition is consumed again from the
// last commit; or a dispatcher replay makes the command again. While the
// result is still on its way to the dispatcher, the state view shows the
// attempt as sending, and Stale cannot tell. A provider that honours the
// idempotency key answers the second call from the first; one that does
// not delivers twice (the chaos suite saw hundreds per run, all from the
// same instance within seconds). Remembering the answered commands stops
// the second call in the process that made the first. Another process
// does not know them: there the idempotency key remains the guard.
//
// A copy is answered again with the first's result, not skipped: the
// dispatcher may need it. A state write lost in a broker outage, with the
// partition recovered from the changelog, makes the same command again
// (attempt and issue are counted from the recovered state), and the
// first's result, which came before that state, was stale then; skipping
// the copy left the notification waiting for the sweep's send timeout
// (the chaos suite saw 54 s). The provider did answer that command, so
// its answer is the copy's.
type answered struct {
	mu       sync.Mutex
	capacity int
	set      map[answerKey]contract.SendResult
	ring     []answerKey
	next     int
}

// answerKey names one command: an attempt and its issue.
type answerKey struct {
	id             string
	attempt, issue int
}

func newAnswered(capacity int) *answered {
	return &answered{capacity: capacity, set: make(map[answerKey]contract.SendResult, capacity)}
}

func (a *answered) add(k answerKey, res contract.SendResult) {
	if a.capacity <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.set[k]; ok {
		return
	}
	if len(a.ring) < a.capacity {
		a.ring = append(a.ring, k)
	} else {
		delete(a.set, a.ring[a.next])
		a.ring[a.next] = k
		a.next = (a.next + 1) % a.capacity
	}
	a.set[k] = res
}

// lookup returns the result k was answered with, if it is remembered.
func (a *answered) lookup(k answerKey) (contract.SendResult, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	res, ok := a.set[k]
	return res, ok
}

package sender

import (
	"sync"

	"github.com/herald-dispatch/herald/contract"
)

// answered remembers the answers this sender has published (a result
// acknowledged by the brokers), one per attempt (id, attempt), for the
// newest capacity attempts, first in first out. It is rebuilt for the
// partitions a sender is assigned from herald.results (recall.go), so it
// survives a restart and a move of the partition to another process.
//
// Why: a command can reach the sender again after its attempt was
// answered, with the same issue number or another:
//
//   - the same command again: the sender's offset commit was lost in a
//     rebalance (its generation ended before the commit landed) and the
//     partition is consumed again from the last commit, or a dispatcher
//     replay or resend made the command again;
//   - the same attempt with a new issue number: the sweep's send timeout
//     was applied before a lagging result and the dispatcher issued the
//     attempt again, or a resend copy reached a sender that restarted.
//
// While the result is still on its way to the dispatcher, the state view
// shows the attempt sending, and Stale cannot tell. A provider that
// honours the idempotency key answers the second call from the first; one
// that does not delivers twice (the chaos suite saw hundreds per run, and
// a kill -9 during a send burst 1,765 re-calls of delivered attempts).
//
// So one provider call is made per delivered attempt, whatever the issue
// number (answerFor): a command whose attempt was answered success is
// never called again; it is answered with that success, under its own
// issue number so that the dispatcher applies it (dispatcher.onResult
// counts a success of any issue of the current attempt; a failure only of
// the issue it waits for). Any other answer (not_attempted, transient,
// throttled, permanent: the provider did not deliver; unknown: see
// settles) answers a copy of its own command (same or older issue): a
// copy of a command answered not_attempted must not be called inside the
// window that stopped the first (issue 21, item 4). A later issue of that
// attempt is a decision the dispatcher made after that answer, and is
// called.
//
// A copy is answered again, not skipped: the dispatcher may need it. A
// state write lost in a broker outage, with the partition recovered from
// the changelog, makes the same command again (attempt and issue are
// counted from the recovered state), and the first's result, which came
// before that state, was stale then; skipping the copy left the
// notification waiting for the sweep's send timeout (the chaos suite saw
// 54 s). The provider did answer that command, so its answer is the
// copy's.
type answered struct {
	mu       sync.Mutex
	capacity int
	set      map[attemptKey]contract.SendResult
	ring     []attemptKey
	next     int
}

func newAnswered(capacity int) *answered {
	return &answered{capacity: capacity, set: make(map[attemptKey]contract.SendResult, min(capacity, 1<<16))}
}

// settles reports whether an answer with outcome o stands for its attempt
// for good, whatever the issue: the provider delivered.
//
// An unknown outcome does not: the dispatcher answers it by issuing the
// attempt again with the same key, at most contract.MaxReissues times,
// precisely to call the provider again and learn the outcome from it (a
// provider that honours the key answers from the first call). Answering
// those re-issues unknown from memory would not save the second call: once
// they are used up the next attempt, a new attempt number, makes it, with
// the same key, and the notification fails instead where the policy has
// no attempt left. A copy of the unknown command itself (same issue) is
// answered from memory.
func settles(o contract.Outcome) bool {
	return o == contract.OutcomeSuccess
}

// add remembers res as its attempt's answer, unless the attempt was
// delivered already: a success is never replaced (a rebuild reads every
// answer of an attempt, in order, and an earlier release called again).
func (a *answered) add(res contract.SendResult) {
	if a.capacity <= 0 {
		return
	}
	k := attemptKey{res.ID, res.Attempt}
	a.mu.Lock()
	defer a.mu.Unlock()
	if prev, ok := a.set[k]; ok {
		if !settles(prev.Outcome) {
			a.set[k] = res
		}
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

// lookup returns the answer remembered for an attempt.
func (a *answered) lookup(k attemptKey) (contract.SendResult, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	res, ok := a.set[k]
	return res, ok
}

// answerFor returns the answer cmd gets without a call, under cmd's issue
// number, if its attempt's remembered answer stands for it: the attempt
// was delivered (settles), or cmd is a copy of (or older than) the
// command answered otherwise.
func (a *answered) answerFor(cmd *contract.SendCommand) (contract.SendResult, bool) {
	res, ok := a.lookup(attemptKey{cmd.ID, cmd.Attempt})
	if !ok || !settles(res.Outcome) && cmd.Issue > res.Issue {
		return contract.SendResult{}, false
	}
	res.Issue = cmd.Issue
	return res, true
}

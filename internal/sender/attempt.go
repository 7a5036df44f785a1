package sender

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/provider"
)

// verdict is what a gate decides for a command.
type verdict int

const (
	verdictNext    verdict = iota // go on to the next gate
	verdictPublish                // publish call.res
	verdictSkip                   // stale or a copy in flight: complete without a result
	verdictAbandon                // gave up before an answer: no result, no completion
)

// gateStep is one gate of an attempt: it reads and fills the call, and
// returns verdictNext to let the command through, or the verdict that
// ends the attempt (with call.res set when it publishes). A gate takes
// what it holds into the call (a channel slot, the attempt's in-flight
// slot) and never releases it: the call's owner does (handle).
type gateStep struct {
	name string
	run  func(*session, *call) verdict
}

// gates are the steps of every command's attempt, run in this order by
// attempt. The order is the sender's rules, and is written here only:
//
//  1. provider: a channel without a provider, or a command without an
//     address, fails permanently at once (the next channel takes over).
//  2. slot: wait for a slot under the channel's concurrency limit, then,
//     on a failover chain, for a place at one of its providers (its own
//     limit, rate and 429 pause: providerPacer), then for the channel's
//     rate token and 429 pause (await), at most until the command's
//     cut-off less MinBudget. Before the checks below, so that they read
//     the state as it is when the call can start.
//  3. one call per attempt: at most one command per (id, attempt) goes
//     past this point at a time. A copy of the command being called, or
//     another issue of its attempt, waits for the slot: the answered gate
//     then answers it, or it calls if the first was cut without an answer.
//  4. answered: a command whose attempt was answered gets that answer
//     again (answered.answerFor). After 3, so that a command that waited
//     for its attempt's call sees that call's answer; before 5, so that a
//     late copy of a delivered command is answered with the success, not
//     not_attempted (which would have the dispatcher issue it again).
//  5. cut-off: no call starts at or after the command's cut-off less
//     MinBudget, nor when no slot or token came in time: not_attempted.
//  6. stale: a command the state has moved past (Stale) completes
//     without a call or a result.
//  7. frozen: a process paused long enough for its partitions to move
//     calls nothing (the session restarts).
//  8. call: the provider call, its result and what it tells the
//     channel's gate and the observer. Last: every rule above holds when
//     the provider is called.
var gates = [...]gateStep{
	{"provider", (*session).gateProvider},
	{"slot", (*session).gateSlot},
	{"one call per attempt", (*session).gateInFlight},
	{"answered", (*session).gateAnswered},
	{"cut-off", (*session).gateCutoff},
	{"stale", (*session).gateStale},
	{"frozen", (*session).gateFrozen},
	{"call", (*session).gateCall},
}

// call is one command on its way through the gates: what they learnt and
// what they hold, for the owner to release.
type call struct {
	cmd *contract.SendCommand
	// wait ends the wait for the channel's gate and for the attempt's
	// in-flight slot (the partition was revoked or the session stops).
	wait context.Context
	res  contract.SendResult
	p    provider.Provider
	g    *gate
	lim  *channelLimit
	// chain is the channel's failover chain, if it has one, and rsv the
	// place reserved at one of its providers when ready.
	chain *provider.Chain
	rsv   *provider.Reservation

	// sl is the channel slot, held when ready (a slot and a token came in
	// time); the outcome of the call, if one was made, moves the
	// channel's limit.
	sl      slot
	ready   bool
	outcome callOutcome
	latency time.Duration
	// flying: this command holds its attempt's in-flight slot.
	flying bool
}

func newCall(wait context.Context, cmd *contract.SendCommand) *call {
	return &call{cmd: cmd, wait: wait,
		res: contract.SendResult{ID: cmd.ID, Attempt: cmd.Attempt, Issue: cmd.Issue, Channel: cmd.Channel}}
}

// releaseSlot gives the channel slot back, with the call's answer, and
// a provider's place not used.
func (c *call) releaseSlot() {
	c.rsv.Release()
	c.rsv = nil
	if c.ready {
		c.lim.release(c.sl, c.outcome)
		c.ready = false
	}
}

// leave gives the attempt's in-flight slot back, waking a command of the
// same attempt that waits for it.
func (s *Sender) leave(c *call) {
	if !c.flying {
		return
	}
	if f, ok := s.inFlight.LoadAndDelete(attemptKey{c.cmd.ID, c.cmd.Attempt}); ok {
		close(f.(*flight).done)
	}
	c.flying = false
}

// attempt runs c through the gates, in their order, until one decides.
func (ss *session) attempt(c *call) verdict {
	for _, g := range gates {
		if v := g.run(ss, c); v != verdictNext {
			return v
		}
	}
	panic("sender: no gate decided; the call gate must be last")
}

// flight is the in-flight slot of an attempt: the issue of the command
// holding it, and done, closed when its result is published.
type flight struct {
	issue int
	done  chan struct{}
}

// attemptKey names one provider attempt of one notification.
type attemptKey struct {
	id      string
	attempt int
}

func (ss *session) gateProvider(c *call) verdict {
	s, cmd := ss.s, c.cmd
	c.p = s.cfg.Providers[cmd.Channel]
	if c.p != nil && cmd.Address != "" {
		c.g, c.lim, c.chain = s.gates[cmd.Channel], s.limits[cmd.Channel], s.chains[cmd.Channel]
		return verdictNext
	}
	c.res.Outcome = contract.OutcomePermanent
	c.res.Error = fmt.Sprintf("no provider configured for channel %s", cmd.Channel)
	if c.p != nil {
		c.res.Error = fmt.Sprintf("no %s address", cmd.Channel)
	}
	c.res.At = s.now()
	s.obs.Attempt(cmd.Channel, c.res.Outcome, 0)
	return verdictPublish
}

func (ss *session) gateSlot(c *call) verdict {
	sl, rsv, ready, err := ss.await(c.wait, c.cmd, c.lim, c.chain, c.g)
	if err != nil {
		return verdictAbandon
	}
	c.sl, c.rsv, c.ready = sl, rsv, ready
	return verdictNext // not ready: the cut-off gate answers
}

func (ss *session) gateInFlight(c *call) verdict {
	s, cmd := ss.s, c.cmd
	key := attemptKey{cmd.ID, cmd.Attempt}
	for {
		held, busy := s.inFlight.LoadOrStore(key, &flight{issue: cmd.Issue, done: make(chan struct{})})
		if !busy {
			c.flying = true
			return verdictNext
		}
		// A copy of the command being called, or another issue of the same
		// attempt, while its call or result is in flight: wait for that
		// slot, never skip it. The answered gate then gives this command
		// the first's answer; if the first was cut without one (its
		// session ended: partitions lost at a broker restart), this one
		// calls. Skipping a copy left it with no answer at all when its
		// twin was cut, until the sweep's send timeout (the chaos suite's
		// broker-restart saw 1,258 notifications wait 38 s).
		f := held.(*flight)
		select {
		case <-f.done:
		case <-c.wait.Done():
			return verdictAbandon
		}
	}
}

func (ss *session) gateAnswered(c *call) verdict {
	prev, ok := ss.s.answered.answerFor(c.cmd)
	if !ok {
		return verdictNext
	}
	ss.s.obs.Skipped(c.cmd.Channel) // no call: answered already
	c.res = prev
	return verdictPublish
}

func (ss *session) gateCutoff(c *call) verdict {
	s, cmd := ss.s, c.cmd
	now := s.now()
	why := PastCutoff(cmd, now, s.cfg.MinBudget)
	if why == "" && !c.ready {
		why = fmt.Sprintf("not attempted: no %s call slot, provider place or rate token came in time (the command's cut-off is %s, and no call starts within the --send-min-budget of %s before it)",
			cmd.Channel, cmd.Until().UTC().Format(time.RFC3339Nano), s.cfg.MinBudget)
	}
	if why == "" {
		return verdictNext
	}
	c.res.Outcome, c.res.Error, c.res.At = contract.OutcomeNotAttempted, why, now
	s.obs.Attempt(cmd.Channel, c.res.Outcome, 0)
	return verdictPublish
}

func (ss *session) gateStale(c *call) verdict {
	s := ss.s
	if s.cfg.State == nil {
		return verdictNext
	}
	st, err := s.cfg.State.Get(c.cmd.ID)
	if err != nil {
		s.log.Debug("sender: state check failed; sending", "id", c.cmd.ID, "err", err)
		return verdictNext
	}
	if Stale(st, c.cmd) {
		s.obs.Skipped(c.cmd.Channel)
		return verdictSkip
	}
	return verdictNext
}

// gateFrozen: the process was paused (SIGSTOP, a VM freeze) long enough
// for its partitions to have moved: another owner may be calling for this
// command. The session restarts; nothing is called meanwhile.
func (ss *session) gateFrozen(*call) verdict {
	if ss.frozen() {
		return verdictAbandon
	}
	return verdictNext
}

// gateCall makes the provider call. It is not bounded by the cut-off
// here: the provider abandons a request it has not handed over by then
// (not_attempted), and waits up to --provider-timeout for the answer to
// one it has (the cut-off rule, provider/handover.go). The command's
// CallTimeout, the provider timeout the dispatcher's send timeout
// assumes, bounds the whole call too, so a sender whose own
// --provider-timeout is longer still answers before that send timeout
// fires and the attempt is issued again. Otherwise only a shutdown
// (ss.base) cuts it.
func (ss *session) gateCall(c *call) verdict {
	s, cmd := ss.s, c.cmd
	ctx := ss.base
	if d := cmd.CallTimeout.D(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ss.base, d)
		defer cancel()
	}
	start := s.now()
	var pr provider.Result
	if c.rsv != nil {
		rsv := c.rsv
		c.rsv = nil
		pr = c.chain.SendReserved(ctx, cmd, rsv)
	} else {
		pr = c.p.Send(ctx, cmd)
	}
	end := s.now()
	if pr.Outcome != contract.OutcomeSuccess && ss.base.Err() != nil {
		return verdictAbandon // cut off at shutdown: the answer is unknown
	}
	c.latency = end.Sub(start)
	c.outcome = outcomeOf(pr.Outcome, pr.Code, c.latency)
	c.res.Outcome, c.res.Code = pr.Outcome, pr.Code
	c.res.Provider, c.res.ProviderMessageID = pr.Provider, pr.MessageID
	c.res.RetryAfter = contract.Duration(pr.RetryAfter)
	c.res.At, c.res.Latency = end, contract.Duration(c.latency)
	if pr.Err != nil {
		c.res.Error = pr.Err.Error()
		if cmd.Address != "" {
			c.res.Error = strings.ReplaceAll(c.res.Error, cmd.Address, contract.MaskAddress(cmd.Address))
		}
	}
	ss.observe(c, pr, end)
	return verdictPublish
}

// observe tells the observer, the channel's gate and the log what a
// provider answered at end. A 429 from a provider of a failover chain
// paused that provider alone (providerPacer), not the channel: the
// chain's other providers take its calls meanwhile.
func (ss *session) observe(c *call, pr provider.Result, end time.Time) {
	s, cmd, res := ss.s, c.cmd, &c.res
	s.obs.Attempt(cmd.Channel, pr.Outcome, c.latency)
	switch pr.Outcome {
	case contract.OutcomeSuccess:
		if !cmd.RequestedAt.IsZero() {
			s.obs.Delivered(cmd.Channel, end.Sub(cmd.RequestedAt))
		}
	case contract.OutcomeThrottled:
		d := pr.RetryAfter
		if d <= 0 {
			d = DefaultThrottlePause
		}
		if c.chain == nil && c.g.pause(d) {
			s.obs.Paused(cmd.Channel, d)
			s.log.Info("provider throttled the channel; pausing it", "channel", cmd.Channel, "for", d)
		}
	case contract.OutcomePermanent:
		s.log.Info("permanent failure", "id", cmd.ID, "channel", cmd.Channel, "attempt", cmd.Attempt,
			"to", contract.MaskAddress(cmd.Address), "code", res.Code, "error", res.Error)
	default:
		s.log.Debug("transient failure", "id", cmd.ID, "channel", cmd.Channel, "attempt", cmd.Attempt,
			"to", contract.MaskAddress(cmd.Address), "code", res.Code, "error", res.Error)
	}
}

// await waits for a slot under the channel's concurrency limit, then, on
// a failover chain, for a place at one of its providers (chain.Reserve),
// then for the channel's gate (rate and 429 pause), holding the slot and
// the place meanwhile: a token is taken only when a call can start at
// once, so calls never bunch up beyond the rate. It waits until wait ends
// (err: the command is abandoned) or until the command's cut-off less the
// minimum budget, since no call may start after that: then ready is false
// and the command is answered not_attempted, not held past its cut-off.
func (ss *session) await(wait context.Context, cmd *contract.SendCommand, lim *channelLimit, chain *provider.Chain, g *gate) (sl slot, rsv *provider.Reservation, ready bool, err error) {
	ctx := wait
	if until := cmd.Until(); !until.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(wait, until.Sub(ss.s.now())-ss.s.cfg.MinBudget)
		defer cancel()
	}
	sl, err = lim.acquire(ctx)
	if err == nil {
		if chain != nil {
			rsv, err = chain.Reserve(ctx, cmd)
		}
		if err == nil {
			if err = g.wait(ctx); err == nil {
				return sl, rsv, true, nil
			}
			rsv.Release()
		}
		lim.release(sl, callOutcome{})
	}
	if wait.Err() != nil {
		return slot{}, nil, false, err
	}
	return slot{}, nil, false, nil // the cut-off came first
}

package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/herald-dispatch/herald/contract"
)

// A failover chain: the providers of one channel, in the order they were
// configured (--provider sms=A --provider sms=B). The rules, enforced in
// Chain.Send:
//
//   - An attempt goes to the first provider whose circuit lets it through.
//   - A definite failure (Failover: nothing reached the provider, or the
//     provider answered that it took nothing, e.g. a connection refused, a
//     DNS failure, a status the provider's template declares `failover`)
//     moves the same attempt to the next provider, within the same Send:
//     the channel's attempts are not spent on it.
//   - Any other answer ends the attempt on the provider that gave it. An
//     unknown outcome (the request may have been delivered), and a failure
//     not known to be definite (a webhook's 5xx), never move: the id is
//     then pinned to that provider (unknownMemory), and every later
//     attempt of it on this channel goes to the same provider whatever
//     its circuit, since it may still deliver the first one (and honours
//     the idempotency key for it).
//   - A command's cut-off is the chain's: not_attempted from a provider
//     ends the attempt (the next provider would be past the cut-off too).
//
// Each provider has a circuit breaker (breaker): after
// ChainOptions.FailureThreshold consecutive failures (definite ones, and
// unknown outcomes and other transient failures, which the provider's
// health shares) its circuit opens and attempts skip it without a call;
// after ChainOptions.CoolDown one attempt goes through as a probe
// (half-open): a success closes the circuit, a failure opens it again
// for another cool-down. An attempt whose every provider is skipped or
// failed definitely is answered transient, with a Retry-After of the
// time until the first circuit half-opens when every circuit was open.

// CircuitState is a provider's circuit in a chain. Its value is the
// herald_provider_circuit_state gauge's.
type CircuitState int

const (
	// CircuitClosed lets every attempt through.
	CircuitClosed CircuitState = 0
	// CircuitHalfOpen lets one probe through.
	CircuitHalfOpen CircuitState = 1
	// CircuitOpen skips the provider.
	CircuitOpen CircuitState = 2
)

func (s CircuitState) String() string {
	switch s {
	case CircuitOpen:
		return "open"
	case CircuitHalfOpen:
		return "half-open"
	}
	return "closed"
}

// CircuitObserver is told every provider's circuit state when a chain is
// built and at every change.
type CircuitObserver interface {
	CircuitState(ch contract.Channel, provider string, s CircuitState)
}

// Defaults of ChainOptions.
const (
	DefaultCircuitFailures = 5
	DefaultCircuitCoolDown = 30 * time.Second
	DefaultUnknownMemory   = 100_000
)

// ChainOptions tune the failover chains OpenSet builds for channels with
// more than one provider.
type ChainOptions struct {
	// FailureThreshold is how many consecutive failures open a provider's
	// circuit (default DefaultCircuitFailures; negative: never).
	FailureThreshold int
	// CoolDown is how long an open circuit waits before its probe
	// (default DefaultCircuitCoolDown).
	CoolDown time.Duration
	// UnknownMemory is how many ids pinned to a provider (after an unknown
	// outcome) a chain remembers, the oldest forgotten first (default
	// DefaultUnknownMemory; negative: none).
	UnknownMemory int
	// MinBudget is the sender's --send-min-budget: after a failover, the
	// next provider is not called with less than this left before the
	// command's cut-off (not_attempted instead), as the sender does not
	// start the first call then.
	MinBudget time.Duration
	Observer  CircuitObserver
	Log       *slog.Logger

	now func() time.Time
}

func (o ChainOptions) withDefaults() ChainOptions {
	if o.FailureThreshold == 0 {
		o.FailureThreshold = DefaultCircuitFailures
	}
	if o.CoolDown <= 0 {
		o.CoolDown = DefaultCircuitCoolDown
	}
	if o.UnknownMemory == 0 {
		o.UnknownMemory = DefaultUnknownMemory
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.now == nil {
		o.now = time.Now
	}
	return o
}

// Chain is a channel's providers in failover order; see above.
type Chain struct {
	channel contract.Channel
	links   []*link
	log     *slog.Logger
	pinned  *pins

	minBudget time.Duration
	now       func() time.Time
}

type link struct {
	name  string
	p     Provider
	br    *breaker
	pacer Pacer // nil: none (pace.go)
}

// Named is a provider with a name of its own (a template's name:), used
// for it in chains, results and metrics.
type Named interface{ Name() string }

// NewChain builds the chain of a channel's providers, named by names (one
// each, unique).
func NewChain(ch contract.Channel, names []string, ps []Provider, o ChainOptions) *Chain {
	o = o.withDefaults()
	c := &Chain{channel: ch, log: o.Log, pinned: newPins(o.UnknownMemory), minBudget: o.MinBudget, now: o.now}
	for i, p := range ps {
		name := names[i]
		b := &breaker{threshold: o.FailureThreshold, coolDown: o.CoolDown, now: o.now}
		if o.Observer != nil {
			obs := o.Observer
			b.onChange = func(s CircuitState) { obs.CircuitState(ch, name, s) }
			obs.CircuitState(ch, name, CircuitClosed)
		}
		c.links = append(c.links, &link{name: name, p: p, br: b})
	}
	return c
}

// ProviderCircuit is one provider of a chain and its circuit.
type ProviderCircuit struct {
	Provider string
	State    CircuitState
}

// Circuits returns the chain's providers, in order, with their circuits.
func (c *Chain) Circuits() []ProviderCircuit {
	out := make([]ProviderCircuit, len(c.links))
	for i, l := range c.links {
		out[i] = ProviderCircuit{Provider: l.name, State: l.br.current()}
	}
	return out
}

// Send makes one attempt through the chain: Reserve, its wait bounded by
// the command's cut-off less the min budget, then SendReserved.
func (c *Chain) Send(ctx context.Context, cmd *contract.SendCommand) Result {
	wctx, cancel := c.untilBudget(ctx, cmd)
	r, err := c.Reserve(wctx, cmd)
	cancel()
	if err != nil {
		return NotAttempted(fmt.Errorf("not attempted: no provider of %s had a place before the command's cut-off (%s) less the --send-min-budget of %s: %w",
			c.channel, cmd.Until().UTC().Format(time.RFC3339Nano), c.minBudget, err))
	}
	return c.SendReserved(ctx, cmd, r)
}

// SendReserved makes cmd's attempt through the chain, starting with the
// provider r reserved (Reserve), and uses r up.
func (c *Chain) SendReserved(ctx context.Context, cmd *contract.SendCommand, r *Reservation) Result {
	defer r.Release()
	if r.link < 0 {
		res := Transient(0, fmt.Errorf("no provider of %s took the attempt: %s", c.channel, c.openCircuits()))
		res.RetryAfter = c.untilProbe()
		return res
	}
	if r.pinned {
		return c.finish(ctx, r.link, cmd, c.call(ctx, r, cmd), r.probe)
	}
	var (
		failed []string
		last   Result
	)
	called := make([]bool, len(c.links))
	for {
		i, l := r.link, c.links[r.link]
		called[i] = true
		res := c.call(ctx, r, cmd)
		if ctx.Err() != nil || res.Outcome == contract.OutcomeSuccess || !definite(l.p, res) {
			return c.finish(ctx, i, cmd, res, r.probe)
		}
		l.br.record(healthFailed, r.probe)
		res.Provider = l.name
		last = res
		failed = append(failed, fmt.Sprintf("%s: %v", l.name, res.Err))
		if !c.mayTake(called) {
			failed = append(failed, c.openCircuits())
			break
		}
		if c.pastBudget(cmd) {
			return NotAttempted(fmt.Errorf("not attempted: %s failed and the command's cut-off (%s) is less than the --send-min-budget of %s away: %s",
				l.name, cmd.Until().UTC().Format(time.RFC3339Nano), c.minBudget, strings.Join(failed, "; ")))
		}
		wctx, cancel := c.untilBudget(ctx, cmd)
		next, err := c.reserve(wctx, called)
		cancel()
		if err != nil {
			return NotAttempted(fmt.Errorf("not attempted: %s failed and no other provider of %s had a place before the command's cut-off (%s) less the --send-min-budget of %s: %s",
				l.name, c.channel, cmd.Until().UTC().Format(time.RFC3339Nano), c.minBudget, strings.Join(failed, "; ")))
		}
		if next.link < 0 {
			failed = append(failed, c.openCircuits())
			break
		}
		c.log.Info("provider failed before taking the attempt; trying the next of the channel",
			"channel", c.channel, "provider", l.name, "next", next.Provider(), "id", cmd.ID, "attempt", cmd.Attempt, "code", res.Code, "error", res.Err)
		r = next
		defer r.Release()
	}
	last.Err = fmt.Errorf("no provider of %s took the attempt: %s", c.channel, strings.Join(failed, "; "))
	return last
}

// mayTake reports whether a provider not in called has a circuit that
// may let an attempt through.
func (c *Chain) mayTake(called []bool) bool {
	for i, l := range c.links {
		if !called[i] && l.br.mayAllow() {
			return true
		}
	}
	return false
}

// call makes r's call and gives its place back with the answer.
func (c *Chain) call(ctx context.Context, r *Reservation, cmd *contract.SendCommand) Result {
	l, p := c.links[r.link], r.permit
	r.permit = nil
	start := c.now()
	res := l.p.Send(ctx, cmd)
	if ctx.Err() != nil && res.Outcome != contract.OutcomeSuccess {
		p.Done(nil, 0) // cut at shutdown: says nothing of the provider
	} else {
		p.Done(&res, c.now().Sub(start))
	}
	return res
}

// untilBudget bounds ctx by cmd's cut-off less the min budget: no
// provider is waited for past it.
func (c *Chain) untilBudget(ctx context.Context, cmd *contract.SendCommand) (context.Context, context.CancelFunc) {
	until := cmd.Until()
	if until.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, until.Sub(c.now())-c.minBudget)
}

// openCircuits names the providers whose circuit is open.
func (c *Chain) openCircuits() string {
	var open []string
	for _, l := range c.links {
		if l.br.current() == CircuitOpen {
			open = append(open, l.name+": circuit open")
		}
	}
	if len(open) == 0 {
		return "no other provider's circuit lets the attempt through"
	}
	return strings.Join(open, "; ")
}

// finish records the answer of link i, which ends the attempt.
func (c *Chain) finish(ctx context.Context, i int, cmd *contract.SendCommand, r Result, probe bool) Result {
	l := c.links[i]
	r.Provider = l.name
	switch {
	case ctx.Err() != nil && r.Outcome != contract.OutcomeSuccess,
		r.Outcome == contract.OutcomeNotAttempted:
		l.br.record(healthUnknown, probe)
	case r.Outcome == contract.OutcomeSuccess, r.Outcome == contract.OutcomePermanent && !r.Failover:
		l.br.record(healthOK, probe)
		c.pinned.forget(cmd.ID)
	case r.Outcome == contract.OutcomeThrottled && !r.Failover:
		l.br.record(healthUnknown, probe)
	case r.Outcome == contract.OutcomeUnknown, r.Outcome == contract.OutcomeTransient && !definite(l.p, r):
		// The provider may still deliver: later attempts stay with it.
		l.br.record(healthFailed, probe)
		c.pinned.put(cmd.ID, i)
	default:
		l.br.record(healthFailed, probe)
	}
	return r
}

// pastBudget reports whether cmd's cut-off is less than the min budget
// away.
func (c *Chain) pastBudget(cmd *contract.SendCommand) bool {
	until := cmd.Until()
	return !until.IsZero() && !c.now().Add(c.minBudget).Before(until)
}

// untilProbe is the time until the first open circuit half-opens.
func (c *Chain) untilProbe() time.Duration {
	var least time.Duration = -1
	for _, l := range c.links {
		if d := l.br.untilProbe(); d > 0 && (least < 0 || d < least) {
			least = d
		}
	}
	return max(least, 0)
}

// Close closes every provider of the chain.
func (c *Chain) Close() error {
	var errs []error
	for _, l := range c.links {
		errs = append(errs, l.p.Close())
	}
	return errors.Join(errs...)
}

// definite reports whether a failure certainly left the provider without
// the request: the provider said so (Result.Failover, from a template's
// rules), the connection was never made (a dial or DNS error), or the
// provider's kind guarantees it (a webhook's transient without a status
// comes before its request was written, since one after it is unknown;
// the mock simulates).
func definite(p Provider, r Result) bool {
	switch r.Outcome {
	case contract.OutcomeTransient, contract.OutcomeThrottled, contract.OutcomePermanent:
	default:
		return false
	}
	if r.Failover || unreached(r.Err) {
		return true
	}
	switch p.(type) {
	case *Webhook:
		return r.Outcome == contract.OutcomeTransient && r.Code == 0
	case *Mock:
		return r.Outcome != contract.OutcomePermanent
	}
	return false
}

// unreached reports whether err says no connection to the provider was
// made: a failed dial (refused, unreachable, timed out) or name lookup.
func unreached(err error) bool {
	if err == nil {
		return false
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

type health int

const (
	healthOK      health = iota // the provider answered for itself
	healthFailed                // a failure the circuit counts
	healthUnknown               // says nothing of the provider's health
)

// breaker is one provider's circuit.
type breaker struct {
	threshold int
	coolDown  time.Duration
	now       func() time.Time
	onChange  func(CircuitState)

	mu       sync.Mutex
	state    CircuitState
	failures int
	openedAt time.Time
	probing  bool
}

// allow reports whether an attempt may call the provider now, and
// whether it is the half-open probe (whose answer decides the circuit).
func (b *breaker) allow() (ok, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case CircuitClosed:
		return true, false
	case CircuitOpen:
		if b.now().Sub(b.openedAt) < b.coolDown {
			return false, false
		}
		b.set(CircuitHalfOpen)
	}
	if b.probing {
		return false, false
	}
	b.probing = true
	return true, true
}

// mayAllow reports whether allow might let an attempt through now,
// without taking the probe.
func (b *breaker) mayAllow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case CircuitOpen:
		return b.now().Sub(b.openedAt) >= b.coolDown
	case CircuitHalfOpen:
		return !b.probing
	}
	return true
}

// record counts an answer.
func (b *breaker) record(h health, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch h {
	case healthOK:
		b.failures = 0
		if probe || b.state == CircuitHalfOpen {
			b.set(CircuitClosed)
		}
	case healthFailed:
		b.failures++
		if probe || (b.state == CircuitClosed && b.threshold > 0 && b.failures >= b.threshold) {
			b.openedAt = b.now()
			b.set(CircuitOpen)
		}
	}
}

func (b *breaker) set(s CircuitState) {
	if b.state == s {
		return
	}
	b.state = s
	if b.onChange != nil {
		b.onChange(s)
	}
}

func (b *breaker) current() CircuitState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// untilProbe is how long until an open circuit half-opens (0 if it is not
// open).
func (b *breaker) untilProbe() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != CircuitOpen {
		return 0
	}
	return max(b.coolDown-b.now().Sub(b.openedAt), time.Millisecond)
}

// pins remembers, for a bounded number of ids, the provider an id must
// stay with.
type pins struct {
	mu    sync.Mutex
	cap   int
	of    map[string]pin
	order []string // ring of ids put, oldest at next
	next  int
}

type pin struct{ link, slot int }

func newPins(n int) *pins { return &pins{cap: n, of: map[string]pin{}} }

func (p *pins) get(id string) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	x, ok := p.of[id]
	return x.link, ok
}

func (p *pins) put(id string, i int) {
	if p.cap <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if x, ok := p.of[id]; ok {
		p.of[id] = pin{i, x.slot}
		return
	}
	slot := len(p.order)
	if slot < p.cap {
		p.order = append(p.order, id)
	} else {
		slot = p.next
		if old := p.order[slot]; p.of[old].slot == slot {
			delete(p.of, old) // unless forgotten and pinned again elsewhere
		}
		p.order[slot] = id
		p.next = (p.next + 1) % p.cap
	}
	p.of[id] = pin{i, slot}
}

// forget unpins id (its ring slot is reused when it comes round).
func (p *pins) forget(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.of, id)
}

// providerNames names each provider of a channel's chain: its own name
// (a template's), or its URL's host (scheme for mock://), made unique
// with #2, #3.
func providerNames(urls []string, ps []Provider) []string {
	names := make([]string, len(ps))
	seen := map[string]int{}
	for i, p := range ps {
		name := ""
		if n, ok := p.(Named); ok {
			name = n.Name()
		} else if u, err := url.Parse(urls[i]); err == nil {
			name = u.Host
			if u.Scheme == "mock" || name == "" {
				name = u.Scheme
			}
		}
		if name == "" {
			name = "provider"
		}
		seen[name]++
		if k := seen[name]; k > 1 {
			name = fmt.Sprintf("%s#%d", name, k)
		}
		names[i] = name
	}
	return names
}

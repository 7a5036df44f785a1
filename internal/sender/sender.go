// Package sender is Herald's sender stage. It consumes send commands from
// herald.send, makes one provider attempt per command on the command's
// channel, and publishes the classified answer (a contract.SendResult) to
// herald.results, where the dispatcher moves the notification on.
//
// Concurrency: every command runs in its own goroutine from poll to
// acknowledged result, and at most Config.Concurrency of them are in
// flight in the process, whatever the partition count. Fewer still are
// polled while the channels' limits are low: at most inFlightPerSlot
// commands per call slot of all channels together (at least
// minInFlight). A command past that would only wait in a goroutine for a
// slot, and it waits in Kafka instead: with a zero-latency provider the
// limits settle near 50 calls, and the 4,000 goroutines that waited
// beside them held stacks and timers and slowed every other goroutine of
// the process (docs/performance.md). Each channel's
// provider calls are held to a concurrency limit that adapts to the
// latency the provider shows (adaptiveLimit, within Config.Concurrency):
// a provider taking one second per attempt still sees thousands of
// attempts a second, and one that slows down under load gets fewer. Each
// channel's attempts are paced by a token bucket at this process's share
// of the channel's rate (Config.Rates, divided among the sender group's
// members on every rebalance) and paused for the Retry-After of a 429.
// On a channel with a failover chain, each provider of the chain has its
// own concurrency limit, rate (Config.ProviderRates) and 429 pause
// instead (providerPacer; the chain's side in provider/pace.go): one
// vendor's 429 or slowness holds back that vendor only.
//
// Guarantees, as enforced here:
//   - Every command the sender takes is answered with a result (success,
//     transient, permanent, throttled; unknown when the call timed out or
//     was cut; not_attempted past the cut-off), or needs no answer (stale,
//     a copy whose first is answered, dead-lettered). The dispatcher sets
//     no timer per send and relies on this; its sweep times out only a
//     command nobody took (internal/dispatcher/sweep.go).
//   - An offset of herald.send is committed only when the command it holds
//     and every earlier command of its partition are complete: their
//     result is acknowledged by the brokers (acks=all, idempotent
//     producer), or they needed none (stale, dead-lettered and
//     acknowledged). Completion is tracked per partition in offset order
//     (partitionTracker), never by marking single records out of order. A
//     crash therefore re-sends at most the commands that were in flight,
//     and never skips one. A re-sent command reaches the provider with the
//     same idempotency key.
//   - Between a provider's answer and the acknowledged result a crash loses
//     the answer; the command is sent again after the restart. This is
//     where Herald is at-least-once towards the provider, and the
//     idempotency key (and the stale check) is what makes the second
//     attempt harmless.
//   - A command for an attempt the state has already moved past, or for a
//     notification canceled while the command waited, is not sent (Stale,
//     against a view of the dispatcher table); its offset completes
//     without a result.
//   - No provider call starts at or after the command's cut-off (its
//     deadline, the next blackout window's start, expires_at), and no
//     request reaches the provider after it: a command that reaches the
//     sender too late, or whose request the provider has not received by
//     then, is answered not_attempted, and the dispatcher decides again
//     without using up an attempt. So no call starts inside a blackout
//     window or after expiry, however long the command queued. A call
//     whose request reached the provider before the cut-off is not cut at
//     it: its answer is awaited up to the provider timeout, because
//     cutting it would not take the delivery back, only make its outcome
//     unknown and the attempt issued again (provider/handover.go). A command waiting
//     for a slot under its channel's concurrency limit or for its rate
//     token waits at most until its cut-off less Config.MinBudget, and is
//     answered not_attempted then (session.await).
//   - At most one provider call per (id, attempt) runs at a time in this
//     sender: a second copy of a command (a replay re-emitted it) that
//     arrives while the first is being called completes without a call
//     and without a result; the first one's result answers both. And no
//     provider call is made for a delivered attempt, whatever the issue
//     number: a command whose attempt was answered success (its result
//     acknowledged) is not called again, as long as the sender remembers
//     the answer (Config.AnsweredMemory; see answered): it is answered
//     with that success again, under its own issue number. A copy of a
//     command answered otherwise (not_attempted, transient, throttled,
//     permanent, unknown) gets that answer again; a later issue of that
//     attempt is called. The memory is rebuilt from
//     herald.results for every partition the sender is assigned, before
//     its commands are handled (recall), so it holds across restarts and
//     partition moves.
//   - On a rebalance, the revoked partitions' attempts in flight get up to
//     Config.DrainTimeout to finish (those waiting for their channel's
//     gate are then abandoned), and the completed prefix is committed
//     before the partitions are released. A clean shutdown does the same
//     for every partition, and also cuts off provider calls still running
//     at its end; the next owner sends what was cut off again.
//   - A command that cannot be decoded goes to herald.dlq as a
//     contract.DeadLetter (original key and bytes) and its offset
//     completes once the dead letter is acknowledged.
//   - A failed publish (after franz-go's own retries) ends the session: the
//     client is closed without committing past it, and a new session
//     starts from the last commit.
//   - A process paused for more than half the session timeout (SIGSTOP, a
//     VM freeze) may have lost its partitions without knowing it yet: on
//     waking it calls no provider for a command it polled before, and
//     starts a new session (the pause watchdog, session.watch). Calls that
//     were running when it was paused cannot be taken back.
package sender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/semaphore"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dlq"
	"github.com/herald-dispatch/herald/internal/provider"
	"github.com/herald-dispatch/herald/internal/service"
	"github.com/herald-dispatch/herald/internal/topology"
)

// Defaults of Config.
const (
	DefaultGroup          = topology.GroupSender
	DefaultConcurrency    = 4000
	DefaultDrainTimeout   = 10 * time.Second
	DefaultRecallTimeout  = 10 * time.Second
	DefaultCommitInterval = time.Second
	// DefaultMinBudget is the default of Config.MinBudget.
	DefaultMinBudget = time.Second
	// DefaultAnsweredMemory is how many answered attempts a sender
	// remembers, so that one coming again is not sent again (answered).
	DefaultAnsweredMemory = 200000
	// DefaultThrottlePause is how long a channel pauses after a 429
	// without a Retry-After.
	DefaultThrottlePause = time.Second
)

// maxPoll bounds the records one poll hands out.
const maxPoll = 1000

// The commands polled and not yet complete are held to inFlightPerSlot
// times the call slots of every channel's limit together, and at least
// minInFlight, within Config.Concurrency (Sender.pollBound). Four a slot
// keep every slot's next calls polled, with room for the commands
// publishing their results, so the bound never holds a call back; a
// poll waits for room at most roomRecheck before it looks again (a
// limit may have grown with no command completing).
const (
	inFlightPerSlot = 4
	minInFlight     = 256
	roomRecheck     = 50 * time.Millisecond
)

// Observer is told what the sender does, for metrics. Methods must be
// cheap and safe for concurrent use.
type Observer interface {
	// Attempt is called for every provider answer, with the provider's
	// latency.
	Attempt(ch contract.Channel, o contract.Outcome, latency time.Duration)
	// Delivered is called for every success, with the time from the
	// notification's RequestedAt to the provider's acceptance.
	Delivered(ch contract.Channel, endToEnd time.Duration)
	// Skipped is called for a command the state has moved past.
	Skipped(ch contract.Channel)
	// InFlight moves the count of commands in flight by delta.
	InFlight(delta int)
	// Paused is called when a 429 pauses a channel.
	Paused(ch contract.Channel, d time.Duration)
	// DeadLetter is called for every command sent to the DLQ.
	DeadLetter(reason string)
	// ConcurrencyLimit is called with a channel's concurrency limit when
	// it changes (and once at the start).
	ConcurrencyLimit(ch contract.Channel, limit int)
	// ProviderInFlight moves the count of a channel's calls holding a
	// slot under its limit by delta.
	ProviderInFlight(ch contract.Channel, delta int)
	// RateShare is called with a channel's rate in this process (0:
	// unlimited) and the sender group's members it was divided by,
	// whenever the share changes (and once at the start).
	RateShare(ch contract.Channel, perSecond float64, members int)
}

type nopObserver struct{}

func (nopObserver) Attempt(contract.Channel, contract.Outcome, time.Duration) {}
func (nopObserver) Delivered(contract.Channel, time.Duration)                 {}
func (nopObserver) Skipped(contract.Channel)                                  {}
func (nopObserver) InFlight(int)                                              {}
func (nopObserver) Paused(contract.Channel, time.Duration)                    {}
func (nopObserver) DeadLetter(string)                                         {}
func (nopObserver) ConcurrencyLimit(contract.Channel, int)                    {}
func (nopObserver) ProviderInFlight(contract.Channel, int)                    {}
func (nopObserver) RateShare(contract.Channel, float64, int)                  {}

// Config configures a Sender.
type Config struct {
	// Topology names the brokers, how to connect, the client id and the
	// group timings (topology.Config.ConsumerOpts; its own defaults).
	// Brokers are required.
	Topology topology.Config
	// Providers is the provider of each channel (default none). A command
	// for a channel without one fails permanently (the next channel takes
	// over).
	Providers provider.Set
	// Rates is the pace of each channel in attempts per second, for the
	// whole sender group: each process takes its share, the rate divided
	// by the group's members, divided again on every rebalance. Absent or
	// 0 means unlimited.
	Rates map[contract.Channel]float64
	// ProviderRates is the pace of single providers of failover chains
	// (RateTarget.Provider a name of the chain of RateTarget.Channel), in
	// attempts per second for the whole sender group, divided as Rates
	// are. Each provider of a chain is also paused by its own 429s and
	// held to its own adaptive concurrency limit (providerPacer); the
	// channel's limit is then fixed at Concurrency and its gate paced by
	// Rates only, never paused by one provider's 429.
	ProviderRates map[RateTarget]float64
	// ProviderObserver is told what the sender does with each provider
	// of a failover chain (default: nothing).
	ProviderObserver ProviderObserver
	// Concurrency bounds the commands in flight (default
	// DefaultConcurrency, 4000; fewer are polled while the channels'
	// limits are low, see pollBound), and is the ceiling of each channel's
	// adaptive concurrency limit.
	Concurrency int
	// Limit tunes each channel's adaptive concurrency limit (its Max is
	// Concurrency).
	Limit LimitConfig
	// DrainTimeout bounds the wait for in-flight attempts on a rebalance
	// and at shutdown (default DefaultDrainTimeout, 10 s).
	DrainTimeout time.Duration
	// CommitInterval is how often completed offsets are committed
	// (default DefaultCommitInterval, 1 s); revocation and shutdown commit
	// at once.
	CommitInterval time.Duration
	// State, if set, is checked just before each attempt (Stale); default
	// none.
	State StateReader
	// MinBudget is the least time before a command's cut-off at which the
	// sender still starts a provider call (default DefaultMinBudget): with
	// less left, it answers not_attempted rather than start a call the
	// cut-off would likely cut with an unknown outcome. Negative: none.
	MinBudget time.Duration
	// AnsweredMemory is how many answered attempts the sender remembers
	// and never calls the provider for again (default
	// DefaultAnsweredMemory, about 60 bytes each; negative: none). On
	// every assignment it reads back each assigned partition's newest
	// AnsweredMemory / Topology.Partitions results (recall), within
	// RecallTimeout.
	AnsweredMemory int
	// RecallTimeout bounds that read back at each assignment (default
	// DefaultRecallTimeout, 10 s). It holds the group's rebalance, so it
	// stays well under the group's rebalance timeout; a read it cuts
	// keeps what it read, and the idempotency key guards the rest.
	RecallTimeout time.Duration
	// Group is the consumer group (default DefaultGroup, herald-sender).
	Group string
	// Observer is told what the sender does (default: nothing).
	Observer Observer
	// Log is the logger (default slog.Default()).
	Log *slog.Logger
	// Now is the clock of cut-offs, results and restarts (default
	// time.Now).
	Now func() time.Time
	// ClientOpts are appended to the franz-go client's options (tests;
	// default none).
	ClientOpts []kgo.Opt
}

// Sender is the sender stage.
type Sender struct {
	cfg      Config
	inFlight sync.Map // attemptKey -> *flight: the calls running now
	answered *answered
	gates    map[contract.Channel]*gate
	limits   map[contract.Channel]*channelLimit
	chains   map[contract.Channel]*provider.Chain // the channels' failover chains, paced per provider
	pacers   []*providerPacer
	members  atomic.Int32 // the sender group's members the rates are divided by
	sem      *semaphore.Weighted
	active   atomic.Int64  // commands polled and not complete (start to handle's end)
	freed    chan struct{} // a command completed (capacity 1): the poll may have room
	obs      Observer
	log      *slog.Logger
	now      func() time.Time

	ready atomic.Bool
	// svc restarts a failed session.
	svc service.Service
}

func (c Config) withDefaults() Config {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.RecallTimeout <= 0 {
		c.RecallTimeout = DefaultRecallTimeout
	}
	if c.CommitInterval <= 0 {
		c.CommitInterval = DefaultCommitInterval
	}
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.AnsweredMemory == 0 {
		c.AnsweredMemory = DefaultAnsweredMemory
	}
	if c.MinBudget == 0 {
		c.MinBudget = DefaultMinBudget
	}
	if c.MinBudget < 0 {
		c.MinBudget = 0
	}
	c.Topology = c.Topology.WithDefaults()
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.ProviderObserver == nil {
		c.ProviderObserver = nopProviderObserver{}
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Limit.Max = c.Concurrency
	c.Limit = c.Limit.withDefaults()
	return c
}

func (c Config) validate() error {
	if c.Concurrency < 1 {
		return fmt.Errorf("sender: concurrency must be positive, got %d", c.Concurrency)
	}
	if len(c.Topology.Brokers) == 0 {
		return errors.New("sender: no brokers")
	}
	return c.Limit.validate()
}

// New checks the configuration and builds a sender.
func New(cfg Config) (*Sender, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Sender{cfg: cfg, gates: map[contract.Channel]*gate{}, limits: map[contract.Channel]*channelLimit{},
		sem: semaphore.NewWeighted(int64(cfg.Concurrency)), freed: make(chan struct{}, 1),
		obs: cfg.Observer, log: cfg.Log, now: cfg.Now, answered: newAnswered(cfg.AnsweredMemory),
		svc: service.Service{Name: "sender", Log: cfg.Log, Now: cfg.Now}}
	var err error
	s.chains, s.pacers, err = pacers(cfg.Providers, cfg.ProviderRates, cfg.Limit, s.now, cfg.ProviderObserver, s.log)
	if err != nil {
		return nil, err
	}
	for _, ch := range contract.Channels() {
		s.gates[ch] = newGate(cfg.Rates[ch], s.now)
		s.obs.RateShare(ch, cfg.Rates[ch], 1)
		lc := cfg.Limit
		if s.chains[ch] != nil {
			lc.Min, lc.Start = lc.Max, lc.Max // each provider adapts its own limit
		}
		s.limits[ch] = newChannelLimit(ch, lc, s.now, s.obs)
	}
	s.members.Store(1)
	return s, nil
}

// Ready reports whether the sender consumes: its state view (if any) has
// recovered and a session runs.
func (s *Sender) Ready() bool { return s.ready.Load() }

// Members is the number of sender group members the rates are divided
// by (1 until the group is first read).
func (s *Sender) Members() int { return int(s.members.Load()) }

// ConcurrencyLimit returns a channel's concurrency limit and its calls in
// flight.
func (s *Sender) ConcurrencyLimit(ch contract.Channel) (limit, inFlight int) {
	return s.limits[ch].state()
}

// rated reports whether any channel or provider has a rate.
func (s *Sender) rated() bool {
	for _, r := range s.cfg.Rates {
		if r > 0 {
			return true
		}
	}
	for _, r := range s.cfg.ProviderRates {
		if r > 0 {
			return true
		}
	}
	return false
}

// divide gives every rated channel its share for the group's members.
func (s *Sender) divide(members int) {
	if int(s.members.Swap(int32(members))) == members {
		return
	}
	shares := map[contract.Channel]float64{}
	for _, ch := range contract.Channels() {
		if s.cfg.Rates[ch] > 0 {
			shares[ch] = s.gates[ch].share(members)
			s.obs.RateShare(ch, shares[ch], members)
		}
	}
	providerShares := map[string]float64{}
	for _, p := range s.pacers {
		if p.g.limiter != nil {
			r := p.g.share(members)
			providerShares[RateTarget{p.ch, p.name}.String()] = r
			s.cfg.ProviderObserver.ProviderRateShare(p.ch, p.name, r)
		}
	}
	s.log.Info("sender: rates divided among the sender group's members", "members", members, "per_second", shares, "providers_per_second", providerShares)
}

// Run consumes until ctx ends, starting a new session after a failed one.
// It returns nil after a clean stop.
func (s *Sender) Run(ctx context.Context) error {
	if err := s.waitForState(ctx); err != nil {
		return nil
	}
	return s.svc.Run(ctx, s.session)
}

// waitForState waits until the state reader, if it can tell, has
// recovered: before that, a lagging view would let stale commands through
// in bulk.
func (s *Sender) waitForState(ctx context.Context) error {
	r, ok := s.cfg.State.(interface{ Recovered() bool })
	if !ok {
		return nil
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	start := time.Now()
	lastLog := start
	for !r.Recovered() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-t.C:
			if now.Sub(lastLog) >= 10*time.Second {
				s.log.Info("sender waiting for the dispatcher table view to recover", "waited", now.Sub(start).Round(time.Second))
				lastLog = now
			}
		}
	}
	return nil
}

// session is one consumer-group membership: a client, the partitions it
// holds, and the commands in flight.
type session struct {
	s  *Sender
	cl *kgo.Client

	// base is canceled at the hard stop: provider calls and publishes in
	// progress are cut off then.
	base     context.Context
	hardStop context.CancelFunc
	// stopPoll ends the poll loop when an attempt fails fatally.
	stopPoll context.CancelFunc

	mu    sync.Mutex
	parts map[int32]*partitionTracker
	wg    sync.WaitGroup

	errMu sync.Mutex
	err   error

	// lastTick is when the pause watchdog last ran (Unix ns, real clock).
	lastTick atomic.Int64
	paused   atomic.Bool
}

// frozen reports whether the process was paused (SIGSTOP, a VM freeze)
// for more than half the session timeout since the watchdog last ran, or
// the watchdog found it so: its partitions may have moved meanwhile.
func (ss *session) frozen() bool {
	return ss.paused.Load() || time.Since(time.Unix(0, ss.lastTick.Load())) > ss.freezeLimit()
}

func (ss *session) freezeLimit() time.Duration { return ss.s.cfg.Topology.SessionTimeout / 2 }

// watch is the pause watchdog: it ticks until ctx ends, and when a tick
// comes more than freezeLimit after the one before (the process was
// paused), it ends the session, so that no command polled before the
// pause reaches a provider: the partition's new owner handles it.
func (ss *session) watch(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if gap := now.Sub(time.Unix(0, ss.lastTick.Load())); gap > ss.freezeLimit() {
			ss.paused.Store(true)
			ss.fail(fmt.Errorf("sender: the process was paused for %s (over half the session timeout): its partitions may have moved, so a new session starts", gap.Round(time.Millisecond)))
			return
		}
		ss.lastTick.Store(now.UnixNano())
	}
}

// groupPoll is how often followGroup looks for a new generation, and
// groupRetry how long it waits after failing to read the group.
const (
	groupPoll  = 100 * time.Millisecond
	groupRetry = time.Second
)

// followGroup divides the channels' rates among the sender group's
// members after every rebalance, until ctx ends. Every rebalance gives
// each member a new generation; once this member has one, it reads the
// group's members from the coordinator (DescribeGroups).
func (ss *session) followGroup(ctx context.Context) {
	adm := kadm.NewClient(ss.cl)
	done := int32(-1)
	t := time.NewTicker(groupPoll)
	defer t.Stop()
	var retryAt time.Time
	warned := int32(-1) // the generation whose failed read was logged
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, gen := ss.cl.GroupMetadata()
		if gen < 0 || gen == done || time.Now().Before(retryAt) {
			continue
		}
		n, err := ss.groupMembers(ctx, adm)
		if errors.Is(err, errRebalancing) {
			continue // the members are not settled yet: read again
		}
		if err != nil {
			if ctx.Err() == nil && warned != gen {
				ss.s.log.Warn("sender: cannot read the sender group's members; the rates stay divided as they were, and the read is tried again every second",
					"generation", gen, "err", err)
				warned = gen
			}
			retryAt = time.Now().Add(groupRetry)
			continue
		}
		ss.s.divide(n)
		done = gen
	}
}

var errRebalancing = errors.New("sender: the group is rebalancing")

// groupMembers reads the number of members of the sender group.
func (ss *session) groupMembers(ctx context.Context, adm *kadm.Client) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	group := ss.s.cfg.Group
	gs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return 0, fmt.Errorf("describe group %s: %w", group, err)
	}
	g, ok := gs[group]
	switch {
	case !ok:
		return 0, fmt.Errorf("describe group %s: not in the answer", group)
	case g.Err != nil:
		return 0, fmt.Errorf("describe group %s: %w", group, g.Err)
	case g.State != "Stable" && g.State != "CompletingRebalance", len(g.Members) == 0:
		return 0, fmt.Errorf("%w: group %s is %s with %d members", errRebalancing, group, g.State, len(g.Members))
	}
	return len(g.Members), nil
}

func (s *Sender) session(ctx context.Context) error {
	ss := &session{s: s, parts: map[int32]*partitionTracker{}}
	ss.base, ss.hardStop = context.WithCancel(context.Background())
	defer ss.hardStop()
	opts := append(s.cfg.Topology.ConsumerOpts(topology.Consumer{Name: "sender", Group: s.cfg.Group,
		Topics: []string{topology.TopicSend}, CommitInterval: s.cfg.CommitInterval, BlockRebalance: true}),
		kgo.OnPartitionsAssigned(ss.assigned),
		kgo.OnPartitionsRevoked(ss.revoked),
		kgo.OnPartitionsLost(ss.lost),
	)
	opts = append(opts, s.cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("sender: client: %w", err)
	}
	ss.cl = cl
	pollCtx, stopPoll := context.WithCancel(ctx)
	ss.stopPoll = stopPoll
	ss.lastTick.Store(time.Now().UnixNano())
	go ss.watch(pollCtx)
	if s.rated() {
		go ss.followGroup(pollCtx)
	}
	s.ready.Store(true)
	ss.poll(pollCtx)
	s.ready.Store(false)
	stopPoll()
	ss.shutdown()
	return ss.failure()
}

// fail ends the session with err (the first one wins).
func (ss *session) fail(err error) {
	ss.errMu.Lock()
	if ss.err == nil {
		ss.err = err
	}
	ss.errMu.Unlock()
	ss.stopPoll()
}

func (ss *session) failure() error {
	ss.errMu.Lock()
	defer ss.errMu.Unlock()
	return ss.err
}

// poll hands every polled command to its own goroutine, holding one
// in-flight slot per command, until ctx ends.
func (ss *session) poll(ctx context.Context) {
	s := ss.s
	for {
		room, err := s.waitRoom(ctx)
		if err != nil {
			return
		}
		if err := s.sem.Acquire(ctx, 1); err != nil {
			return
		}
		n := 1
		for n < min(maxPoll, room) && s.sem.TryAcquire(1) {
			n++
		}
		fetches := ss.cl.PollRecords(ctx, n)
		used := 0
		fetches.EachError(func(topic string, p int32, err error) {
			if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
				s.log.Warn("sender fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			used++
			ss.start(r)
		})
		ss.cl.AllowRebalance()
		s.sem.Release(int64(n - used))
		if fetches.IsClientClosed() {
			ss.fail(errors.New("sender: client closed"))
			return
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// pollBound is how many commands may be in flight now: inFlightPerSlot
// per call slot of all channels' limits, at least minInFlight, at most
// Config.Concurrency. A channel with a failover chain has its limit fixed
// at Concurrency (each provider adapts its own), so it lifts the bound to
// Concurrency.
func (s *Sender) pollBound() int {
	slots := 0
	for _, l := range s.limits {
		n, _ := l.state()
		slots += n
	}
	return min(s.cfg.Concurrency, max(minInFlight, inFlightPerSlot*slots))
}

// waitRoom waits until fewer commands are in flight than pollBound, and
// returns how many more may be polled; an error once ctx ends.
func (s *Sender) waitRoom(ctx context.Context) (int, error) {
	var t *time.Timer
	for {
		if room := s.pollBound() - int(s.active.Load()); room > 0 {
			if t != nil {
				t.Stop()
			}
			return room, nil
		}
		if t == nil {
			t = time.NewTimer(roomRecheck)
		} else {
			t.Reset(roomRecheck)
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-s.freed:
		case <-t.C:
		}
	}
}

// tracker returns the tracker of an assigned partition, making it on the
// partition's first record.
func (ss *session) tracker(p int32) *partitionTracker {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	t := ss.parts[p]
	if t == nil {
		t = newPartitionTracker(ss.base)
		ss.parts[p] = t
	}
	return t
}

func (ss *session) start(r *kgo.Record) {
	t := ss.tracker(r.Partition)
	t.begin(r.Offset, r.LeaderEpoch)
	ss.s.active.Add(1)
	ss.s.obs.InFlight(1)
	ss.wg.Add(1)
	go ss.handle(t, r)
}

// handle runs one command from decode to acknowledged result.
func (ss *session) handle(t *partitionTracker, r *kgo.Record) {
	s := ss.s
	defer func() {
		t.release()
		s.sem.Release(1)
		s.active.Add(-1)
		select {
		case s.freed <- struct{}{}:
		default:
		}
		s.obs.InFlight(-1)
		ss.wg.Done()
	}()
	cmd, err := contract.DecodeCommand(r.Key, r.Value)
	if err != nil {
		out, dl := dlq.Kgo(topology.TopicDLQ, r, err, "", s.now())
		if ss.publish(t, r, out) {
			s.obs.DeadLetter(dl.Reason)
			s.log.Warn("send command sent to the DLQ", "partition", r.Partition, "offset", r.Offset,
				"reason", dl.Reason, "error", dl.Error)
		}
		return
	}
	// The attempt's owner: it releases what the gates took, the
	// channel's slot as soon as the gates are done (the call is over) and
	// the attempt's in-flight slot once the result is published (a copy
	// arriving before would find neither a call in flight nor an answer).
	c := newCall(t.ctx, cmd)
	defer s.leave(c)
	v := ss.attempt(c)
	c.releaseSlot()
	switch v {
	case verdictAbandon:
		return
	case verdictSkip:
		ss.mark(t, r)
		return
	}
	res := c.res
	b, err := contract.EncodeResult(&res)
	if err != nil {
		ss.fail(fmt.Errorf("sender: %w", err))
		return
	}
	if ss.publish(t, r, &kgo.Record{Topic: topology.TopicResults, Key: []byte(cmd.ID), Value: b}) {
		s.answered.add(res)
	}
}

// publish writes out and, once it is acknowledged, completes r. It
// reports whether out was acknowledged.
func (ss *session) publish(t *partitionTracker, r *kgo.Record, out *kgo.Record) bool {
	if err := ss.cl.ProduceSync(ss.base, out).FirstErr(); err != nil {
		if ss.base.Err() == nil {
			ss.fail(fmt.Errorf("sender: publish to %s: %w", out.Topic, err))
		}
		return false
	}
	ss.mark(t, r)
	return true
}

// mark completes r and, if the partition's committable offset moved,
// marks it for the next commit.
func (ss *session) mark(t *partitionTracker, r *kgo.Record) {
	next, epoch, moved := t.complete(r.Offset)
	if moved {
		ss.cl.MarkCommitOffsets(map[string]map[int32]kgo.EpochOffset{
			r.Topic: {r.Partition: {Epoch: epoch, Offset: next}},
		})
	}
}

// assigned is the OnPartitionsAssigned callback: before any command of
// the new partitions is fetched, remember their answers (recall).
func (ss *session) assigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	ss.s.recall(ctx, assigned[topology.TopicSend])
}

// revoked is the OnPartitionsRevoked callback: drain the revoked
// partitions (bounded), commit their completed prefix, release them.
func (ss *session) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	ts := ss.take(revoked[topology.TopicSend])
	if len(ts) == 0 {
		return
	}
	ss.s.log.Info("sender: partitions revoked; draining them", "partitions", revoked[topology.TopicSend])
	deadline := time.Now().Add(ss.s.cfg.DrainTimeout)
	for p, t := range ts {
		if !t.stop(time.Until(deadline)) {
			ss.s.log.Warn("sender: attempts still running on a revoked partition; the next owner sends them again",
				"partition", p, "in_flight", t.inFlight())
		}
	}
	ss.commit(ctx, ts)
}

// lost is the OnPartitionsLost callback: the partitions are gone, nothing
// can be committed for them.
func (ss *session) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	ts := ss.take(lost[topology.TopicSend])
	if len(ts) > 0 {
		ss.s.log.Warn("sender: partitions lost; their attempts in flight are sent again by the next owner",
			"partitions", lost[topology.TopicSend])
	}
	for _, t := range ts {
		t.stop(0)
	}
}

// take removes the trackers of partitions from the session.
func (ss *session) take(parts []int32) map[int32]*partitionTracker {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := map[int32]*partitionTracker{}
	for _, p := range parts {
		if t := ss.parts[p]; t != nil {
			out[p] = t
			delete(ss.parts, p)
		}
	}
	return out
}

// commit marks the trackers' committable offsets and commits them
// synchronously.
func (ss *session) commit(ctx context.Context, ts map[int32]*partitionTracker) {
	offsets := map[int32]kgo.EpochOffset{}
	for p, t := range ts {
		if next, epoch, ok := t.commitOffset(); ok {
			offsets[p] = kgo.EpochOffset{Epoch: epoch, Offset: next}
		}
	}
	if len(offsets) == 0 {
		return
	}
	ss.cl.MarkCommitOffsets(map[string]map[int32]kgo.EpochOffset{topology.TopicSend: offsets})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := ss.cl.CommitMarkedOffsets(cctx); err != nil {
		ss.s.log.Warn("sender: commit failed; the next owner re-sends from the last commit", "err", err)
	}
}

// shutdown ends the session: give the attempts in flight up to
// DrainTimeout, then cut off the rest (those waiting for their gate and
// those still at a provider), commit the completed prefix of every
// partition and leave the group.
func (ss *session) shutdown() {
	ss.mu.Lock()
	all := make(map[int32]*partitionTracker, len(ss.parts))
	for p, t := range ss.parts {
		all[p] = t
	}
	ss.mu.Unlock()
	done := make(chan struct{})
	go func() { ss.wg.Wait(); close(done) }()
	timer := time.NewTimer(ss.s.cfg.DrainTimeout)
	select {
	case <-done:
	case <-timer.C:
		ss.s.log.Warn("sender: attempts still running at shutdown are cut off; they are sent again after the restart")
	}
	timer.Stop()
	for _, t := range all {
		t.cancel()
	}
	ss.hardStop()
	<-done
	// The completed prefix is safe to commit even after a failed publish:
	// the failed command is not complete, so the prefix stops before it.
	ss.commit(context.Background(), all)
	ss.cl.CloseAllowingRebalance()
}

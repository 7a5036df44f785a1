package dispatcher

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lovoo/goka"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dlq"
	"github.com/herald-dispatch/herald/internal/gokax"
	"github.com/herald-dispatch/herald/internal/topology"
)

// DispatchObserver is told what the dispatcher does, for metrics. All
// methods must be cheap and safe for concurrent use.
type DispatchObserver interface {
	// Event is called once per input record with its verdict.
	Event(topic string, verdict Verdict)
	// Transition is called when a notification's status changes (from is
	// "" for a new one).
	Transition(from, to contract.Status, s *contract.State)
	// DeadLetter is called for every record sent to the DLQ.
	DeadLetter(topic, reason string)
}

type nopObserver struct{}

func (nopObserver) Event(string, Verdict)                                        {}
func (nopObserver) Transition(contract.Status, contract.Status, *contract.State) {}
func (nopObserver) DeadLetter(string, string)                                    {}

// Dispatcher is the Goka callback of the herald-dispatcher group. It decodes
// the input record, calls Dispatch, and writes the new state and the emits.
//
// Guarantees, as enforced here, by OrderedCommits and by Goka:
//   - The new state is written to the table (local storage, then the
//     changelog) before the emits; the input offset is committed only when
//     the changelog write and every emit of this record and of every
//     earlier record of its topic-partition are acknowledged (acks=all,
//     idempotent producer). A crash before that replays the record, which
//     Dispatch recognises: the record that made the current version
//     writes it again (Decision.Repair) and makes its emits again, but
//     not a send command the changelog shows went out with its state
//     (Changelog; a sender may have answered it already).
//   - Every state written carries the owner epoch of its partition
//     (Fence) in its version, so a writer that lost its partition cannot
//     overwrite a later owner's state (VersionedUpdate).
//   - A result, wake-up or cancel for an id with no state is not dropped:
//     its state may still arrive (a new owner replaying the request after
//     it processed the result). It is parked: sent through the delay
//     topics back to its own topic after ParkDelay, again and again, and
//     to the DLQ (reason unknown_id) once it has been parked for ParkFor.
//   - A record that cannot be decoded or fails validation goes to
//     herald.dlq with its original key and bytes and is otherwise skipped.
//     A replay after a crash can publish its dead letter twice: the DLQ is
//     at-least-once.
type Dispatcher struct {
	// Config is the pure core's configuration (defaults: DispatchConfig's).
	Config DispatchConfig
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Observer is told what the dispatcher does (default: nothing).
	Observer DispatchObserver
	// Log receives dead letters and misplaced records (default: none).
	Log *slog.Logger
	// Fence gives each partition's owner epoch; GokaOptions must get the
	// same Fence. Default nil: no fencing (Goka's tester); Supervisor
	// makes one.
	Fence *gokax.Fence
	// ParkFor bounds how long an event for an unknown id is parked before
	// it goes to the DLQ (default DefaultParkFor); ParkDelay is the wait
	// between two looks (default DefaultParkDelay).
	ParkFor, ParkDelay time.Duration
	// Placement moves records that arrive on the wrong partition
	// (placement.go).
	Placement Placement
	// Changelog, if set, returns the version of id's state as a view of
	// the table holds it, read from the changelog (ok false: none). A
	// replay of the record that made a sending state whose version the
	// changelog already holds does not make its send command again
	// (Event.Confirmed; Dispatch on replays). Nil: such a replay always
	// makes it again.
	Changelog func(id string) (version uint64, ok bool)
	// ChangelogReady, if set, reports whether the view behind Changelog
	// has caught up with the changelog once. Until it has, its "none" means
	// nothing: a replay is then taken as confirmed (a resend check, never
	// an immediate copy), so a restart whose view is still recovering
	// cannot make a second call for a command another process answered.
	// Nil: Changelog is always ready.
	ChangelogReady func() bool
}

// Defaults of Dispatcher.
const (
	DefaultParkFor   = 10 * time.Minute
	DefaultParkDelay = 5 * time.Second
)

// HeaderParkedSince is the header of a parked record: when it was first
// parked, in Unix nanoseconds.
const HeaderParkedSince = "herald-parked-since"

// withDefaults fills d's zero fields, once, when the dispatcher is built
// (Graph): Process and Dispatch use them as they are.
func (d *Dispatcher) withDefaults() {
	d.Config = d.Config.WithDefaults()
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Observer == nil {
		d.Observer = nopObserver{}
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.ParkFor <= 0 {
		d.ParkFor = DefaultParkFor
	}
	if d.ParkDelay <= 0 {
		d.ParkDelay = DefaultParkDelay
	}
	if d.Placement.LogInterval <= 0 {
		d.Placement.LogInterval = DefaultMoveLogInterval
	}
}

// Graph applies d's defaults and returns the dispatcher's group graph
// bound to this callback. Build a Dispatcher once.
func (d *Dispatcher) Graph() *goka.GroupGraph {
	d.withDefaults()
	return graph(d.Process)
}

// Process is the goka.ProcessCallback.
func (d *Dispatcher) Process(ctx goka.Context, msg any) {
	raw, _ := msg.([]byte)
	src := contract.Position{Topic: string(ctx.Topic()), Partition: ctx.Partition(), Offset: ctx.Offset()}
	origin, handled := d.place(ctx, src, raw)
	if handled {
		return
	}
	now := d.Now()
	ev := Event{Source: src, Origin: origin}
	var err error
	switch origin.Topic {
	case topology.TopicRequests:
		ev.Request, err = contract.Decode([]byte(ctx.Key()), raw)
	case topology.TopicResults:
		ev.Result, err = contract.DecodeResult([]byte(ctx.Key()), raw)
	case topology.TopicWakeups:
		ev.Wakeup, err = contract.DecodeWakeup([]byte(ctx.Key()), raw)
	case topology.TopicControl:
		ev.Cancel, ev.Retry, err = contract.DecodeControl([]byte(ctx.Key()), raw)
	default:
		err = fmt.Errorf("%w: unexpected topic %s", contract.ErrMalformed, origin.Topic)
	}
	if err != nil {
		d.deadLetter(ctx, origin, raw, err, now)
		return
	}

	var cur *contract.State
	if v := ctx.Value(); v != nil {
		cur = v.(*contract.State)
	}
	ev.Epoch = d.Fence.Epoch(src.Partition)
	if d.Changelog != nil && cur != nil && cur.Status == contract.StatusSending && replaysMaker(cur, ev) {
		if d.ChangelogReady != nil && !d.ChangelogReady() {
			ev.Confirmed = true
		} else {
			v, ok := d.Changelog(cur.ID)
			ev.Confirmed = ok && v >= cur.Version
		}
	}
	dec := Dispatch(cur, ev, now, d.Config)
	obs := d.Observer
	obs.Event(src.Topic, dec.Verdict)
	switch {
	case dec.Verdict == VerdictUnknown:
		d.park(ctx, origin, raw, now)
		return
	case dec.Repair:
		ctx.SetValue(cur)
	case dec.Delete:
		ctx.Delete() // a tombstone: the changelog compacts it away
	}
	if dec.State != nil {
		ctx.SetValue(dec.State)
		var from contract.Status
		if cur != nil {
			from = cur.Status
		}
		if from != dec.State.Status {
			obs.Transition(from, dec.State.Status, dec.State)
		}
	}
	d.emit(ctx, dec.Emits, now)
}

func (d *Dispatcher) emit(ctx goka.Context, e Emits, now time.Time) {
	if e.Send != nil {
		b, err := contract.EncodeCommand(e.Send)
		if err != nil {
			ctx.Fail(fmt.Errorf("dispatcher: %w", err))
		}
		ctx.Emit(goka.Stream(topology.TopicSend), e.Send.ID, b)
	}
	for _, w := range e.Wakeups {
		b, err := contract.EncodeWakeup(&w)
		if err != nil {
			ctx.Fail(fmt.Errorf("dispatcher: %w", err))
		}
		topic := topology.Route(w.Due, now, topology.TopicWakeups)
		ctx.Emit(goka.Stream(topic), w.ID, b, goka.WithCtxEmitHeaders(goka.Headers{
			topology.HeaderDue:    topology.FormatDue(w.Due),
			topology.HeaderTarget: []byte(topology.TopicWakeups),
		}))
	}
}

// park sends an event for an unknown id back to its own topic through the
// delay topics, or to the DLQ once it has waited ParkFor.
func (d *Dispatcher) park(ctx goka.Context, src contract.Position, raw []byte, now time.Time) {
	parkFor, delayBy := d.ParkFor, d.ParkDelay
	since := now
	if b, ok := ctx.Headers()[HeaderParkedSince]; ok {
		if t, err := topology.ParseDue(b); err == nil {
			since = t
		}
	}
	if now.Sub(since) >= parkFor {
		d.deadLetter(ctx, src, raw, fmt.Errorf("%w: no state for id %q after %s", errUnknownID, ctx.Key(), parkFor), now)
		return
	}
	due := now.Add(delayBy)
	ctx.Emit(goka.Stream(topology.Route(due, now, src.Topic)), ctx.Key(), raw, goka.WithCtxEmitHeaders(goka.Headers{
		topology.HeaderDue:    topology.FormatDue(due),
		topology.HeaderTarget: []byte(src.Topic),
		HeaderParkedSince:     topology.FormatDue(since),
	}))
}

var errUnknownID = errors.New("unknown id")

func (d *Dispatcher) deadLetter(ctx goka.Context, src contract.Position, raw []byte, cause error, now time.Time) {
	var reason string
	if errors.Is(cause, errUnknownID) {
		reason = contract.ReasonUnknownID
	}
	dl := dlq.EmitGoka(ctx, topology.TopicDLQ, src, raw, cause, reason, now)
	d.Observer.DeadLetter(src.Topic, dl.Reason)
	d.Log.Warn("record sent to the DLQ", "topic", src.Topic, "partition", src.Partition,
		"offset", src.Offset, "reason", dl.Reason, "error", dl.Error)
}

// Supervisor returns a Supervisor that runs this dispatcher on the cluster
// of tc with GokaOptions (sharing d.Fence, made here if nil) and its
// storage under storageDir: the one way every stage and test wires it.
// The placement check gets tc's partition count unless it has one.
func (d *Dispatcher) Supervisor(tc topology.Config, storageDir string, log *slog.Logger) *gokax.Supervisor {
	if d.Fence == nil {
		d.Fence = new(gokax.Fence)
	}
	if d.Placement.Partitions == 0 {
		d.Placement.Partitions = tc.WithDefaults().Partitions
	}
	sup := gokax.NewSupervisor(d.Graph(), tc, storageDir, log, d.Fence)
	sup.Now = d.Now // sessions are timed on the dispatcher's clock
	return sup
}

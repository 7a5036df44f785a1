package gokax

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/lovoo/goka"

	"github.com/herald-dispatch/herald/internal/service"
	"github.com/herald-dispatch/herald/internal/topology"
)

// GokaOptions returns the processor options every Herald Goka processor
// uses, but for its producer (the Supervisor adds KgoProducer behind a
// Ledger): Herald's Sarama consumer settings (the group timings of tc), input offsets committed in record order with owner
// epochs recorded in fence (OrderedCommits), the changelog read back with
// VersionedUpdate, a topic manager that only checks topics and works
// while any broker is up (TopicChecker), LevelDB storage under storageDir,
// and records with a nil value handed to the callback (so they reach the
// DLQ instead of being dropped).
//
// The LevelDB storage and the broker's log must live and die together
// (goka issue 415): keep storageDir under the same data dir as an embedded
// broker, and wipe both or neither.
func GokaOptions(tc topology.Config, storageDir string, log *slog.Logger, fence *Fence) []goka.ProcessorOption {
	tc = tc.WithDefaults()
	return []goka.ProcessorOption{
		goka.WithClientID(tc.ClientID),
		goka.WithTopicManagerBuilder(TopicChecker(tc, tc.ClientID+"-topics")),
		goka.WithConsumerGroupBuilder(OrderedCommits(goka.ConsumerGroupBuilderWithConfig(tc.Sarama(tc.ClientID)), fence, log)),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(tc.Sarama(tc.ClientID))),
		goka.WithUpdateCallback(VersionedUpdate),
		goka.WithStorageBuilder(Storage(filepath.Join(storageDir, "processor"))),
		goka.WithHasher(topology.Hasher),
		goka.WithNilHandling(goka.NilProcess),
		goka.WithLogger(GokaLogger(log)),
	}
}

// Supervisor runs a Goka processor and starts it again when it fails
// (service.Service: backoff, reset after a healthy run). Goka stops a
// processor on any failed emit or changelog write; nothing it has not
// committed is lost, so starting it again replays from the last committed
// offsets.
type Supervisor struct {
	// Service is the restart policy; its Name is the group's.
	service.Service
	Graph *goka.GroupGraph
	// Brokers and Options build the processor.
	Brokers []string
	Options []goka.ProcessorOption

	// Producer builds the processor's producer (default KgoProducer); the
	// Supervisor counts its writes in a Ledger of each session.
	Producer goka.ProducerBuilder

	fence   *Fence
	store   localStore
	current atomic.Pointer[goka.Processor]
}

// NewSupervisor returns a Supervisor that runs graph on the cluster of tc
// with GokaOptions (recording owner epochs in fence, which must not be nil)
// and its storage under storageDir.
func NewSupervisor(graph *goka.GroupGraph, tc topology.Config, storageDir string, log *slog.Logger, fence *Fence) *Supervisor {
	if log == nil {
		log = slog.Default()
	}
	return &Supervisor{Service: service.Service{Name: string(graph.Group()), Log: log}, Graph: graph, Brokers: tc.Brokers,
		Options: GokaOptions(tc, storageDir, log, fence), Producer: KgoProducer(tc.WithDefaults()), fence: fence,
		store: localStore{dir: filepath.Join(storageDir, "processor")}}
}

// Fence returns the Fence the supervised processor records its owner
// epochs in (the one GokaOptions got), or nil.
func (s *Supervisor) Fence() *Fence { return s.fence }

// Processor returns the running processor, or nil.
func (s *Supervisor) Processor() *goka.Processor { return s.current.Load() }

// Ready reports whether a processor runs and has recovered its table.
func (s *Supervisor) Ready() bool {
	p := s.current.Load()
	return p != nil && p.Recovered()
}

// Run runs the processor until ctx ends, building a new one after each
// failure (a processor that cannot be built is a failure too). It returns
// nil once ctx has ended.
func (s *Supervisor) Run(ctx context.Context) error { return s.Service.Run(ctx, s.session) }

// session builds and runs one processor.
//
// Guarantee, enforced here: a processor never starts on a local store
// that may hold writes the changelog does not (Goka writes a state to
// LevelDB before its changelog write is acknowledged). A session whose
// writes were all acknowledged when its processor stopped marks the store
// clean (the changelog holds everything in it); any other end, a failed
// or unacknowledged write or a crash, leaves it unmarked, and the next
// session wipes it and recovers the table from the changelog, as Kafka
// Streams does with a task that crashed under exactly-once. A replay or a
// wake-up is then judged against what the changelog, the views, the sink
// and Postgres hold, never against a state only this process saw. The
// cost is a full recovery after a failure (4.2 s for 1,000,000 states,
// docs/performance.md); a clean restart reads only what is new.
func (s *Supervisor) session(ctx context.Context) error {
	ledger := new(Ledger)
	producer := s.Producer
	if producer == nil {
		return fmt.Errorf("%s: no producer builder", s.Name)
	}
	opts := append(slices.Clip(s.Options), goka.WithProducerBuilder(ledger.Builder(producer)))
	p, err := goka.NewProcessor(s.Brokers, s.Graph, opts...)
	if err != nil {
		return fmt.Errorf("%s: build processor: %w", s.Name, err)
	}
	wiped, err := s.store.open()
	if err != nil {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	if wiped {
		s.Log.Warn("the local table was not closed cleanly: recovering it from the changelog", "group", s.Name, "dir", s.store.dir)
	}
	s.current.Store(p)
	defer s.current.Store(nil)
	healthy := watchRecovered(ctx, p)
	err = p.Run(ctx)
	if healthy() && ctx.Err() == nil {
		// A processor that had recovered and was processing: its failure
		// (a broker restart ends every consumer session) is no crash loop.
		err = service.WasHealthy(err)
	}
	if !ledger.Clean() {
		s.Log.Warn("the processor stopped with writes not acknowledged: its local table will be recovered from the changelog",
			"group", s.Name, "failed", ledger.Failed())
		return errors.Join(err, fmt.Errorf("%s: %w", s.Name, errUnclean))
	}
	if merr := s.store.markClean(); merr != nil {
		return errors.Join(err, fmt.Errorf("%s: %w", s.Name, merr))
	}
	return err
}

// watchRecovered watches p until ctx ends or the returned func is called,
// and reports then whether p had recovered its table.
func watchRecovered(ctx context.Context, p *goka.Processor) func() bool {
	var seen atomic.Bool
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for !seen.Load() {
			select {
			case <-ctx.Done():
				return
			case <-stop:
				return
			case <-t.C:
				seen.Store(p.Recovered())
			}
		}
	}()
	return func() bool {
		close(stop)
		return seen.Load()
	}
}

// GokaLogger adapts slog to Goka's logger. Goka's messages are chatty, so
// they are logged at debug level.
func GokaLogger(l *slog.Logger) goka.Logger {
	if l == nil {
		l = slog.Default()
	}
	return gokaLogger{l.With("component", "goka")}
}

type gokaLogger struct{ l *slog.Logger }

func (g gokaLogger) Print(v ...any)                 { g.l.Debug(fmt.Sprint(v...)) }
func (g gokaLogger) Println(v ...any)               { g.l.Debug(fmt.Sprint(v...)) }
func (g gokaLogger) Printf(format string, v ...any) { g.l.Debug(fmt.Sprintf(format, v...)) }

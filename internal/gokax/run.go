package gokax

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/lovoo/goka"

	"github.com/herald-dispatch/herald/internal/topology"
)

// GokaOptions returns the processor options every Herald Goka processor
// uses: Herald's Sarama settings (acks=all, idempotent producer, the group
// timings of tc), input offsets committed in record order with owner
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
		goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(tc.Sarama(tc.ClientID))),
		goka.WithUpdateCallback(VersionedUpdate),
		goka.WithStorageBuilder(Storage(filepath.Join(storageDir, "processor"))),
		goka.WithHasher(topology.Hasher),
		goka.WithNilHandling(goka.NilProcess),
		goka.WithLogger(GokaLogger(log)),
	}
}

// Supervisor runs a Goka processor and starts it again when it fails. Goka
// stops a processor on any failed emit or changelog write; nothing it has
// not committed is lost, so starting it again (after a backoff) replays from
// the last committed offsets.
type Supervisor struct {
	Name  string
	Graph *goka.GroupGraph
	// Brokers and Options build the processor.
	Brokers []string
	Options []goka.ProcessorOption
	Log     *slog.Logger
	// MinBackoff and MaxBackoff bound the wait between restarts.
	MinBackoff, MaxBackoff time.Duration

	fence    *Fence
	current  atomic.Pointer[goka.Processor]
	restarts atomic.Int64
}

// NewSupervisor returns a Supervisor that runs graph on the cluster of tc
// with GokaOptions (recording owner epochs in fence, which must not be nil)
// and its storage under storageDir.
func NewSupervisor(graph *goka.GroupGraph, tc topology.Config, storageDir string, log *slog.Logger, fence *Fence) *Supervisor {
	if log == nil {
		log = slog.Default()
	}
	return &Supervisor{Name: string(graph.Group()), Graph: graph, Brokers: tc.Brokers,
		Options: GokaOptions(tc, storageDir, log, fence), Log: log, fence: fence}
}

// Fence returns the Fence the supervised processor records its owner
// epochs in (the one GokaOptions got), or nil.
func (s *Supervisor) Fence() *Fence { return s.fence }

// Processor returns the running processor, or nil.
func (s *Supervisor) Processor() *goka.Processor { return s.current.Load() }

// Restarts counts how often the processor was started again after failing.
func (s *Supervisor) Restarts() int64 { return s.restarts.Load() }

// Ready reports whether a processor runs and has recovered its table.
func (s *Supervisor) Ready() bool {
	p := s.current.Load()
	return p != nil && p.Recovered()
}

// Run runs the processor until ctx ends. It returns nil after a clean
// shutdown, or an error when the processor cannot even be built.
func (s *Supervisor) Run(ctx context.Context) error {
	backoff := s.MinBackoff
	if backoff <= 0 {
		backoff = time.Second
	}
	maxBackoff := s.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 30 * time.Second
	}
	log := s.Log
	if log == nil {
		log = slog.Default()
	}
	for {
		start := time.Now()
		p, err := goka.NewProcessor(s.Brokers, s.Graph, s.Options...)
		if err == nil {
			s.current.Store(p)
			err = p.Run(ctx)
			s.current.Store(nil)
		} else {
			err = fmt.Errorf("%s: build processor: %w", s.Name, err)
		}
		if ctx.Err() != nil {
			if err != nil && !errors.Is(err, context.Canceled) {
				log.Warn("processor stopped with an error during shutdown", "processor", s.Name, "err", err)
			}
			return nil
		}
		if time.Since(start) > time.Minute {
			backoff = s.MinBackoff
			if backoff <= 0 {
				backoff = time.Second
			}
		}
		log.Error("processor failed; restarting", "processor", s.Name, "err", err, "in", backoff)
		s.restarts.Add(1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff *= 2
		if backoff > maxBackoff {
			backoff = maxBackoff
		}
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

// LocalTableOffset returns the changelog offset the dispatcher's local
// store of partition p under storageDir (as GokaOptions lays it out) has
// read up to: a restart recovers from the next one. The processor must be
// stopped (LevelDB locks its files).
func LocalTableOffset(storageDir string, p int32) (int64, error) {
	st, err := Storage(filepath.Join(storageDir, "processor"))(string(topology.TableDispatcher), p)
	if err != nil {
		return 0, fmt.Errorf("open the local store: %w", err)
	}
	defer st.Close()
	off, err := st.GetOffset(-1)
	if err != nil {
		return 0, fmt.Errorf("read the local store's offset: %w", err)
	}
	return off, nil
}

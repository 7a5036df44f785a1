package main

import (
	"flag"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/herald-dispatch/herald/internal/delay"
	"github.com/herald-dispatch/herald/internal/metrics"
	"github.com/herald-dispatch/herald/internal/topology"
)

type delayOptions struct {
	maxBuffer      int
	maxBatch       int
	fetchPartBytes int
	fetchMaxWait   time.Duration
	commitInterval time.Duration
	shutdownGrace  time.Duration
	targets        cli.List
}

// register registers the delay stage's flags on fs.
func (f *delayOptions) register(fs *flag.FlagSet) {
	cli.Int(fs, &f.maxBuffer, "delay-max-buffer", delay.DefaultMaxBuffer, "delayed records buffered in memory per tier partition; beyond that its fetching pauses and they wait in Kafka")
	cli.Int(fs, &f.fetchPartBytes, "delay-fetch-partition-bytes", delay.DefaultFetchMaxPartitionBytes, "largest fetch of one tier partition, compressed bytes (a partition holds --delay-max-buffer records plus one fetch)")
	cli.Int(fs, &f.maxBatch, "delay-max-batch", delay.DefaultMaxBatch, "delayed records one tier partition releases in one produce")
	cli.Duration(fs, &f.fetchMaxWait, "delay-fetch-max-wait", delay.DefaultFetchMaxWait, "longest fetch wait of the delay stage (bounds how soon a resumed partition is fetched)")
	cli.Duration(fs, &f.commitInterval, "delay-commit-interval", delay.DefaultCommitInterval, "how often the delay stage commits released offsets (a crash releases at most this much again)")
	cli.Duration(fs, &f.shutdownGrace, "delay-shutdown-grace", delay.DefaultShutdownGrace, "how long a release in flight may finish at shutdown before it is abandoned (and released again after the restart)")
	cli.ListVar(fs, &f.targets, "delay-target", "topic delayed records may be released to (default "+strings.Join(topology.DelayTargets(), ",")+"); others go to the DLQ")
}

// startDelay runs the delay stage: the tiers' consumers and releases.
func startDelay(env *runEnv, f *delayOptions) (stageLoop, error) {
	if f.maxBuffer <= 0 || f.maxBatch <= 0 || f.fetchPartBytes <= 0 || f.fetchPartBytes > math.MaxInt32 {
		return nil, fmt.Errorf("--delay-max-buffer, --delay-max-batch and --delay-fetch-partition-bytes must be positive")
	}
	targets := f.targets.Vals
	if len(targets) == 0 {
		targets = topology.DelayTargets()
	}
	s, err := delay.New(delay.Config{
		Topology:               env.Topology,
		Group:                  delay.DefaultGroup,
		Targets:                targets,
		DLQTopic:               topology.TopicDLQ,
		MaxBuffer:              f.maxBuffer,
		MaxBatch:               f.maxBatch,
		FetchMaxPartitionBytes: int32(f.fetchPartBytes),
		FetchMaxWait:           f.fetchMaxWait,
		CommitInterval:         f.commitInterval,
		ShutdownGrace:          f.shutdownGrace,
		Log:                    env.Log.With("stage", "delay"),
		Observer:               metrics.NewDelay(env.Registry),
	})
	if err != nil {
		return nil, err
	}
	metrics.NewDelayBacklog(env.Registry, s)
	env.AddReady("delay", s.Ready)
	return s.Run, nil
}

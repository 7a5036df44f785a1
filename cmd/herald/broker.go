package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/herald-dispatch/herald/internal/broker"
	"github.com/herald-dispatch/herald/internal/topology"
)

func init() {
	register(command{name: "broker", summary: "serve the embedded Kafka-protocol broker (kfake) with a data dir", run: runBroker})
}

func runBroker(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("herald broker", flag.ContinueOnError)
	var addr, dataDir, logLevel string
	var partitions int
	cli.String(fs, &addr, "broker-addr", "127.0.0.1:9092", "address to listen on")
	cli.String(fs, &dataDir, "data-dir", "./data", "data dir; the broker's log goes to its kafka/ folder")
	cli.String(fs, &logLevel, "log-level", "info", "log level: debug, info, warn, error")
	cli.Int(fs, &partitions, "partitions", topology.DefaultPartitions, "partitions of Herald's topics, created at start")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if partitions < 1 {
		return fmt.Errorf("--partitions %d: want at least 1", partitions)
	}
	log, err := cli.NewLogger(logLevel, "text")
	if err != nil {
		return err
	}
	b, err := broker.Start(broker.Config{Addr: addr, DataDir: filepath.Join(dataDir, "kafka"), Partitions: partitions, Log: log})
	if err != nil {
		return err
	}
	defer b.Close()
	tc := topology.Config{Brokers: b.Addrs(), Partitions: partitions}
	if err := topology.EnsureTopics(ctx, tc); err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	log.Info("broker ready", "addr", strings.Join(b.Addrs(), ","), "data", filepath.Join(dataDir, "kafka"))
	<-ctx.Done()
	log.Info("broker stopping")
	return nil
}

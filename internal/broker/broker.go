// Package broker runs Herald's embedded Kafka-protocol broker: franz-go's
// kfake, one node, in-process, persisting to a data dir. It is the default
// for `herald run` and `herald broker`, and the broker of the tests. It is a
// convenience, not a dependency: nothing else in Herald imports this
// package, and with --brokers Herald talks to a real cluster instead.
//
// Durability: kfake writes its log to DataDir and syncs on segment roll and
// shutdown (like Kafka's default flush settings), so a clean stop keeps
// everything and a killed process can lose the last moments of writes. Keep
// the broker's DataDir and Goka's storage under one data dir and delete
// them together (goka issue 415: a local store newer than the changelog
// breaks recovery).
package broker

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Config configures the embedded broker.
type Config struct {
	// Addr is host:port to listen on. Port 0 picks a free port.
	Addr string
	// DataDir holds the broker's log. Empty keeps everything in memory.
	DataDir string
	// Partitions is the partition count of topics created without one.
	Partitions int
	Log        *slog.Logger
	// TLS, when set, makes the broker listen with TLS only (a ClientCAs
	// pool with RequireAndVerifyClientCert makes it mutual TLS).
	TLS *tls.Config
	// SASL, when not empty, requires every client to authenticate as one
	// of these users.
	SASL []SASLUser
}

// SASLUser is a user of the broker's SASL.
type SASLUser struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism, User, Password string
}

// Broker is a running embedded broker.
type Broker struct {
	c *kfake.Cluster
}

// Start starts the broker. Close stops it.
func Start(cfg Config) (*Broker, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:9092"
	}
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("broker: address %q: %w", cfg.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("broker: port %q: %w", portStr, err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}),
		kfake.WithLogger(kfakeLogger{log.With("component", "broker")}),
		// No retention by age unless a topic sets its own: every stream
		// topic Herald creates does (topology.Config.Topics), and its
		// compacted ones (the dispatcher's changelog, the DLQ replays)
		// must keep their records until a newer one or a tombstone
		// replaces them. Kafka ignores retention.ms under
		// cleanup.policy=compact; kfake does not, so the 7 days this
		// broker used to set dropped every state unchanged for a week
		// from the changelog at its next cleaning pass, and a process
		// recovering the table then took a known id for a new one. Set
		// here, not per topic, so data dirs made before are covered too
		// (options override kfake's persisted broker configs).
		kfake.BrokerConfigs(map[string]string{"log.retention.ms": "-1"}),
	}
	if cfg.Partitions > 0 {
		opts = append(opts, kfake.DefaultNumPartitions(cfg.Partitions))
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.TLS != nil {
		opts = append(opts, kfake.TLS(cfg.TLS))
	}
	if len(cfg.SASL) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range cfg.SASL {
			opts = append(opts, kfake.Superuser(u.Mechanism, u.User, u.Password))
		}
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: start on %s: %w", cfg.Addr, err)
	}
	return &Broker{c: c}, nil
}

// Addrs returns the addresses clients use as --brokers.
func (b *Broker) Addrs() []string { return b.c.ListenAddrs() }

// Close stops the broker and flushes its log to the data dir.
func (b *Broker) Close() { b.c.Close() }

type kfakeLogger struct{ l *slog.Logger }

func (k kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	l := slog.LevelDebug
	switch level {
	case kfake.LogLevelError:
		l = slog.LevelError
	case kfake.LogLevelWarn:
		l = slog.LevelWarn
	}
	if !k.l.Enabled(context.Background(), l) {
		return
	}
	k.l.Log(context.Background(), l, fmt.Sprintf(format, args...))
}

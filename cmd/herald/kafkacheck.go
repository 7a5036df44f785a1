package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/internal/topology"
)

// checkKafkaSecurity asks the brokers for their API versions, with TLS and
// SASL as configured, once and within timeout (--kafka-check-timeout). When a broker
// accepts TCP connections but that request fails, the listener most likely
// speaks another protocol than the one configured (TLS against a
// plaintext listener, plaintext against TLS, SASL or not): the error says
// so, instead of the clients retrying until they are killed (herald dlq)
// or time out with no hint (herald run). It returns nil when no broker
// accepts connections at all: the callers wait for brokers that are
// starting, or report them unreachable, as before.
func checkKafkaSecurity(ctx context.Context, brokers []string, sec *topology.Security, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	listening := ""
	for _, b := range brokers {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", b)
		if err == nil {
			conn.Close()
			listening = b
			break
		}
	}
	if listening == "" {
		return nil
	}
	opts := append([]kgo.Opt{kgo.SeedBrokers(listening), kgo.DialTimeout(timeout), kgo.ClientID("herald-check")},
		sec.KgoOpts()...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	err = cl.Ping(ctx)
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return err // stopped
	}
	mode := sec.String()
	tlsOn, saslOn := strings.Contains(mode, "tls"), strings.Contains(mode, "sasl")
	var hint string
	switch {
	case tlsOn:
		hint = "TLS is the likely cause: --kafka-tls is on (or implied by a --kafka-tls-* setting) and the broker's listener may be plaintext; or its certificate is not one --kafka-tls-ca trusts"
	case saslOn:
		hint = "SASL or TLS is the likely cause: the listener may expect TLS (--kafka-tls), or not SASL, or another mechanism or password"
	default:
		hint = "TLS is the likely cause: the connection is plaintext and the broker's listener may expect TLS (--kafka-tls) or SASL (--kafka-sasl-mechanism)"
	}
	return fmt.Errorf("kafka: %s accepts connections but did not answer a Kafka request (with %s) within %s: %w; %s",
		listening, mode, timeout, err, hint)
}

package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/herald-dispatch/herald/internal/topology"
)

// kafkaSecurityFlags are the TLS and SASL flags of every command that
// talks to Kafka. The password is best given as a file or a variable:
// flags show in ps.
type kafkaSecurityFlags struct {
	o topology.SecurityOptions
	// checkTimeout bounds checkKafkaSecurity (--kafka-check-timeout).
	checkTimeout time.Duration
}

func (f *kafkaSecurityFlags) register(fs *flag.FlagSet) {
	o := &f.o
	cli.Bool(fs, &o.TLS, "kafka-tls", false, "connect to Kafka over TLS (implied by the other --kafka-tls-* flags)")
	cli.String(fs, &o.CAFile, "kafka-tls-ca", "", "PEM file of the CAs that sign the brokers' certificates (default: the system's)")
	cli.String(fs, &o.CertFile, "kafka-tls-cert", "", "PEM client certificate, for mutual TLS")
	cli.String(fs, &o.KeyFile, "kafka-tls-key", "", "PEM key of --kafka-tls-cert")
	cli.String(fs, &o.ServerName, "kafka-tls-server-name", "", "name to check the brokers' certificates against (default: the host dialled)")
	cli.Bool(fs, &o.InsecureSkipVerify, "kafka-tls-insecure-skip-verify", false, "accept any broker certificate (never in production)")
	cli.String(fs, &o.SASLMechanism, "kafka-sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL)")
	cli.String(fs, &o.SASLUser, "kafka-sasl-user", "", "SASL user")
	cli.String(fs, &o.SASLPassword, "kafka-sasl-password", "", "SASL password (prefer the variable or --kafka-sasl-password-file: flags show in ps)")
	cli.String(fs, &o.SASLPasswordFile, "kafka-sasl-password-file", "", "file holding the SASL password")
	cli.Duration(fs, &f.checkTimeout, "kafka-check-timeout", 10*time.Second, "how long a broker that accepts connections may take to answer a first request with the TLS and SASL settings above, before the command stops naming them as the likely cause")
}

func (f *kafkaSecurityFlags) load() (*topology.Security, error) {
	if f.checkTimeout <= 0 {
		return nil, fmt.Errorf("--kafka-check-timeout %s: want a positive duration", f.checkTimeout)
	}
	s, err := topology.LoadSecurity(f.o)
	if err != nil {
		return nil, fmt.Errorf("--kafka-*: %w", err)
	}
	return s, nil
}

package main

import (
	"flag"
	"fmt"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/herald-dispatch/herald/internal/topology"
)

// kafkaSecurityFlags are the TLS and SASL flags of every command that
// talks to Kafka. The password is best given as a file or a variable:
// flags show in ps.
type kafkaSecurityFlags struct{ o topology.SecurityOptions }

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
}

func (f *kafkaSecurityFlags) load() (*topology.Security, error) {
	s, err := topology.LoadSecurity(f.o)
	if err != nil {
		return nil, fmt.Errorf("--kafka-*: %w", err)
	}
	return s, nil
}

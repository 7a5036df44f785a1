package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"

	"github.com/herald-dispatch/herald/internal/cli"
)

// The operator's tools (herald dlq, herald send) reach the Herald that
// `herald run` with the same settings would be: the same --brokers, or
// else its embedded broker at --broker-addr, and its API at --http-addr.
// So HERALD_BROKERS, HERALD_BROKER_ADDR and HERALD_HTTP_ADDR (or a config
// file) point both at the same instance, and each tool prints which one it
// acts on.

// kafkaTargetFlags are --brokers and --broker-addr, as `herald run` has
// them.
type kafkaTargetFlags struct{ brokers, brokerAddr string }

func (f *kafkaTargetFlags) register(fs *flag.FlagSet) {
	cli.String(fs, &f.brokers, "brokers", "", "Kafka bootstrap brokers, host:port,...; empty: the embedded broker of a local herald run at --broker-addr")
	cli.String(fs, &f.brokerAddr, "broker-addr", "127.0.0.1:9092", "address of a local herald run's embedded broker, used when --brokers is empty")
}

// resolve returns the brokers and a description of where they came from.
func (f *kafkaTargetFlags) resolve() ([]string, string, error) {
	if b := cli.SplitList(f.brokers); len(b) > 0 {
		return b, "--brokers " + strings.Join(b, ","), nil
	}
	if strings.TrimSpace(f.brokerAddr) == "" {
		return nil, "", errors.New("--brokers or --broker-addr is required")
	}
	addr := dialAddr(strings.TrimSpace(f.brokerAddr))
	return []string{addr}, "--broker-addr " + addr, nil
}

// apiTargetFlags are --api-url and --http-addr.
type apiTargetFlags struct{ apiURL, httpAddr string }

func (f *apiTargetFlags) register(fs *flag.FlagSet) {
	cli.String(fs, &f.apiURL, "api-url", "", "base URL of Herald's API; empty: http:// and --http-addr")
	cli.String(fs, &f.httpAddr, "http-addr", "127.0.0.1:8080", "address of a local herald run's API, used when --api-url is empty")
}

// resolve returns the API's base URL (no trailing slash) and where it came
// from.
func (f *apiTargetFlags) resolve() (string, string, error) {
	if u := strings.TrimRight(strings.TrimSpace(f.apiURL), "/"); u != "" {
		return u, "--api-url", nil
	}
	a := strings.TrimSpace(f.httpAddr)
	if a == "" || a == "off" {
		return "", "", fmt.Errorf("--http-addr is %q: give the API's --api-url", a)
	}
	return "http://" + dialAddr(a), "--http-addr", nil
}

// dialAddr turns a listen address into one to dial: a wildcard or empty
// host is this machine.
func dialAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

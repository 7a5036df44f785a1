package topology_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/internal/broker"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

func TestLoadSecurityRefusesHalfConfigurations(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	for _, tc := range []struct {
		o    topology.SecurityOptions
		want string
	}{
		{topology.SecurityOptions{SASLMechanism: "GSSAPI", SASLUser: "u", SASLPassword: "p"}, `mechanism "GSSAPI"`},
		{topology.SecurityOptions{SASLMechanism: "PLAIN", SASLUser: "u"}, "needs a user and a password"},
		{topology.SecurityOptions{SASLUser: "u", SASLPassword: "p"}, "no mechanism"},
		{topology.SecurityOptions{SASLMechanism: "PLAIN", SASLUser: "u", SASLPassword: "p", SASLPasswordFile: pw}, "not both"},
		{topology.SecurityOptions{SASLMechanism: "PLAIN", SASLUser: "u", SASLPasswordFile: filepath.Join(dir, "nope")}, "password file"},
		{topology.SecurityOptions{CertFile: pw}, "both the certificate and the key"},
		{topology.SecurityOptions{CAFile: pw}, "no PEM certificate"},
	} {
		if _, err := topology.LoadSecurity(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.o, err, tc.want)
		}
	}
	s, err := topology.LoadSecurity(topology.SecurityOptions{})
	if s != nil || err != nil {
		t.Errorf("no options: %v %v, want plaintext (nil)", s, err)
	}
	s, err = topology.LoadSecurity(topology.SecurityOptions{SASLMechanism: "scram-sha-256", SASLUser: "u", SASLPasswordFile: pw})
	if err != nil || s.String() != "sasl SCRAM-SHA-256 user u" || strings.Contains(s.String(), "s3cret") {
		t.Errorf("password file: %v %v", s, err)
	}
}

// TestSecureBroker runs the embedded broker with TLS and SASL and checks
// that Herald's clients of both libraries (franz-go, and Sarama as Goka
// uses it) connect with Security, and that a client without it or with a
// wrong password does not.
func TestSecureBroker(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutual bool
		mech   string
		tls    bool
	}{
		{"tls + scram-sha-256", false, topology.SASLScramSHA256, true},
		{"mtls + plain", true, topology.SASLPlain, true},
		{"scram-sha-512 without tls", false, topology.SASLScramSHA512, false},
		{"mtls without sasl", true, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := topology.SecurityOptions{SASLMechanism: tc.mech}
			bc := broker.Config{}
			if tc.mech != "" {
				o.SASLUser, o.SASLPassword = "herald", "pa55"
				bc.SASL = []broker.SASLUser{{Mechanism: tc.mech, User: "herald", Password: "pa55"}}
			}
			if tc.tls {
				files := heraldtest.NewTLSFiles(t, tc.mutual)
				bc.TLS = files.Server
				o.CAFile = files.CA
				if tc.mutual {
					o.CertFile, o.KeyFile = files.ClientCert, files.ClientKey
				}
			}
			sec, err := topology.LoadSecurity(o)
			if err != nil {
				t.Fatal(err)
			}
			// Start waits for the broker and creates the topics through
			// the admin client: both with sec.
			c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 2, TLS: bc.TLS, SASL: bc.SASL, Security: sec})

			// franz-go.
			cl := c.Client(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topology.TopicRequests, Key: []byte("k1"), Value: []byte("v1")}).FirstErr(); err != nil {
				t.Fatalf("franz-go produce: %v", err)
			}

			// Sarama, configured as Goka's clients are.
			cfg := c.Topology.Sarama("test-sarama")
			cfg.Producer.Return.Successes = true
			p, err := sarama.NewSyncProducer(c.Brokers, cfg)
			if err != nil {
				t.Fatalf("sarama: %v", err)
			}
			if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topology.TopicRequests, Key: sarama.StringEncoder("k2"), Value: sarama.StringEncoder("v2")}); err != nil {
				t.Fatalf("sarama produce: %v", err)
			}
			p.Close()
			got := c.Consume(t, topology.TopicRequests, 20*time.Second, func(rs []*kgo.Record) bool { return len(rs) >= 2 })
			if len(got) != 2 {
				t.Fatalf("read back %d records", len(got))
			}

			// Without the security, or with a wrong password: refused.
			wctx, wcancel := context.WithTimeout(context.Background(), time.Second)
			defer wcancel()
			if err := topology.WaitForBrokers(wctx, c.Brokers); err == nil {
				t.Errorf("a plaintext client without credentials connected")
			}
			if tc.mech != "" {
				o.SASLPassword = "wrong"
				bad, _ := topology.LoadSecurity(o)
				wctx, wcancel := context.WithTimeout(context.Background(), time.Second)
				defer wcancel()
				if err := topology.WaitForBrokers(wctx, c.Brokers, bad.KgoOpts()...); err == nil {
					t.Errorf("a wrong password connected")
				}
				cfg := (topology.Config{Security: bad}).Sarama("bad")
				cfg.Net.DialTimeout, cfg.Metadata.Retry.Max = time.Second, 0
				if cl, err := sarama.NewClient(c.Brokers, cfg); err == nil {
					cl.Close()
					t.Errorf("sarama with a wrong password connected")
				}
			}
		})
	}
}

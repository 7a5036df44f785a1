package topology

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	xscram "github.com/xdg-go/scram"
)

// SecurityOptions say how Herald's Kafka clients connect: TLS (with a
// custom CA, and a client certificate for mTLS) and SASL (PLAIN,
// SCRAM-SHA-256, SCRAM-SHA-512). Secrets may come from files.
type SecurityOptions struct {
	// TLS turns TLS on. Setting CAFile, CertFile or ServerName implies it.
	TLS bool
	// CAFile is a PEM bundle of the CAs to trust; empty: the system's.
	CAFile string
	// CertFile and KeyFile are the client certificate and key (PEM) for
	// mutual TLS; both or neither.
	CertFile, KeyFile string
	// ServerName overrides the name the brokers' certificates are checked
	// against.
	ServerName string
	// InsecureSkipVerify accepts any broker certificate (tests only).
	InsecureSkipVerify bool

	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no
	// SASL.
	SASLMechanism string
	SASLUser      string
	// SASLPassword, or SASLPasswordFile (its content, a trailing newline
	// removed).
	SASLPassword     string
	SASLPasswordFile string
}

// The SASL mechanisms Herald supports.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Security is loaded SecurityOptions: files are read and checked once, so
// applying it to a client cannot fail. A nil *Security is a plaintext
// connection without authentication. Every Kafka client Herald builds
// (Goka's Sarama clients, the franz-go clients of the delay stage, the
// sender, the sink, the API, the admin paths and the CLI) gets its
// settings from here, through Config.Security.
type Security struct {
	tls       *tls.Config
	mechanism string
	user      string
	password  string
}

// LoadSecurity checks o and reads its files. It returns nil, nil when o
// asks for neither TLS nor SASL.
func LoadSecurity(o SecurityOptions) (*Security, error) {
	s := &Security{}
	if o.TLS || o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" || o.ServerName != "" || o.InsecureSkipVerify {
		c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName, InsecureSkipVerify: o.InsecureSkipVerify}
		if o.CAFile != "" {
			pem, err := os.ReadFile(o.CAFile)
			if err != nil {
				return nil, fmt.Errorf("kafka tls: ca: %w", err)
			}
			c.RootCAs = x509.NewCertPool()
			if !c.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("kafka tls: ca: no PEM certificate in %s", o.CAFile)
			}
		}
		if (o.CertFile == "") != (o.KeyFile == "") {
			return nil, errors.New("kafka tls: a client certificate needs both the certificate and the key file")
		}
		if o.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("kafka tls: client certificate: %w", err)
			}
			c.Certificates = []tls.Certificate{cert}
		}
		s.tls = c
	}
	if o.SASLMechanism != "" {
		m := strings.ToUpper(o.SASLMechanism)
		switch m {
		case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		default:
			return nil, fmt.Errorf("kafka sasl: mechanism %q: want %s, %s or %s", o.SASLMechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
		}
		pass := o.SASLPassword
		if o.SASLPasswordFile != "" {
			if pass != "" {
				return nil, errors.New("kafka sasl: give the password or the password file, not both")
			}
			b, err := os.ReadFile(o.SASLPasswordFile)
			if err != nil {
				return nil, fmt.Errorf("kafka sasl: password file: %w", err)
			}
			pass = strings.TrimRight(string(b), "\r\n")
		}
		if o.SASLUser == "" || pass == "" {
			return nil, fmt.Errorf("kafka sasl: %s needs a user and a password", m)
		}
		s.mechanism, s.user, s.password = m, o.SASLUser, pass
	} else if o.SASLUser != "" || o.SASLPassword != "" || o.SASLPasswordFile != "" {
		return nil, errors.New("kafka sasl: a user or password is given but no mechanism")
	}
	if s.tls == nil && s.mechanism == "" {
		return nil, nil
	}
	return s, nil
}

// String describes s for logs, without secrets.
func (s *Security) String() string {
	if s == nil {
		return "plaintext"
	}
	var parts []string
	if s.tls != nil {
		t := "tls"
		if len(s.tls.Certificates) > 0 {
			t = "mtls"
		}
		parts = append(parts, t)
	}
	if s.mechanism != "" {
		parts = append(parts, "sasl "+s.mechanism+" user "+s.user)
	}
	return strings.Join(parts, ", ")
}

// KgoOpts are the franz-go options of s.
func (s *Security) KgoOpts() []kgo.Opt {
	if s == nil {
		return nil
	}
	var opts []kgo.Opt
	if s.tls != nil {
		opts = append(opts, kgo.DialTLSConfig(s.tls.Clone()))
	}
	if s.mechanism != "" {
		var m sasl.Mechanism
		switch s.mechanism {
		case SASLPlain:
			m = plain.Auth{User: s.user, Pass: s.password}.AsMechanism()
		case SASLScramSHA256:
			m = scram.Auth{User: s.user, Pass: s.password}.AsSha256Mechanism()
		case SASLScramSHA512:
			m = scram.Auth{User: s.user, Pass: s.password}.AsSha512Mechanism()
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts
}

// ApplySarama sets s on a Sarama configuration.
func (s *Security) ApplySarama(cfg *sarama.Config) {
	if s == nil {
		return
	}
	if s.tls != nil {
		cfg.Net.TLS.Enable = true
		cfg.Net.TLS.Config = s.tls.Clone()
	}
	if s.mechanism != "" {
		cfg.Net.SASL.Enable = true
		cfg.Net.SASL.Handshake = true
		cfg.Net.SASL.User = s.user
		cfg.Net.SASL.Password = s.password
		switch s.mechanism {
		case SASLPlain:
			cfg.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		case SASLScramSHA256:
			cfg.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
			cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: sha256.New} }
		case SASLScramSHA512:
			cfg.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
			cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: sha512.New} }
		}
	}
}

// scramClient is Sarama's SCRAM client, on github.com/xdg-go/scram.
type scramClient struct {
	hash func() hash.Hash
	conv *xscram.ClientConversation
}

func (c *scramClient) Begin(user, password, authzID string) error {
	cl, err := xscram.HashGeneratorFcn(c.hash).NewClient(user, password, authzID)
	if err != nil {
		return fmt.Errorf("scram: %w", err)
	}
	c.conv = cl.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) { return c.conv.Step(challenge) }

func (c *scramClient) Done() bool { return c.conv.Done() }

// KgoOpts are the franz-go options every Herald client of c starts from:
// the seed brokers and the security.
func (c Config) KgoOpts() []kgo.Opt {
	return append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, c.Security.KgoOpts()...)
}

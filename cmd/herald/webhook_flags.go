package main

import (
	"bufio"
	"flag"
	"fmt"
	"net/http"
	"net/textproto"
	"os"
	"strings"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/provider"
)

// webhookFlags give webhook providers their headers and signing secrets,
// per channel, from variables or files rather than URLs.
type webhookFlags struct {
	headers, headerFiles, secrets, secretFiles cli.List
}

// register registers the webhook flags on fs.
func (f *webhookFlags) register(fs *flag.FlagSet) {
	f.headers, f.headerFiles, f.secrets, f.secretFiles = cli.List{}, cli.List{}, cli.List{}, cli.List{} // lists append: start each parse empty
	cli.ListVar(fs, &f.headers, "webhook-header", "header of a channel's webhook requests, CHANNEL=Name: value (prefer the variable or a file for secrets)")
	cli.ListVar(fs, &f.headerFiles, "webhook-header-file", "file of a channel's webhook headers, CHANNEL=PATH, one \"Name: value\" a line")
	cli.ListVar(fs, &f.secrets, "webhook-secret", "Standard Webhooks signing secret of a channel, CHANNEL=whsec_... (prefer the variable or a file)")
	cli.ListVar(fs, &f.secretFiles, "webhook-secret-file", "file holding a channel's signing secret, CHANNEL=PATH")
}

// webhookSet is the webhook options of each channel, as the flags build
// them.
type webhookSet map[contract.Channel]provider.WebhookOptions

// resolve reads the webhook flags: the headers, then the header files,
// the secrets and the secret files.
func (f *webhookFlags) resolve() (map[contract.Channel]provider.WebhookOptions, error) {
	out := webhookSet{}
	for _, step := range []struct {
		flagName string
		specs    []string
		add      func(c contract.Channel, v string) error
	}{
		{"webhook-header", f.headers.Vals, out.addHeader},
		{"webhook-header-file", f.headerFiles.Vals, out.addHeaderFile},
		{"webhook-secret", f.secrets.Vals, out.setSecret},
		{"webhook-secret-file", f.secretFiles.Vals, out.setSecretFile},
	} {
		for _, spec := range step.specs {
			ch, v, ok := strings.Cut(spec, "=")
			c := contract.Channel(strings.TrimSpace(ch))
			if !ok || !c.Valid() {
				return nil, fmt.Errorf("--%s: want CHANNEL=..., with a channel of %v", step.flagName, contract.Channels())
			}
			if err := step.add(c, v); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// options returns c's options, with a header map to add to.
func (s webhookSet) options(c contract.Channel) provider.WebhookOptions {
	o := s[c]
	if o.Headers == nil {
		o.Headers = http.Header{}
	}
	return o
}

// addHeader adds a header of --webhook-header, "Name: value".
func (s webhookSet) addHeader(c contract.Channel, v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("--webhook-header for %s: want Name: value", c)
	}
	o := s.options(c)
	o.Headers.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	s[c] = o
	return nil
}

// addHeaderFile adds the headers of a --webhook-header-file.
func (s webhookSet) addHeaderFile(c contract.Channel, path string) error {
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--webhook-header-file for %s: %w", c, err)
	}
	// The file is a MIME header block; a final blank line ends it.
	hs, err := textproto.NewReader(bufio.NewReader(strings.NewReader(readAllString(fh) + "\r\n\r\n"))).ReadMIMEHeader()
	fh.Close()
	if err != nil {
		return fmt.Errorf("--webhook-header-file for %s: %s: %w", c, path, err)
	}
	o := s.options(c)
	for k, vs := range hs {
		for _, v := range vs {
			o.Headers.Add(k, v)
		}
	}
	s[c] = o
	return nil
}

// setSecret sets c's signing secret, given once.
func (s webhookSet) setSecret(c contract.Channel, secret string) error {
	o := s.options(c)
	if o.Secret != "" {
		return fmt.Errorf("webhook secret of %s given twice", c)
	}
	if _, err := provider.ParseWebhookSecret(secret); err != nil {
		return fmt.Errorf("webhook secret of %s: %w", c, err)
	}
	o.Secret = strings.TrimSpace(secret)
	s[c] = o
	return nil
}

// setSecretFile sets c's signing secret from a --webhook-secret-file.
func (s webhookSet) setSecretFile(c contract.Channel, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--webhook-secret-file for %s: %w", c, err)
	}
	return s.setSecret(c, string(b))
}

func readAllString(f *os.File) string {
	var b strings.Builder
	s := bufio.NewScanner(f)
	for s.Scan() {
		if line := strings.TrimSpace(s.Text()); line != "" && !strings.HasPrefix(line, "#") {
			b.WriteString(line + "\r\n")
		}
	}
	return b.String()
}

// unsignedWebhooks lists the channels whose provider is a webhook without
// a signing secret.
func unsignedWebhooks(specs []string, wh map[contract.Channel]provider.WebhookOptions) []string {
	var out []string
	for _, s := range specs {
		ch, u, err := provider.ParseSpec(s)
		if err == nil && (strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")) && wh[ch].Secret == "" {
			out = append(out, string(ch))
		}
	}
	return out
}

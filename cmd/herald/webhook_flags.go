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
var webhookFlags struct {
	headers, headerFiles, secrets, secretFiles cli.List
}

func registerWebhookFlags(fs *flag.FlagSet) {
	f := &webhookFlags
	f.headers, f.headerFiles, f.secrets, f.secretFiles = cli.List{}, cli.List{}, cli.List{}, cli.List{} // lists append: start each parse empty
	cli.ListVar(fs, &f.headers, "webhook-header", "header of a channel's webhook requests, CHANNEL=Name: value (prefer the variable or a file for secrets)")
	cli.ListVar(fs, &f.headerFiles, "webhook-header-file", "file of a channel's webhook headers, CHANNEL=PATH, one \"Name: value\" a line")
	cli.ListVar(fs, &f.secrets, "webhook-secret", "Standard Webhooks signing secret of a channel, CHANNEL=whsec_... (prefer the variable or a file)")
	cli.ListVar(fs, &f.secretFiles, "webhook-secret-file", "file holding a channel's signing secret, CHANNEL=PATH")
}

// webhookOptions reads the webhook flags.
func webhookOptions() (map[contract.Channel]provider.WebhookOptions, error) {
	f := &webhookFlags
	out := map[contract.Channel]provider.WebhookOptions{}
	get := func(flagName, spec string) (contract.Channel, string, provider.WebhookOptions, error) {
		ch, v, ok := strings.Cut(spec, "=")
		c := contract.Channel(strings.TrimSpace(ch))
		if !ok || !c.Valid() {
			return "", "", provider.WebhookOptions{}, fmt.Errorf("--%s: want CHANNEL=..., with a channel of %v", flagName, contract.Channels())
		}
		o := out[c]
		if o.Headers == nil {
			o.Headers = http.Header{}
		}
		return c, v, o, nil
	}
	for _, spec := range f.headers.Vals {
		c, v, o, err := get("webhook-header", spec)
		if err != nil {
			return nil, err
		}
		name, value, ok := strings.Cut(v, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("--webhook-header for %s: want Name: value", c)
		}
		o.Headers.Add(strings.TrimSpace(name), strings.TrimSpace(value))
		out[c] = o
	}
	for _, spec := range f.headerFiles.Vals {
		c, path, o, err := get("webhook-header-file", spec)
		if err != nil {
			return nil, err
		}
		fh, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--webhook-header-file for %s: %w", c, err)
		}
		// The file is a MIME header block; a final blank line ends it.
		hs, err := textproto.NewReader(bufio.NewReader(strings.NewReader(readAllString(fh) + "\r\n\r\n"))).ReadMIMEHeader()
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("--webhook-header-file for %s: %s: %w", c, path, err)
		}
		for k, vs := range hs {
			for _, v := range vs {
				o.Headers.Add(k, v)
			}
		}
		out[c] = o
	}
	setSecret := func(c contract.Channel, o provider.WebhookOptions, secret string) error {
		if o.Secret != "" {
			return fmt.Errorf("webhook secret of %s given twice", c)
		}
		if _, err := provider.ParseWebhookSecret(secret); err != nil {
			return fmt.Errorf("webhook secret of %s: %w", c, err)
		}
		o.Secret = strings.TrimSpace(secret)
		out[c] = o
		return nil
	}
	for _, spec := range f.secrets.Vals {
		c, v, o, err := get("webhook-secret", spec)
		if err != nil {
			return nil, err
		}
		if err := setSecret(c, o, v); err != nil {
			return nil, err
		}
	}
	for _, spec := range f.secretFiles.Vals {
		c, path, o, err := get("webhook-secret-file", spec)
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--webhook-secret-file for %s: %w", c, err)
		}
		if err := setSecret(c, o, string(b)); err != nil {
			return nil, err
		}
	}
	return out, nil
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

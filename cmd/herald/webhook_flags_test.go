package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-dispatch/herald/internal/cli"

	"github.com/herald-dispatch/herald/contract"
)

func TestWebhookFlags(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "headers")
	os.WriteFile(hf, []byte("# sms provider\nAuthorization: Bearer sk-file\nX-Account: 42\n"), 0o600)
	sf := filepath.Join(dir, "secret")
	os.WriteFile(sf, []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"), 0o600)
	t.Setenv("HERALD_WEBHOOK_HEADER", "email=Authorization: Bearer sk-env")
	var f webhookFlags
	parse := func(args ...string) error {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(new(bytes.Buffer))
		f.register(fs)
		return cli.Parse(fs, args)
	}
	if err := parse("--webhook-header-file", "sms="+hf, "--webhook-secret-file", "sms="+sf); err != nil {
		t.Fatal(err)
	}
	wh, err := f.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if wh["email"].Headers.Get("Authorization") != "Bearer sk-env" || wh["sms"].Headers.Get("Authorization") != "Bearer sk-file" ||
		wh["sms"].Headers.Get("X-Account") != "42" || wh["sms"].Secret != "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" || wh["email"].Secret != "" {
		t.Fatalf("webhook options %+v", wh)
	}
	if got := unsignedWebhooks([]string{"email=https://e.example/x", "sms=https://s.example/x", "push=mock://"}, wh); len(got) != 1 || got[0] != string(contract.ChannelEmail) {
		t.Errorf("unsigned = %v", got)
	}
	for _, tc := range []struct{ args []string }{
		{[]string{"--webhook-secret", "sms=not-a-secret"}},
		{[]string{"--webhook-secret", "fax=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
		{[]string{"--webhook-header", "sms=no colon"}},
		{[]string{"--webhook-header-file", "sms=" + filepath.Join(dir, "nope")}},
		{[]string{"--webhook-secret-file", "sms=" + sf, "--webhook-secret", "sms=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
	} {
		if err := parse(tc.args...); err != nil {
			t.Fatal(err)
		}
		if _, err := f.resolve(); err == nil {
			t.Errorf("%v accepted", tc.args)
		} else if strings.Contains(err.Error(), "MfKQ9r8G") {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
}

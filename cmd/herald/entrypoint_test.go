package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-dispatch/herald/internal/heraldtest"
)

// TestMain lets a test start this test binary as the herald binary
// (HERALD_TEST_MAIN=1), so the entrypoint runs as its own process without
// a build.
func TestMain(m *testing.M) {
	if os.Getenv("HERALD_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	// The tests that need PostgreSQL share one throwaway cluster, a fresh
	// database each.
	heraldtest.PostgresMain(m)
}

// nobody is the unprivileged user the entrypoint test runs herald as, like
// the image's distroless nonroot user.
const nobody = 65534

// heraldBinary copies the test binary where an unprivileged user can run
// it, in a directory that is removed after the test.
func heraldBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "herald-entrypoint-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "herald")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func heraldCmd(ctx context.Context, bin string, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"HERALD_TEST_MAIN=1", "PATH=/usr/bin:/bin"}, env...)
	if os.Getuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	}
	return cmd
}

// TestEntrypointUnprivileged starts the image's entrypoint (`herald run`
// with the compose file's variables) as an unprivileged user on an empty
// data dir that belongs to it, as the Dockerfile prepares /data, and
// checks it becomes ready (by `herald healthcheck`, as compose asks) and
// generates its API token there. On a data dir it cannot write, it stops
// at once with one clear error.
func TestEntrypointUnprivileged(t *testing.T) {
	t.Parallel()
	bin := heraldBinary(t)
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 2})
	dsn := heraldtest.Postgres(t)
	root := filepath.Dir(bin)

	t.Run("root-owned volume", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root to hand the directory to another user")
		}
		data := filepath.Join(root, "root-data")
		os.Mkdir(data, 0o755)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := heraldCmd(ctx, bin, []string{"HERALD_DATA_DIR=" + data, "HERALD_BROKERS=" + strings.Join(c.Brokers, ",")}, "run").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "is not writable by uid 65534") || strings.Count(string(out), "not writable") != 1 ||
			strings.Contains(string(out), "herald running") {
			t.Fatalf("err %v, output:\n%s", err, out)
		}
	})

	data := filepath.Join(root, "data")
	os.Mkdir(data, 0o755)
	if os.Getuid() == 0 {
		os.Chown(data, nobody, nobody)
	}
	addr := freeAddr(t)
	env := []string{
		"HERALD_DATA_DIR=" + data,
		"HERALD_BROKERS=" + strings.Join(c.Brokers, ","),
		"DATABASE_URL=" + dsn,
		"HERALD_HTTP_ADDR=" + addr,
		"HERALD_PARTITIONS=2",
		"HERALD_REPLICATION=1",
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := heraldCmd(ctx, bin, env, "run")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("herald did not stop on SIGTERM")
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		hc := heraldCmd(context.Background(), bin, []string{"HERALD_HTTP_ADDR=" + addr}, "healthcheck")
		if out, err := hc.CombinedOutput(); err == nil && strings.TrimSpace(string(out)) == "ready" {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("herald exited: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within a minute:\n%s", stderr.String())
		}
		time.Sleep(300 * time.Millisecond)
	}
	st, err := os.Stat(filepath.Join(data, apiTokenFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("api token file: %v %v", st, err)
	}
	tok, _ := os.ReadFile(filepath.Join(data, apiTokenFile))
	if n := strings.Count(stderr.String(), strings.TrimSpace(string(tok))); n != 1 {
		t.Errorf("the generated token was printed %d times, want once", n)
	}
	if _, err := os.Stat(filepath.Join(data, "goka")); err != nil {
		t.Errorf("Goka's storage in the data dir: %v", err)
	}
}

func TestHealthcheckNotReady(t *testing.T) {
	var out bytes.Buffer
	if err := runHealthcheck(context.Background(), &out, []string{"--http-addr", freeAddr(t), "--healthcheck-timeout", "1s"}); err == nil {
		t.Fatal("healthcheck of nothing passed")
	}
}

func TestResolveAPIToken(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	tok, err := resolveAPIToken("", dir, &out)
	if err != nil || len(tok) < 20 || !strings.Contains(out.String(), tok) {
		t.Fatalf("generated %q %v\n%s", tok, err, out.String())
	}
	out.Reset()
	again, err := resolveAPIToken("", dir, &out)
	if err != nil || again != tok || out.Len() != 0 {
		t.Errorf("second start: %q %v, printed %q", again, err, out.String())
	}
	if got, _ := resolveAPIToken("mine", dir, &out); got != "mine" {
		t.Errorf("given token: %q", got)
	}
	if got, _ := resolveAPIToken("off", dir, &out); got != "" {
		t.Errorf("off: %q", got)
	}
}

package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// child is a subprocess of the load test: the broker or a `herald run`.
type child struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
}

// startChild starts bin with args, output to logPath. The child gets
// SIGTERM if the load test dies.
func startChild(name, bin string, args []string, logPath string, env []string) (*child, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(CleanEnv(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, bin, err)
	}
	c := &child{name: name, cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		f.Close()
		close(c.done)
	}()
	return c, nil
}

// CleanEnv is the load test's environment without Herald's own variables,
// so that a HERALD_BROKERS or DATABASE_URL in the caller's shell cannot
// redirect the children; the load test passes everything as flags.
func CleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HERALD_") || strings.HasPrefix(kv, "DATABASE_URL=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the child has ended, and how.
func (c *child) exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM and waits up to grace before SIGKILL.
func (c *child) stop(grace time.Duration) error {
	if done, _ := c.exited(); done {
		return c.err
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s: did not stop within %s, killed", c.name, grace)
	}
	var ee *exec.ExitError
	if errors.As(c.err, &ee) && ee.ExitCode() == -1 { // ended by our signal
		return nil
	}
	return c.err
}

// tail returns the last lines of the child's log, for error messages.
func (c *child) tail(n int) string {
	b, err := os.ReadFile(c.log.Name())
	if err != nil {
		return ""
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitReady polls url until it answers 200, the child exits or ctx ends.
func waitReady(ctx context.Context, c *child, url string) error {
	err := WaitOK(ctx, url, func() error {
		if done, err := c.exited(); done {
			return fmt.Errorf("%s exited while starting (%v):\n%s", c.name, err, c.tail(20))
		}
		return nil
	})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%s: %w\n%s", c.name, err, c.tail(20))
	}
	return err
}

// WaitOK polls url until it answers 200, alive returns an error (the
// process behind it died) or ctx ends.
func WaitOK(ctx context.Context, url string, alive func() error) error {
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		if err := alive(); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready at %s: %w", url, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// FlagDefaults lists the flags a herald subcommand accepts, with their
// defaults as -h prints them ("" when it prints none).
func FlagDefaults(bin, sub string) (map[string]string, error) {
	cmd := exec.Command(bin, sub, "-h")
	cmd.Env = CleanEnv()
	out, _ := cmd.CombinedOutput() // -h exits 0 or 2 depending on the flag package
	flags := map[string]string{}
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "-") {
			cur = strings.TrimLeft(strings.Fields(line)[0], "-")
			flags[cur] = ""
			continue
		}
		if cur == "" {
			continue
		}
		if i := strings.LastIndex(line, "(default "); i >= 0 && strings.HasSuffix(line, ")") {
			flags[cur] = strings.Trim(line[i+len("(default "):len(line)-1], `"`)
		}
	}
	if len(flags) == 0 {
		return nil, fmt.Errorf("%s %s -h listed no flags:\n%s", bin, sub, out)
	}
	return flags, nil
}

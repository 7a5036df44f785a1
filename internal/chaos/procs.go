package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/herald-dispatch/herald/internal/loadtest"
)

// proc is one child process of the run (the broker or a `herald run`)
// that the faults kill, pause and start again with the same arguments,
// data dir and port. While the run is on, a process that exits without
// being told to is started again after a second (as a supervisor such as
// systemd would) and the exit is noted.
type proc struct {
	name    string
	bin     string
	args    []string
	logPath string
	log     *slog.Logger

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	starts  int
	down    bool // killed on purpose: not restarted by the supervisor
	stopped bool // the run is over: never restarted
	// unexpected lists the exits nobody asked for.
	unexpected []string
	restarted  chan struct{}
}

func newProc(name, bin string, args []string, logPath string, log *slog.Logger) *proc {
	return &proc{name: name, bin: bin, args: args, logPath: logPath, log: log, restarted: make(chan struct{}, 1)}
}

// start starts the process (again), appending to its log.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: log: %w", p.name, err)
	}
	p.starts++
	fmt.Fprintf(f, "=== chaos: start #%d of %s at %s\n", p.starts, p.name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = loadtest.CleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("%s: start: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.down = cmd, done, false
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// supervise starts the process again whenever it exits on its own, until
// ctx ends or the process is stopped for good.
func (p *proc) supervise(ctx context.Context) {
	for {
		p.mu.Lock()
		cmd, done := p.cmd, p.done
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-done:
		case <-p.restarted: // a fault restarted it: watch the new process
			continue
		}
		p.mu.Lock()
		again := p.cmd != cmd // a fault restarted it already
		down, stopped, err := p.down, p.stopped, p.err
		if !again && !down && !stopped {
			p.unexpected = append(p.unexpected, fmt.Sprintf("%s exited at %s: %v", p.name, time.Now().UTC().Format(time.RFC3339), err))
		}
		p.mu.Unlock()
		switch {
		case stopped:
			return
		case again:
			continue
		case down:
			select {
			case <-ctx.Done():
				return
			case <-p.restarted:
			}
			continue
		}
		p.log.Warn("process exited on its own, starting it again", "proc", p.name, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		if err := p.start(); err != nil {
			p.log.Error("restart failed", "proc", p.name, "err", err)
			return
		}
	}
}

// kill sends SIGKILL and waits for the exit; the supervisor leaves the
// process down until restart.
func (p *proc) kill() error {
	p.mu.Lock()
	p.down = true
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("%s: kill -9: %w", p.name, err)
	}
	<-done
	return nil
}

// restart starts a killed process again.
func (p *proc) restart() error {
	if err := p.start(); err != nil {
		return err
	}
	select {
	case p.restarted <- struct{}{}:
	default:
	}
	return nil
}

// signal sends sig to the current process.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %s: %w", p.name, sig, err)
	}
	return nil
}

// stop ends the process for good: SIGCONT (in case it is paused), SIGTERM,
// then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	p.mu.Lock()
	p.stopped = true
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// unexpectedExits lists the exits nobody asked for.
func (p *proc) unexpectedExits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.unexpected...)
}

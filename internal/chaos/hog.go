package chaos

import (
	"fmt"
	"os/exec"
	"syscall"
)

// hog is a loaded machine beside a run: one child process per core it
// takes, each spinning in a shell loop, started with the run and killed
// with it (or with the test process, by Pdeathsig).
type hog struct {
	cmds []*exec.Cmd
}

// startHog starts a hog spinning on cores cores (none for 0).
func startHog(cores int) (*hog, error) {
	h := &hog{}
	for range cores {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		if err := cmd.Start(); err != nil {
			h.stop()
			return nil, fmt.Errorf("cpu hog: %w", err)
		}
		h.cmds = append(h.cmds, cmd)
	}
	return h, nil
}

// pids are the spinning processes.
func (h *hog) pids() []int {
	var out []int
	for _, c := range h.cmds {
		out = append(out, c.Process.Pid)
	}
	return out
}

// stop kills the spinning processes (by their ids) and waits for them.
func (h *hog) stop() {
	for _, c := range h.cmds {
		c.Process.Signal(syscall.SIGKILL)
		c.Wait()
	}
	h.cmds = nil
}

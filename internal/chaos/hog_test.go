package chaos

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTicks is the user and system time (clock ticks) a process has used,
// from /proc/<pid>/stat.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command (in parentheses): state is the 1st, utime
	// the 12th, stime the 13th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

// The hog's processes burn CPU until stopped, and are gone after.
func TestHog(t *testing.T) {
	h, err := startHog(2)
	if err != nil {
		t.Fatal(err)
	}
	pids := h.pids()
	if len(pids) != 2 {
		t.Fatalf("%d processes, want 2", len(pids))
	}
	for _, pid := range pids {
		deadline := time.Now().Add(30 * time.Second)
		for cpuTicks(t, pid) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("process %d used no CPU", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	h.stop()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Fatalf("process %d still exists after stop", pid)
		}
	}
	if h, err := startHog(0); err != nil || len(h.pids()) != 0 {
		t.Fatalf("no cores: %v, %v", h, err)
	}
}

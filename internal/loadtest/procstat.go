package loadtest

import (
	"fmt"
	"sync"

	"github.com/prometheus/procfs"
)

// userHZ is the kernel's clock tick for /proc CPU times (CLK_TCK, 100 on
// Linux everywhere that matters).
const userHZ = 100.0

// ProcUsage is one process's (or process tree's) resource use so far.
type ProcUsage struct {
	// CPU is user plus system CPU seconds, of the process and, for a
	// tree, of its children (live and exited).
	CPU float64 `json:"cpu_seconds"`
	// RSS is the resident set now; PeakRSS the high-water mark (VmHWM).
	// For a tree, RSS sums the processes (shared memory counted in each)
	// and PeakRSS is the largest single process's high-water mark.
	RSS     int64 `json:"rss_bytes"`
	PeakRSS int64 `json:"peak_rss_bytes"`
}

// ProcWatch reads the resource use of named processes from /proc.
type ProcWatch struct {
	fs procfs.FS

	mu    sync.Mutex
	procs map[string]watched
	last  map[string]ProcUsage
}

type watched struct {
	pid  int
	tree bool
}

// NewProcWatch opens /proc.
func NewProcWatch() (*ProcWatch, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return nil, fmt.Errorf("procfs: %w", err)
	}
	return &ProcWatch{fs: fs, procs: map[string]watched{}, last: map[string]ProcUsage{}}, nil
}

// Watch adds a process. With tree, its descendants count too (PostgreSQL's
// backends).
func (w *ProcWatch) Watch(name string, pid int, tree bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.procs[name] = watched{pid: pid, tree: tree}
}

// Sample reads every watched process. A process that has gone keeps its
// last reading.
func (w *ProcWatch) Sample() map[string]ProcUsage {
	w.mu.Lock()
	defer w.mu.Unlock()
	var children map[int][]int
	for name, p := range w.procs {
		var u ProcUsage
		var err error
		if p.tree {
			if children == nil {
				children = w.childMap()
			}
			u, err = w.readTree(p.pid, children)
		} else {
			u, err = w.read(p.pid)
		}
		if err != nil {
			continue
		}
		prev := w.last[name]
		u.PeakRSS = max(u.PeakRSS, prev.PeakRSS)
		u.CPU = max(u.CPU, prev.CPU)
		w.last[name] = u
	}
	out := make(map[string]ProcUsage, len(w.last))
	for k, v := range w.last {
		out[k] = v
	}
	return out
}

func (w *ProcWatch) read(pid int) (ProcUsage, error) {
	p, err := w.fs.Proc(pid)
	if err != nil {
		return ProcUsage{}, err
	}
	st, err := p.Stat()
	if err != nil {
		return ProcUsage{}, err
	}
	status, err := p.NewStatus()
	if err != nil {
		return ProcUsage{}, err
	}
	return ProcUsage{CPU: st.CPUTime(), RSS: int64(st.ResidentMemory()), PeakRSS: int64(status.VmHWM)}, nil
}

func (w *ProcWatch) readTree(root int, children map[int][]int) (ProcUsage, error) {
	var u ProcUsage
	stack := []int{root}
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		p, err := w.fs.Proc(pid)
		if err != nil {
			if pid == root {
				return u, err
			}
			continue
		}
		st, err := p.Stat()
		if err != nil {
			continue
		}
		u.CPU += float64(st.UTime+st.STime+uint(st.CUTime)+uint(st.CSTime)) / userHZ
		u.RSS += int64(st.ResidentMemory())
		if status, err := p.NewStatus(); err == nil {
			u.PeakRSS = max(u.PeakRSS, int64(status.VmHWM))
		}
		stack = append(stack, children[pid]...)
	}
	return u, nil
}

func (w *ProcWatch) childMap() map[int][]int {
	m := map[int][]int{}
	procs, err := w.fs.AllProcs()
	if err != nil {
		return m
	}
	for _, p := range procs {
		st, err := p.Stat()
		if err != nil {
			continue
		}
		m[st.PPID] = append(m[st.PPID], p.PID)
	}
	return m
}

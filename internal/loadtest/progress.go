package loadtest

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/term"
)

// progress prints one status line per second: overwritten in place on a
// terminal, every tenth one as a plain line otherwise (CI logs).
type progress struct {
	w     io.Writer
	tty   bool
	name  string
	n     int
	prev  Sample
	width int
}

func newProgress(w io.Writer, name string) *progress {
	p := &progress{w: w, name: name}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

func (p *progress) line(s Sample, valid, records int64) {
	if p.w == nil {
		return
	}
	p.n++
	dt := (s.At - p.prev.At).Seconds()
	rate := func(a, b int64) float64 {
		if dt <= 0 {
			return 0
		}
		return float64(a-b) / dt
	}
	var cpu []string
	for _, name := range sortedKeys(s.CPU) {
		if strings.HasPrefix(name, "herald-") || name == "broker" {
			d := s.CPU[name] - p.prev.CPU[name]
			if dt > 0 {
				cpu = append(cpu, fmt.Sprintf("%s %.0f%%", name, 100*d/dt))
			}
		}
	}
	sort.Strings(cpu)
	msg := fmt.Sprintf("[%s %5s] in %d/%d (%.0f/s)  calls %d (%.0f/s)  final %d/%d (%.0f/s)  lag %d  cpu %s",
		p.name, s.At.Round(time.Second), s.Published, records, rate(s.Published, p.prev.Published),
		s.Calls, rate(s.Calls, p.prev.Calls), s.Completed, valid, rate(s.Completed, p.prev.Completed),
		s.TotalLag(), strings.Join(cpu, ", "))
	p.prev = s
	if p.tty {
		pad := ""
		if len(msg) < p.width {
			pad = strings.Repeat(" ", p.width-len(msg))
		}
		p.width = len(msg)
		fmt.Fprint(p.w, "\r"+msg+pad)
		return
	}
	if p.n%10 == 1 {
		fmt.Fprintln(p.w, msg)
	}
}

func (p *progress) done() {
	if p.w != nil && p.tty {
		fmt.Fprintln(p.w)
	}
}

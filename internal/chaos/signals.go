package chaos

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// logSignals are the log lines, in an instance's log, of the producer
// faults issue 21 found after a broker restart (Sarama's idempotent
// producer), and of the stage restarts they cause. They are counted for
// the report; the verdict stays at the provider.
var logSignals = []string{
	"out of order sequence number",
	"message out of sequence added to a batch",
	"Failed to produce message",
	"failed; restarting",
}

// countSignals adds to counts the lines of the log at path that contain
// each of logSignals.
func countSignals(path string, counts map[string]int) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("log signals: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, s := range logSignals {
			if strings.Contains(line, s) {
				counts[s]++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("log signals: %s: %w", path, err)
	}
	return nil
}

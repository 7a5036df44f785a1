package hopbench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"

	"github.com/herald-dispatch/herald/internal/broker"
	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/topology"
)

// brokerDirEnv, when set, makes TestBrokerChild run the test broker in
// that data dir: the benchmarks start the test binary again as their
// broker, so that the CPU and memory a hop's figures show are the stage's
// (as `herald run` pays them against a real Kafka), and the broker's CPU is
// reported apart.
const brokerDirEnv = "HERALD_HOPBENCH_BROKER_DIR"

// TestBrokerChild is the benchmarks' broker process; it skips unless
// started by one. It runs the embedded broker (internal/broker, as
// heraldtest.StartKafka does) with Herald's partition count, prints its
// addresses, and stops at SIGTERM.
func TestBrokerChild(t *testing.T) {
	dir := os.Getenv(brokerDirEnv)
	if dir == "" {
		t.Skip("only run as the benchmarks' broker process")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: dir, Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	fmt.Printf("BROKER %s\n", strings.Join(b.Addrs(), ","))
	<-ctx.Done()
}

// brokerProcess is the broker child of one benchmark.
type brokerProcess struct {
	*heraldtest.Cluster
	pid int
}

// startBroker starts the broker child, creates Herald's topics on it (as
// heraldtest.StartKafka does in-process), and stops it when the benchmark
// ends.
func startBroker(b *testing.B) *brokerProcess {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "kafka")
	cmd := exec.Command(os.Args[0], "-test.run=^TestBrokerChild$", "-test.count=1", "-test.timeout=0")
	cmd.Env = append(os.Environ(), brokerDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("broker process: %v", err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	var addrs string
	for addrs == "" && sc.Scan() {
		addrs, _ = strings.CutPrefix(sc.Text(), "BROKER ")
	}
	if addrs == "" {
		b.Fatalf("broker process did not start: %v", sc.Err())
	}
	go func() { // drain the rest of its output
		for sc.Scan() {
		}
	}()
	c := &heraldtest.Cluster{Brokers: strings.Split(addrs, ","), DataDir: dir}
	c.Topology = topology.Config{Brokers: c.Brokers, Partitions: partitions, ClientID: "herald-test"}.WithDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := topology.WaitForBrokers(ctx, c.Brokers); err != nil {
		b.Fatalf("broker process: %v", err)
	}
	if err := topology.EnsureTopics(ctx, c.Topology); err != nil {
		b.Fatalf("broker process: %v", err)
	}
	return &brokerProcess{Cluster: c, pid: cmd.Process.Pid}
}

// cpu is the CPU time the broker process has used (clock-tick resolution,
// 10 ms).
func (p *brokerProcess) cpu(b testing.TB) time.Duration {
	proc, err := procfs.NewProc(p.pid)
	if err == nil {
		var st procfs.ProcStat
		if st, err = proc.Stat(); err == nil {
			return time.Duration(st.CPUTime() * float64(time.Second))
		}
	}
	b.Fatalf("broker process CPU: %v", err)
	return 0
}

package main

import (
	"context"
	"strings"
	"testing"

	"github.com/herald-dispatch/herald/internal/heraldtest"
)

// Batch bounds out of order stop `herald run` with an error naming the
// flags, before the sink starts.
func TestSinkBatchFlagsOutOfOrder(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 2})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sink-batch-min-size", "500", "--sink-batch-size", "100"}, "min size 500 is above the max size 100"},
		{[]string{"--sink-batch-interval", "10ms"}, "min interval 20ms is above the max interval 10ms"},
		{[]string{"--sink-batch-min-interval", "0s"}, "must be positive"},
	} {
		args := append([]string{"--brokers", strings.Join(c.Brokers, ","), "--partitions", "2", "--data-dir", t.TempDir(),
			"--http-addr", "off", "--stages", "sink", "--log-level", "error"}, tc.args...)
		err := runPipeline(context.Background(), "run", args, "all")
		if err == nil || !strings.Contains(err.Error(), "--sink-batch-min-size") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want one naming the flags and %q", tc.args, err, tc.want)
		}
	}
}

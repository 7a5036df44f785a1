package metrics_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/internal/heraldtest"
	"github.com/herald-dispatch/herald/internal/metrics"
	"github.com/herald-dispatch/herald/internal/topology"
)

func TestLag(t *testing.T) {
	t.Parallel()
	c := heraldtest.StartKafka(t, heraldtest.Options{Partitions: 3})
	cl := c.Client(t)
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// herald-sender has committed offset 0 everywhere and then stopped:
	// everything published since is its lag.
	var os kadm.Offsets
	for p := range int32(3) {
		os.AddOffset(topology.TopicSend, p, 0, -1)
	}
	if _, err := adm.CommitOffsets(ctx, "herald-sender", os); err != nil {
		t.Fatal(err)
	}
	perPartition := map[int32]float64{}
	var recs []*kgo.Record
	for i := range 20 {
		key := fmt.Sprint("n-", i)
		perPartition[topology.Partition(key, 3)]++
		recs = append(recs, &kgo.Record{Topic: topology.TopicSend, Key: []byte(key), Value: []byte("{}")})
	}
	c.Produce(t, cl, recs...)

	reg := prometheus.NewRegistry()
	lag := metrics.NewLag(reg, adm, nil)
	if n := testutil.CollectAndCount(lag, "herald_consumer_lag"); n != 0 {
		t.Errorf("before the first refresh: %d samples", n)
	}
	if err := lag.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// Groups that do not exist (the other stages) export nothing.
	if n := testutil.CollectAndCount(lag, "herald_consumer_lag"); n != 3 {
		t.Errorf("%d lag samples, want 3 (herald-sender's partitions)", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != "herald_consumer_lag" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			var p int32
			fmt.Sscan(labels["partition"], &p)
			if labels["group"] != "herald-sender" || labels["topic"] != topology.TopicSend || m.GetGauge().GetValue() != perPartition[p] {
				t.Errorf("sample %v = %v, want %v", labels, m.GetGauge().GetValue(), perPartition[p])
			}
			total += m.GetGauge().GetValue()
		}
	}
	if total != 20 {
		t.Errorf("total lag %v, want 20", total)
	}

	// A commit at the end clears it.
	ends, err := adm.ListEndOffsets(ctx, topology.TopicSend)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CommitOffsets(ctx, "herald-sender", ends.Offsets()); err != nil {
		t.Fatal(err)
	}
	if err := lag.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(sumLag{lag}); v != 0 {
		t.Errorf("lag after committing the end: %v", v)
	}
}

// sumLag adds up the lag samples into one, for testutil.ToFloat64.
type sumLag struct{ c prometheus.Collector }

func (s sumLag) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(s, ch) }

func (s sumLag) Collect(ch chan<- prometheus.Metric) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.c)
	mfs, _ := reg.Gather()
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == "herald_consumer_lag" {
			for _, m := range mf.GetMetric() {
				v += m.GetGauge().GetValue()
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("sum", "sum", nil, nil), prometheus.GaugeValue, v)
}

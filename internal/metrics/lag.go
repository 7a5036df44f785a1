package metrics

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/herald-dispatch/herald/internal/topology"
)

// DefaultLagGroups returns the consumer groups of Herald's stages (a fresh
// slice each call).
func DefaultLagGroups() []string {
	return []string{string(topology.GroupDispatcher), topology.GroupDelay, topology.GroupSender, topology.GroupSink, topology.GroupStatus}
}

// DefaultLagInterval is how often Lag asks the brokers.
const DefaultLagInterval = 10 * time.Second

// Lag exports the consumer lag of Herald's groups per topic and partition,
// as the brokers see it: the end offset minus the group's committed
// offset. It asks the brokers (kadm: describe groups, fetch commits, list
// end offsets) every interval in the background instead of on each scrape,
// so that a slow broker cannot make a scrape time out and a scrape cannot
// load the brokers.
//
// A group that does not exist (its stage is not running anywhere) exports
// nothing. Committed offsets move in steps (Goka and franz-go commit about
// every second), so the lag of an idle group can read a few records high
// for a moment.
type Lag struct {
	adm    *kadm.Client
	groups []string

	lagDesc, stateDesc, atDesc *prometheus.Desc
	errors                     prometheus.Counter

	mu        sync.Mutex
	samples   []lagSample
	described []groupState
	at        time.Time
}

type groupState struct {
	group, state string
	members      int
}

type lagSample struct {
	group, topic string
	partition    int32
	lag          int64
}

// NewLag registers the lag gauges on reg.
func NewLag(reg prometheus.Registerer, adm *kadm.Client, groups []string) *Lag {
	if len(groups) == 0 {
		groups = DefaultLagGroups()
	}
	l := &Lag{
		adm:    adm,
		groups: groups,
		lagDesc: prometheus.NewDesc("herald_consumer_lag",
			"Records a consumer group has not committed yet, by group, topic and partition (end offset minus committed offset).",
			[]string{"group", "topic", "partition"}, nil),
		stateDesc: prometheus.NewDesc("herald_consumer_group_members",
			"Members of a consumer group, by group and state (Stable, Empty, PreparingRebalance, ...).",
			[]string{"group", "state"}, nil),
		atDesc: prometheus.NewDesc("herald_consumer_lag_timestamp_seconds",
			"When the lag was last read from the brokers (Unix seconds).", nil, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_consumer_lag_errors_total",
			Help: "Failed attempts to read consumer lag from the brokers.",
		}),
	}
	reg.MustRegister(l, l.errors)
	return l
}

// Refresh reads the lag of every group once.
func (l *Lag) Refresh(ctx context.Context) error {
	lags, err := l.adm.Lag(ctx, l.groups...)
	if err != nil && len(lags) == 0 {
		l.errors.Inc()
		return err
	}
	var samples []lagSample
	var groups []groupState
	var errs []error
	for _, g := range lags.Sorted() {
		if errors.Is(g.DescribeErr, kerr.GroupIDNotFound) {
			continue // Kafka says Dead, some brokers say not found: no such group
		}
		if g.DescribeErr != nil || g.FetchErr != nil {
			errs = append(errs, g.Error())
			continue
		}
		if g.State == "Dead" || (len(g.Lag) == 0 && len(g.Members) == 0) {
			continue // no such group: its stage does not run
		}
		groups = append(groups, groupState{group: g.Group, state: g.State, members: len(g.Members)})
		for _, m := range g.Lag.Sorted() {
			if m.Err != nil || m.Lag < 0 {
				continue
			}
			samples = append(samples, lagSample{group: g.Group, topic: m.Topic, partition: m.Partition, lag: m.Lag})
		}
	}
	l.mu.Lock()
	l.samples, l.described, l.at = samples, groups, time.Now()
	l.mu.Unlock()
	if len(errs) > 0 {
		l.errors.Inc()
		return errors.Join(errs...)
	}
	return nil
}

// Run refreshes every interval until ctx ends.
func (l *Lag) Run(ctx context.Context, interval time.Duration, log *slog.Logger) error {
	if interval <= 0 {
		interval = DefaultLagInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, interval)
		err := l.Refresh(rctx)
		cancel()
		if err != nil && ctx.Err() == nil && log != nil {
			log.Warn("consumer lag: read from the brokers failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Describe implements prometheus.Collector.
func (l *Lag) Describe(ch chan<- *prometheus.Desc) {
	ch <- l.lagDesc
	ch <- l.stateDesc
	ch <- l.atDesc
}

// Collect implements prometheus.Collector.
func (l *Lag) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at.IsZero() {
		return
	}
	for _, s := range l.samples {
		ch <- prometheus.MustNewConstMetric(l.lagDesc, prometheus.GaugeValue, float64(s.lag),
			s.group, s.topic, strconv.Itoa(int(s.partition)))
	}
	for _, g := range l.described {
		ch <- prometheus.MustNewConstMetric(l.stateDesc, prometheus.GaugeValue, float64(g.members), g.group, g.state)
	}
	ch <- prometheus.MustNewConstMetric(l.atDesc, prometheus.GaugeValue, float64(l.at.UnixNano())/1e9)
}

package loadtest

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dlq"
	"github.com/herald-dispatch/herald/internal/topology"
)

// lagReader reads every consumer group's lag.
type lagReader struct {
	cl  *kgo.Client
	adm *kadm.Client
}

func newLagReader(brokers []string) (*lagReader, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ClientID("herald-loadtest-admin"))
	if err != nil {
		return nil, fmt.Errorf("lag: client: %w", err)
	}
	return &lagReader{cl: cl, adm: kadm.NewClient(cl)}, nil
}

func (l *lagReader) Close() { l.cl.Close() }

// Lag returns each group's total lag: the records between its committed
// offsets and the ends of the partitions it consumes.
func (l *lagReader) Lag(ctx context.Context) (map[string]int64, error) {
	listed, err := l.adm.ListGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("lag: list groups: %w", err)
	}
	groups := listed.Groups()
	if len(groups) == 0 {
		return map[string]int64{}, nil
	}
	lags, err := l.adm.Lag(ctx, groups...)
	if err != nil {
		return nil, fmt.Errorf("lag: %w", err)
	}
	out := make(map[string]int64, len(lags))
	for _, g := range lags.Sorted() {
		if g.Error() != nil {
			continue
		}
		var n int64
		for _, ps := range g.Lag {
			for _, p := range ps {
				if p.Err == nil && p.Lag > 0 {
					n += p.Lag
				}
			}
		}
		out[g.Group] = n
	}
	return out, nil
}

// readTopic reads a topic from its start to the end offsets it had when
// called.
func readTopic(ctx context.Context, brokers []string, topic string) ([]*kgo.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return dlq.ReadTopic(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, topic)
}

// readDLQ reads every dead letter.
func readDLQ(ctx context.Context, brokers []string) ([]contract.DeadLetter, error) {
	recs, err := readTopic(ctx, brokers, topology.TopicDLQ)
	if err != nil {
		return nil, err
	}
	out := make([]contract.DeadLetter, 0, len(recs))
	for _, r := range recs {
		d, err := dlq.Parse(r)
		if err != nil {
			d = contract.DeadLetter{Reason: "undecodable dead letter", Error: err.Error(), Key: r.Key, Value: r.Value}
		}
		out = append(out, d)
	}
	return out, nil
}

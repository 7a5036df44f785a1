package sender

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/topology"
)

// recall rebuilds the answered memory for herald.send partitions this
// sender was just assigned, from the same partitions of herald.results
// (keyed by notification id and co-partitioned with herald.send, so a
// command's answers are in the partition of its own number). It reads
// each partition's newest records, at most the partition's share of the
// memory (Config.AnsweredMemory / Topology.Partitions), up to the end it
// had when the read began, and takes at most Config.RecallTimeout (its own
// bound: a short --send-drain-timeout, which cuts calls at shutdown, must
// not cut the read back of the answers too).
//
// It runs in the OnPartitionsAssigned callback, which franz-go calls
// before it fetches the assigned partitions: no command of a partition is
// handled before its answers are remembered. So a sender that restarted,
// or took a partition over from another process, does not call the
// provider again for an attempt already answered (issue 21, item 5: a
// kill -9 during a send burst re-called 1,765 delivered attempts). A read
// that fails or runs out of time keeps what it read, and says so: the
// idempotency key then remains the guard for the rest.
func (s *Sender) recall(ctx context.Context, parts []int32) {
	if s.cfg.AnsweredMemory <= 0 || len(parts) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RecallTimeout)
	defer cancel()
	start := time.Now()
	n, err := s.readResults(ctx, parts, int64(max(1, s.cfg.AnsweredMemory/max(1, s.cfg.Topology.Partitions))))
	if err != nil {
		s.log.Warn("sender: the answers of the assigned partitions were not all read back; an attempt answered before may be called again (the idempotency key is the guard)",
			"partitions", parts, "read", n, "err", err)
		return
	}
	s.log.Info("sender: answers of the assigned partitions read back", "partitions", parts, "results", n,
		"took", time.Since(start).Round(time.Millisecond))
}

// readResults reads the newest records (at most per) of each partition of
// herald.results in parts, up to the partition's end when the read began,
// into the answered memory, and returns how many it remembered.
func (s *Sender) readResults(ctx context.Context, parts []int32, per int64) (int, error) {
	opts := append(s.cfg.Topology.KgoOpts(), kgo.ClientID(s.cfg.Topology.ClientID+"-sender-recall"))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return 0, fmt.Errorf("client: %w", err)
	}
	defer cl.Close()
	from, ends, err := resultRanges(ctx, kadm.NewClient(cl), parts, per)
	if err != nil || len(from) == 0 {
		return 0, err
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topology.TopicResults: from})
	n := 0
	for len(ends) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return n, err
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) { ferr = fmt.Errorf("partition %d: %w", p, err) })
		if ferr != nil {
			return n, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if res, err := contract.DecodeResult(r.Key, r.Value); err == nil {
				s.answered.add(*res)
				n++
			}
			if r.Offset+1 >= ends[r.Partition] {
				delete(ends, r.Partition)
			}
		})
	}
	return n, nil
}

// resultRanges returns, for each partition of herald.results in parts
// that holds records, the offset to read from (at most per before its
// end, not before its start) and its end.
func resultRanges(ctx context.Context, adm *kadm.Client, parts []int32, per int64) (from map[int32]kgo.Offset, ends map[int32]int64, err error) {
	starts, err := adm.ListStartOffsets(ctx, topology.TopicResults)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("start offsets: %w", err)
	}
	last, err := adm.ListEndOffsets(ctx, topology.TopicResults)
	if err == nil {
		err = last.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("end offsets: %w", err)
	}
	from, ends = map[int32]kgo.Offset{}, map[int32]int64{}
	for _, p := range parts {
		st, ok1 := starts.Lookup(topology.TopicResults, p)
		end, ok2 := last.Lookup(topology.TopicResults, p)
		if !ok1 || !ok2 {
			return nil, nil, errors.New("herald.results has no partition " + fmt.Sprint(p))
		}
		if end.Offset <= st.Offset {
			continue // empty
		}
		from[p] = kgo.NewOffset().At(max(st.Offset, end.Offset-per))
		ends[p] = end.Offset
	}
	return from, ends, nil
}

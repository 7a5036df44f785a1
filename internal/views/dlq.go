package views

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/dlq"
	"github.com/herald-dispatch/herald/internal/topology"
)

// DLQ answers what is in herald.dlq. DLQReader is the real one.
type DLQ interface {
	// DeadLetters returns the counts by reason of every dead letter read,
	// and the newest ones, newest first, at most limit.
	DeadLetters(limit int) DLQResponse
}

// DeadLetterRow is one dead letter as the API shows it: where it came from
// and why, without its value (the original record, which holds the
// recipient's addresses), and with the error masked.
type DeadLetterRow struct {
	// DLQ is its PARTITION@OFFSET in herald.dlq (what a replay's ?at=
	// takes).
	DLQ       string                `json:"dlq"`
	Key       string                `json:"key"`
	Reason    string                `json:"reason"`
	Error     string                `json:"error"`
	Problems  []contract.FieldError `json:"problems,omitempty"`
	Topic     string                `json:"topic"`
	Partition int32                 `json:"partition"`
	Offset    int64                 `json:"offset"`
	At        time.Time             `json:"at"`
	// ValueBytes is the size of the original value.
	ValueBytes int `json:"value_bytes"`
	// Replayed is its last replay (herald.dlq.replays), if any.
	Replayed *dlq.Replay `json:"replayed,omitempty"`
}

// ReasonCount is a number of dead letters with one reason.
type ReasonCount struct {
	Reason      string `json:"reason"`
	DeadLetters int64  `json:"dead_letters"`
}

// DLQResponse answers GET /v1/dlq.
type DLQResponse struct {
	// Total counts the dead letters read since the reader started (from
	// the start of the topic's retention).
	Total       int64           `json:"total"`
	Reasons     []ReasonCount   `json:"reasons"`
	DeadLetters []DeadLetterRow `json:"dead_letters"`
}

// DefaultDLQKeep is how many recent dead letters DLQReader keeps.
const DefaultDLQKeep = 1000

// DLQReader reads herald.dlq from its start with its own consumer (no
// group: it commits nothing and takes nothing from anyone), counts the
// dead letters by reason and keeps the newest Keep of them in memory. It
// reads herald.dlq.replays beside it, and shows the replays of the dead
// letters it keeps.
type DLQReader struct {
	Brokers []string
	// Keep bounds the dead letters kept (DefaultDLQKeep).
	Keep int
	// KgoOpts are appended to the client's options.
	KgoOpts []kgo.Opt
	Log     *slog.Logger

	mu      sync.Mutex
	total   int64
	reasons map[string]int64
	recent  []DeadLetterRow // ring, oldest first once full
	next    int
	// replays by DLQ position; pruned to the positions in recent when it
	// grows past twice Keep.
	replays map[string]dlq.Replay
}

// Run reads until ctx ends.
func (d *DLQReader) Run(ctx context.Context) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(d.Brokers...), kgo.ConsumeTopics(topology.TopicDLQ, topology.TopicDLQReplays),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ClientID("herald-dlq-reader")}, d.KgoOpts...)...)
	if err != nil {
		return fmt.Errorf("views: dlq reader: %w", err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			if d.Log != nil {
				d.Log.Warn("dlq reader: fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic == topology.TopicDLQReplays {
				d.addReplay(r)
				return
			}
			d.add(r)
		})
	}
}

func (d *DLQReader) keep() int {
	if d.Keep <= 0 {
		return DefaultDLQKeep
	}
	return d.Keep
}

// addReplay records a replay; a record that is not one is ignored, as
// dlq.ReadReplays does.
func (d *DLQReader) addReplay(r *kgo.Record) {
	var rp dlq.Replay
	if r.Value == nil || json.Unmarshal(r.Value, &rp) != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.replays == nil {
		d.replays = map[string]dlq.Replay{}
	}
	d.replays[string(r.Key)] = rp
	if len(d.replays) > 2*d.keep() {
		kept := make(map[string]dlq.Replay, len(d.recent))
		for _, row := range d.recent {
			if rp, ok := d.replays[row.DLQ]; ok {
				kept[row.DLQ] = rp
			}
		}
		d.replays = kept
	}
}

func (d *DLQReader) add(r *kgo.Record) {
	pos := dlq.Entry{Partition: r.Partition, Offset: r.Offset}.Pos()
	row := DeadLetterRow{DLQ: pos, Key: string(r.Key), Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, At: r.Timestamp.UTC()}
	if dl, err := dlq.Parse(r); err != nil {
		row.Reason, row.Error = "undecodable", "not a dead letter: "+err.Error()
	} else {
		row = DeadLetterRow{DLQ: pos, Key: string(dl.Key), Reason: dl.Reason, Error: contract.MaskText(dl.Error), Problems: dl.Problems,
			Topic: dl.Topic, Partition: dl.Partition, Offset: dl.Offset, At: dl.At.UTC(), ValueBytes: len(dl.Value)}
		for i := range row.Problems {
			row.Problems[i].Message = contract.MaskText(row.Problems[i].Message)
		}
	}
	keep := d.keep()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.reasons == nil {
		d.reasons = map[string]int64{}
	}
	d.total++
	d.reasons[row.Reason]++
	if len(d.recent) < keep {
		d.recent = append(d.recent, row)
		return
	}
	d.recent[d.next] = row
	d.next = (d.next + 1) % keep
}

// DeadLetters implements DLQ.
func (d *DLQReader) DeadLetters(limit int) DLQResponse {
	d.mu.Lock()
	defer d.mu.Unlock()
	resp := DLQResponse{Total: d.total, Reasons: []ReasonCount{}, DeadLetters: []DeadLetterRow{}}
	for r, n := range d.reasons {
		resp.Reasons = append(resp.Reasons, ReasonCount{Reason: r, DeadLetters: n})
	}
	sort.Slice(resp.Reasons, func(i, j int) bool {
		a, b := resp.Reasons[i], resp.Reasons[j]
		return a.DeadLetters > b.DeadLetters || a.DeadLetters == b.DeadLetters && a.Reason < b.Reason
	})
	n := len(d.recent)
	for i := 0; i < n && len(resp.DeadLetters) < limit; i++ {
		// Newest first: the one before next, going back.
		row := d.recent[((d.next-1-i)%n+n)%n]
		if rp, ok := d.replays[row.DLQ]; ok {
			row.Replayed = &rp
		}
		resp.DeadLetters = append(resp.DeadLetters, row)
	}
	return resp
}

func (s *Server) dlq(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	if s.DLQ == nil {
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "no reader of herald.dlq runs in this process", nil)
		return
	}
	writeJSON(w, http.StatusOK, s.DLQ.DeadLetters(limit))
}

// Package dlq owns Herald's dead-letter topic from the Kafka side: the one
// dead-letter path of every stage (Kgo for the franz-go stages, EmitGoka
// for the dispatcher: both build the letter with contract.NewDeadLetter,
// keep the original timestamp and headers, and make the record with
// contract.DeadLetter.Record), reading dead letters back with filters, and
// replaying them into intake with a record of what was replayed
// (`herald dlq`).
//
// The record format (original key and value, reason and source in
// headers) is the contract's: contract.DeadLetter.Record and
// contract.ParseDeadLetter, documented in docs/events.md.
package dlq

import (
	"time"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
)

// Kgo is the record of topic (herald.dlq) that dead-letters r, a record a
// franz-go stage consumed and cannot use because of cause, and the letter
// itself (for logs and metrics). The letter's reason is
// contract.Reason(cause), or reason when that is not empty (a stage's own
// reasons); it keeps r's key, value, timestamp and headers.
func Kgo(topic string, r *kgo.Record, cause error, reason string, now time.Time) (*kgo.Record, contract.DeadLetter) {
	dl := contract.NewDeadLetter(contract.Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset},
		r.Key, r.Value, cause, now)
	if reason != "" {
		dl.Reason = reason
	}
	dl.Timestamp, dl.Headers = r.Timestamp, KgoToHeaders(r.Headers)
	return Record(topic, dl), dl
}

// EmitGoka emits to topic (herald.dlq) the dead letter of the record ctx
// is processing, whose value is raw and which was read at src (its
// original position, for a record moved by the dispatcher's placement),
// and returns the letter. Reason and the rest as in Kgo. A Goka emit's
// headers are a map: a repeated original header keeps its last value.
func EmitGoka(ctx goka.Context, topic string, src contract.Position, raw []byte, cause error, reason string, now time.Time) contract.DeadLetter {
	dl := contract.NewDeadLetter(src, []byte(ctx.Key()), raw, cause, now)
	if reason != "" {
		dl.Reason = reason
	}
	dl.Timestamp, dl.Headers = ctx.Timestamp(), GokaToHeaders(ctx.Headers())
	k, v, hs := dl.Record()
	headers := make(goka.Headers, len(hs))
	for _, h := range hs {
		headers[h.Key] = h.Value
	}
	ctx.Emit(goka.Stream(topic), string(k), v, goka.WithCtxEmitHeaders(headers))
	return dl
}

// Record is the franz-go record of d on topic. Its timestamp is d.At.
func Record(topic string, d contract.DeadLetter) *kgo.Record {
	key, value, hs := d.Record()
	r := &kgo.Record{Topic: topic, Key: key, Value: value, Timestamp: d.At, Headers: make([]kgo.RecordHeader, len(hs))}
	for i, h := range hs {
		r.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
	}
	return r
}

// Parse reads a dead letter from a record of the DLQ topic.
func Parse(r *kgo.Record) (contract.DeadLetter, error) {
	return contract.ParseDeadLetter(r.Key, r.Value, KgoToHeaders(r.Headers))
}

// KgoToHeaders converts franz-go headers to the contract's.
func KgoToHeaders(in []kgo.RecordHeader) []contract.Header {
	out := make([]contract.Header, len(in))
	for i, h := range in {
		out[i] = contract.Header{Key: h.Key, Value: h.Value}
	}
	return out
}

// GokaToHeaders converts Goka headers to the contract's.
func GokaToHeaders(in goka.Headers) []contract.Header {
	out := make([]contract.Header, 0, len(in))
	for k, v := range in {
		out = append(out, contract.Header{Key: k, Value: v})
	}
	return out
}

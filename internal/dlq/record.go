// Package dlq owns Herald's dead-letter topic from the Kafka side: turning
// a contract.DeadLetter into the record every stage publishes (the one
// place that does), reading dead letters back with filters, and replaying
// them into intake with a record of what was replayed (`herald dlq`).
//
// The record format (original key and value, reason and source in
// headers) is the contract's: contract.DeadLetter.Record and
// contract.ParseDeadLetter, documented in docs/events.md.
package dlq

import (
	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-dispatch/herald/contract"
)

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

// Goka is the key, value and headers for a Goka emit of d. Goka headers
// are a map: a repeated original header keeps its last value.
func Goka(d contract.DeadLetter) (key string, value []byte, headers goka.Headers) {
	k, v, hs := d.Record()
	headers = make(goka.Headers, len(hs))
	for _, h := range hs {
		headers[h.Key] = h.Value
	}
	return string(k), v, headers
}

// GokaToHeaders converts Goka headers to the contract's.
func GokaToHeaders(in goka.Headers) []contract.Header {
	out := make([]contract.Header, 0, len(in))
	for k, v := range in {
		out = append(out, contract.Header{Key: k, Value: v})
	}
	return out
}

package contract

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Dead letters (herald.dlq) follow the convention Spring Kafka users know:
// the record keeps the original key and value byte for byte, and what went
// wrong and where the record came from travel in headers. A consumer that
// only wants the payload reads the value unchanged; the original record's
// own headers are kept too, before Herald's.
const (
	// HeaderDLQPrefix starts every header Herald adds to a dead letter.
	HeaderDLQPrefix = "herald.dlq."
	// HeaderDLQReason is the short reason code (malformed, invalid,
	// key_mismatch, or a stage's own such as the sink's undecodable).
	HeaderDLQReason = HeaderDLQPrefix + "reason"
	// HeaderDLQError is the error message.
	HeaderDLQError = HeaderDLQPrefix + "error"
	// HeaderDLQProblems lists a validation error's problems as JSON,
	// [{"field":"id","message":"required"}], when there are any.
	HeaderDLQProblems = HeaderDLQPrefix + "problems"
	// HeaderDLQTopic, HeaderDLQPartition and HeaderDLQOffset are the
	// original record's position (decimal numbers).
	HeaderDLQTopic     = HeaderDLQPrefix + "topic"
	HeaderDLQPartition = HeaderDLQPrefix + "partition"
	HeaderDLQOffset    = HeaderDLQPrefix + "offset"
	// HeaderDLQTimestamp is the original record's timestamp (RFC 3339),
	// when the stage knew it.
	HeaderDLQTimestamp = HeaderDLQPrefix + "timestamp"
	// HeaderDLQAt is when the record was dead-lettered (RFC 3339).
	HeaderDLQAt = HeaderDLQPrefix + "at"
	// HeaderDLQTruncated is the original value's length (decimal) when
	// the dead letter keeps only its first MaxDeadLetterValue bytes.
	HeaderDLQTruncated = HeaderDLQPrefix + "truncated"
)

// MaxDeadLetterValue bounds the value a dead letter keeps. A record can be
// as large as its topic allows, and its dead letter adds headers, so a
// dead letter of a record at the limit would itself be refused, and the
// stage writing it would fail on it for good. Anything larger than twice
// MaxRequestBytes is refused for its size anyway; its first
// MaxDeadLetterValue bytes are kept, with the original length in
// HeaderDLQTruncated.
const MaxDeadLetterValue = 2 * MaxRequestBytes

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// DeadLetter is a record Herald could not use, as published to herald.dlq.
type DeadLetter struct {
	Reason   string
	Error    string
	Problems []FieldError
	// Topic, Partition and Offset are where the original record was.
	Topic     string
	Partition int32
	Offset    int64
	// Timestamp is the original record's timestamp; zero if unknown.
	Timestamp time.Time
	// At is when the record was dead-lettered.
	At time.Time
	// Key and Value are the original record's, byte for byte.
	Key   []byte
	Value []byte
	// Headers are the original record's headers.
	Headers []Header
	// Truncated is the original value's length when Value keeps only its
	// first MaxDeadLetterValue bytes; 0 when Value is whole.
	Truncated int
}

// NewDeadLetter builds the dead letter of a record at src that failed with
// cause: the reason is Reason(cause), and a *ValidationError's problems
// are kept. A stage with reasons of its own sets Reason after.
func NewDeadLetter(src Position, key, value []byte, cause error, now time.Time) DeadLetter {
	dl := DeadLetter{
		Reason:    Reason(cause),
		Error:     cause.Error(),
		Topic:     src.Topic,
		Partition: src.Partition,
		Offset:    src.Offset,
		Key:       key,
		Value:     value,
		At:        now.UTC(),
	}
	var ve *ValidationError
	if errors.As(cause, &ve) {
		dl.Problems = ve.Problems
	}
	if len(value) > MaxDeadLetterValue {
		dl.Value, dl.Truncated = value[:MaxDeadLetterValue], len(value)
	}
	return dl
}

// Record returns the key, value and headers of the dead letter's record on
// herald.dlq: the original key and value, the original headers, then
// Herald's.
func (d DeadLetter) Record() (key, value []byte, headers []Header) {
	hs := make([]Header, 0, len(d.Headers)+8)
	for _, h := range d.Headers {
		if !strings.HasPrefix(h.Key, HeaderDLQPrefix) { // a dead letter's dead letter: the newest wins
			hs = append(hs, h)
		}
	}
	add := func(k, v string) { hs = append(hs, Header{Key: k, Value: []byte(v)}) }
	add(HeaderDLQReason, d.Reason)
	add(HeaderDLQError, d.Error)
	if len(d.Problems) > 0 {
		b, err := json.Marshal(d.Problems)
		if err == nil {
			hs = append(hs, Header{Key: HeaderDLQProblems, Value: b})
		}
	}
	add(HeaderDLQTopic, d.Topic)
	add(HeaderDLQPartition, strconv.FormatInt(int64(d.Partition), 10))
	add(HeaderDLQOffset, strconv.FormatInt(d.Offset, 10))
	if !d.Timestamp.IsZero() {
		add(HeaderDLQTimestamp, d.Timestamp.UTC().Format(time.RFC3339Nano))
	}
	add(HeaderDLQAt, d.At.UTC().Format(time.RFC3339Nano))
	if d.Truncated > 0 {
		add(HeaderDLQTruncated, strconv.Itoa(d.Truncated))
	}
	return d.Key, d.Value, hs
}

// ErrNotDeadLetter is returned by ParseDeadLetter for a record without
// Herald's dead-letter headers.
var ErrNotDeadLetter = errors.New("not a dead letter: no " + HeaderDLQReason + " header")

// ParseDeadLetter reads a record of herald.dlq back.
func ParseDeadLetter(key, value []byte, headers []Header) (DeadLetter, error) {
	d := DeadLetter{Key: key, Value: value}
	var haveReason bool
	for _, h := range headers {
		v := string(h.Value)
		var err error
		switch h.Key {
		case HeaderDLQReason:
			d.Reason, haveReason = v, true
		case HeaderDLQError:
			d.Error = v
		case HeaderDLQProblems:
			err = json.Unmarshal(h.Value, &d.Problems)
		case HeaderDLQTopic:
			d.Topic = v
		case HeaderDLQPartition:
			var p int64
			p, err = strconv.ParseInt(v, 10, 32)
			d.Partition = int32(p)
		case HeaderDLQOffset:
			d.Offset, err = strconv.ParseInt(v, 10, 64)
		case HeaderDLQTimestamp:
			d.Timestamp, err = time.Parse(time.RFC3339Nano, v)
		case HeaderDLQAt:
			d.At, err = time.Parse(time.RFC3339Nano, v)
		case HeaderDLQTruncated:
			d.Truncated, err = strconv.Atoi(v)
		default:
			if !strings.HasPrefix(h.Key, HeaderDLQPrefix) {
				d.Headers = append(d.Headers, h)
			}
		}
		if err != nil {
			return DeadLetter{}, fmt.Errorf("dead letter: header %s %q: %w", h.Key, truncate(v, 64), err)
		}
	}
	if !haveReason {
		return DeadLetter{}, ErrNotDeadLetter
	}
	return d, nil
}

package contract

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/herald-dispatch/herald/contract/internal/pb"
)

// The records as the encoders wrote them before recordwire.go: a pb
// message through protobuf's marshaller, deterministic.
func commandProtoBytes(c *SendCommand) ([]byte, error) { return marshal(commandPB(c)) }
func resultProtoBytes(r *SendResult) ([]byte, error)   { return marshal(resultPB(r)) }
func wakeupProtoBytes(w *Wakeup) ([]byte, error)       { return marshal(wakeupPB(w)) }

// The decoders as they read records before recordwire.go: protobuf's
// decoder and the conversions of wire.go, then the same checks.
func decodeCommandPB(key, value []byte) (*SendCommand, error) {
	c, err := decodeTyped(value, nil, fromCommandPB)
	return checkCommand(key, c, err)
}

func decodeResultPB(key, value []byte) (*SendResult, error) {
	r, err := decodeTyped(value, nil, fromResultPB)
	return checkResult(key, r, err)
}

func decodeWakeupPB(key, value []byte) (*Wakeup, error) {
	w, err := decodeTyped(value, nil, fromWakeupPB)
	return checkWakeup(key, w, err)
}

// trickyRecords are records whose encoding has something to get wrong:
// zero and negative numbers, times before the epoch, at it and with
// offsets, values the enums lack, lengths that take two and three bytes,
// an idempotency key that is and is not the id, and nothing at all.
func trickyRecords() ([]*SendCommand, []*SendResult, []*Wakeup) {
	cmd, res, w := benchRecords()
	zone := time.FixedZone("CET", 3600)
	west := time.FixedZone("", -(3*3600 + 1800))
	neg := time.Date(1960, 5, 1, 0, 0, 0, 999, west)
	epoch := time.Unix(0, 0).UTC()
	first := time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)
	far := time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", 14*3600))
	big := json.RawMessage(`"` + strings.Repeat("é", 9000) + `"`)
	cmds := []*SendCommand{cmd, {},
		{ID: "é-1", Campaign: "c", Channel: "fax", Attempt: -1, Issue: -2, CallTimeout: -1, Content: json.RawMessage{},
			IdempotencyKey: "other", RequestedAt: neg, IssuedAt: epoch, Deadline: first, Cutoff: far},
		{ID: "x", Channel: ChannelPush, Attempt: 1 << 40, Address: strings.Repeat("a", 200), Content: big,
			IdempotencyKey: "x", RequestedAt: time.Date(2026, 3, 29, 1, 30, 0, 5, zone), Issue: 3},
		{IdempotencyKey: "only the key", Channel: ChannelSMS, Content: json.RawMessage(`{}`)},
	}
	ress := []*SendResult{res, {},
		{ID: "x", Attempt: -3, Issue: 1 << 33, Channel: "webpush", Outcome: "bounced", Error: strings.Repeat("ü", 300),
			Code: -1, RetryAfter: -1, At: neg, Latency: Duration(1 << 62), Provider: "tmpl:acme", ProviderMessageID: "m-1"},
		{ID: "y", Channel: ChannelSMS, Outcome: OutcomeRetry, At: epoch},
		{ID: "z", Outcome: OutcomeNotAttempted, At: far},
	}
	ws := []*Wakeup{w, {},
		{ID: "x", Kind: WakeupRetire, Due: time.Unix(5, 0).UTC(), SeenVersion: 1<<63 + 1},
		{ID: "y", Kind: "digest", Due: neg, Attempt: -1, Issue: -1},
		{ID: "z", Kind: WakeupResend, Due: first, Attempt: 2, Issue: 3},
	}
	return cmds, ress, ws
}

// The encoders write the bytes protobuf's marshaller wrote, so every
// reader (this release's decoders and the earlier ones) reads them alike,
// and the decoders read them back on their own path as protobuf's decoder
// does.
func TestAppendRecordsMatchProtobuf(t *testing.T) {
	t.Parallel()
	cmds, ress, ws := trickyRecords()
	check := func(what string, got, want []byte, gerr, werr error, scanned, viaPB any, ok bool) {
		t.Helper()
		if gerr != nil || werr != nil {
			t.Fatalf("%s: encoder %v, protobuf %v", what, gerr, werr)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: encoder\n%x\nprotobuf\n%x", what, got, want)
		}
		if !ok || !reflect.DeepEqual(scanned, viaPB) {
			t.Errorf("%s: scanned %+v, %v; protobuf's decoder %+v", what, scanned, ok, viaPB)
		}
	}
	for _, c := range cmds {
		got, gerr := EncodeCommand(c)
		want, werr := commandProtoBytes(c)
		scanned, ok := scanCommand(bytes.Clone(got[1:]))
		viaPB, err := decodeTyped(got, nil, fromCommandPB)
		if err != nil {
			t.Fatal(err)
		}
		check("command "+c.ID, got, want, gerr, werr, scanned, viaPB, ok)
		// Nothing of the command is the record's bytes (a consumer may
		// reuse them).
		b := bytes.Clone(got[1:])
		scanned, _ = scanCommand(b)
		clear(b)
		if !reflect.DeepEqual(scanned, viaPB) {
			t.Errorf("command %s: changed with the bytes it was read from: %+v", c.ID, scanned)
		}
	}
	for _, r := range ress {
		got, gerr := EncodeResult(r)
		want, werr := resultProtoBytes(r)
		scanned, ok := scanResult(got[1:])
		viaPB, err := decodeTyped(got, nil, fromResultPB)
		if err != nil {
			t.Fatal(err)
		}
		check("result "+r.ID, got, want, gerr, werr, scanned, viaPB, ok)
	}
	for _, w := range ws {
		got, gerr := EncodeWakeup(w)
		want, werr := wakeupProtoBytes(w)
		scanned, ok := scanWakeup(got[1:])
		viaPB, err := decodeTyped(got, nil, fromWakeupPB)
		if err != nil {
			t.Fatal(err)
		}
		check("wake-up "+w.ID, got, want, gerr, werr, scanned, viaPB, ok)
	}
	// What protobuf refuses (a string that is not UTF-8, an enum's name
	// included), the encoders refuse.
	refused := map[string][2]error{}
	for name, c := range map[string]*SendCommand{"id": {ID: "bad\xff"}, "channel": {ID: "x", Channel: "\xfe"},
		"key": {IdempotencyKey: "\xc3"}} {
		_, werr := commandProtoBytes(c)
		_, gerr := EncodeCommand(c)
		refused["command "+name] = [2]error{werr, gerr}
	}
	for name, r := range map[string]*SendResult{"error": {Error: "\xff"}, "outcome": {Outcome: "\xfe"},
		"provider message": {ProviderMessageID: "a\x80"}} {
		_, werr := resultProtoBytes(r)
		_, gerr := EncodeResult(r)
		refused["result "+name] = [2]error{werr, gerr}
	}
	for name, w := range map[string]*Wakeup{"id": {ID: "\xff"}, "kind": {Kind: "\xfe"}} {
		_, werr := wakeupProtoBytes(w)
		_, gerr := EncodeWakeup(w)
		refused["wake-up "+name] = [2]error{werr, gerr}
	}
	for name, errs := range refused {
		if errs[0] == nil {
			t.Fatalf("%s: protobuf takes it", name)
		}
		if errs[1] == nil {
			t.Errorf("%s: encoded, want an error", name)
		}
	}
}

// A command whose idempotency key is its id shares the id's string (one
// copy fewer), and one with another key gets its own. The values are
// what protobuf's decoder gives either way (TestAppendRecordsMatchProtobuf).
func TestScanCommandSharesTheKey(t *testing.T) {
	t.Parallel()
	cmds, _, _ := trickyRecords()
	for _, cmd := range []*SendCommand{cmds[0], cmds[2]} {
		c, ok := scanCommand(mustEncode(EncodeCommand(cmd))[1:])
		if !ok || c.IdempotencyKey != cmd.IdempotencyKey || c.ID != cmd.ID {
			t.Fatalf("scanCommand = %+v, %v", c, ok)
		}
		shared := unsafe.StringData(c.IdempotencyKey) == unsafe.StringData(c.ID)
		if shared != (cmd.IdempotencyKey == cmd.ID) {
			t.Errorf("key %q, id %q: shared %v", c.IdempotencyKey, c.ID, shared)
		}
	}
}

// FuzzDecodeRecords feeds any key and bytes to the decoders of the send
// command, the send result and the wake-up, and compares each with the
// protobuf path it replaced (decodeTyped without a scanner, then the same
// checks): the same value (reflect.DeepEqual) or the same error, on every
// input. A value that decodes re-encodes to protobuf's bytes. Seeds: the
// tricky records in both encodings, and records the scanners leave to
// protobuf (an unknown field, a field twice, a wrong wire type, a number
// the enum lacks, a string that is not UTF-8, a truncated one).
//
//	go test ./contract/ -run '^$' -fuzz FuzzDecodeRecords -fuzztime 60s
func FuzzDecodeRecords(f *testing.F) {
	cmds, ress, ws := trickyRecords()
	key := []byte(cmds[0].ID)
	var seeds [][]byte
	add := func(v any, b []byte, err error) {
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b, b[:len(b)/2])
		if j, err := json.Marshal(v); err == nil { // not a command with empty content
			seeds = append(seeds, j)
		}
	}
	for _, c := range cmds {
		b, err := EncodeCommand(c)
		add(c, b, err)
	}
	for _, r := range ress {
		b, err := EncodeResult(r)
		add(r, b, err)
	}
	for _, w := range ws {
		b, err := EncodeWakeup(w)
		add(w, b, err)
	}
	bin := mustEncode(EncodeCommand(cmds[0]))
	field := func(num protowire.Number, typ protowire.Type, v []byte) []byte {
		return append(protowire.AppendTag(append([]byte(nil), bin...), num, typ), v...)
	}
	seeds = append(seeds,
		field(15, protowire.VarintType, []byte{1}),                                // unknown field
		field(1, protowire.BytesType, []byte{1, 'y'}),                             // id twice
		field(4, protowire.BytesType, []byte{0}),                                  // attempt of the wrong type
		field(3, protowire.VarintType, []byte{9}),                                 // a channel no release writes
		field(5, protowire.BytesType, []byte{1, 0xff}),                            // an address not in UTF-8
		field(8, protowire.BytesType, []byte{2, 0x28, 1}),                         // an unknown field in a Time
		field(6, protowire.BytesType, []byte{0}),                                  // content twice, empty
		append(append([]byte{FormatProto}, bin[1:]...), bin[1:]...),               // everything twice
		append(mustEncode(EncodeCommand(&SendCommand{ID: string(key)})), 0x32, 0), // content present and empty
		append(mustEncode(EncodeCommand(&SendCommand{ID: string(key)})), 0x18, 9), // a channel no release writes, once
		append(mustEncode(EncodeResult(&SendResult{ID: string(key)})), 0x28, 8),   // an outcome no release writes
		append(mustEncode(EncodeWakeup(&Wakeup{ID: string(key)})), 0x10, 0x7f),    // a kind no release writes
		mustEncode(EncodeWakeup(&Wakeup{ID: string(key), Kind: "digest"})),        // a kind by its name
		mustEncode(EncodeResult(&SendResult{ID: string(key), Outcome: "new"})),    // an outcome by its name
		[]byte{FormatProto}, []byte(" {}"), []byte("{"), nil,
	)
	for _, s := range seeds {
		f.Add(key, s)
	}
	f.Fuzz(func(t *testing.T, key, value []byte) {
		if len(key) == 0 {
			key = nil
		}
		same := func(what string, got, want any, gerr, werr error) {
			t.Helper()
			if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() || !reflect.DeepEqual(got, want) {
				t.Fatalf("%s = %+v, %v; through protobuf's decoder %+v, %v", what, got, gerr, want, werr)
			}
		}
		c, err := DecodeCommand(key, value)
		pc, perr := decodeCommandPB(key, value)
		same("DecodeCommand", c, pc, err, perr)
		r, err := DecodeResult(key, value)
		pr, perr := decodeResultPB(key, value)
		same("DecodeResult", r, pr, err, perr)
		w, err := DecodeWakeup(key, value)
		pw, perr := decodeWakeupPB(key, value)
		same("DecodeWakeup", w, pw, err, perr)

		// Before the checks (which hide much), and re-encoded.
		c, err = decodeTyped(value, scanCommand, fromCommandPB)
		pc, perr = decodeTyped(value, nil, fromCommandPB)
		same("command", c, pc, err, perr)
		if err == nil {
			b, err := EncodeCommand(c)
			want, werr := commandProtoBytes(c)
			same("EncodeCommand", b, want, err, werr)
		}
		r, err = decodeTyped(value, scanResult, fromResultPB)
		pr, perr = decodeTyped(value, nil, fromResultPB)
		same("result", r, pr, err, perr)
		if err == nil {
			b, err := EncodeResult(r)
			want, werr := resultProtoBytes(r)
			same("EncodeResult", b, want, err, werr)
		}
		w, err = decodeTyped(value, scanWakeup, fromWakeupPB)
		pw, perr = decodeTyped(value, nil, fromWakeupPB)
		same("wake-up", w, pw, err, perr)
		if err == nil {
			b, err := EncodeWakeup(w)
			want, werr := wakeupProtoBytes(w)
			same("EncodeWakeup", b, want, err, werr)
		}
	})
}

// The scanners leave to protobuf what they do not read themselves, and
// protobuf's decoder, as before, drops an unknown field (a newer
// release's) and keeps the last of a field written twice.
func TestRecordsOddFieldsAsProtobuf(t *testing.T) {
	t.Parallel()
	cmd, res, _ := benchRecords()
	key := []byte(cmd.ID)
	b := mustEncode(EncodeCommand(cmd))
	unknown := protowire.AppendVarint(protowire.AppendTag(append([]byte(nil), b...), 99, protowire.VarintType), 1)
	if _, ok := scanCommand(unknown[1:]); ok {
		t.Error("scanCommand read an unknown field")
	}
	if got, err := DecodeCommand(key, unknown); err != nil || !reflect.DeepEqual(got, cmd) {
		t.Errorf("a command with an unknown field: %+v, %v", got, err)
	}
	rb := mustEncode(EncodeResult(res))
	twice := protowire.AppendVarint(protowire.AppendTag(append([]byte(nil), rb...), 7, protowire.VarintType), 429)
	want := *res
	want.Code = 429
	if got, err := DecodeResult(key, twice); err != nil || !reflect.DeepEqual(got, &want) {
		t.Errorf("a result with its code twice: %+v, %v", got, err)
	}
	var m pb.SendResult
	if err := proto.Unmarshal(twice[1:], &m); err != nil || m.Code != 429 {
		t.Fatalf("protobuf: code %d, %v", m.Code, err)
	}
}

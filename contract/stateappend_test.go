package contract

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/herald-dispatch/herald/contract/internal/pb"
)

// protoBytes is how EncodeState wrote s before appendState: a pb.State
// through protobuf's marshaller, deterministic, with the applied
// positions sorted by topic as appendState writes them.
func protoBytes(tb testing.TB, s *State) ([]byte, error) {
	tb.Helper()
	m, err := statePB(s)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(m.Applied, func(a, b *pb.Position) int { return strings.Compare(a.Topic, b.Topic) })
	return marshal(m)
}

// appendState writes the bytes protobuf's marshaller wrote, so every
// reader (this release's decoders and the earlier ones) reads them alike.
func TestAppendStateMatchesProtobuf(t *testing.T) {
	t.Parallel()
	zone := time.FixedZone("", -(3*3600 + 1800))
	neg := time.Date(1960, 5, 1, 0, 0, 0, 999, zone)
	epoch := time.Unix(0, 0).UTC()
	var zero time.Time
	big := benchState(t)
	big.Request.Content = json.RawMessage(`"` + strings.Repeat("é", 9000) + `"`) // lengths of 2 and 3 bytes
	big.History = append(big.History, Attempt{Attempt: 3, Channel: Channel("fax"), Outcome: Outcome("odd"), Late: true, Double: true,
		Provider: "p", ProviderMessageID: "m-1", Issue: 2, Code: -1, At: neg})
	odd := &State{ID: "odd", Status: Status("future"), HoldReason: HoldReason("later"), Channel: Channel("pigeon"),
		Attempts: -1, Issue: -2, ChannelIndex: 1, ChannelAttempts: 2, Duplicates: 3, Commands: 4, Unknowns: 5, DoubleDeliveries: 6,
		NextAttemptAt: &neg, TimeoutAt: &epoch, SentAt: &zero, IssuedAt: &neg, Cutoff: &epoch, FirstSeen: neg, UpdatedAt: epoch,
		Version: 1<<63 + 1, LastEmitted: true, Remembered: true,
		Applied:    map[string]Position{"b": {Topic: "b", Partition: -1, Offset: -5}, "a": {Topic: "a"}, "": {}},
		LastSource: Position{Partition: 1},
		Moved:      map[string]int64{"z": 0, "": -1, "herald.requests/3": 7},
		Request: &Request{Channels: []Channel{"", ChannelSMS}, Blackout: []Window{{From: -1, To: 0}, {}},
			Policy:    Policy{Backoff: Backoff{Multiplier: -0.0000001}},
			Recipient: Recipient{TZ: "Europe/Paris"}, NotBefore: &zero, Content: json.RawMessage{}}}
	for _, s := range append(trickyStates(t), big, odd, &State{}) {
		want, werr := protoBytes(t, s)
		got, gerr := appendState([]byte{FormatProto}, s)
		if werr != nil || gerr != nil {
			t.Fatalf("%q: protobuf %v, appendState %v", s.ID, werr, gerr)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%q: appendState\n%x\nprotobuf\n%x", s.ID, got, want)
		}
		enc, err := EncodeState(s)
		if err != nil || !bytes.Equal(enc, want) {
			t.Errorf("%q: EncodeState %x, %v", s.ID, enc, err)
		}
		// And DecodeState reads them back on its own path, as protobuf's
		// decoder does.
		scanned, ok := scanState(enc[1:])
		viaPB, err := decodeStatePB(enc)
		if !ok || err != nil || !reflect.DeepEqual(scanned, viaPB) {
			t.Errorf("%q: scanState %+v, %v; protobuf's decoder %+v, %v", s.ID, scanned, ok, viaPB, err)
		}
	}
	// A request whose content is present but empty (no encoder writes it):
	// both decoders read it the same way.
	var raw []byte
	raw = protowire.AppendTag(raw, 27, protowire.BytesType)
	raw = protowire.AppendBytes(raw, protowire.AppendBytes(protowire.AppendTag(nil, 6, protowire.BytesType), nil))
	scanned, ok := scanState(raw)
	viaPB, err := decodeStatePB(append([]byte{FormatProto}, raw...))
	if !ok || err != nil || !reflect.DeepEqual(scanned, viaPB) {
		t.Errorf("empty content: scanState %#v, %v; protobuf's decoder %#v, %v", scanned.Request, ok, viaPB.Request, err)
	}
	// What protobuf refuses, EncodeState refuses.
	for _, s := range []*State{{ID: "bad\xff"}, {ID: "x", Request: &Request{Channels: []Channel{"\xfe"}}},
		{ID: "x", Applied: map[string]Position{"a": {Topic: "b"}}}} {
		if _, err := protoBytes(t, s); err == nil {
			t.Fatalf("%+v: protobuf takes it", s)
		}
		if b, err := EncodeState(s); err == nil {
			t.Errorf("%+v: EncodeState = %x, want an error", s, b)
		}
	}
}

// subTime reads a Time message as protobuf's decoder and fromTimePB do,
// the odd ones (a field twice, an unknown field) through protobuf itself.
func TestSubTimeMatchesProtobuf(t *testing.T) {
	t.Parallel()
	enc := func(m *pb.Time) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := [][]byte{
		{}, // present, all zero
		enc(&pb.Time{Seconds: 1767171600, Nanos: 5}),
		enc(&pb.Time{Seconds: -300000000, Nanos: 999999999, Offset: -(3*3600 + 1800)}),
		enc(&pb.Time{Offset: 14 * 3600}),
		append(enc(&pb.Time{Seconds: 1}), enc(&pb.Time{Seconds: 2})...),                                    // seconds twice: the last wins
		protowire.AppendVarint(protowire.AppendTag(enc(&pb.Time{Seconds: 7}), 9, protowire.VarintType), 1), // unknown field 9
	}
	for _, b := range cases {
		got, err := subTime(b, nil)
		var m pb.Time
		if perr := proto.Unmarshal(b, &m); perr != nil || err != nil {
			t.Fatalf("%x: protobuf %v, subTime %v", b, perr, err)
		}
		if want := fromTimePB(&m); got == nil || !got.Equal(want) || got.Location().String() != want.Location().String() {
			t.Errorf("%x: subTime %v, protobuf %v", b, got, want)
		}
		_, off := got.Zone()
		if _, wantOff := fromTimePB(&m).Zone(); off != wantOff {
			t.Errorf("%x: offset %d, want %d", b, off, wantOff)
		}
	}
	if _, err := subTime([]byte{0x08}, nil); err == nil {
		t.Error("a truncated Time: no error")
	}
}

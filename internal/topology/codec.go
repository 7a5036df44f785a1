package topology

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/herald-dispatch/herald/contract"
)

// StateCodec is the Goka codec of the dispatcher table: a contract.State as
// JSON (the format docs/events.md documents for the changelog).
type StateCodec struct{}

// Encode writes a *contract.State. It does not escape HTML characters (<,
// >, &): the state is no web page, and escaping would let a request of
// contract.MaxRequestBytes grow six-fold past the changelog's limit.
func (StateCodec) Encode(value any) ([]byte, error) {
	s, ok := value.(*contract.State)
	if !ok {
		return nil, fmt.Errorf("topology: state codec: want *contract.State, got %T", value)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("topology: state codec: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Decode reads a *contract.State.
func (StateCodec) Decode(data []byte) (any, error) {
	var s contract.State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("topology: state codec: %w", err)
	}
	return &s, nil
}

// DecodeState reads a changelog value. It is the same as StateCodec.Decode,
// typed.
func DecodeState(data []byte) (*contract.State, error) {
	var s contract.State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("topology: decode state: %w", err)
	}
	return &s, nil
}

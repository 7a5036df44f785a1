package topology

import (
	"encoding/json"
	"fmt"

	"github.com/herald-dispatch/herald/contract"
)

// StateCodec is the Goka codec of the dispatcher table: a contract.State as
// JSON (the format docs/events.md documents for the changelog).
type StateCodec struct{}

// Encode writes a *contract.State.
func (StateCodec) Encode(value any) ([]byte, error) {
	s, ok := value.(*contract.State)
	if !ok {
		return nil, fmt.Errorf("topology: state codec: want *contract.State, got %T", value)
	}
	return json.Marshal(s)
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

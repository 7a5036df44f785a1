package contract

import (
	"errors"
	"strings"
	"testing"
)

func TestKeyProblem(t *testing.T) {
	t.Parallel()
	if p := KeyProblem([]byte("a"), "a"); p != nil {
		t.Fatalf("same key and id: %v", p)
	}
	p := KeyProblem([]byte(strings.Repeat("k", 100)), "a")
	if p == nil || p.Field != "key" || len(p.Message) > 120 {
		t.Fatalf("problem %+v, want a key problem with the key truncated", p)
	}
	if err := error(&ValidationError{Problems: []FieldError{*p}}); !errors.Is(err, ErrKeyMismatch) || Reason(err) != ReasonKeyMismatch {
		t.Fatalf("%v is not a key mismatch", err)
	}
}

package redact

import "testing"

func TestAddress(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"jane.doe@example.com", "j***@example.com"},
		{"j@example.com", "j***@example.com"},
		{"@example.com", "***@example.com"},
		{"+821012345678", "+82********78"},
		{"+82 10-1234-5678", "+82********78"},
		{"010-1234-5678", "*********78"},
		{"123", "***"},
		{"+1234", "****"},
		{"fcm:abcdef0123456789", "fcm:***"},
		{"abcdef0123456789xyz", "abcd***"},
		{"short", "***"},
	}
	for _, c := range cases {
		if got := Address(c.in); got != c.want {
			t.Errorf("Address(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestAddressNeverLeaks(t *testing.T) {
	for _, in := range []string{"jane.doe@example.com", "+821012345678", "abcdef0123456789xyz", "short"} {
		if got := Address(in); got == in {
			t.Errorf("Address(%q) returned its input", in)
		}
	}
}

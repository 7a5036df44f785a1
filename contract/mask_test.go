package contract

import "testing"

func TestMaskAddress(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                 "",
		"jane@example.com": "j***@example.com",
		"@example.com":     "***@example.com",
		"+821012345678":    "+82********78",
		"abcd":             "****",
		"tok-0123456789ab": "tok-********89ab",
		"abcdefg":          "a****fg",
	} {
		if got := MaskAddress(in); got != want {
			t.Errorf("MaskAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMaskText(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                    "",
		"timeout":                             "timeout",
		"550 <jane.doe@example.com>: no such": "550 <j***@example.com>: no such",
		"to jane@example.com.":                "to j***@example.com.",
		"sms to +821012345678: rejected":      "sms to +82********78: rejected",
		"+1 555 and a+b":                      "+1 555 and a+b",
		"already masked j***@example.com":     "already masked j***@example.com",
		"@ alone and x@":                      "@ alone and x@",
	} {
		if got := MaskText(in); got != want {
			t.Errorf("MaskText(%q) = %q, want %q", in, got, want)
		}
	}
}

// A recipient's own addresses are masked wherever they appear, even where
// they do not look like an address on their own (a push token).
func TestTextMasker(t *testing.T) {
	t.Parallel()
	r := Recipient{Email: "jane@example.com", PushToken: "tok-0123456789ab"}
	got := r.TextMasker()("push to tok-0123456789ab failed; mail jane@example.com, cc bob@example.org")
	want := "push to tok-********89ab failed; mail j***@example.com, cc b***@example.org"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := (Recipient{}).TextMasker()("plain"); got != "plain" {
		t.Errorf("no addresses: %q", got)
	}
}

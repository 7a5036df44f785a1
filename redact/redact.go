// Package redact masks personal data before it reaches a log line, a metric
// label or an error message that leaves Herald. Only the parts a person
// needs to tell two recipients apart survive: the first letter and the
// domain of an email address, the country prefix and the last two digits
// of a phone number, the first characters of a push token.
package redact

import "strings"

// Address masks a recipient address of any channel:
//
//	jane.doe@example.com -> j***@example.com
//	+821012345678        -> +82********78
//	fcm:abcdef0123456789 -> fcm:***
//
// It never returns its input unchanged, except for the empty string.
func Address(addr string) string {
	switch {
	case addr == "":
		return ""
	case strings.Contains(addr, "@"):
		return Email(addr)
	case looksLikePhone(addr):
		return Phone(addr)
	}
	return Token(addr)
}

// Email masks the local part of an email address, keeping its first
// character and the domain: jane.doe@example.com -> j***@example.com.
func Email(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return Token(addr)
	}
	local, domain := addr[:at], addr[at+1:]
	if local == "" {
		return "***@" + domain
	}
	r := []rune(local)
	return string(r[0]) + "***@" + domain
}

// Phone masks a phone number, keeping a leading '+' with the next two
// digits and the last two digits; each masked digit becomes '*':
// +821012345678 -> +82********78. Separators are dropped, and a number too
// short to keep anything is masked whole.
func Phone(addr string) string {
	var digits []byte
	plus := strings.HasPrefix(strings.TrimSpace(addr), "+")
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c >= '0' && c <= '9' {
			digits = append(digits, c)
		}
	}
	head := 0
	if plus {
		head = 2
	}
	if len(digits) < head+6 {
		// Too short to keep anything and still hide most of it.
		return strings.Repeat("*", len(digits))
	}
	var b strings.Builder
	if plus {
		b.WriteByte('+')
	}
	b.Write(digits[:head])
	b.WriteString(strings.Repeat("*", len(digits)-head-2))
	b.Write(digits[len(digits)-2:])
	return b.String()
}

// Token masks an opaque address such as a push token, keeping a scheme
// prefix ("fcm:", "apns:") if there is one and at most its first four
// characters otherwise: abcdef0123456789 -> abcd***.
func Token(addr string) string {
	if i := strings.IndexByte(addr, ':'); i > 0 && i < 10 {
		return addr[:i+1] + "***"
	}
	r := []rune(addr)
	if len(r) <= 8 {
		return "***"
	}
	return string(r[:4]) + "***"
}

func looksLikePhone(s string) bool {
	digits := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '+' || c == ' ' || c == '-' || c == '(' || c == ')' || c == '.':
		default:
			return false
		}
	}
	return digits >= 3
}

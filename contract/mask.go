package contract

import "strings"

// MaskAddress hides most of a recipient's address for logs and API
// responses: "jane@example.com" -> "j***@example.com", "+821012345678" ->
// "+82******78", a push token keeps its first and last four characters.
func MaskAddress(addr string) string {
	if addr == "" {
		return ""
	}
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		if at == 0 {
			return "***" + addr[at:]
		}
		return addr[:1] + "***" + addr[at:]
	}
	r := []rune(addr)
	switch {
	case len(r) <= 4:
		return strings.Repeat("*", len(r))
	case strings.HasPrefix(addr, "+") && len(r) > 6:
		return string(r[:3]) + strings.Repeat("*", len(r)-5) + string(r[len(r)-2:])
	case len(r) > 12:
		return string(r[:4]) + strings.Repeat("*", len(r)-8) + string(r[len(r)-4:])
	}
	return string(r[:1]) + strings.Repeat("*", len(r)-3) + string(r[len(r)-2:])
}

// Masked returns a copy of r with every address masked.
func (r Recipient) Masked() Recipient {
	r.Email = MaskAddress(r.Email)
	r.Phone = MaskAddress(r.Phone)
	r.PushToken = MaskAddress(r.PushToken)
	return r
}

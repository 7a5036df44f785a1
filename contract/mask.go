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

// TextMasker returns a function that masks the addresses in free text
// about r, such as a provider's error (an SMTP 550 often quotes the
// mailbox): r's own addresses are replaced exactly, then MaskText masks
// whatever else looks like one.
func (r Recipient) TextMasker() func(string) string {
	var pairs []string
	for _, a := range []string{r.Email, r.Phone, r.PushToken} {
		if a != "" {
			pairs = append(pairs, a, MaskAddress(a))
		}
	}
	known := strings.NewReplacer(pairs...)
	return func(s string) string { return MaskText(known.Replace(s)) }
}

// MaskText masks what looks like an address inside free text, such as a
// provider's error message: a word with an '@' in it, or a '+' followed by
// seven or more digits. It is the fallback for text that may quote an
// address Herald does not know (a forwarding address, a campaign-wide
// failure reason); known addresses are replaced exactly first
// (Recipient.TextMasker).
func MaskText(s string) string {
	if !strings.ContainsAny(s, "@+") {
		return s
	}
	isSep := func(r rune) bool { return strings.ContainsRune(" \t\n<>()[]{},;\"'", r) }
	var b strings.Builder
	for len(s) > 0 {
		i := strings.IndexFunc(s, func(r rune) bool { return !isSep(r) })
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		s = s[i:]
		j := strings.IndexFunc(s, isSep)
		if j < 0 {
			j = len(s)
		}
		word := s[:j]
		s = s[j:]
		if looksLikeAddress(word) {
			// A trailing ':' or '.' is punctuation, not the address.
			core := strings.TrimRight(word, ":.")
			word = MaskAddress(core) + word[len(core):]
		}
		b.WriteString(word)
	}
	return b.String()
}

func looksLikeAddress(w string) bool {
	w = strings.TrimRight(w, ":.")
	if at := strings.IndexByte(w, '@'); at > 0 && at < len(w)-1 && !strings.Contains(w, "***@") {
		return true
	}
	if len(w) >= 8 && w[0] == '+' {
		for _, c := range w[1:] {
			if c < '0' || c > '9' {
				return false
			}
		}
		return true
	}
	return false
}

package checkpoint

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ExcerptBytes is how much of a refused message body Excerpt keeps for
// diagnosis (Rejection.Excerpt).
const ExcerptBytes = 512

// Excerpt returns the start of a message body for a Rejection record: at most
// ExcerptBytes bytes, invalid UTF-8 replaced, and control and format
// characters escaped (\n, \t, \u0000, …) so that it cannot forge log lines or
// hide text.
func Excerpt(body []byte) string {
	cut := body
	if len(cut) > ExcerptBytes {
		cut = cut[:ExcerptBytes]
		// Cut at a rune boundary of body.
		for len(cut) > ExcerptBytes-utf8.UTFMax && !utf8.RuneStart(body[len(cut)]) {
			cut = cut[:len(cut)-1]
		}
	}
	var b strings.Builder
	s := strings.ToValidUTF8(string(cut), "\uFFFD")
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	if len(body) > len(cut) {
		b.WriteString("…")
	}
	return b.String()
}

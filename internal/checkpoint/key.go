package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxKeyLen is the longest legal PartitionKey or RowKey in UTF-16 code units
// (the service limit is 1 KiB of UTF-16).
const MaxKeyLen = 512

const upperHex = "0123456789ABCDEF"

// needsEscape reports whether a rune may not appear verbatim in a key. Besides
// the characters Table Storage forbids ('/', '\\', '#', '?', C0 and C1
// controls) it escapes '%' (the escape character), the single quote (aztables does not
// quote it inside transactions), '~' (marks hashed keys, see keyPart) and the
// noncharacters U+FFFE and U+FFFF.
func needsEscape(r rune) bool {
	switch r {
	case '%', '/', '\\', '#', '?', '\'', '~', 0xFFFE, 0xFFFF:
		return true
	}
	return r < 0x20 || (r >= 0x7F && r <= 0x9F)
}

// EscapeKey turns any string into text that is legal inside a table key:
// every byte of a forbidden character, and every byte that is not valid
// UTF-8, becomes %XX (upper-case hex); everything else is kept. It is
// reversible with UnescapeKey. The result may still be longer than
// MaxKeyLen; the stores handle that by hashing (see the package docs).
func EscapeKey(s string) string {
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || needsEscape(r) {
			n++
		}
		i += size
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || needsEscape(r) {
			for j := i; j < i+size; j++ {
				b.WriteByte('%')
				b.WriteByte(upperHex[s[j]>>4])
				b.WriteByte(upperHex[s[j]&0x0F])
			}
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// UnescapeKey reverses EscapeKey. It accepts only the exact output of
// EscapeKey (upper-case hex, nothing escaped needlessly, no raw forbidden
// characters), so the mapping is one to one.
func UnescapeKey(s string) (string, error) {
	if !strings.Contains(s, "%") {
		if EscapeKey(s) != s {
			return "", fmt.Errorf("%w: key %q holds a character that must be escaped", ErrInvalid, s)
		}
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("%w: key %q: truncated escape at byte %d", ErrInvalid, s, i)
		}
		hi, lo := unhex(s[i+1]), unhex(s[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("%w: key %q: bad escape at byte %d", ErrInvalid, s, i)
		}
		b = append(b, byte(hi<<4|lo))
		i += 2
	}
	out := string(b)
	if EscapeKey(out) != s {
		return "", fmt.Errorf("%w: key %q is not in canonical escaped form", ErrInvalid, s)
	}
	return out, nil
}

// unhex decodes one upper-case hex digit, or returns -1.
func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// utf16Len is the length of s in UTF-16 code units, the unit of the key limit.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// keyPart returns the escaped form of name for use after prefix in a key. When
// prefix+EscapeKey(name) would exceed MaxKeyLen, the escaped text is cut and
// followed by "~" and a SHA-256 of the name; '~' never occurs in EscapeKey
// output, so hashed keys cannot collide with plain ones. Rows always carry the
// original name in a property, so nothing needs to unescape keys.
func keyPart(prefix, name string) string {
	esc := EscapeKey(name)
	if utf16Len(prefix)+utf16Len(esc) <= MaxKeyLen {
		return esc
	}
	sum := sha256.Sum256([]byte(name))
	tail := "~" + hex.EncodeToString(sum[:])
	budget := MaxKeyLen - utf16Len(prefix) - len(tail)
	cut, used := 0, 0
	for cut < len(esc) {
		// Keep %XX escapes whole.
		step, w := 3, 3
		if esc[cut] != '%' {
			r, size := utf8.DecodeRuneInString(esc[cut:])
			step, w = size, 1
			if r >= 0x10000 {
				w = 2
			}
		}
		if used+w > budget {
			break
		}
		cut += step
		used += w
	}
	return esc[:cut] + tail
}

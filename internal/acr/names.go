package acr

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The names of the OCI distribution spec, checked in one place for the
// whole module: input boundaries (queue messages, events, configuration)
// use ValidateRepository and ValidateDigest, and the Client refuses a
// digest that fails ValidateDigest before it builds a URL.

// MaxRepositoryLength is the longest repository name accepted, in bytes.
// The distribution spec leaves the limit to registries; 256 is the bound
// used throughout this module.
const MaxRepositoryLength = 256

// maxDigestLength bounds a digest of an unregistered algorithm (a sha512
// digest is 135 bytes).
const maxDigestLength = 256

// ValidateRepository checks name against the distribution spec grammar:
// path components separated by "/", each [a-z0-9]+ with single ".", "_",
// "__" or one or more "-" between alphanumeric runs, at most
// MaxRepositoryLength bytes in all. The error says what is wrong and where;
// it does not repeat the name, so callers can quote it themselves.
func ValidateRepository(name string) error {
	if name == "" {
		return errors.New("empty repository name")
	}
	if len(name) > MaxRepositoryLength {
		return fmt.Errorf("repository name is %d bytes, longer than %d", len(name), MaxRepositoryLength)
	}
	if !utf8.ValidString(name) {
		return errors.New("repository name is not valid UTF-8")
	}
	if name[0] == '/' {
		return errors.New("repository name starts with '/'")
	}
	if name[len(name)-1] == '/' {
		return errors.New("repository name ends with '/'")
	}
	for i := 0; i < len(name); i++ {
		if err := repositoryByte(name[i], i); err != nil {
			return err
		}
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '/' {
			continue
		}
		if err := validateComponent(name[start:i], start); err != nil {
			return err
		}
		start = i + 1
	}
	return nil
}

// repositoryByte explains why c cannot appear in a repository name, or
// returns nil when it can.
func repositoryByte(c byte, i int) error {
	switch {
	case isLowerAlnum(c) || c == '.' || c == '_' || c == '-' || c == '/':
		return nil
	case c < 0x20 || c == 0x7f:
		return fmt.Errorf("control character 0x%02x at offset %d", c, i)
	case c >= 0x80:
		return fmt.Errorf("non-ASCII character at offset %d", i)
	case c >= 'A' && c <= 'Z':
		return fmt.Errorf("uppercase letter %q at offset %d (repository names are lowercase)", c, i)
	case c == ' ':
		return fmt.Errorf("space at offset %d", i)
	case c == '%':
		return fmt.Errorf("'%%' at offset %d (percent-encoding is not allowed)", i)
	}
	return fmt.Errorf("%q at offset %d is not allowed", c, i)
}

// validateComponent checks one path component (only bytes that
// repositoryByte allows, and no '/').
func validateComponent(c string, offset int) error {
	if c == "" {
		return fmt.Errorf("empty path component at offset %d ('//')", offset)
	}
	if c == "." || c == ".." {
		return fmt.Errorf("path component %q at offset %d", c, offset)
	}
	if !isLowerAlnum(c[0]) {
		return fmt.Errorf("path component at offset %d starts with %q, not a lowercase letter or digit", offset, c[0])
	}
	if !isLowerAlnum(c[len(c)-1]) {
		return fmt.Errorf("path component at offset %d ends with %q, not a lowercase letter or digit", offset, c[len(c)-1])
	}
	for i := 0; i < len(c); {
		j := i + separatorLen(c[i:])
		if j > i && !isLowerAlnum(c[j]) {
			return fmt.Errorf("separator %q at offset %d is not allowed", c[i:j+1], offset+i)
		}
		i = max(j, i+1)
	}
	return nil
}

// separatorLen is the length of the separator s starts with: 1 for "." or
// "_", 2 for "__", the run length for "-", 0 for an alphanumeric.
func separatorLen(s string) int {
	switch s[0] {
	case '.':
		return 1
	case '_':
		if strings.HasPrefix(s, "__") {
			return 2
		}
		return 1
	case '-':
		return len(s) - len(strings.TrimLeft(s, "-"))
	}
	return 0
}

// registeredDigests are the algorithms with a fixed encoding: lowercase
// hex of the given length.
var registeredDigests = map[string]int{"sha256": 64, "sha512": 128}

// ValidateDigest checks d against the OCI digest grammar
// algorithm ":" encoded, where algorithm is [a-z0-9]+ components joined by
// one of "+._-" and encoded is [a-zA-Z0-9=_-]+. For the registered
// algorithms the encoding is exact: sha256 is 64 and sha512 128 lowercase
// hex characters. A tag never passes, so a DELETE by digest cannot turn
// into a DELETE by tag.
func ValidateDigest(d string) error {
	if len(d) > maxDigestLength {
		return fmt.Errorf("digest is %d bytes, longer than %d", len(d), maxDigestLength)
	}
	alg, enc, ok := strings.Cut(d, ":")
	if !ok || alg == "" || enc == "" {
		return errors.New(`digest must be "algorithm:encoded"`)
	}
	if !validAlgorithm(alg) {
		return errors.New("digest algorithm must be lowercase alphanumerics joined by '+', '.', '_' or '-'")
	}
	if n, registered := registeredDigests[alg]; registered {
		if len(enc) != n || strings.Trim(enc, "0123456789abcdef") != "" {
			return fmt.Errorf("%s digest must be %d lowercase hex characters", alg, n)
		}
		return nil
	}
	if i := strings.IndexFunc(enc, notEncoded); i >= 0 {
		return fmt.Errorf("%q at offset %d of the encoded digest is not allowed", enc[i], len(alg)+1+i)
	}
	return nil
}

// notEncoded reports whether r falls outside [a-zA-Z0-9=_-].
func notEncoded(r rune) bool {
	return !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=_-", r)
}

// validAlgorithm reports whether alg is [a-z0-9]+ ([+._-] [a-z0-9]+)*.
func validAlgorithm(alg string) bool {
	prevSep := true // no separator first, none twice in a row
	for i := 0; i < len(alg); i++ {
		switch c := alg[i]; {
		case isLowerAlnum(c):
			prevSep = false
		case strings.IndexByte("+._-", c) >= 0 && !prevSep:
			prevSep = true
		default:
			return false
		}
	}
	return !prevSep // and none last
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

package queue

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxRepositoryNameLength is the longest repository name accepted.
const MaxRepositoryNameLength = 256

// ValidateRepositoryName checks name against the OCI distribution grammar:
// path components of lowercase alphanumerics separated by ".", "_", "__" or
// one or more "-", joined by "/", at most MaxRepositoryNameLength bytes. The
// returned error (nil when valid) says what is wrong; the name itself is not
// part of the message so that callers can quote it safely.
func ValidateRepositoryName(name string) error {
	if name == "" {
		return errors.New("empty repository name")
	}
	if len(name) > MaxRepositoryNameLength {
		return fmt.Errorf("repository name is %d bytes, longer than %d", len(name), MaxRepositoryNameLength)
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
		c := name[i]
		switch {
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
		case c == '?' || c == '#' || c == '\\' || c == ':' || c == '@':
			return fmt.Errorf("%q at offset %d is not allowed", c, i)
		case isAlnum(c) || c == '.' || c == '_' || c == '-' || c == '/':
		default:
			return fmt.Errorf("%q at offset %d is not allowed", c, i)
		}
	}
	// Grammar: component ('/' component)*, component = alnum+ (sep alnum+)*.
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

func validateComponent(c string, offset int) error {
	if c == "" {
		return fmt.Errorf("empty path component at offset %d ('//')", offset)
	}
	if c == "." || c == ".." {
		return fmt.Errorf("path component %q at offset %d", c, offset)
	}
	if !isAlnum(c[0]) {
		return fmt.Errorf("path component at offset %d starts with %q, not a lowercase letter or digit", offset, c[0])
	}
	if !isAlnum(c[len(c)-1]) {
		return fmt.Errorf("path component at offset %d ends with %q, not a lowercase letter or digit", offset, c[len(c)-1])
	}
	for i := 0; i < len(c); {
		if isAlnum(c[i]) {
			i++
			continue
		}
		// A separator run: '.', '_', '__' or '-'+, followed by an alphanumeric.
		j := i
		switch c[i] {
		case '.':
			j++
		case '_':
			j++
			if j < len(c) && c[j] == '_' {
				j++
			}
		case '-':
			for j < len(c) && c[j] == '-' {
				j++
			}
		}
		if j < len(c) && !isAlnum(c[j]) {
			return fmt.Errorf("separator %q at offset %d is not allowed", c[i:j+1], offset+i)
		}
		i = j
	}
	return nil
}

func isAlnum(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') }

package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dlclark/regexp2"
)

// SplitFilter splits an acr purge filter "<repoRegex>:<tagRegex>" at its one
// separating colon, exactly as acr purge does.
//
// A colon is not a separator when it belongs to regex syntax: when it closes
// a group prefix "(?" followed by up to five of the flag characters "imsU-"
// (a non-capture group such as "(?:a|b)" or "(?i:x)"), when it follows a
// '[' optionally followed by '^' characters (e.g. "[:alpha:]", "[^:x]"), or
// when the next character is ']' (e.g. the end of "[:digit:]" or "[a:]").
// Exactly one separating colon must remain and both sides must be non-empty.
// Like acr purge, a colon anywhere else (even inside a character class such as
// "[a:b]" or escaped as "\:") is a separator, so such filters are rejected as
// having two colons.
func SplitFilter(f string) (repo, tag string, err error) {
	sep := -1
	for i := 0; i < len(f); i++ {
		if f[i] != ':' || !isSeparatorColon(f, i) {
			continue
		}
		if sep >= 0 {
			return "", "", fmt.Errorf("filter %q: more than one ':' separating repository and tag; want <repoRegex>:<tagRegex>", f)
		}
		sep = i
	}
	if sep < 0 {
		return "", "", fmt.Errorf("filter %q: no ':' separating repository and tag; want <repoRegex>:<tagRegex>", f)
	}
	repo, tag = f[:sep], f[sep+1:]
	if repo == "" {
		return "", "", fmt.Errorf("filter %q: missing repository expression before ':'", f)
	}
	if tag == "" {
		return "", "", fmt.Errorf("filter %q: missing tag expression after ':'", f)
	}
	return repo, tag, nil
}

// isSeparatorColon reports whether the colon at f[i] separates repository and
// tag (see SplitFilter). All bytes inspected are ASCII, so working on bytes
// gives the same answer as working on runes.
func isSeparatorColon(f string, i int) bool {
	if i+1 < len(f) && f[i+1] == ']' {
		return false
	}
	// '[' followed by zero or more '^' right before the colon.
	k := i - 1
	for k >= 0 && f[k] == '^' {
		k--
	}
	if k >= 0 && f[k] == '[' {
		return false
	}
	// "(?" followed by zero to five flag characters right before the colon.
	for n := 0; n <= 5 && i-n-2 >= 0; n++ {
		if n > 0 && !strings.ContainsRune("imsU-", rune(f[i-n])) {
			break
		}
		if f[i-n-2] == '(' && f[i-n-1] == '?' {
			return false
		}
	}
	return true
}

// matcher is a compiled, time-bounded regular expression.
type matcher struct {
	src string
	re  *regexp2.Regexp
}

// compileRegex compiles expr with regexp2 in RE2 compatibility mode (as acr
// purge does, so its filters, lookarounds included, behave the same) and bounds
// every single match by timeout.
func compileRegex(expr string, timeout time.Duration) (m *matcher, err error) {
	defer func() {
		// regexp2 is a large parser; never let a hostile pattern take the
		// process down.
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("invalid regular expression %q: parser failure: %v", expr, r)
		}
	}()
	re, err := regexp2.Compile(expr, regexp2.RE2)
	if err != nil {
		return nil, fmt.Errorf("invalid regular expression %q: %w", expr, err)
	}
	re.MatchTimeout = timeout
	return &matcher{src: expr, re: re}, nil
}

// ErrMatchTimeout is wrapped by errors from a filter or protect pattern whose
// evaluation exceeded the policy's filterTimeout. Such an error fails the
// repository; it is never turned into a match or a non-match.
var ErrMatchTimeout = errors.New("regular expression match timed out")

// match reports whether the pattern matches s. A timeout is an error wrapping
// ErrMatchTimeout.
func (m *matcher) match(s string) (ok bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			ok, err = false, fmt.Errorf("pattern %q on %q: matcher failure: %v", m.src, s, r)
		}
	}()
	ok, err = m.re.MatchString(s)
	if err != nil {
		return false, fmt.Errorf("pattern %q on %q: %w: %w", m.src, s, ErrMatchTimeout, err)
	}
	return ok, nil
}

package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxAgo is the largest duration ParseAgo returns: 150 years of 365 days, the
// cap acr purge applies to --ago. Larger values are capped, never overflowed.
const MaxAgo = 150 * 365 * 24 * time.Hour

// ParseAgo parses acr purge's --ago format: an optional number of days
// followed by "d", then an optional Go duration ("30d", "2d3h6m", "1h",
// "0d", "1.5h"). The result is positive: how far back from now the cut-off
// lies. Values above MaxAgo (in either part, or in their sum) are capped at
// MaxAgo.
//
// acr purge: its parser is lenient in ways that can surprise, so this one is
// deliberately stricter. acr purge accepts negative values ("-1d" selects
// everything, even the future), silently reads garbage such as "xd" as 0 and
// "1h30d" as one day, and treats any malformed Go-duration tail after the
// days as an overflow and caps it to 150 years. Here all of those are errors;
// only a syntactically valid value that is too large is capped.
func ParseAgo(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("ago: empty; want [N]d[Go duration], e.g. 30d or 2d3h6m")
	}
	if len(s) > 64 {
		return 0, fmt.Errorf("ago: %d characters is too long", len(s))
	}
	days, rest, hasDays := strings.Cut(s, "d")
	if !hasDays {
		days, rest = "", s
	}
	var total time.Duration
	if hasDays {
		if days == "" || !allDigits(days) {
			return 0, fmt.Errorf("ago %q: the days before \"d\" must be a non-negative whole number", s)
		}
		n, err := strconv.ParseUint(days, 10, 64)
		if err != nil || n > uint64(MaxAgo/(24*time.Hour)) {
			return MaxAgo, nil // too many days: cap (a range error means the same)
		}
		total = time.Duration(n) * 24 * time.Hour
	}
	if rest == "" {
		return total, nil
	}
	if !validGoDuration(rest) {
		return 0, fmt.Errorf("ago %q: %q is not a non-negative Go duration such as 3h6m", s, rest)
	}
	d, err := time.ParseDuration(rest)
	if err != nil || d > MaxAgo {
		// The syntax is valid (checked above), so the only possible error
		// is an overflow of int64 nanoseconds: cap.
		return MaxAgo, nil
	}
	if total > MaxAgo-d {
		return MaxAgo, nil
	}
	return total + d, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// validGoDuration reports whether s is the unsigned syntax time.ParseDuration
// accepts: "0", or one or more decimal numbers each followed by a unit.
func validGoDuration(s string) bool {
	if s == "0" {
		return true
	}
	if s == "" {
		return false
	}
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		intDigits := i
		fracDigits := 0
		if i < len(s) && s[i] == '.' {
			i++
			for i < len(s) && s[i] >= '0' && s[i] <= '9' {
				i++
				fracDigits++
			}
		}
		if intDigits == 0 && fracDigits == 0 {
			return false
		}
		s = s[i:]
		unit := ""
		for _, u := range []string{"ns", "us", "µs", "μs", "ms", "s", "m", "h"} {
			if strings.HasPrefix(s, u) {
				unit = u
				break
			}
		}
		if unit == "" {
			return false
		}
		s = s[len(unit):]
	}
	return true
}

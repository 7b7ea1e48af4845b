package checkpoint

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscapeKey(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"", ""},
		{"team-a/api", "team-a%2Fapi"},
		{`a\b#c?d`, "a%5Cb%23c%3Fd"},
		{"100%", "100%25"},
		{"it's~", "it%27s%7E"},
		{"tab\there\x7f", "tab%09here%7F"},
		{"c1\u0085", "c1%C2%85"},
		{"nonchar\uFFFF", "nonchar%EF%BF%BF"},
		{"ünï/名", "ünï%2F名"},
		{"🐳", "🐳"},
		{"bad\xffutf8", "bad%FFutf8"},
		{"pipe|and space", "pipe|and space"},
	}
	for _, c := range cases {
		got := EscapeKey(c.in)
		if got != c.want {
			t.Errorf("EscapeKey(%q) = %q, want %q", c.in, got, c.want)
		}
		back, err := UnescapeKey(got)
		if err != nil || back != c.in {
			t.Errorf("UnescapeKey(%q) = %q, %v; want %q", got, back, err, c.in)
		}
	}
}

func TestUnescapeKeyRejectsNonCanonical(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"a/b",    // raw forbidden character
		"%2f",    // lower-case hex
		"%41",    // needless escape of 'A'
		"%2",     // truncated
		"%",      // truncated
		"%zz",    // not hex
		"it's",   // raw quote
		"a\x01b", // raw control
	} {
		if got, err := UnescapeKey(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("UnescapeKey(%q) = %q, %v; want ErrInvalid", in, got, err)
		}
	}
}

// legalKey reports why k cannot be a table key, or "".
func legalKey(k string) string {
	if !utf8.ValidString(k) {
		return "invalid UTF-8"
	}
	if n := utf16Len(k); n > MaxKeyLen {
		return "too long"
	}
	for i, r := range k {
		if r == '%' {
			if i+2 >= len(k) || unhex(k[i+1]) < 0 || unhex(k[i+2]) < 0 {
				return "bad escape"
			}
			continue
		}
		if needsEscape(r) && r != '~' { // '~' is legal; it marks hashed keys
			return "forbidden character " + string(r)
		}
	}
	return ""
}

func TestKeyPartHashesLongNames(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("ab/", 300)
	names := []string{long, long + "x", long + "y", strings.Repeat("名", 600), strings.Repeat("🐳", 300), strings.Repeat("/", 200)}
	seen := map[string]string{}
	for _, n := range names {
		for _, prefix := range []string{repoPrefix, runPrefix, invertedTicks(maxTime) + "|"} {
			k := prefix + keyPart(prefix, n)
			if why := legalKey(k); why != "" {
				t.Errorf("key for %.20q... with prefix %q is illegal: %s", n, prefix, why)
			}
			if !strings.Contains(k, "~") {
				t.Errorf("key for a long name is not hashed: %.40q", k)
			}
			if prev, ok := seen[k]; ok && prev != n {
				t.Errorf("names %.20q and %.20q share key %q", prev, n, k)
			}
			seen[k] = n
		}
	}
	if got := keyPart(repoPrefix, "short/name"); got != "short%2Fname" {
		t.Errorf("short names are only escaped, got %q", got)
	}
}

func TestInvertedTicksOrder(t *testing.T) {
	t.Parallel()
	times := []string{"9999-12-31T23:59:59.9999999Z", "2025-01-01T00:00:00.0000001Z", "2025-01-01T00:00:00Z", "1601-01-01T00:00:00Z"}
	prev := ""
	for _, s := range times {
		tm, err := normTime(mustParse(t, s), nowFunc, "t")
		if err != nil {
			t.Fatal(err)
		}
		k := invertedTicks(tm)
		if len(k) != 19 {
			t.Errorf("invertedTicks(%s) = %q, want 19 digits", s, k)
		}
		if prev != "" && k <= prev {
			t.Errorf("invertedTicks(%s) = %s does not sort after %s", s, k, prev)
		}
		prev = k
	}
}

func FuzzEscapeKey(f *testing.F) {
	for _, s := range []string{"", "a/b", "%", "%25", "~", "it's", "\x00\x1f\x7f\u0080\u009f", "\xff\xfe", "名前/🐳", "\uFFFE\uFFFF", strings.Repeat("/", 600)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := EscapeKey(s)
		if strings.Contains(e, "~") {
			t.Fatalf("EscapeKey(%q) = %q contains '~'", s, e)
		}
		if why := legalKey(e); why != "" && why != "too long" {
			t.Fatalf("EscapeKey(%q) = %q: %s", s, e, why)
		}
		back, err := UnescapeKey(e)
		if err != nil || back != s {
			t.Fatalf("UnescapeKey(EscapeKey(%q)) = %q, %v", s, back, err)
		}
		// Any input UnescapeKey accepts maps back to itself: one to one.
		if u, err := UnescapeKey(s); err == nil && EscapeKey(u) != s {
			t.Fatalf("UnescapeKey(%q) = %q, which escapes to %q", s, u, EscapeKey(u))
		}
		for _, prefix := range []string{repoPrefix, invertedTicks(minTime) + "|"} {
			if k := prefix + keyPart(prefix, s); legalKey(k) != "" {
				t.Fatalf("key %q for %q: %s", k, s, legalKey(k))
			}
		}
	})
}

package policy

import (
	"strings"
	"testing"
	"time"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(examplePolicy))
	f.Add([]byte(`{"rules":[{"untaggedOnly":true}]}`))
	f.Add([]byte(`{"rules":[{"filters":["a:b"],"ago":"1d","keep":3}],"filterTimeout":5}`))
	f.Add([]byte(`{"rules":[{"filters":["(?:a|b):(?i:c)"],"ago":"9999999d"}],"protect":["^x"]}`))
	f.Add([]byte(`{"rules":[{"filters":["[:a:]:[^:b]"],"ago":"1d","untagged":true,"untaggedOnly":true}]}`))
	f.Add([]byte(`{"rules":[null]}`))
	f.Add([]byte(`{"rules":[{}],"filterTimeout":null}`))
	f.Add([]byte(`{"rules":[{"filters":["team-a/app)|(.*:^ci-"],"ago":"30d"}]}`))
	f.Add([]byte(`{"rules":[{"filters":["a(?#x:.*","(?x)a|b #:.*"],"untaggedOnly":true}],"protect":["^v)|("]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatal("policy returned with an error")
			}
			return
		}
		if len(p.Rules) == 0 || len(p.Rules) != len(p.rules) || p.FilterTimeout <= 0 || p.FilterTimeout > MaxFilterTimeout {
			t.Fatalf("accepted an invalid policy: %+v", p)
		}
		for _, r := range p.rules {
			if r.Name == "" || r.Keep < 0 || r.ago < 0 || r.ago > MaxAgo || (r.Untagged && r.UntaggedOnly) || (len(r.filters) == 0 && !r.UntaggedOnly) {
				t.Fatalf("accepted an invalid rule: %+v", r.Rule)
			}
		}
		if p.Hash() == "" || !strings.Contains(p.Describe(), p.Hash()) {
			t.Fatal("Hash/Describe")
		}
		// Matching must not panic; short inputs keep hostile patterns cheap.
		_, _ = p.Filter([]string{"a", "team-a/x"})
		// Every accepted repository expression compiles on its own and in
		// acr purge's anchored form (so it cannot escape the wrapper).
		for _, r := range p.Rules {
			for _, f := range r.Filters {
				repo, _, err := SplitFilter(f)
				if err != nil {
					t.Fatalf("accepted filter %q: %v", f, err)
				}
				for _, form := range []string{repo, "^" + repo + "$"} {
					if _, err := compileRegex(form, time.Second); err != nil {
						t.Fatalf("accepted filter %q whose %q does not compile: %v", f, form, err)
					}
				}
			}
		}
	})
}

func FuzzSplitFilter(f *testing.F) {
	for _, s := range []string{"foo:bar", "(?:a|b):c", "[[:alpha:]]:[^:x]", "a:b:c", ":", "", "(?imsU-:x):y", "a:[:]", `a\:b`, "(?", "[^^^:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		repo, tag, err := SplitFilter(s)
		if err != nil {
			if repo != "" || tag != "" {
				t.Fatalf("parts returned with an error: %q %q", repo, tag)
			}
			return
		}
		if repo == "" || tag == "" || repo+":"+tag != s {
			t.Fatalf("SplitFilter(%q) = %q, %q", s, repo, tag)
		}
		if !isSeparatorColon(s, len(repo)) {
			t.Fatalf("split at a non-separating colon: %q", s)
		}
		for i := range len(s) {
			if s[i] == ':' && i != len(repo) && isSeparatorColon(s, i) {
				t.Fatalf("second separating colon at %d in %q", i, s)
			}
		}
	})
}

func FuzzParseAgo(f *testing.F) {
	for _, s := range []string{"30d", "2d3h6m", "1h", "0d", "0", "-1d", "999999999999d", "9999999999h", "1.5h", "1d1d", "d", "µs"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseAgo(s)
		if err != nil {
			if d != 0 {
				t.Fatalf("ParseAgo(%q) = %v with error %v", s, d, err)
			}
			return
		}
		if d < 0 || d > MaxAgo {
			t.Fatalf("ParseAgo(%q) = %v out of [0, MaxAgo]", s, d)
		}
		if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
			t.Fatalf("ParseAgo(%q) accepted a sign", s)
		}
		if !strings.Contains(s, "d") {
			if g, err := time.ParseDuration(s); err == nil && min(g, MaxAgo) != d {
				t.Fatalf("ParseAgo(%q) = %v, time.ParseDuration says %v", s, d, g)
			}
		}
	})
}

package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSplitFilter(t *testing.T) {
	tests := []struct {
		in, repo, tag string
		wantErr       string
	}{
		{in: "foo:bar", repo: "foo", tag: "bar"},
		{in: "hello-world:^hello.*", repo: "hello-world", tag: "^hello.*"},
		{in: "team-a/.*:^ci-.*", repo: "team-a/.*", tag: "^ci-.*"},
		{in: ".*:^(?!release-).*", repo: ".*", tag: "^(?!release-).*"},
		// Non-capture groups (with flags) contain colons that do not split.
		{in: "(?:team-a|team-b)/api:v1", repo: "(?:team-a|team-b)/api", tag: "v1"},
		{in: "svc:(?:v1|v2)-.*", repo: "svc", tag: "(?:v1|v2)-.*"},
		{in: "hello-(?:abc)?:z-(?:abc)zz", repo: "hello-(?:abc)?", tag: "z-(?:abc)zz"},
		{in: "(?i:Foo)/bar:(?-i:x)", repo: "(?i:Foo)/bar", tag: "(?-i:x)"},
		{in: "(?imsU-:a):b", repo: "(?imsU-:a)", tag: "b"},
		// POSIX classes and colons at the edge of a class.
		{in: "[[:alpha:]]+:test[[:digit:]]", repo: "[[:alpha:]]+", tag: "test[[:digit:]]"},
		{in: "[^[:alpha:]]x:y[[^:digit:]]", repo: "[^[:alpha:]]x", tag: "y[[^:digit:]]"},
		{in: "(?imsU:test):[[:digit:]][tes:]", repo: "(?imsU:test)", tag: "[[:digit:]][tes:]"},
		{in: "a:[:]", repo: "a", tag: "[:]"},
		// Unicode around the separator.
		{in: "répo:tåg", repo: "répo", tag: "tåg"},
		// Errors.
		{in: "foo", wantErr: "no ':'"},
		{in: "", wantErr: "no ':'"},
		{in: "foo:bar:zzz", wantErr: "more than one"},
		{in: "a:b(?:c):", wantErr: "more than one"},
		{in: ":.*", wantErr: "missing repository"},
		{in: "repo:", wantErr: "missing tag"},
		{in: ":", wantErr: "missing repository"},
		// Six flag characters are too many to be a group prefix (as in acr purge).
		{in: "(?imsUim:a):b", wantErr: "more than one"},
		// A colon inside a class not at its edge splits, as in acr purge.
		{in: "repo:[a:b]", wantErr: "more than one"},
		{in: `repo:a\:b`, wantErr: "more than one"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			repo, tag, err := SplitFilter(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SplitFilter(%q) = %q, %q, %v; want error containing %q", tt.in, repo, tag, err, tt.wantErr)
				}
				return
			}
			if err != nil || repo != tt.repo || tag != tt.tag {
				t.Fatalf("SplitFilter(%q) = %q, %q, %v; want %q, %q", tt.in, repo, tag, err, tt.repo, tt.tag)
			}
		})
	}
}

func TestFilterMatching(t *testing.T) {
	tests := []struct {
		filter string
		repo   string
		tags   map[string]bool
	}{
		{filter: "hello-world:^hello.*", repo: "hello-world", tags: map[string]bool{"hello": true, "hello-1": true, "xhello": false, "world": false}},
		// Tag expressions are unanchored.
		{filter: "r:test", repo: "r", tags: map[string]bool{"test": true, "a-test-b": true, "tes": false}},
		{filter: `r:\w*test\w*`, repo: "r", tags: map[string]bool{"unittest1": true, "prod": false}},
		// Lookahead exclusion, as used with acr purge.
		{filter: ".*:^(?!release-).*", repo: "any/thing", tags: map[string]bool{"release-1": false, "dev-1": true, "v1-release-": true}},
		{filter: "r:v1(?!-a)", repo: "r", tags: map[string]bool{"v1-a": false, "v1-b": true, "v1": true}},
		// Lookbehind.
		{filter: "r:v1-*[abc]+(?<!-[a])$", repo: "r", tags: map[string]bool{"v1-a": false, "v1-b": true}},
		// Non-capture group with a colon.
		{filter: "r:^(?:pr|ci)-\\d+$", repo: "r", tags: map[string]bool{"pr-12": true, "ci-3": true, "pr-x": false, "main": false}},
		// RE2 named groups are accepted in RE2 mode.
		{filter: "r:^(?P<kind>pr)-", repo: "r", tags: map[string]bool{"pr-1": true, "ci-1": false}},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			f, err := compileFilter(tt.filter, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := f.repo.match(tt.repo); err != nil || !ok {
				t.Fatalf("repository %q: match=%v err=%v", tt.repo, ok, err)
			}
			for tag, want := range tt.tags {
				if got, err := f.tag.match(tag); err != nil || got != want {
					t.Errorf("tag %q: got %v (err %v), want %v", tag, got, err, want)
				}
			}
		})
	}
}

func TestRepositoryAnchoring(t *testing.T) {
	tests := []struct {
		filter string
		repos  map[string]bool
	}{
		{filter: "ba:.*", repos: map[string]bool{"ba": true, "bar": false, "foo/ba": false}},
		{filter: "foo/bar:.*", repos: map[string]bool{"foo/bar": true, "foo/bar/baz": false, "xfoo/bar": false}},
		{filter: "team-a/.*:.*", repos: map[string]bool{"team-a/x": true, "team-a/x/y": true, "team-b/x": false, "team-a": false}},
		// acr purge anchors as ^a|b$, which would match "a-anything"
		// and "anything-b"; here the whole name must match.
		{filter: "a|b:.*", repos: map[string]bool{"a": true, "b": true, "a-x": false, "x-b": false}},
	}
	for _, tt := range tests {
		f, err := compileFilter(tt.filter, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for repo, want := range tt.repos {
			if got, err := f.repo.match(repo); err != nil || got != want {
				t.Errorf("%s on %q: got %v (err %v), want %v", tt.filter, repo, got, err, want)
			}
		}
	}
}

func TestMatchTimeout(t *testing.T) {
	m, err := compileRegex(`(a+)+$`, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ok, err := m.match(strings.Repeat("a", 40) + "!")
	if !errors.Is(err, ErrMatchTimeout) || ok {
		t.Fatalf("match = %v, %v; want ErrMatchTimeout", ok, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %v", d)
	}
}

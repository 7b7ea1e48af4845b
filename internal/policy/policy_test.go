package policy

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/acr"
)

const examplePolicy = `{
  "rules": [
    {"name": "ci-builds", "filters": ["team-a/.*:^ci-.*", "team-b/api:^pr-\\d+$"],
     "ago": "30d", "keep": 5, "untagged": true, "includeLocked": false,
     "protect": ["^stable$"]},
    {"name": "dangling", "filters": [".*:.*"], "untaggedOnly": true, "ago": "7d"}
  ],
  "protect": ["^latest$", "^v?\\d+\\.\\d+\\.\\d+$"],
  "filterTimeout": "5s"
}`

func TestParseExample(t *testing.T) {
	p := mustParse(t, examplePolicy)
	if len(p.Rules) != 2 || p.Rules[0].Name != "ci-builds" || p.Rules[1].Name != "dangling" {
		t.Fatalf("rules = %+v", p.Rules)
	}
	if p.FilterTimeout != 5*time.Second {
		t.Errorf("FilterTimeout = %v", p.FilterTimeout)
	}
	r := p.rules[0]
	if r.ago != 30*24*time.Hour || r.Keep != 5 || !r.Untagged || r.UntaggedOnly || len(r.filters) != 2 || len(r.protect) != 1 {
		t.Errorf("rule 0 compiled as %+v", r)
	}
	if !p.rules[1].UntaggedOnly || p.rules[1].ago != 7*24*time.Hour {
		t.Errorf("rule 1 compiled as %+v", p.rules[1])
	}
	for _, m := range p.rules[0].filters {
		if m.repo.re.MatchTimeout != 5*time.Second || m.tag.re.MatchTimeout != 5*time.Second {
			t.Errorf("filter timeout not applied")
		}
	}
}

func TestParseDefaults(t *testing.T) {
	p := mustParse(t, `{"rules":[{"filters":["a:.*"],"ago":"1d"},{"untaggedOnly":true}]}`)
	if p.Rules[0].Name != "rule-1" || p.Rules[1].Name != "rule-2" {
		t.Errorf("default names %q %q", p.Rules[0].Name, p.Rules[1].Name)
	}
	if p.FilterTimeout != DefaultFilterTimeout {
		t.Errorf("FilterTimeout = %v, want %v", p.FilterTimeout, DefaultFilterTimeout)
	}
	if p.rules[1].ago != 0 || !p.rules[1].allRepos {
		t.Errorf("untaggedOnly defaults: ago=%v allRepos=%v", p.rules[1].ago, p.rules[1].allRepos)
	}
	p = mustParse(t, `{"rules":[{"filters":["a:.*"],"ago":"1d"}],"filterTimeout":30}`)
	if p.FilterTimeout != 30*time.Second {
		t.Errorf("numeric filterTimeout = %v", p.FilterTimeout)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, js, want string
	}{
		{"empty", ``, "policy: EOF"},
		{"not an object", `[]`, "cannot unmarshal"},
		{"no rules", `{"rules":[]}`, "rules: at least one rule"},
		{"null rules", `{"rules":null}`, "rules: at least one rule"},
		{"unknown top field", `{"rules":[{"filters":["a:b"],"ago":"1d"}],"protekt":["x"]}`, `unknown field "protekt"`},
		{"unknown rule field named", `{"rules":[{"filters":["a:b"],"ago":"1d"},{"name":"dangling","untaggedOnly":true,"kep":3}]}`, `rules[1] "dangling": json: unknown field "kep"`},
		{"unknown rule field unnamed", `{"rules":[{"filters":["a:b"],"ago":"1d","untaged":true}]}`, `rules[0]: json: unknown field "untaged"`},
		{"trailing data", `{"rules":[{"filters":["a:b"],"ago":"1d"}]} {}`, "after the JSON value"},
		{"missing filters", `{"rules":[{"name":"x","ago":"1d"}]}`, `rules[0] "x": filters: at least one`},
		{"missing ago", `{"rules":[{"filters":["a:b"]}]}`, `rules[0]: ago: required unless untaggedOnly`},
		{"bad ago", `{"rules":[{"filters":["a:b"],"ago":"-1d"}]}`, `rules[0]: ago:`},
		{"negative keep", `{"rules":[{"filters":["a:b"],"ago":"1d","keep":-1}]}`, `rules[0]: keep: -1 is negative`},
		{"fractional keep", `{"rules":[{"filters":["a:b"],"ago":"1d","keep":1.5}]}`, `rules[0]: json: cannot unmarshal`},
		{"untagged and untaggedOnly", `{"rules":[{"filters":["a:b"],"ago":"1d","untagged":true,"untaggedOnly":true}]}`, "mutually exclusive"},
		{"filter without colon", `{"rules":[{"filters":["a:b"],"ago":"1d"},{"name":"dangling","filters":["nocolon"],"untaggedOnly":true}]}`, `rules[1] "dangling": filters[0]: filter "nocolon": no ':'`},
		{"filter bad repo regex", `{"rules":[{"filters":["a(:b"],"ago":"1d"}]}`, `rules[0]: filters[0]: repository expression "a("`},
		{"filter bad tag regex", `{"rules":[{"filters":["x:b)"],"ago":"1d"}]}`, `rules[0]: filters[0]: tag expression "b)"`},
		{"untaggedOnly bad tag regex", `{"rules":[{"filters":["x:b["],"untaggedOnly":true}]}`, `filters[0]: tag expression`},
		{"bad global protect", `{"rules":[{"filters":["a:b"],"ago":"1d"}],"protect":["ok","("]}`, `policy: protect[1]: invalid regular expression`},
		{"empty global protect", `{"rules":[{"filters":["a:b"],"ago":"1d"}],"protect":[""]}`, `protect[0]: empty pattern`},
		{"bad rule protect", `{"rules":[{"name":"r","filters":["a:b"],"ago":"1d","protect":["["]}]}`, `rules[0] "r": protect[0]: invalid`},
		{"duplicate names", `{"rules":[{"name":"x","filters":["a:b"],"ago":"1d"},{"name":"x","untaggedOnly":true}]}`, `rules[1] "x": name: duplicate of rules[0]`},
		{"explicit name equal to default", `{"rules":[{"filters":["a:b"],"ago":"1d"},{"name":"rule-1","untaggedOnly":true}]}`, `name: duplicate of rules[0]`},
		{"control char in name", `{"rules":[{"name":"a\nb","filters":["a:b"],"ago":"1d"}]}`, `name: must be printable`},
		{"long name", `{"rules":[{"name":"` + strings.Repeat("n", 129) + `","filters":["a:b"],"ago":"1d"}]}`, `name: longer than`},
		{"filterTimeout zero", `{"rules":[{"filters":["a:b"],"ago":"1d"}],"filterTimeout":"0s"}`, "filterTimeout: 0s: want more than 0"},
		{"filterTimeout too long", `{"rules":[{"filters":["a:b"],"ago":"1d"}],"filterTimeout":"6m"}`, "filterTimeout: 6m0s"},
		{"filterTimeout garbage", `{"rules":[{"filters":["a:b"],"ago":"1d"}],"filterTimeout":"soon"}`, "filterTimeout:"},
		{"filterTimeout huge number", `{"rules":[{"filters":["a:b"],"ago":"1d"}],"filterTimeout":1e300}`, "filterTimeout:"},
		{"filterTimeout object", `{"rules":[{"filters":["a:b"],"ago":"1d"}],"filterTimeout":{}}`, "filterTimeout:"},
		{"long pattern", `{"rules":[{"filters":["a:` + strings.Repeat("x", MaxPatternLength) + `"],"ago":"1d"}]}`, "longer than"},
		{"too big", `{"rules":[{"filters":["a:b"],"ago":"1d","name":"` + strings.Repeat(" ", MaxPolicyBytes) + `"}]}`, "byte limit"},
		{"too many rules", `{"rules":[` + strings.Repeat(`{"untaggedOnly":true},`, MaxRules) + `{"untaggedOnly":true}]}`, "more than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.js))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", p)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "policy.json"), []byte(examplePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bad.json"), []byte(`{"rules":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	inline, err := Load("  "+examplePolicy+"\n", root)
	if err != nil {
		t.Fatal(err)
	}
	file, err := Load("@policy.json", root)
	if err != nil {
		t.Fatal(err)
	}
	abs, err := Load("@"+filepath.Join(root, "policy.json"), "/nonexistent")
	if err != nil {
		t.Fatal(err)
	}
	if inline.Hash() != file.Hash() || file.Hash() != abs.Hash() {
		t.Errorf("same policy, different hashes: %s %s %s", inline.Hash(), file.Hash(), abs.Hash())
	}
	errs := []struct{ setting, want string }{
		{"", "PURGE_POLICY is empty"},
		{"  ", "PURGE_POLICY is empty"},
		{"@", "without a file name"},
		{"@missing.json", "PURGE_POLICY (file " + filepath.Join(root, "missing.json") + ")"},
		{"@bad.json", "PURGE_POLICY (file " + filepath.Join(root, "bad.json") + "): policy: rules"},
		{`{"rules":[]}`, "PURGE_POLICY (inline JSON): policy: rules"},
	}
	for _, e := range errs {
		if _, err := Load(e.setting, root); err == nil || !strings.Contains(err.Error(), e.want) {
			t.Errorf("Load(%q) error %v, want %q", e.setting, err, e.want)
		}
	}
}

func TestMatchRepositoryAndFilter(t *testing.T) {
	p := mustParse(t, examplePolicy)
	for repo, want := range map[string]bool{"team-a/x": true, "team-b/api": true, "anything": true} {
		if got, err := p.MatchRepository(repo); err != nil || got != want {
			t.Errorf("MatchRepository(%q) = %v, %v", repo, got, err)
		}
	}
	p = mustParse(t, `{"rules":[{"filters":["team-a/.*:.*","team-b/api:^pr-"],"ago":"1d"},{"filters":["legacy:.*"],"untaggedOnly":true}]}`)
	got, err := p.Filter([]string{"team-b/api", "team-a/z", "team-c/x", "legacy", "team-a/a", "team-a/z", "legacy-2", "team-b/api2"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"legacy", "team-a/a", "team-a/z", "team-b/api"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Filter = %v, want %v", got, want)
	}
	// untaggedOnly without filters covers every repository.
	p = mustParse(t, `{"rules":[{"untaggedOnly":true}]}`)
	got, err = p.Filter([]string{"b", "a"})
	if err != nil || len(got) != 2 || got[0] != "a" {
		t.Errorf("Filter all = %v, %v", got, err)
	}
}

func TestRepositoryMatchTimeout(t *testing.T) {
	p := mustParse(t, `{"rules":[{"filters":["(a+)+:.*"],"ago":"1d"}],"filterTimeout":"1ms"}`)
	hostile := strings.Repeat("a", 40) + "!"
	if _, err := p.MatchRepository(hostile); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("MatchRepository: %v, want timeout error", err)
	}
	if _, err := p.Filter([]string{"ok", hostile}); err == nil {
		t.Fatal("Filter: no error")
	}
	if _, err := p.Planner(hostile, now); err == nil {
		t.Fatal("Planner: no error")
	}
}

func TestHash(t *testing.T) {
	const base = `{"rules":[{"name":"ci","filters":["a:.*","b:^pr-"],"ago":"1d","keep":2,"untagged":true,"protect":["^stable$"]}],"protect":["^latest$"],"filterTimeout":"5s"}`
	want := mustParse(t, base).Hash()
	require.Regexp(t, `^[0-9a-f]{12}$`, want)

	// The same policy written differently: other key order, whitespace and
	// number form, explicit defaults. Each document is parsed afresh.
	for name, js := range map[string]string{
		"reordered": `{
			"filterTimeout": 5,
			"protect": [ "^latest$" ],
			"rules": [ { "protect": ["^stable$"], "untagged": true, "keep": 2,
			             "ago": "1d", "filters": ["a:.*", "b:^pr-"], "name": "ci" } ]
		}`,
		"explicit defaults": `{"rules":[{"name":"ci","filters":["a:.*","b:^pr-"],"ago":"1d","keep":2,"untagged":true,"untaggedOnly":false,"includeLocked":false,"protect":["^stable$"]}],"protect":["^latest$"],"filterTimeout":"5s"}`,
	} {
		assert.Equal(t, want, mustParse(t, js).Hash(), name)
	}
	// Unnamed rules hash as their default names.
	assert.Equal(t,
		mustParse(t, `{"rules":[{"name":"rule-1","filters":["a:.*"],"ago":"1d"}],"filterTimeout":"60s","protect":[]}`).Hash(),
		mustParse(t, `{"rules":[{"filters":["a:.*"],"ago":"1d"}]}`).Hash())

	// Any change of meaning gives another hash, and no two variants collide.
	seen := map[string]string{want: "base"}
	for name, js := range map[string]string{
		"name":          strings.Replace(base, `"name":"ci"`, `"name":"cd"`, 1),
		"filter":        strings.Replace(base, `"a:.*"`, `"a:^v"`, 1),
		"filter order":  strings.Replace(base, `["a:.*","b:^pr-"]`, `["b:^pr-","a:.*"]`, 1),
		"ago":           strings.Replace(base, `"ago":"1d"`, `"ago":"2d"`, 1),
		"keep":          strings.Replace(base, `"keep":2`, `"keep":3`, 1),
		"untagged":      strings.Replace(base, `"untagged":true`, `"untagged":false`, 1),
		"includeLocked": strings.Replace(base, `"untagged":true`, `"untagged":true,"includeLocked":true`, 1),
		"rule protect":  strings.Replace(base, `["^stable$"]`, `["^stable$","^rc$"]`, 1),
		"protect":       strings.Replace(base, `["^latest$"]`, `[]`, 1),
		"filterTimeout": strings.Replace(base, `"5s"`, `"6s"`, 1),
		"second rule":   strings.Replace(base, `}],"protect"`, `},{"untaggedOnly":true}],"protect"`, 1),
	} {
		require.NotEqual(t, base, js, "%s: replacement did not apply", name)
		h := mustParse(t, js).Hash()
		assert.NotContains(t, seen, h, "%s hashes as %s", name, seen[h])
		seen[h] = name
	}
}

func TestDescribe(t *testing.T) {
	p := mustParse(t, examplePolicy)
	lines := strings.Split(p.Describe(), "\n")
	if len(lines) != 3 {
		t.Fatalf("Describe has %d lines:\n%s", len(lines), p.Describe())
	}
	for i, want := range []string{`ci-builds: tags, then untagged manifests matching "team-a/.*:^ci-.*"`, `dangling: untagged manifests only`, `protect: "^latest$"`} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d %q lacks %q", i, lines[i], want)
		}
	}
	if !strings.Contains(lines[0], "keeping the 5 most recent") || !strings.Contains(lines[0], `protecting "^stable$"`) {
		t.Errorf("line 0: %q", lines[0])
	}
	if !strings.Contains(lines[2], p.Hash()) {
		t.Errorf("hash missing: %q", lines[2])
	}
}

func TestHostilePatterns(t *testing.T) {
	// Patterns that are expensive in some engines compile quickly here, and
	// every match is bounded by filterTimeout: a match either answers or
	// fails with ErrMatchTimeout, never hangs.
	patterns := []string{`(?:a{1000}){1000}`, `((a{100}){100}){100}`, `a{2147483647}`, `(?:(?:(?:(?:a*)*)*)*)*$`, `(a|aa)+$`, `(x+x+)+y`}
	var filters []string
	for _, pat := range patterns {
		filters = append(filters, "r:"+pat)
	}
	js, _ := json.Marshal(map[string]any{"rules": []map[string]any{{"filters": filters, "ago": "1d"}}, "filterTimeout": "1ms"})
	start := time.Now()
	p := mustParse(t, string(js))
	rp := mustPlanner(t, p, "r")
	for _, name := range []string{strings.Repeat("a", 127) + "b", strings.Repeat("x", 128), "short"} {
		err := rp.TagPage([]acr.Tag{tg(name, "m", daysAgo(3))}, func(Decision) error { return nil })
		if err != nil && !errors.Is(err, ErrMatchTimeout) {
			t.Fatalf("%q: %v", name, err)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("hostile patterns took %v", d)
	}
	// Unparseable patterns are rejected with the position named.
	if _, err := Parse([]byte(`{"rules":[{"filters":["r:a{99999999999}"],"ago":"1d"}]}`)); err == nil || !strings.Contains(err.Error(), "rules[0]: filters[0]: tag expression") {
		t.Fatalf("err = %v", err)
	}
}

package policy

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// A manifest that must survive but whose body answers 404 fails the plan:
// its children and subject are unknown, so nothing may be deleted.
func TestSurvivorBody404FailsThePlan(t *testing.T) {
	tests := []struct {
		name      string
		policy    string
		manifests []man
		gone      string // the manifest whose body 404s
	}{
		{
			name:   "tagged index",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d"}]}`,
			manifests: []man{
				{name: "G", mediaType: ociIndex, updated: daysAgo(5), tags: []string{"v2"}, children: []string{"g1"}},
				{name: "g1", mediaType: ociImage, updated: daysAgo(5)},
			},
			gone: "G",
		},
		{
			name:   "child index of a tagged index",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d"}]}`,
			manifests: []man{
				{name: "H", mediaType: ociIndex, updated: daysAgo(5), tags: []string{"v3"}, children: []string{"N"}},
				{name: "N", mediaType: ociIndex, updated: daysAgo(5), children: []string{"n1"}},
				{name: "n1", updated: daysAgo(5)},
			},
			gone: "N",
		},
		{
			name:   "too-new index",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"10d"}]}`,
			manifests: []man{
				{name: "F", mediaType: dockList, updated: daysAgo(5), children: []string{"f1"}},
				{name: "f1", updated: daysAgo(50)},
			},
			gone: "F",
		},
		{
			name:   "listed subject of a tagged referrer (a candidate until then)",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d"}]}`,
			manifests: []man{
				{name: "S", mediaType: ociIndex, updated: daysAgo(5), children: []string{"s1"}},
				{name: "s1", mediaType: ociImage, updated: daysAgo(5)},
				{name: "R", mediaType: artifact, updated: daysAgo(5), tags: []string{"sig"}, subject: "S"},
			},
			gone: "S",
		},
		{
			name:   "child of an index kept by keep-N",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d","keep":1}]}`,
			manifests: []man{
				{name: "K", mediaType: ociIndex, updated: daysAgo(5), children: []string{"k1"}},
				{name: "k1", mediaType: ociIndex, updated: daysAgo(6), children: []string{"k2"}},
				{name: "k2", mediaType: ociImage, updated: daysAgo(7)},
			},
			gone: "k1",
		},
		{
			name:   "artifact with a tag (may carry a subject)",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d"}]}`,
			manifests: []man{
				{name: "A", mediaType: artifact, updated: daysAgo(5), tags: []string{"a"}},
				{name: "x", mediaType: ociImage, updated: daysAgo(5)},
			},
			gone: "A",
		},
	}
	for _, tt := range tests {
		for _, acrErr := range []bool{false, true} {
			name := tt.name
			if acrErr {
				name += " (acr 404)"
			}
			t.Run(name, func(t *testing.T) {
				src := newSource(tt.manifests...)
				if acrErr {
					src.fail[dg(tt.gone)] = &acr.Error{Op: "get manifest", StatusCode: 404, Code: "MANIFEST_UNKNOWN"}
				} else {
					src.gone[dg(tt.gone)] = true
				}
				_, err := tryPlanManifests(t, mustPlanner(t, mustParse(t, tt.policy), "r"), src)
				if !errors.Is(err, ErrListingInconsistent) {
					t.Fatalf("err = %v, want ErrListingInconsistent", err)
				}
				if !strings.Contains(err.Error(), dg(tt.gone)) {
					t.Errorf("error %q does not name %s", err, dg(tt.gone))
				}
				// The executor must not mistake it for "repository not found".
				if acr.IsNotFound(err) || IsNotFound(err) {
					t.Errorf("error %q reads as a 404", err)
				}
			})
		}
	}
}

// Every deletion names the deletions it must wait for: a referrer its
// deleted subject, a child every deleted index listing it.
func TestDeletionsNameWhatTheyWaitFor(t *testing.T) {
	p := mustParse(t, `{"rules":[{"filters":["app:.*"],"untaggedOnly":true,"ago":"1d"}]}`)
	ms := []man{
		// Referrers.
		{name: "old", mediaType: ociImage, updated: daysAgo(30)},
		{name: "sig-old", mediaType: ociImage, updated: daysAgo(29), subject: "old"},
		{name: "sig-sig-old", mediaType: ociImage, updated: daysAgo(28), subject: "sig-old"},
		{name: "kept", mediaType: ociImage, updated: daysAgo(30), tags: []string{"v1"}},
		{name: "sig-kept", mediaType: ociImage, updated: daysAgo(29), subject: "kept"},
		// Children: one parent, two parents, a surviving parent.
		{name: "idx", mediaType: ociIndex, updated: daysAgo(20), children: []string{"c1", "shared", "c1"}},
		{name: "idx2", mediaType: dockList, updated: daysAgo(20), children: []string{"shared"}},
		{name: "c1", mediaType: ociImage, updated: daysAgo(21)},
		{name: "shared", mediaType: ociImage, updated: daysAgo(21)},
		{name: "idx3", mediaType: ociIndex, updated: daysAgo(20), tags: []string{"v3"}, children: []string{"c3"}},
		{name: "idx4", mediaType: ociIndex, updated: daysAgo(20), children: []string{"c3"}},
		{name: "c3", mediaType: ociImage, updated: daysAgo(21)},
		// Nesting.
		{name: "outer", mediaType: ociIndex, updated: daysAgo(10), children: []string{"inner"}},
		{name: "inner", mediaType: ociIndex, updated: daysAgo(11), children: []string{"leaf"}},
		{name: "leaf", mediaType: ociImage, updated: daysAgo(12)},
		// Self-reference, and a child that is also a referrer of its parent.
		{name: "self", mediaType: ociIndex, updated: daysAgo(10), children: []string{"self"}, subject: "self"},
		{name: "att-idx", mediaType: ociIndex, updated: daysAgo(10), children: []string{"att"}},
		{name: "att", mediaType: artifact, updated: daysAgo(10), subject: "att-idx"},
		{name: "both", mediaType: artifact, updated: daysAgo(10), subject: "old"},
		{name: "both-parent", mediaType: ociIndex, updated: daysAgo(10), children: []string{"both"}},
	}
	src := newSource(ms...)
	ds := planManifests(t, mustPlanner(t, p, "app"), src)
	got := byName(ds, names(ms)...)
	tests := []struct {
		name   string
		delete bool
		after  []string
		reason Reason
	}{
		{"old", true, nil, ""},
		{"sig-old", true, []string{"old"}, ReasonReferrer},
		{"sig-sig-old", true, []string{"sig-old"}, ReasonReferrer},
		{"kept", false, nil, ""},
		{"sig-kept", false, nil, ""},
		{"idx", true, nil, ""},
		{"c1", true, []string{"idx"}, ReasonIndexChild},
		{"shared", true, []string{"idx", "idx2"}, ReasonIndexChild},
		{"c3", false, nil, ""},
		{"idx4", true, nil, ""},
		{"outer", true, nil, ""},
		{"inner", true, []string{"outer"}, ReasonIndexChild},
		{"leaf", true, []string{"inner"}, ReasonIndexChild},
		{"self", true, nil, ""},
		{"att", true, []string{"att-idx"}, ReasonReferrer},
		{"both", true, []string{"both-parent", "old"}, ReasonReferrer},
	}
	for _, tt := range tests {
		d := got[tt.name]
		after := slices.Clone(d.After)
		var want []string
		for _, n := range tt.after {
			want = append(want, dg(n))
		}
		slices.Sort(after)
		slices.Sort(want)
		if d.Delete != tt.delete || !slices.Equal(after, want) || d.AfterReason != tt.reason {
			t.Errorf("%s: delete=%v After=%v AfterReason=%q; want delete=%v After=%v (%v) AfterReason=%q",
				tt.name, d.Delete, d.After, d.AfterReason, tt.delete, want, tt.after, tt.reason)
		}
	}
	if d := got["c3"]; d.Reason != ReasonIndexChild {
		t.Errorf("c3: %+v, want kept as the child of the tagged idx3", d)
	}
	checkInvariants(t, p, "app", nil, src, ds)
}

// A repository expression cannot escape the anchors it is wrapped in;
// expressions that only compile wrapped (or only unwrapped) are rejected.
func TestFilterCannotEscapeAnchors(t *testing.T) {
	rejected := []struct {
		name, js, want string
	}{
		{"unbalanced alternation", `{"rules":[{"name":"x","filters":["team-a/app)|(.*:^ci-"],"ago":"30d"}]}`,
			`rules[0] "x": filters[0]: repository expression "team-a/app)|(.*"`},
		{"closing group only", `{"rules":[{"filters":["ok:.*","a)(?:b:.*"],"ago":"30d"}]}`, `rules[0]: filters[1]: repository expression`},
		{"unterminated comment eats the anchor", `{"rules":[{"filters":["a(?#x:.*"],"ago":"30d"}]}`, `filters[0]: repository expression "a(?#x": does not compile when anchored`},
		{"extended-mode comment eats the group", `{"rules":[{"filters":["(?x)a|b #:.*"],"ago":"30d"}]}`, `filters[0]: repository expression`},
		{"untaggedOnly rule too", `{"rules":[{"filters":["a)|(b:.*"],"untaggedOnly":true}]}`, `filters[0]: repository expression`},
		{"tag expression", `{"rules":[{"filters":["r:b)|(.*"],"ago":"30d"}]}`, `filters[0]: tag expression "b)|(.*"`},
		{"global protect", `{"rules":[{"filters":["r:.*"],"ago":"30d"}],"protect":["^latest$)|(x"]}`, `policy: protect[0]`},
		{"rule protect", `{"rules":[{"name":"p","filters":["r:.*"],"ago":"30d","protect":["x","^v)|("]}]}`, `rules[0] "p": protect[1]`},
	}
	for _, tt := range rejected {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.js))
			if err == nil {
				ok, _ := p.MatchRepository("prod/payments")
				t.Fatalf("accepted (matches prod/payments: %v)", ok)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
	// Balanced expressions with groups and alternations stay inside.
	p := mustParse(t, `{"rules":[{"filters":["(a)|(b):.*","(?i)c|d:.*"],"ago":"30d"}]}`)
	for repo, want := range map[string]bool{"a": true, "b": true, "C": true, "d": true, "ab": false, "a/x": false, "x/b": false, "dd": false, "prod/payments": false} {
		if got, err := p.MatchRepository(repo); err != nil || got != want {
			t.Errorf("MatchRepository(%q) = %v, %v; want %v", repo, got, err, want)
		}
	}
}

// MinUntaggedAge: no untagged manifest younger than an hour is deleted,
// whatever ago says; tags are not affected.
func TestMinUntaggedAge(t *testing.T) {
	ages := map[string]time.Duration{
		"fresh":        time.Minute,
		"59m":          59 * time.Minute,
		"at-floor":     MinUntaggedAge,
		"beyond-floor": MinUntaggedAge + time.Nanosecond,
		"90m":          90 * time.Minute,
		"3h":           3 * time.Hour,
	}
	tests := []struct {
		policy string
		delete []string // the others are kept as too-new
	}{
		{`{"rules":[{"untaggedOnly":true}]}`, []string{"beyond-floor", "90m", "3h"}},
		{`{"rules":[{"untaggedOnly":true,"ago":"0d"}]}`, []string{"beyond-floor", "90m", "3h"}},
		{`{"rules":[{"untaggedOnly":true,"ago":"30m"}]}`, []string{"beyond-floor", "90m", "3h"}},
		{`{"rules":[{"filters":["r:^x$"],"ago":"1m","untagged":true}]}`, []string{"beyond-floor", "90m", "3h"}},
		{`{"rules":[{"untaggedOnly":true,"ago":"2h"}]}`, []string{"3h"}},
		{`{"rules":[{"untaggedOnly":true},{"name":"b","untaggedOnly":true,"ago":"2h","keep":5}]}`, []string{"beyond-floor", "90m", "3h"}},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			var ms []man
			for name, age := range ages {
				// A multi-arch push in progress: platform images first, untagged.
				ms = append(ms, man{name: name, mediaType: ociImage, config: imageConfig, updated: now.Add(-age)})
			}
			src := newSource(ms...)
			p := mustParse(t, tt.policy)
			ds := planManifests(t, mustPlanner(t, p, "r"), src)
			w := want{}
			for name := range ages {
				w[name] = "keep:too-new"
				if slices.Contains(tt.delete, name) {
					w[name] = "delete:untagged"
				}
			}
			check(t, byName(ds, names(ms)...), w)
			checkInvariants(t, p, "r", nil, src, ds)
		})
	}
	t.Run("tags are not subject to the floor", func(t *testing.T) {
		rp := mustPlanner(t, mustParse(t, `{"rules":[{"filters":["r:.*"],"ago":"0d"}]}`), "r")
		check(t, byName(planTags(t, rp, []acr.Tag{tg("t", "m", now.Add(-time.Minute))}, 1)), want{"t": "delete:old"})
	})
}

// TagPage checks the timedesc order across pages instead of assuming it.
func TestTagOrderIsChecked(t *testing.T) {
	tests := []struct {
		name    string
		tags    []acr.Tag
		page    int
		emitted int // decisions before the error; -1: no error
	}{
		{"ordered, equal times", []acr.Tag{tg("a", "m", daysAgo(1)), tg("b", "m", daysAgo(1)), tg("c", "m", daysAgo(2))}, 1, -1},
		{"later within a page", []acr.Tag{tg("a", "m", daysAgo(2)), tg("b", "m", daysAgo(3)), tg("c", "m", daysAgo(1))}, 10, 2},
		{"later across pages", []acr.Tag{tg("a", "m", daysAgo(2)), tg("b", "m", daysAgo(3)), tg("c", "m", daysAgo(2).Add(time.Nanosecond))}, 2, 2},
		{"a time after an unknown time", []acr.Tag{tg("a", "m", daysAgo(2)), {Name: "b", Digest: dg("m")}, tg("c", "m", daysAgo(3))}, 1, 2},
		{"unknown times last", []acr.Tag{tg("a", "m", daysAgo(2)), {Name: "b", Digest: dg("m")}, {Name: "c", Digest: dg("m")}}, 2, -1},
		{"ascending order", []acr.Tag{tg("a", "m", daysAgo(9)), tg("b", "m", daysAgo(8))}, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp := mustPlanner(t, mustParse(t, `{"rules":[{"filters":["r:.*"],"ago":"1d","keep":1}]}`), "r")
			var out []Decision
			var err error
			for start := 0; start < len(tt.tags) && err == nil; start += tt.page {
				err = rp.TagPage(tt.tags[start:min(start+tt.page, len(tt.tags))], func(d Decision) error { out = append(out, d); return nil })
			}
			if tt.emitted < 0 {
				if err != nil || len(out) != len(tt.tags) {
					t.Fatalf("err = %v after %d decisions", err, len(out))
				}
				return
			}
			if !errors.Is(err, ErrOrder) || len(out) != tt.emitted {
				t.Fatalf("err = %v after %d decisions; want ErrOrder after %d", err, len(out), tt.emitted)
			}
			if bad := tt.tags[tt.emitted].Name; !strings.Contains(err.Error(), `"`+bad+`"`) {
				t.Errorf("error %q does not name tag %q", err, bad)
			}
		})
	}
}

// The manifest listing may come in any order: the plan is the same.
func TestManifestListingOrderDoesNotMatter(t *testing.T) {
	p := mustParse(t, `{"rules":[{"filters":["r:.*"],"ago":"2d","keep":2,"untagged":true}]}`)
	ms := []man{
		{name: "I", mediaType: ociIndex, updated: daysAgo(9), tags: []string{"v1"}, children: []string{"i1", "i2"}},
		{name: "i1", mediaType: ociImage, config: imageConfig, updated: daysAgo(9)},
		{name: "i2", mediaType: ociImage, config: imageConfig, updated: daysAgo(9)},
		{name: "J", mediaType: ociIndex, updated: daysAgo(8), children: []string{"j1"}},
		{name: "j1", mediaType: ociImage, updated: daysAgo(8)},
		{name: "sig", mediaType: artifact, updated: daysAgo(7), subject: "J"},
		{name: "a", updated: daysAgo(3)},
		{name: "b", updated: daysAgo(4)},
		{name: "c", updated: daysAgo(5)},
		{name: "d", updated: daysAgo(6)},
		{name: "e", updated: daysAgo(1)},
	}
	render := func(ds []Decision) []string {
		var out []string
		for _, d := range ds {
			out = append(out, strings.Join([]string{d.Digest, string(d.Reason), d.Rule, strings.Join(d.After, ",")}, "|"))
		}
		return out
	}
	var first []string
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		src := newSource(ms...)
		rng.Shuffle(len(src.manifests), func(a, b int) { src.manifests[a], src.manifests[b] = src.manifests[b], src.manifests[a] })
		src.pageSize = 1 + i%4
		got := render(planManifests(t, mustPlanner(t, p, "r"), src))
		if i == 0 {
			first = got
			if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "|untagged|") }) {
				t.Fatalf("degenerate plan: %v", got)
			}
			continue
		}
		if !slices.Equal(got, first) {
			t.Fatalf("listing order %d changed the plan:\n%v\nvs\n%v", i, got, first)
		}
	}
}

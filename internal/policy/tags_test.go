package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/acrpurge/acrpurge/internal/acr"
)

func TestTagReasons(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		repo   string
		tags   []acr.Tag // timedesc
		want   want
		rules  map[string]string // expected Rule field, optional
		unlock map[string]bool
	}{
		{
			// acr purge: --filter "hello-world:^hello.*" --ago 7d --keep 2
			name:   "acr purge example: hello-world:^hello.* ago 7d keep 2",
			policy: `{"rules":[{"name":"r","filters":["hello-world:^hello.*"],"ago":"7d","keep":2}]}`,
			repo:   "hello-world",
			tags: []acr.Tag{
				tg("hello-new", "m1", daysAgo(1)),
				tg("latest", "m2", daysAgo(8)),
				tg("hello-a", "m3", daysAgo(9)),
				tg("hello-b", "m4", daysAgo(10)),
				tg("hello-c", "m5", daysAgo(11)),
				tg("hello-d", "m6", daysAgo(12)),
			},
			want:  want{"hello-new": "keep:too-new", "latest": "keep:no-match", "hello-a": "keep:keep", "hello-b": "keep:keep", "hello-c": "delete:old", "hello-d": "delete:old"},
			rules: map[string]string{"hello-new": "r", "latest": "", "hello-a": "r", "hello-c": "r"},
		},
		{
			name:   "ago is strict: exactly at the cut-off is too new",
			policy: `{"rules":[{"filters":["r:.*"],"ago":"7d"}]}`,
			repo:   "r",
			tags:   []acr.Tag{tg("at", "m1", daysAgo(7)), tg("before", "m2", daysAgo(7).Add(-1))},
			want:   want{"at": "keep:too-new", "before": "delete:old"},
		},
		{
			name:   "unknown timestamp is never old",
			policy: `{"rules":[{"filters":["r:.*"],"ago":"0d"}]}`,
			repo:   "r",
			tags:   []acr.Tag{{Name: "notime", Digest: dg("m")}},
			want:   want{"notime": "keep:too-new"},
		},
		{
			name:   "ago 0d deletes everything in the past",
			policy: `{"rules":[{"filters":["r:.*"],"ago":"0d"}]}`,
			repo:   "r",
			tags:   []acr.Tag{tg("now", "m1", now), tg("past", "m2", now.Add(-1))},
			want:   want{"now": "keep:too-new", "past": "delete:old"},
		},
		{
			// acr purge --include-locked unlocks then deletes.
			name:   "locked without and with includeLocked",
			policy: `{"rules":[{"name":"plain","filters":["r:^a-"],"ago":"1d"},{"name":"forceful","filters":["r:^b-"],"ago":"1d","includeLocked":true}]}`,
			repo:   "r",
			tags: []acr.Tag{
				tg("a-new-locked", "m3", daysAgo(0), lockedAttrs),
				tg("a-locked", "m1", daysAgo(5), lockedAttrs),
				tg("a-wlocked", "m2", daysAgo(5), writeLockedAttrs),
				tg("a-open", "m4", daysAgo(5)),
				tg("b-locked", "m5", daysAgo(5), lockedAttrs),
				tg("b-open", "m6", daysAgo(5)),
			},
			want:   want{"a-locked": "keep:locked", "a-wlocked": "keep:locked", "a-new-locked": "keep:too-new", "a-open": "delete:old", "b-locked": "delete:old", "b-open": "delete:old"},
			rules:  map[string]string{"a-locked": "plain", "b-locked": "forceful"},
			unlock: map[string]bool{"b-locked": true, "b-open": false, "a-open": false},
		},
		{
			// acr purge counts only deletable tags toward keep: a locked tag
			// takes no slot unless includeLocked makes it deletable.
			name:   "keep counts only candidates: locked tags do not take a slot",
			policy: `{"rules":[{"filters":["r:.*"],"ago":"1d","keep":1}]}`,
			repo:   "r",
			tags:   []acr.Tag{tg("locked", "m1", daysAgo(3), lockedAttrs), tg("x1", "m2", daysAgo(4)), tg("x2", "m3", daysAgo(5))},
			want:   want{"locked": "keep:locked", "x1": "keep:keep", "x2": "delete:old"},
		},
		{
			name:   "keep with includeLocked: locked candidates take slots",
			policy: `{"rules":[{"filters":["r:.*"],"ago":"1d","keep":1,"includeLocked":true}]}`,
			repo:   "r",
			tags:   []acr.Tag{tg("locked", "m1", daysAgo(3), lockedAttrs), tg("x1", "m2", daysAgo(4))},
			want:   want{"locked": "keep:keep", "x1": "delete:old"},
		},
		{
			name:   "keep counts only matching, old tags",
			policy: `{"rules":[{"filters":["r:^v1-"],"ago":"1d","keep":1}]}`,
			repo:   "r",
			tags:   []acr.Tag{tg("v1-new", "m1", daysAgo(0)), tg("other", "m2", daysAgo(2)), tg("v1-a", "m3", daysAgo(3)), tg("v1-b", "m4", daysAgo(4))},
			want:   want{"v1-new": "keep:too-new", "other": "keep:no-match", "v1-a": "keep:keep", "v1-b": "delete:old"},
		},
		{
			name:   "protect: global and per rule, before too-new; protected tags take no keep slot",
			policy: `{"rules":[{"name":"ci","filters":["r:.*"],"ago":"1d","keep":1,"protect":["^stable$"]}],"protect":["^latest$","^v?\\d+\\.\\d+\\.\\d+$"]}`,
			repo:   "r",
			tags: []acr.Tag{
				tg("v1.2.3", "m3", daysAgo(0)),
				tg("latest", "m1", daysAgo(10)),
				tg("stable", "m2", daysAgo(10)),
				tg("1.0.0", "m4", daysAgo(10), lockedAttrs),
				tg("build-1", "m5", daysAgo(10)),
				tg("build-2", "m6", daysAgo(11)),
			},
			want:  want{"latest": "keep:protected", "stable": "keep:protected", "v1.2.3": "keep:protected", "1.0.0": "keep:protected", "build-1": "keep:keep", "build-2": "delete:old"},
			rules: map[string]string{"latest": "", "stable": "ci"},
		},
		{
			name:   "no-match comes before protected",
			policy: `{"rules":[{"filters":["r:^ci-"],"ago":"1d"}],"protect":["^latest$"]}`,
			repo:   "r",
			tags:   []acr.Tag{tg("latest", "m1", daysAgo(10))},
			want:   want{"latest": "keep:no-match"},
		},
		{
			name: "a rule's protect holds against other rules in the repositories it covers",
			policy: `{"rules":[
				{"name":"narrow","filters":["team-a/.*:^ci-"],"ago":"30d","protect":["^ci-golden$"]},
				{"name":"broad","filters":[".*:.*"],"ago":"1d"}]}`,
			repo: "team-a/api",
			tags: []acr.Tag{tg("ci-golden", "m1", daysAgo(60)), tg("ci-1", "m2", daysAgo(60))},
			want: want{"ci-golden": "keep:protected", "ci-1": "delete:old"},
		},
		{
			name: "a rule's protect does not apply in repositories it does not cover",
			policy: `{"rules":[
				{"name":"narrow","filters":["team-a/.*:^ci-"],"ago":"30d","protect":["^ci-golden$"]},
				{"name":"broad","filters":[".*:.*"],"ago":"1d"}]}`,
			repo: "team-b/api",
			tags: []acr.Tag{tg("ci-golden", "m1", daysAgo(60))},
			want: want{"ci-golden": "delete:old"},
		},
		{
			name: "multiple rules: union, each with its own keep; reason is the furthest a rule got",
			policy: `{"rules":[
				{"name":"a","filters":["r:^x-"],"ago":"1d","keep":2},
				{"name":"b","filters":["r:^x-1"],"ago":"30d","keep":0},
				{"name":"c","filters":["r:^y-"],"ago":"1d","keep":1}]}`,
			repo: "r",
			tags: []acr.Tag{
				tg("x-12", "m7", daysAgo(0)),  // too new for both
				tg("x-13", "m8", daysAgo(5)),  // a keeps (slot 1), b too new -> keep by a
				tg("y-1", "m5", daysAgo(5)),   // c keeps
				tg("y-2", "m6", daysAgo(5)),   // c deletes
				tg("x-10", "m1", daysAgo(40)), // a keeps (slot 2), b deletes -> deleted
				tg("x-2", "m2", daysAgo(40)),  // a deletes (beyond keep), b no match
				tg("x-11", "m4", daysAgo(45)), // a deletes (beyond keep), b deletes too -> deleted by a, the first
			},
			want:  want{"x-12": "keep:too-new", "x-13": "keep:keep", "y-1": "keep:keep", "y-2": "delete:old", "x-10": "delete:old", "x-2": "delete:old", "x-11": "delete:old"},
			rules: map[string]string{"x-12": "a", "x-13": "a", "x-10": "b", "x-2": "a", "x-11": "a", "y-1": "c", "y-2": "c"},
		},
		{
			name:   "several filters of one rule for one repository share the keep",
			policy: `{"rules":[{"name":"r","filters":["svc:^pr-","svc:^ci-","other:.*"],"ago":"1d","keep":1}]}`,
			repo:   "svc",
			tags:   []acr.Tag{tg("ci-1", "m1", daysAgo(3)), tg("pr-1", "m2", daysAgo(4)), tg("main", "m3", daysAgo(5))},
			want:   want{"ci-1": "keep:keep", "pr-1": "delete:old", "main": "keep:no-match"},
		},
		{
			// acr purge README: exclude release tags with a lookahead.
			name:   "lookahead exclusion",
			policy: `{"rules":[{"filters":[".*:^(?!release-).*"],"ago":"7d"}]}`,
			repo:   "any/repo",
			tags:   []acr.Tag{tg("release-1.0", "m1", daysAgo(30)), tg("dev-1", "m2", daysAgo(30))},
			want:   want{"release-1.0": "keep:no-match", "dev-1": "delete:old"},
		},
		{
			name:   "non-capture group with a colon in the filter",
			policy: `{"rules":[{"filters":["(?:team-a|team-b)/api:^(?:pr|ci)-\\d+$"],"ago":"7d"}]}`,
			repo:   "team-b/api",
			tags:   []acr.Tag{tg("pr-1", "m1", daysAgo(30)), tg("ci-22", "m2", daysAgo(30)), tg("pr-x", "m3", daysAgo(30))},
			want:   want{"pr-1": "delete:old", "ci-22": "delete:old", "pr-x": "keep:no-match"},
		},
		{
			name:   "untaggedOnly rules never delete tags",
			policy: `{"rules":[{"filters":["r:.*"],"untaggedOnly":true,"ago":"0d"}]}`,
			repo:   "r",
			tags:   []acr.Tag{tg("old", "m1", daysAgo(300))},
			want:   want{"old": "keep:not-in-policy"},
		},
		{
			name:   "hostile tags: empty name, odd digests, far past and future",
			policy: `{"rules":[{"filters":["r:.*"],"ago":"1d"}]}`,
			repo:   "r",
			tags: []acr.Tag{
				{Name: "future", Digest: "sha256:XYZ", LastUpdateTime: now.AddDate(100, 0, 0)},
				{Name: "", Digest: "", LastUpdateTime: daysAgo(5)},
				{Name: strings.Repeat("ü", 300), Digest: dg("m"), LastUpdateTime: daysAgo(5)},
				{Name: "ancient", Digest: "md5:" + strings.Repeat("z", 1000), LastUpdateTime: daysAgo(365 * 1000)},
			},
			want: want{"future": "keep:too-new", "": "delete:old", "ancient": "delete:old", strings.Repeat("ü", 300): "delete:old"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.policy)
			for _, pageSize := range []int{1, 2, 100} {
				rp := mustPlanner(t, p, tt.repo)
				got := byName(planTags(t, rp, tt.tags, pageSize))
				check(t, got, tt.want)
				for name, rule := range tt.rules {
					if got[name].Rule != rule {
						t.Errorf("page %d: %s: rule %q, want %q", pageSize, name, got[name].Rule, rule)
					}
				}
				for name, u := range tt.unlock {
					if got[name].Unlock != u {
						t.Errorf("%s: Unlock %v, want %v", name, got[name].Unlock, u)
					}
				}
				for _, d := range got {
					if d.Repo != tt.repo {
						t.Errorf("decision repo %q", d.Repo)
					}
				}
			}
		})
	}
}

func TestTagRegexTimeoutFailsRepository(t *testing.T) {
	for _, js := range []string{
		`{"rules":[{"filters":["r:(a+)+$"],"ago":"1d"}],"filterTimeout":"200ms"}`,
		`{"rules":[{"filters":["r:.*"],"ago":"1d"}],"protect":["(a+)+$"],"filterTimeout":"200ms"}`,
	} {
		p := mustParse(t, js)
		rp := mustPlanner(t, p, "r")
		var emitted []Decision
		err := rp.TagPage([]acr.Tag{tg("ok", "m1", daysAgo(3)), tg(strings.Repeat("a", 40)+"!", "m2", daysAgo(3))}, func(d Decision) error {
			emitted = append(emitted, d)
			return nil
		})
		if !errors.Is(err, ErrMatchTimeout) {
			t.Fatalf("%s: TagPage error %v, want ErrMatchTimeout", js, err)
		}
		if len(emitted) != 1 || emitted[0].Tag != "ok" {
			t.Fatalf("emitted %+v: the timed-out tag must get no decision", emitted)
		}
	}
}

func TestTagPageEmitError(t *testing.T) {
	rp := mustPlanner(t, mustParse(t, `{"rules":[{"filters":["r:.*"],"ago":"1d"}]}`), "r")
	n := 0
	err := rp.TagPage([]acr.Tag{tg("a", "m", daysAgo(3)), tg("b", "m", daysAgo(3))}, func(Decision) error { n++; return errBoom })
	if !errors.Is(err, errBoom) || n != 1 {
		t.Fatalf("err=%v after %d emits", err, n)
	}
}

func TestPlannerRepoNotInPolicy(t *testing.T) {
	p := mustParse(t, `{"rules":[{"filters":["team-a/.*:.*"],"ago":"1d"}]}`)
	if _, err := p.Planner("team-b/x", now); err == nil || !strings.Contains(err.Error(), "no rule") {
		t.Fatalf("err = %v", err)
	}
	rp := mustPlanner(t, p, "team-a/x")
	if !rp.PlanTags() || rp.PlanManifests() {
		t.Errorf("PlanTags=%v PlanManifests=%v", rp.PlanTags(), rp.PlanManifests())
	}
	p = mustParse(t, `{"rules":[{"filters":["team-a/.*:.*"],"ago":"1d"},{"untaggedOnly":true}]}`)
	rp = mustPlanner(t, p, "team-b/x")
	if rp.PlanTags() || !rp.PlanManifests() {
		t.Errorf("PlanTags=%v PlanManifests=%v", rp.PlanTags(), rp.PlanManifests())
	}
}

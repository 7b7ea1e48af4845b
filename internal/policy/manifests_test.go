package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/acrpurge/acrpurge/internal/acr"
)

const (
	ociImage = acr.MediaTypeOCIManifest
	ociIndex = acr.MediaTypeOCIIndex
	artifact = acr.MediaTypeOCIArtifact
	dockList = acr.MediaTypeDockerManifestList
)

func TestManifestScenarios(t *testing.T) {
	tests := []struct {
		name      string
		policy    string
		repo      string    // default "r"
		tags      []acr.Tag // nil: no tag phase
		manifests []man
		gone      []string // bodies that 404
		want      want
		rules     map[string]string
		unlock    map[string]bool
		fetched   map[string]bool // whether the body was fetched
	}{
		{
			// acr purge --filter "hello-world:\w*test\w*" --ago 5d --untagged
			name:   "acr purge example: --untagged after the tags (dry-run listing)",
			policy: `{"rules":[{"name":"t","filters":["hello-world:\\w*test\\w*"],"ago":"5d","untagged":true}]}`,
			repo:   "hello-world",
			tags: []acr.Tag{
				tg("test-new", "m3", daysAgo(1)),
				tg("prod", "m2", daysAgo(6)),
				tg("unittest", "m1", daysAgo(6)),
				tg("mytest", "m6", daysAgo(7)),
				tg("release", "m6", daysAgo(7)),
			},
			manifests: []man{
				{name: "m1", updated: daysAgo(6), tags: []string{"unittest"}},
				{name: "m2", updated: daysAgo(6), tags: []string{"prod"}},
				{name: "m3", updated: daysAgo(1), tags: []string{"test-new"}},
				{name: "m4", updated: daysAgo(9)},
				{name: "m5", updated: daysAgo(2)},
				{name: "m6", updated: daysAgo(7), tags: []string{"mytest", "release"}},
			},
			want: want{"m1": "delete:untagged", "m2": "keep:tagged", "m3": "keep:tagged", "m4": "delete:untagged", "m5": "keep:too-new", "m6": "keep:tagged",
				"unittest": "delete:old", "mytest": "delete:old", "prod": "keep:no-match", "test-new": "keep:too-new", "release": "keep:no-match"},
			rules:   map[string]string{"m1": "t", "m5": "t", "m2": ""},
			fetched: map[string]bool{"m1": false, "m2": false, "m4": false},
		},
		{
			// acr purge --untagged-only --ago 3d --keep 5
			name:   "acr purge example: --untagged-only --ago 3d --keep 5",
			policy: `{"rules":[{"name":"u","untaggedOnly":true,"ago":"3d","keep":5}]}`,
			manifests: []man{
				{name: "a1", updated: daysAgo(1.5)},
				{name: "a2", updated: daysAgo(2.5)},
				{name: "a3", updated: daysAgo(3.5)},
				{name: "tagged", updated: daysAgo(3.7), tags: []string{"v1"}},
				{name: "a4", updated: daysAgo(4.5)},
				{name: "a5", updated: daysAgo(5.5)},
				{name: "a6", updated: daysAgo(6.5)},
				{name: "a7", updated: daysAgo(7.5)},
				{name: "a8", updated: daysAgo(8.5)},
			},
			want: want{"a1": "keep:too-new", "a2": "keep:too-new", "a3": "keep:keep", "tagged": "keep:tagged", "a4": "keep:keep",
				"a5": "keep:keep", "a6": "keep:keep", "a7": "keep:keep", "a8": "delete:untagged"},
			rules: map[string]string{"a3": "u", "a8": "u"},
		},
		{
			// Changed on purpose: MinUntaggedAge is a floor under ago.
			name:   "untaggedOnly without ago: everything older than now minus MinUntaggedAge",
			policy: `{"rules":[{"untaggedOnly":true}]}`,
			manifests: []man{
				{name: "past", updated: now.Add(-1)},
				{name: "at-floor", updated: now.Add(-MinUntaggedAge)},
				{name: "before-floor", updated: now.Add(-MinUntaggedAge - 1)},
				{name: "now", updated: now},
				{name: "notime"},
			},
			want: want{"past": "keep:too-new", "at-floor": "keep:too-new", "before-floor": "delete:untagged", "now": "keep:too-new", "notime": "keep:too-new"},
		},
		{
			name:   "acr purge example: --include-locked",
			policy: `{"rules":[{"name":"plain","filters":["r:.*"],"untaggedOnly":true},{"name":"forced","filters":["r:.*"],"untaggedOnly":true,"ago":"10d","includeLocked":true}]}`,
			manifests: []man{
				{name: "locked-5d", updated: daysAgo(5), attrs: lockedAttrs},
				{name: "wlocked-20d", updated: daysAgo(20), attrs: writeLockedAttrs},
				{name: "open-5d", updated: daysAgo(5)},
			},
			want:   want{"locked-5d": "keep:locked", "wlocked-20d": "delete:untagged", "open-5d": "delete:untagged"},
			rules:  map[string]string{"locked-5d": "plain", "wlocked-20d": "forced", "open-5d": "plain"},
			unlock: map[string]bool{"wlocked-20d": true, "open-5d": false},
		},
		{
			name:   "multi-arch: children of a tagged index survive; an untagged old index and its children go",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d"}]}`,
			manifests: []man{
				{name: "I", mediaType: ociIndex, updated: daysAgo(10), tags: []string{"v1"}, children: []string{"i-amd64", "i-arm64"}},
				{name: "i-amd64", mediaType: ociImage, updated: daysAgo(10), config: imageConfig},
				{name: "i-arm64", mediaType: ociImage, updated: daysAgo(10)},
				{name: "L", mediaType: dockList, updated: daysAgo(10), tags: []string{"v0"}, children: []string{"l-amd64"}},
				{name: "l-amd64", updated: daysAgo(10)},
				{name: "J", mediaType: ociIndex, updated: daysAgo(10), children: []string{"j-amd64"}},
				{name: "j-amd64", mediaType: ociImage, updated: daysAgo(10)},
				{name: "N", mediaType: ociIndex, updated: daysAgo(0), children: []string{"n-amd64"}},
				{name: "n-amd64", updated: daysAgo(10)},
			},
			want: want{"I": "keep:tagged", "i-amd64": "keep:child-of-kept-index", "i-arm64": "keep:child-of-kept-index",
				"L": "keep:tagged", "l-amd64": "keep:child-of-kept-index",
				"J": "delete:untagged", "j-amd64": "delete:untagged",
				"N": "keep:too-new", "n-amd64": "keep:child-of-kept-index"},
			// Children already protected are not fetched for a subject when
			// they are plain images (Docker, or an OCI image config); one
			// whose config is not given might be a referrer, so it is.
			fetched: map[string]bool{"I": true, "L": true, "l-amd64": false, "i-amd64": false, "i-arm64": true, "J": true, "j-amd64": true},
		},
		{
			name:   "multi-arch: children of an index kept by keep-N survive and take no keep slot",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d","keep":1}]}`,
			manifests: []man{
				{name: "K", mediaType: ociIndex, updated: daysAgo(5), children: []string{"k1", "k2"}},
				{name: "k1", mediaType: ociImage, updated: daysAgo(6)},
				{name: "k2", updated: daysAgo(6)},
				{name: "z", updated: daysAgo(7)},
			},
			want: want{"K": "keep:keep", "k1": "keep:child-of-kept-index", "k2": "keep:child-of-kept-index", "z": "delete:untagged"},
		},
		{
			// Changed on purpose: candidate indexes are fetched for
			// Decision.After (E's child waits for E).
			name:   "multi-arch: a Docker list kept by keep-N protects its children; candidate lists are fetched",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d","keep":1}]}`,
			manifests: []man{
				{name: "D", mediaType: dockList, updated: daysAgo(5), children: []string{"d1"}},
				{name: "d1", updated: daysAgo(6)},
				{name: "E", mediaType: dockList, updated: daysAgo(7), children: []string{"e1"}},
				{name: "e1", updated: daysAgo(8)},
			},
			want:    want{"D": "keep:keep", "d1": "keep:child-of-kept-index", "E": "delete:untagged", "e1": "delete:untagged"},
			fetched: map[string]bool{"D": true, "E": true, "d1": false, "e1": false},
		},
		{
			name: "multi-arch: keeping an older index undoes the deletion of its newer child",
			policy: `{"rules":[
				{"name":"short","untaggedOnly":true,"ago":"1d"},
				{"name":"locked-too","untaggedOnly":true,"ago":"10d","keep":1,"includeLocked":true}]}`,
			manifests: []man{
				{name: "c", mediaType: ociImage, updated: daysAgo(5)},
				{name: "K", mediaType: ociIndex, updated: daysAgo(20), attrs: lockedAttrs, children: []string{"c"}},
				{name: "y", updated: daysAgo(30)},
			},
			want:  want{"c": "keep:child-of-kept-index", "K": "keep:keep", "y": "delete:untagged"},
			rules: map[string]string{"K": "locked-too", "y": "short"},
		},
		{
			name:   "multi-arch: children of a locked index survive (acr purge would delete them)",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d"}]}`,
			manifests: []man{
				{name: "X", mediaType: ociIndex, updated: daysAgo(5), attrs: lockedAttrs, children: []string{"x1"}},
				{name: "x1", mediaType: ociImage, updated: daysAgo(5)},
			},
			want: want{"X": "keep:locked", "x1": "keep:child-of-kept-index"},
		},
		{
			name:   "multi-arch: children of an index whose only tag is protected survive",
			policy: `{"rules":[{"filters":["r:.*"],"ago":"1d","untagged":true}],"protect":["^latest$"]}`,
			tags:   []acr.Tag{tg("latest", "P", daysAgo(30)), tg("old", "Q", daysAgo(30))},
			manifests: []man{
				{name: "P", mediaType: ociIndex, updated: daysAgo(30), tags: []string{"latest"}, children: []string{"p1"}},
				{name: "p1", mediaType: ociImage, updated: daysAgo(30)},
				{name: "Q", mediaType: ociIndex, updated: daysAgo(30), tags: []string{"old"}, children: []string{"q1"}},
				{name: "q1", mediaType: ociImage, updated: daysAgo(30)},
			},
			want: want{"latest": "keep:protected", "old": "delete:old", "P": "keep:tagged", "p1": "keep:child-of-kept-index", "Q": "delete:untagged", "q1": "delete:untagged"},
		},
		{
			name:   "nested indexes: grandchildren of a tagged index survive",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d"}]}`,
			manifests: []man{
				{name: "A", mediaType: ociIndex, updated: daysAgo(5), tags: []string{"v1"}, children: []string{"B", "a1"}},
				{name: "B", mediaType: ociIndex, updated: daysAgo(5), children: []string{"b1", "C"}},
				{name: "C", mediaType: dockList, updated: daysAgo(5), children: []string{"c1"}},
				{name: "a1", mediaType: ociImage, updated: daysAgo(5)},
				{name: "b1", mediaType: ociImage, updated: daysAgo(5)},
				{name: "c1", updated: daysAgo(5)},
				{name: "loose", updated: daysAgo(5)},
			},
			want: want{"A": "keep:tagged", "B": "keep:child-of-kept-index", "C": "keep:child-of-kept-index", "a1": "keep:child-of-kept-index",
				"b1": "keep:child-of-kept-index", "c1": "keep:child-of-kept-index", "loose": "delete:untagged"},
		},
		{
			name:   "referrers: signatures and SBOMs of a kept image survive, and referrers of referrers",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d"}]}`,
			manifests: []man{
				{name: "img", mediaType: ociImage, updated: daysAgo(5), tags: []string{"v1"}, config: imageConfig},
				{name: "sig", mediaType: ociImage, updated: daysAgo(5), subject: "img"},
				{name: "sbom", mediaType: artifact, updated: daysAgo(5), subject: "img"},
				{name: "sbom-sig", mediaType: ociImage, updated: daysAgo(5), subject: "sbom"},
				{name: "att-index", mediaType: ociIndex, updated: daysAgo(5), subject: "img", children: []string{"att-1"}},
				{name: "att-1", mediaType: ociImage, updated: daysAgo(5)},
				{name: "dead", mediaType: ociImage, updated: daysAgo(5)},
				{name: "dead-sig", mediaType: ociImage, updated: daysAgo(5), subject: "dead"},
				{name: "orphan-sig", mediaType: ociImage, updated: daysAgo(5), subject: "not-in-repo"},
			},
			want: want{"img": "keep:tagged", "sig": "keep:referrer-of-kept", "sbom": "keep:referrer-of-kept", "sbom-sig": "keep:referrer-of-kept",
				"att-index": "keep:referrer-of-kept", "att-1": "keep:child-of-kept-index",
				"dead": "delete:untagged", "dead-sig": "delete:untagged",
				"orphan-sig": "keep:referrer-of-kept", dg("not-in-repo"): "keep:missing"},
			fetched: map[string]bool{"img": false, "sig": true, "dead": true},
		},
		{
			name:   "referrers: a referrer of an image kept by keep-N survives even when older",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d","keep":1}]}`,
			manifests: []man{
				{name: "img", mediaType: ociImage, updated: daysAgo(5)},
				{name: "sig", mediaType: ociImage, updated: daysAgo(6), subject: "img"},
				{name: "img2", mediaType: ociImage, updated: daysAgo(7)},
			},
			want: want{"img": "keep:keep", "sig": "keep:referrer-of-kept", "img2": "delete:untagged"},
		},
		{
			name:   "referrers: a newer referrer planned for deletion is kept when its subject is kept later",
			policy: `{"rules":[{"name":"short","untaggedOnly":true,"ago":"1d"},{"name":"long","untaggedOnly":true,"ago":"10d","keep":1,"includeLocked":true}]}`,
			manifests: []man{
				{name: "sig", mediaType: ociImage, updated: daysAgo(2), subject: "img"},
				{name: "img", mediaType: ociImage, updated: daysAgo(20), attrs: lockedAttrs},
			},
			want: want{"sig": "keep:referrer-of-kept", "img": "keep:keep"},
		},
		{
			// Changed on purpose: a survivor whose body 404s now fails the
			// plan (TestSurvivorBody404FailsThePlan); candidates may 404.
			name:   "missing: a child not in the repository and candidate bodies that 404 are noted, not fatal",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d"}]}`,
			manifests: []man{
				{name: "I", mediaType: ociIndex, updated: daysAgo(5), tags: []string{"v1"}, children: []string{"c1", "c-gone"}},
				{name: "c1", mediaType: ociImage, updated: daysAgo(5)},
				{name: "G", mediaType: ociIndex, updated: daysAgo(5), children: []string{"g1"}},
				{name: "g1", mediaType: ociImage, updated: daysAgo(5)},
				{name: "vanished", mediaType: ociImage, updated: daysAgo(5)},
				{name: "sig-vanished", mediaType: artifact, updated: daysAgo(5), subject: "vanished"},
			},
			gone: []string{"G", "vanished"},
			want: want{"I": "keep:tagged", "c1": "keep:child-of-kept-index", dg("c-gone"): "keep:missing",
				"G": "keep:missing", "g1": "delete:untagged",
				"vanished": "keep:missing", "sig-vanished": "delete:untagged"},
		},
		{
			name:   "no media type: the body decides (an index without one keeps its children)",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d"}]}`,
			manifests: []man{
				{name: "U", mediaType: "none", updated: daysAgo(5), tags: []string{"v1"}, children: []string{"u1"}},
				{name: "u1", mediaType: "none", updated: daysAgo(5)},
				{name: "w", mediaType: "none", updated: daysAgo(5), subject: "u1"},
			},
			want:    want{"U": "keep:tagged", "u1": "keep:child-of-kept-index", "w": "keep:referrer-of-kept"},
			fetched: map[string]bool{"U": true, "u1": true},
		},
		{
			name:   "subject-of-kept: a referrer kept by a protected tag keeps its old untagged subject",
			policy: `{"rules":[{"filters":["r:.*"],"ago":"30d","untagged":true}],"protect":["^sbom$"]}`,
			tags:   []acr.Tag{tg("sbom", "sbom-m", daysAgo(60))},
			manifests: []man{
				{name: "subj", mediaType: ociImage, updated: daysAgo(60), config: imageConfig},
				{name: "sbom-m", mediaType: ociImage, updated: daysAgo(60), tags: []string{"sbom"}, config: emptyConfig, subject: "subj"},
				{name: "other", mediaType: ociImage, updated: daysAgo(60), config: imageConfig},
			},
			want:    want{"sbom": "keep:protected", "sbom-m": "keep:tagged", "subj": "keep:subject-of-kept", "other": "delete:untagged"},
			fetched: map[string]bool{"sbom-m": true},
		},
		{
			name:   "subject-of-kept: too-new, locked and tagged referrers keep their subjects, and the subjects what they need",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d"}]}`,
			manifests: []man{
				// A fresh signature keeps an old untagged index, which keeps
				// its children and its other (old) referrer.
				{name: "idx", mediaType: ociIndex, updated: daysAgo(40), children: []string{"c1", "c2"}},
				{name: "c1", mediaType: ociImage, updated: daysAgo(40), config: imageConfig},
				{name: "c2", updated: daysAgo(40)},
				{name: "sig-new", mediaType: ociImage, updated: daysAgo(0.5), config: "application/vnd.cncf.notary.signature", subject: "idx"},
				{name: "sbom-old", mediaType: artifact, updated: daysAgo(40), subject: "idx"},
				// A locked referrer keeps a Docker image.
				{name: "dimg", updated: daysAgo(40)},
				{name: "locked-sig", mediaType: artifact, updated: daysAgo(40), attrs: lockedAttrs, subject: "dimg"},
				// A tagged attestation of a signature keeps the signature and its image.
				{name: "img3", mediaType: ociImage, updated: daysAgo(40), config: imageConfig},
				{name: "sig3", mediaType: ociImage, updated: daysAgo(40), config: emptyConfig, subject: "img3"},
				{name: "att3", mediaType: ociImage, updated: daysAgo(40), tags: []string{"att"}, subject: "sig3"},
				{name: "loose", mediaType: ociImage, updated: daysAgo(40), config: imageConfig},
			},
			want: want{"sig-new": "keep:too-new", "idx": "keep:subject-of-kept", "c1": "keep:child-of-kept-index", "c2": "keep:child-of-kept-index",
				"sbom-old": "keep:referrer-of-kept", "locked-sig": "keep:locked", "dimg": "keep:subject-of-kept",
				"att3": "keep:tagged", "sig3": "keep:subject-of-kept", "img3": "keep:subject-of-kept", "loose": "delete:untagged"},
		},
		{
			name:   "subject-of-kept: keep-N keeps a referrer, and its older subject survives with it",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"30d","keep":1}]}`,
			manifests: []man{
				{name: "sig", mediaType: artifact, updated: daysAgo(40), subject: "subj"},
				{name: "subj", mediaType: ociImage, updated: daysAgo(60), config: imageConfig},
				{name: "z", mediaType: ociImage, updated: daysAgo(70), config: imageConfig},
			},
			want: want{"sig": "keep:keep", "subj": "keep:subject-of-kept", "z": "delete:untagged"},
		},
		{
			name: "subject-of-kept: keeping an older referrer undoes the deletion of its newer subject and its children",
			policy: `{"rules":[
				{"name":"short","untaggedOnly":true,"ago":"1d"},
				{"name":"locked-too","untaggedOnly":true,"ago":"10d","keep":1,"includeLocked":true}]}`,
			manifests: []man{
				{name: "S", mediaType: ociIndex, updated: daysAgo(5), children: []string{"s1"}},
				{name: "s1", mediaType: ociImage, updated: daysAgo(5), config: imageConfig},
				{name: "R", mediaType: artifact, updated: daysAgo(20), attrs: lockedAttrs, subject: "S"},
				{name: "y", updated: daysAgo(30)},
			},
			want:  want{"S": "keep:subject-of-kept", "s1": "keep:child-of-kept-index", "R": "keep:keep", "y": "delete:untagged"},
			rules: map[string]string{"R": "locked-too", "S": "", "y": "short"},
		},
		{
			name:   "subject-of-kept: a child of a kept index that is a referrer keeps its subject",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d"}]}`,
			manifests: []man{
				{name: "I", mediaType: ociIndex, updated: daysAgo(5), tags: []string{"v1"}, children: []string{"ch"}},
				{name: "ch", mediaType: artifact, updated: daysAgo(5), subject: "s"},
				{name: "s", mediaType: ociImage, updated: daysAgo(5), config: imageConfig},
			},
			want: want{"I": "keep:tagged", "ch": "keep:child-of-kept-index", "s": "keep:subject-of-kept"},
		},
		{
			name:   "hostile: index cycles and self-references terminate",
			policy: `{"rules":[{"untaggedOnly":true,"ago":"1d"}]}`,
			manifests: []man{
				{name: "A", mediaType: ociIndex, updated: daysAgo(5), tags: []string{"v1"}, children: []string{"B", "A"}},
				{name: "B", mediaType: ociIndex, updated: daysAgo(5), children: []string{"A", "B"}, subject: "B"},
				{name: "S", mediaType: ociImage, updated: daysAgo(5), subject: "S"},
				{name: "T", mediaType: ociIndex, updated: daysAgo(5), children: []string{"T"}, subject: "T"},
			},
			want: want{"A": "keep:tagged", "B": "keep:child-of-kept-index", "S": "delete:untagged", "T": "delete:untagged"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.policy)
			src := newSource(tt.manifests...)
			for _, g := range tt.gone {
				src.gone[dg(g)] = true
			}
			repo := tt.repo
			if repo == "" {
				repo = "r"
			}
			rp := mustPlanner(t, p, repo, WithFetchConcurrency(3))
			var all []Decision
			if tt.tags != nil {
				all = append(all, planTags(t, rp, tt.tags, 2)...)
			}
			all = append(all, planManifests(t, rp, src)...)
			got := byName(all, names(tt.manifests)...)
			check(t, got, tt.want)
			for name, rule := range tt.rules {
				if got[name].Rule != rule {
					t.Errorf("%s: rule %q, want %q", name, got[name].Rule, rule)
				}
			}
			for name, u := range tt.unlock {
				if got[name].Unlock != u {
					t.Errorf("%s: Unlock %v, want %v", name, got[name].Unlock, u)
				}
			}
			for name, f := range tt.fetched {
				if src.fetched(name) != f {
					t.Errorf("%s: fetched %v, want %v", name, src.fetched(name), f)
				}
			}
			checkInvariants(t, p, repo, tt.tags, src, all)
		})
	}
}

func TestManifestsAfterTagPhase(t *testing.T) {
	pol := `{"rules":[{"filters":["r:^ci-"],"ago":"1d","untagged":true}]}`
	tags := []acr.Tag{
		tg("ci-1", "m1", daysAgo(5)),
		tg("ci-2", "m2", daysAgo(5)),
		tg("keepme", "m2", daysAgo(5)),
		tg("ci-3", "m3", daysAgo(5)),
		tg("ci-4", "m4", daysAgo(5)),
		tg("ci-5", "m5", daysAgo(5)),
	}
	manifests := func(listed map[string][]string) *fakeSource {
		var ms []man
		for _, n := range []string{"m1", "m2", "m3", "m4", "m5"} {
			ms = append(ms, man{name: n, updated: daysAgo(5), tags: listed[n]})
		}
		return newSource(ms...)
	}
	tests := []struct {
		name   string
		listed map[string][]string // tags the manifest listing shows
		failed []string            // TagDeleteFailed digests (manifest names)
		want   want
	}{
		{
			name:   "dry run: planned deletions are still listed",
			listed: map[string][]string{"m1": {"ci-1"}, "m2": {"ci-2", "keepme"}, "m3": {"ci-3"}, "m4": {"ci-4"}, "m5": {"ci-5"}},
			want:   want{"m1": "delete:untagged", "m2": "keep:tagged", "m3": "delete:untagged", "m4": "delete:untagged", "m5": "delete:untagged"},
		},
		{
			name:   "real run: deleted tags are gone from the listing",
			listed: map[string][]string{"m2": {"keepme"}},
			want:   want{"m1": "delete:untagged", "m2": "keep:tagged", "m3": "delete:untagged", "m4": "delete:untagged", "m5": "delete:untagged"},
		},
		{
			name:   "a tag pushed since the tag listing keeps its manifest (dry run and real run)",
			listed: map[string][]string{"m1": {"ci-1", "new"}, "m3": {"new"}, "m4": {"ci-5"}},
			want:   want{"m1": "keep:tagged", "m3": "keep:tagged", "m4": "keep:tagged", "m5": "delete:untagged"},
		},
		{
			name:   "a lagging listing showing part of the deleted tags keeps the manifest",
			listed: map[string][]string{"m1": {"ci-1", "ci-1"}},
			want:   want{"m1": "keep:tagged"},
		},
		{
			name:   "TagDeleteFailed keeps the manifest",
			listed: map[string][]string{"m3": {"ci-3"}},
			failed: []string{"m3", "m5"},
			want:   want{"m3": "keep:tagged", "m5": "keep:tagged", "m4": "delete:untagged"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp := mustPlanner(t, mustParse(t, pol), "r")
			planTags(t, rp, tags, 4)
			for _, f := range tt.failed {
				rp.TagDeleteFailed(dg(f))
			}
			check(t, byName(planManifests(t, rp, manifests(tt.listed)), "m1", "m2", "m3", "m4", "m5"), tt.want)
		})
	}
}

func TestUntaggedOnlyWithoutTagPhase(t *testing.T) {
	// A listed tag means tagged, whatever the tag filters would say.
	p := mustParse(t, `{"rules":[{"filters":["r:.*"],"untaggedOnly":true}]}`)
	rp := mustPlanner(t, p, "r")
	if rp.PlanTags() || !rp.PlanManifests() {
		t.Fatal("untaggedOnly should plan manifests only")
	}
	src := newSource(man{name: "t", updated: daysAgo(9), tags: []string{"x"}}, man{name: "u", updated: daysAgo(9)})
	check(t, byName(planManifests(t, rp, src), "t", "u"), want{"t": "keep:tagged", "u": "delete:untagged"})
}

func TestManifestsNotInPolicy(t *testing.T) {
	p := mustParse(t, `{"rules":[{"filters":["r:.*"],"ago":"1d"}]}`)
	rp := mustPlanner(t, p, "r")
	src := newSource(man{name: "I", mediaType: ociIndex, updated: daysAgo(9), children: []string{"c"}}, man{name: "c", mediaType: ociImage, updated: daysAgo(9)})
	check(t, byName(planManifests(t, rp, src), "I", "c"), want{"I": "keep:not-in-policy", "c": "keep:not-in-policy"})
	if len(src.fetches) != 0 {
		t.Errorf("fetched %v", src.fetches)
	}
}

func TestManifestsErrors(t *testing.T) {
	p := mustParse(t, `{"rules":[{"untaggedOnly":true,"ago":"1d"}]}`)
	ms := []man{
		{name: "I", mediaType: ociIndex, updated: daysAgo(5), tags: []string{"v1"}, children: []string{"c"}},
		{name: "c", mediaType: ociImage, updated: daysAgo(5)},
	}
	candidates := []man{
		{name: "J", mediaType: ociIndex, updated: daysAgo(5), children: []string{"c"}},
		{name: "c", mediaType: ociImage, updated: daysAgo(5)},
	}
	t.Run("body error other than 404 fails the repository before any decision", func(t *testing.T) {
		src := newSource(ms...)
		src.fail[dg("I")] = errBoom
		n := 0
		err := mustPlanner(t, p, "r").Manifests(t.Context(), src, func(Decision) error { n++; return nil })
		if !errors.Is(err, errBoom) || n != 0 {
			t.Fatalf("err=%v, %d decisions emitted", err, n)
		}
	})
	t.Run("custom not-found test", func(t *testing.T) {
		src := newSource(candidates...)
		src.fail[dg("J")] = errBoom
		rp := mustPlanner(t, p, "r", WithNotFound(func(err error) bool { return errors.Is(err, errBoom) }))
		check(t, byName(planManifests(t, rp, src), "J", "c"), want{"J": "keep:missing", "c": "delete:untagged"})
	})
	t.Run("no body and no error", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			ms   []man
		}{{"survivor", ms}, {"candidate", candidates}} {
			src := newSource(tc.ms...)
			src.bodies[src.manifests[0].Digest] = nil
			_, err := tryPlanManifests(t, mustPlanner(t, p, "r"), src)
			if err == nil || !strings.Contains(err.Error(), "neither a body nor an error") {
				t.Errorf("%s: err = %v", tc.name, err)
			}
		}
	})
	t.Run("emit error stops", func(t *testing.T) {
		err := mustPlanner(t, p, "r").Manifests(t.Context(), newSource(ms...), func(Decision) error { return errBoom })
		if !errors.Is(err, errBoom) {
			t.Fatalf("err=%v", err)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := contextWithCancel(t)
		cancel()
		if err := mustPlanner(t, p, "r").Manifests(ctx, newSource(ms...), func(Decision) error { return nil }); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("duplicates and empty digests in the listing", func(t *testing.T) {
		src := newSource(append(ms, ms[1])...)
		src.manifests = append(src.manifests, acr.Manifest{Digest: "", LastUpdateTime: daysAgo(5)})
		var out []Decision
		if err := mustPlanner(t, p, "r").Manifests(t.Context(), src, func(d Decision) error { out = append(out, d); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(out) != 2 {
			t.Fatalf("%d decisions for 2 distinct manifests: %+v", len(out), out)
		}
		check(t, byName(out, "I", "c"), want{"I": "keep:tagged", "c": "keep:child-of-kept-index"})
	})
}

func TestIsNotFound(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&acr.Error{Op: "get manifest", StatusCode: 404}, true},
		{fmt.Errorf("wrapped: %w", &acr.Error{Op: "get manifest", StatusCode: 404}), true},
		{&acr.Error{Op: "get manifest", StatusCode: 500}, false},
		{&acr.Error{Op: "get manifest", StatusCode: 401}, false},
		{notFoundError{"x"}, true},
		{errBoom, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := IsNotFound(tt.err); got != tt.want {
			t.Errorf("IsNotFound(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	// The default is wired into Manifests: an acr 404 marks a candidate's
	// body missing.
	p := mustParse(t, `{"rules":[{"untaggedOnly":true,"ago":"1d"}]}`)
	src := newSource(man{name: "J", mediaType: ociIndex, updated: daysAgo(5), children: []string{"c"}}, man{name: "c", mediaType: ociImage, updated: daysAgo(5)})
	src.fail[dg("J")] = &acr.Error{Op: "get manifest", StatusCode: 404}
	check(t, byName(planManifests(t, mustPlanner(t, p, "r"), src), "J", "c"), want{"J": "keep:missing", "c": "delete:untagged"})
}

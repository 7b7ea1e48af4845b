package policy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// checkInvariants verifies, independently of the planner's algorithm, the
// safety promises of a plan for repository "r": exactly one decision per
// listed tag and manifest, nothing deleted that the policy keeps.
func checkInvariants(t testing.TB, p *Policy, repo string, tags []acr.Tag, src *fakeSource, ds []Decision) {
	t.Helper()
	var rules []*compiledRule
	var protect []*matcher
	protect = append(protect, p.protect...)
	for _, r := range p.rules {
		if ok, _ := r.covers(repo); ok {
			rules = append(rules, r)
			protect = append(protect, r.protect...)
		}
	}
	tagDec := map[string]Decision{}
	manDec := map[string]Decision{}
	for _, d := range ds {
		switch d.Kind {
		case KindTag:
			if _, dup := tagDec[d.Tag]; dup {
				t.Fatalf("tag %q decided twice", d.Tag)
			}
			tagDec[d.Tag] = d
		case KindManifest:
			if _, dup := manDec[d.Digest]; dup {
				t.Fatalf("manifest %s decided twice", d.Digest)
			}
			manDec[d.Digest] = d
		}
		if d.Delete != (d.Reason == ReasonOld || d.Reason == ReasonUntagged) {
			t.Fatalf("decision %+v: Delete does not agree with the reason", d)
		}
	}
	// Tags.
	deletedTagNames := map[string][]string{} // digest -> deleted tag names
	survivingTag := map[string]bool{}        // digest -> keeps a tag
	for _, tag := range tags {
		d, ok := tagDec[tag.Name]
		if !ok {
			t.Fatalf("tag %q has no decision", tag.Name)
		}
		if !d.Delete {
			survivingTag[tag.Digest] = true
			continue
		}
		deletedTagNames[tag.Digest] = append(deletedTagNames[tag.Digest], tag.Name)
		if d.Unlock != tag.Attributes.Locked() {
			t.Errorf("tag %q: Unlock=%v but locked=%v", tag.Name, d.Unlock, tag.Attributes.Locked())
		}
		for _, m := range protect {
			if ok, _ := m.match(tag.Name); ok {
				t.Errorf("tag %q deleted although protected by %q", tag.Name, m.src)
			}
		}
		allowed := false
		for _, r := range rules {
			if !r.deletesTags() || !tag.LastUpdateTime.Before(now.Add(-r.ago)) || tag.LastUpdateTime.IsZero() {
				continue
			}
			if tag.Attributes.Locked() && !r.IncludeLocked {
				continue
			}
			for _, f := range r.filters {
				if okRepo, _ := f.repo.match(repo); okRepo {
					if ok, _ := f.tag.match(tag.Name); ok {
						allowed = true
					}
				}
			}
		}
		if !allowed {
			t.Errorf("tag %q deleted but no rule may delete it", tag.Name)
		}
	}
	// Manifests.
	listed := map[string]acr.Manifest{}
	for _, m := range src.manifests {
		listed[m.Digest] = m
		if _, ok := manDec[m.Digest]; !ok {
			t.Fatalf("manifest %s has no decision", m.Digest)
		}
	}
	survives := func(digest string) bool {
		d, ok := manDec[digest]
		return ok && !d.Delete && d.Reason != ReasonMissing
	}
	for digest, d := range manDec {
		m, isListed := listed[digest]
		if !isListed {
			if d.Reason != ReasonMissing || d.Delete {
				t.Errorf("unlisted digest %s decided %+v", digest, d)
			}
			continue
		}
		if !d.Delete {
			continue
		}
		if src.gone[digest] && src.fetchedDigest(digest) {
			t.Errorf("manifest %s deleted although its body was found gone", digest)
		}
		if d.Unlock != m.Attributes.Locked() {
			t.Errorf("manifest %s: Unlock=%v, locked=%v", digest, d.Unlock, m.Attributes.Locked())
		}
		if survivingTag[digest] {
			t.Errorf("manifest %s deleted although a tag survives", digest)
		}
		if tags == nil && len(m.Tags) > 0 {
			t.Errorf("manifest %s deleted although listed with tags and no tag phase ran", digest)
		}
		if tags != nil {
			for _, name := range m.Tags {
				if !slices.Contains(deletedTagNames[digest], name) {
					t.Errorf("manifest %s deleted although listed with tag %q the plan does not delete", digest, name)
				}
			}
		}
		allowed := false
		for _, r := range rules {
			cutoff := now.Add(-max(r.ago, MinUntaggedAge))
			if r.deletesManifests() && !m.LastUpdateTime.IsZero() && m.LastUpdateTime.Before(cutoff) && (!m.Attributes.Locked() || r.IncludeLocked) {
				allowed = true
			}
		}
		if !allowed {
			t.Errorf("manifest %s deleted but no rule may delete it", digest)
		}
		if b := src.bodies[digest]; b != nil && b.Subject != nil {
			if survives(b.Subject.Digest) || !func() bool { _, ok := listed[b.Subject.Digest]; return ok }() {
				t.Errorf("referrer %s deleted although its subject %s survives or is unknown", digest, b.Subject.Digest)
			}
		}
	}
	// No surviving index may lose a child, and no surviving referrer its
	// subject (the registry would delete the referrer with it). A surviving
	// OCI image with a plain image config is not looked into (the documented
	// cost trade-off), nor is a body that is gone.
	for digest, m := range listed {
		if !survives(digest) || src.gone[digest] {
			continue
		}
		b := src.bodies[digest]
		if b == nil {
			continue
		}
		for _, c := range b.Manifests {
			if d, ok := manDec[c.Digest]; ok && d.Delete {
				t.Errorf("child %s of surviving index %s deleted", c.Digest, digest)
			}
		}
		plain := m.MediaType == acr.MediaTypeOCIManifest && (m.ConfigMediaType == imageConfig || m.ConfigMediaType == dockerConfig)
		if b.Subject != nil && !plain {
			if d, ok := manDec[b.Subject.Digest]; ok && d.Delete {
				t.Errorf("subject %s of surviving referrer %s deleted", b.Subject.Digest, digest)
			}
		}
	}
	// A deletion waits for exactly the deletions it depends on: its deleted
	// subject and every deleted index listing it.
	for digest, d := range manDec {
		if !d.Delete {
			if len(d.After) > 0 || d.AfterReason != "" {
				t.Errorf("kept manifest %s has After %v", digest, d.After)
			}
			continue
		}
		want := map[string]bool{}
		if b := src.bodies[digest]; b != nil && b.Subject != nil && b.Subject.Digest != digest && manDec[b.Subject.Digest].Delete {
			want[b.Subject.Digest] = true
		}
		for parent, b := range src.bodies {
			if parent == digest || b == nil || !manDec[parent].Delete {
				continue
			}
			for _, c := range b.Manifests {
				if c.Digest == digest {
					want[parent] = true
				}
			}
		}
		got := map[string]bool{}
		for _, a := range d.After {
			if got[a] {
				t.Errorf("manifest %s: After names %s twice", digest, a)
			}
			got[a] = true
		}
		if len(got) != len(want) {
			t.Errorf("manifest %s: After %v, want the digests %v", digest, d.After, want)
		}
		for a := range want {
			if !got[a] {
				t.Errorf("manifest %s: After %v lacks %s", digest, d.After, a)
			}
		}
		if (len(d.After) > 0) != (d.AfterReason != "") {
			t.Errorf("manifest %s: After %v with AfterReason %q", digest, d.After, d.AfterReason)
		}
	}
}

// TestPlanRandomRepositories plans many random repositories (random kinds,
// ages, locks, tags, index graphs including cycles, referrers, missing
// bodies) under random policies, and checks the safety invariants with the
// independent oracle above.
func TestPlanRandomRepositories(t *testing.T) {
	policies := []string{
		`{"rules":[{"filters":["r:.*"],"ago":"3d","untagged":true}]}`,
		`{"rules":[{"filters":["r:^t[0-4]"],"ago":"2d","keep":2,"untagged":true,"protect":["7$"]}],"protect":["^t1"]}`,
		`{"rules":[{"untaggedOnly":true,"ago":"1d","keep":1},{"name":"b","untaggedOnly":true,"ago":"5d","includeLocked":true,"keep":3}]}`,
		`{"rules":[{"filters":["r:.*"],"ago":"1d","keep":3,"includeLocked":true,"untagged":true},{"name":"b","filters":["r:^t9"],"ago":"0d"}]}`,
		`{"rules":[{"untaggedOnly":true}]}`,
	}
	mediaTypes := []string{acr.MediaTypeDockerManifest, dockList, ociImage, ociIndex, artifact, "none"}
	var deletedTotal, keptTotal, inconsistent int
	for seed := range uint64(600) {
		rng := rand.New(rand.NewPCG(seed, 42))
		n := 1 + rng.IntN(25)
		name := func(i int) string { return fmt.Sprintf("m%d", i) }
		var ms []man
		for i := range n {
			m := man{name: name(i), mediaType: mediaTypes[rng.IntN(len(mediaTypes))], updated: daysAgo(float64(rng.IntN(8)) + rng.Float64())}
			if m.mediaType == ociImage {
				m.config = []string{"", imageConfig, dockerConfig, emptyConfig}[rng.IntN(4)]
			}
			if rng.IntN(5) == 0 {
				m.attrs = lockedAttrs
			}
			if m.mediaType == ociIndex || m.mediaType == dockList || (m.mediaType == "none" && rng.IntN(2) == 0) {
				for range rng.IntN(4) {
					m.children = append(m.children, name(rng.IntN(n+2))) // may be missing or itself
				}
			}
			if m.mediaType != acr.MediaTypeDockerManifest && m.mediaType != dockList && rng.IntN(3) == 0 {
				m.subject = name(rng.IntN(n + 2))
			}
			if rng.IntN(20) == 0 {
				m.updated = time.Time{}
			}
			ms = append(ms, m)
		}
		// Tags, timedesc.
		var tags []acr.Tag
		for i := range rng.IntN(2 * n) {
			target := rng.IntN(n)
			tag := tg(fmt.Sprintf("t%d", i), name(target), daysAgo(float64(rng.IntN(8))+rng.Float64()))
			if rng.IntN(6) == 0 {
				tag.Attributes = lockedAttrs
			}
			tags = append(tags, tag)
			ms[target].tags = append(ms[target].tags, tag.Name)
		}
		slices.SortFunc(tags, func(a, b acr.Tag) int { return b.LastUpdateTime.Compare(a.LastUpdateTime) })
		src := newSource(ms...)
		src.pageSize = 1 + rng.IntN(5)
		if rng.IntN(3) == 0 {
			src.gone[dg(name(rng.IntN(n)))] = true
		}
		js := policies[rng.IntN(len(policies))]
		p := mustParse(t, js)
		rp := mustPlanner(t, p, "r", WithFetchConcurrency(1+rng.IntN(4)))
		var all []Decision
		useTags := rp.PlanTags() || rng.IntN(2) == 0
		if useTags {
			all = append(all, planTags(t, rp, tags, 1+rng.IntN(4))...)
		} else {
			tags = nil
		}
		// A dry run: the listing still shows every tag.
		mds, err := tryPlanManifests(t, rp, src)
		if err != nil {
			// Only a survivor whose body is gone may fail the plan.
			if !errors.Is(err, ErrListingInconsistent) {
				t.Fatalf("seed %d: %v", seed, err)
			}
			named := false
			for d := range src.gone {
				named = named || strings.Contains(err.Error(), d)
			}
			if !named {
				t.Fatalf("seed %d: %v names no gone manifest", seed, err)
			}
			inconsistent++
			continue
		}
		all = append(all, mds...)
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			checkInvariants(t, p, "r", tags, src, all)
		})
		for _, d := range all {
			if d.Delete {
				deletedTotal++
			} else {
				keptTotal++
			}
		}
	}
	// The oracle is only meaningful if plans actually delete and keep.
	if deletedTotal < 100 || keptTotal < 100 || inconsistent > 150 {
		t.Fatalf("degenerate random plans: %d deleted, %d kept, %d failed as inconsistent", deletedTotal, keptTotal, inconsistent)
	}
	t.Logf("%d deleted, %d kept, %d plans failed as inconsistent", deletedTotal, keptTotal, inconsistent)
}

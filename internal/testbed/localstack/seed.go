package localstack

import (
	"fmt"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
)

// DemoPolicy is the purge policy of the demo (PURGE_POLICY):
//
//   - ci-builds: ci-* tags older than 30 days go, except the 3 newest of
//     them;
//   - releases: release tags (v1…) older than 90 days go, except the 2 newest
//     of them; final versions are protected and locked tags stay;
//   - leftovers: untagged manifests older than 7 days go, unless a kept
//     multi-arch index lists them or they sign or describe a kept image;
//   - protect: latest and final semantic versions are never deleted.
//
// The rules cover team-* repositories only; the demo identity may not touch
// team-legacy/ (see DemoIdentity).
const DemoPolicy = `{"rules":[
  {"name":"ci-builds","filters":["team-.*:^ci-"],"ago":"30d","keep":3},
  {"name":"releases","filters":["team-.*:^v\\d"],"ago":"90d","keep":2},
  {"name":"leftovers","filters":["team-.*:.*"],"untaggedOnly":true,"ago":"7d"}],
 "protect":["^latest$","^v?\\d+\\.\\d+\\.\\d+$"]}`

// DemoIdentityName is the name of the demo's managed identity.
const DemoIdentityName = "acrpurge-mi"

// ForbiddenPrefix is the repository prefix the demo identity has no role
// assignment for.
const ForbiddenPrefix = "team-legacy/"

// DemoIdentity is the app's identity in the demo registry: it may list the
// catalog (Catalog Lister) and holds Repository Contributor under ABAC
// conditions for team-a/, team-b/ and team-c/, but not for ForbiddenPrefix.
func DemoIdentity() acremu.Identity {
	return acremu.Identity{Name: DemoIdentityName, CatalogLister: true, Grants: []acremu.Grant{
		{RepositoryPrefix: "team-a/"}, {RepositoryPrefix: "team-b/"}, {RepositoryPrefix: "team-c/"},
	}}
}

// Kinds of demo repositories, one per template, in seeding order.
const (
	KindService    = "service"    // single-platform images: CI builds, releases, pre-releases, leftovers
	KindMultiArch  = "multi-arch" // every build an OCI index with linux/amd64 and linux/arm64 images
	KindSigned     = "signed"     // every image with a Notary signature and an SBOM (referrers)
	KindReleases   = "releases"   // releases, hotfixes and release candidates, some locked; nightly leftovers
	KindFresh      = "fresh"      // Docker images, all newer than the policy's ages: nothing to delete
	KindForbidden  = "forbidden"  // under ForbiddenPrefix: the identity may not touch it
	KindOutOfScope = "outside"    // no rule covers it: never fanned out
)

// DefaultRepositories is the size of the default demo registry: one
// repository of each kind.
const DefaultRepositories = 7

// Demo is a seeded demo registry and what DemoPolicy must make of it.
type Demo struct {
	// Now is the instant the ages are counted from.
	Now   time.Time
	Repos []RepoSeed
}

// RepoSeed is one seeded repository with the expected fate of every tag
// and manifest under DemoPolicy.
type RepoSeed struct {
	Name string
	Kind string // one of the Kind constants
	// InPolicy: some rule covers the repository, so a timer run fans it out.
	InPolicy bool
	// Forbidden: the demo identity has no role assignment for it.
	Forbidden bool
	// Tags and Manifests (by digest), in seeding order, with the reason
	// DemoPolicy gives each. Items of repositories that are not purged
	// (Forbidden, or not InPolicy) have an empty Expect: they must survive.
	Tags      []Item
	Manifests []Item
}

// Item is one seeded tag or manifest.
type Item struct {
	Ref    string // tag name or manifest digest
	Size   int64  // manifests: the imageSize reported (0 for tags)
	Expect policy.Reason
}

// Gone reports whether DemoPolicy deletes the item.
func (it Item) Gone() bool {
	return it.Expect == policy.ReasonOld || it.Expect == policy.ReasonUntagged
}

// Purged reports whether a timer run purges the repository (it is covered
// and permitted).
func (r RepoSeed) Purged() bool { return r.InPolicy && !r.Forbidden }

// Deleted returns what DemoPolicy deletes from the repository: tags,
// manifests, and the bytes the deleted manifests report.
func (r RepoSeed) Deleted() (tags, manifests, bytes int64) {
	for _, t := range r.Tags {
		if t.Gone() {
			tags++
		}
	}
	for _, m := range r.Manifests {
		if m.Gone() {
			manifests++
			bytes += m.Size
		}
	}
	return tags, manifests, bytes
}

// Kept counts what DemoPolicy keeps, tags and manifests together, by
// reason (as the report's kept counts do); nil when the repository is not
// purged.
func (r RepoSeed) Kept() map[string]int64 {
	if !r.Purged() {
		return nil
	}
	kept := map[string]int64{}
	for _, it := range append(append([]Item(nil), r.Tags...), r.Manifests...) {
		if !it.Gone() {
			kept[string(it.Expect)]++
		}
	}
	return kept
}

// Repo returns the seeded repository named name.
func (d *Demo) Repo(name string) (RepoSeed, bool) {
	for _, r := range d.Repos {
		if r.Name == name {
			return r, true
		}
	}
	return RepoSeed{}, false
}

// Seed fills reg with a demo registry of n repositories (DefaultRepositories
// when n < 1), ages counted back from now. Repository i is built from
// template i mod 7 (service, multi-arch, signed, releases, fresh, forbidden,
// outside); copies after the first get a numeric suffix ("team-a/api-2").
// The content is deterministic: the same now and n give the same digests.
func Seed(reg *acremu.Registry, now time.Time, n int) *Demo {
	if n < 1 {
		n = DefaultRepositories
	}
	ts := templates()
	d := &Demo{Now: now.UTC(), Repos: make([]RepoSeed, 0, n)}
	for i := range n {
		t := ts[i%len(ts)]
		name := t.name
		if c := i / len(ts); c > 0 {
			name = fmt.Sprintf("%s-%d", t.name, c+1)
		}
		b := &repoBuilder{reg: reg, now: d.Now, repo: RepoSeed{Name: name, Kind: t.kind,
			InPolicy: t.kind != KindOutOfScope, Forbidden: t.kind == KindForbidden}}
		t.build(b)
		d.Repos = append(d.Repos, b.repo)
	}
	return d
}

const (
	day = 24 * time.Hour
	mib = 1 << 20
	kib = 1 << 10
)

// Reasons used by the templates, for brevity.
const (
	old       = policy.ReasonOld
	untagged  = policy.ReasonUntagged
	tooNew    = policy.ReasonTooNew
	keep      = policy.ReasonKeep
	locked    = policy.ReasonLocked
	protected = policy.ReasonProtected
	noMatch   = policy.ReasonNoMatch
	tagged    = policy.ReasonTagged
	child     = policy.ReasonIndexChild
	referrer  = policy.ReasonReferrer
)

// repoBuilder puts content into one repository and records its fate.
type repoBuilder struct {
	reg  *acremu.Registry
	now  time.Time
	repo RepoSeed
	n    int
}

// expect is the reason recorded for an item: none when the repository is
// not purged.
func (b *repoBuilder) expect(r policy.Reason) policy.Reason {
	if !b.repo.Purged() {
		return ""
	}
	return r
}

// put stores a, created age ago, and records it with its expected fate.
func (b *repoBuilder) put(a acremu.Artifact, age time.Duration, why policy.Reason) string {
	b.n++
	a.Created = b.now.Add(-age)
	a.Seed = fmt.Sprintf("%s#%d", b.repo.Name, b.n)
	digest := b.reg.Put(b.repo.Name, a)
	b.repo.Manifests = append(b.repo.Manifests, Item{Ref: digest, Size: a.Size, Expect: b.expect(why)})
	return digest
}

// tags records the tags of an image with their expected fates.
func (b *repoBuilder) tags(names []string, whys []policy.Reason) {
	for i, name := range names {
		b.repo.Tags = append(b.repo.Tags, Item{Ref: name, Expect: b.expect(whys[i])})
	}
}

// image puts a single-platform image with tags (each with its fate); the
// manifest survives as tagged when some tag survives, and is deleted as
// untagged when every tag goes (all are older than the leftovers rule's
// 7 days). Without tags it is an untagged leftover with fate why.
func (b *repoBuilder) image(tags []string, whys []policy.Reason, age time.Duration, size int64, why policy.Reason, mediaType string) string {
	if len(tags) > 0 {
		why = untagged
		for _, w := range whys {
			if w != old {
				why = tagged
			}
		}
	}
	d := b.put(acremu.Artifact{Tags: tags, Size: size, MediaType: mediaType}, age, why)
	b.tags(tags, whys)
	return d
}

// lockTag sets deleteEnabled and writeEnabled false on a tag, as
// `az acr repository update --image repo:tag --write-enabled false
// --delete-enabled false` does.
func (b *repoBuilder) lockTag(tag string) {
	f := false
	// The tag was just put, so it exists.
	_ = b.reg.SetTagAttributes(b.repo.Name, tag, acr.Attributes{DeleteEnabled: &f, WriteEnabled: &f})
}

// template is one kind of demo repository.
type template struct {
	name, kind string
	build      func(b *repoBuilder)
}

func templates() []template {
	return []template{
		{"team-a/api", KindService, buildService},
		{"team-a/web", KindMultiArch, buildMultiArch},
		{"team-b/worker", KindSigned, buildSigned},
		{"team-b/jobs", KindReleases, buildReleases},
		{"team-c/docs", KindFresh, buildFresh},
		{"team-legacy/monolith", KindForbidden, buildForbidden},
		{"base/alpine", KindOutOfScope, buildOutside},
	}
}

func one(tag string, why policy.Reason) ([]string, []policy.Reason) {
	return []string{tag}, []policy.Reason{why}
}

// buildService: 16 CI builds every 3 days (the 10 newer than 30 days stay,
// then the ci-builds rule keeps 3 and deletes 3), releases (final versions
// protected; pre-releases older than 90 days beyond the 2 newest go), an
// unmatched dev tag, and untagged leftovers (the two older than 7 days go).
func buildService(b *repoBuilder) {
	const img = 86 * mib
	b.image([]string{"latest", "v2.4.1"}, []policy.Reason{noMatch, protected}, 12*day, img+900*kib, "", "")
	for _, r := range []struct {
		tag  string
		age  int
		why  policy.Reason
		size int64
	}{
		{"v2.4.0", 40, protected, img + 850*kib},
		{"v2.4.0-rc.1", 45, tooNew, img + 840*kib},
		{"v2.3.0", 100, protected, img + 700*kib},
		{"v2.3.0-rc.2", 105, keep, img + 690*kib},
		{"v2.3.0-rc.1", 110, keep, img + 680*kib},
		{"v2.2.0", 185, protected, img + 500*kib},
		{"v2.2.0-rc.1", 190, old, img + 490*kib},
		{"dev", 60, noMatch, img + 2*mib},
	} {
		tags, whys := one(r.tag, r.why)
		b.image(tags, whys, time.Duration(r.age)*day, r.size, "", "")
	}
	for k := range 16 {
		why := old
		switch {
		case k < 10: // 2..29 days
			why = tooNew
		case k < 13: // 32..38 days: the 3 newest old ones
			why = keep
		}
		tags, whys := one(fmt.Sprintf("ci-%d", 1500-k), why)
		b.image(tags, whys, time.Duration(2+3*k)*day, img+int64(k)*64*kib, "", "")
	}
	for _, l := range []struct {
		age time.Duration
		why policy.Reason
	}{{3 * day, tooNew}, {20 * day, untagged}, {65 * day, untagged}} {
		b.image(nil, nil, l.age, img-int64(l.age/day)*kib, l.why, "")
	}
}

// buildMultiArch: 11 CI builds, each an OCI index over a linux/amd64 and a
// linux/arm64 image. Kept indexes keep their (untagged) platform images;
// the 2 deleted builds and an old untagged index lose theirs.
func buildMultiArch(b *repoBuilder) {
	build := func(tags []string, whys []policy.Reason, age time.Duration, indexWhy policy.Reason, childWhy policy.Reason, k int) {
		var children []string
		for i, arch := range []string{"amd64", "arm64"} {
			a := acremu.Artifact{Architecture: arch, OS: "linux", Size: int64(142-5*i)*mib + int64(k)*96*kib}
			children = append(children, b.put(a, age+time.Minute, childWhy))
		}
		b.put(acremu.Artifact{Tags: tags, Children: children, Size: 1612}, age, indexWhy)
		b.tags(tags, whys)
	}
	for k := range 11 {
		age := time.Duration(4+5*k) * day
		tagWhy, indexWhy, childWhy := old, untagged, untagged
		switch {
		case k < 6: // 4..29 days
			tagWhy, indexWhy, childWhy = tooNew, tagged, child
		case k < 9: // 34..44 days
			tagWhy, indexWhy, childWhy = keep, tagged, child
		}
		if k == 0 {
			childWhy = tooNew // the newest platform images are younger than 7 days
		}
		tags, whys := one(fmt.Sprintf("ci-%d", 880-k), tagWhy)
		if k == 0 {
			tags, whys = append(tags, "latest"), append(whys, noMatch)
		}
		build(tags, whys, age, indexWhy, childWhy, k)
	}
	build(nil, nil, 75*day, untagged, untagged, 11) // an index whose tag moved on long ago
}

// buildSigned: 10 CI builds every 8 days, each with a Notary signature and
// an SPDX SBOM attached as referrers. Referrers of kept images stay; those
// of the 3 deleted images go with them.
func buildSigned(b *repoBuilder) {
	for k := range 10 {
		age := time.Duration(4+8*k) * day
		tagWhy, refWhy := old, untagged
		switch {
		case k == 0:
			tagWhy, refWhy = tooNew, tooNew // everything younger than 7 days
		case k < 4: // 12..28 days
			tagWhy, refWhy = tooNew, referrer
		case k < 7: // 36..52 days
			tagWhy, refWhy = keep, referrer
		}
		tags, whys := one(fmt.Sprintf("ci-%d", 640-k), tagWhy)
		if k == 0 {
			tags, whys = append(tags, "latest"), append(whys, noMatch)
		}
		subject := b.image(tags, whys, age, 64*mib+int64(k)*128*kib, "", "")
		b.put(acremu.Artifact{Subject: subject, ArtifactType: acremu.ArtifactTypeNotarySig, Size: 2213}, age-time.Minute, refWhy)
		b.put(acremu.Artifact{Subject: subject, ArtifactType: "application/spdx+json", Size: 181*kib + int64(k)*kib}, age-2*time.Minute, refWhy)
	}
}

// buildReleases: final releases (protected), hotfixes and release
// candidates; two old hotfix tags are locked. Of the old unlocked
// pre-releases the releases rule keeps the 2 newest. Nightly job images are
// pushed untagged; those older than 7 days go.
func buildReleases(b *repoBuilder) {
	const img = 212 * mib
	b.image([]string{"latest", "v1.3.0"}, []policy.Reason{noMatch, protected}, 20*day, img+3*mib, "", "")
	for _, r := range []struct {
		tag    string
		age    int
		why    policy.Reason
		locked bool
	}{
		{"v1.3.0-rc.2", 25, tooNew, false},
		{"v1.3.0-rc.1", 30, tooNew, false},
		{"v1.2.0-hotfix.2", 110, locked, true},
		{"v1.2.0-hotfix.1", 115, keep, false},
		{"v1.2.0", 120, protected, false},
		{"v1.2.0-rc.1", 125, keep, false},
		{"v1.1.0-hotfix.1", 195, locked, true},
		{"v1.1.0", 200, protected, false},
		{"v1.1.0-rc.1", 205, old, false},
		{"v1.0.0-hotfix.1", 290, old, false},
		{"v1.0.0", 300, protected, false},
	} {
		tags, whys := one(r.tag, r.why)
		b.image(tags, whys, time.Duration(r.age)*day, img-int64(r.age)*32*kib, "", "")
		if r.locked {
			b.lockTag(r.tag)
		}
	}
	for _, l := range []struct {
		age time.Duration
		why policy.Reason
	}{{1 * day, tooNew}, {8 * day, untagged}, {15 * day, untagged}, {30 * day, untagged}} {
		b.image(nil, nil, l.age, img+int64(l.age/day)*mib, l.why, "")
	}
}

// buildFresh: Docker schema 2 images, all newer than the policy's ages.
func buildFresh(b *repoBuilder) {
	for k := range 6 {
		tags, whys := one(fmt.Sprintf("ci-%d", 210-k), tooNew)
		if k == 0 {
			tags, whys = append(tags, "latest"), append(whys, noMatch)
		}
		b.image(tags, whys, time.Duration(1+4*k)*day, 38*mib+int64(k)*256*kib, "", acr.MediaTypeDockerManifest)
	}
	// Pushed two hours ago, untagged: younger than the leftovers rule's 7 days.
	b.image(nil, nil, 2*time.Hour, 38*mib, tooNew, acr.MediaTypeDockerManifest)
}

// buildForbidden: plenty the policy would delete, but the identity may not.
func buildForbidden(b *repoBuilder) {
	for k := range 12 {
		tags, whys := one(fmt.Sprintf("ci-%d", 9120-k), "")
		if k == 0 {
			tags, whys = append(tags, "latest"), append(whys, "")
		}
		b.image(tags, whys, time.Duration(20+10*k)*day, 905*mib+int64(k)*mib, "", "")
	}
	for k := range 3 {
		b.image(nil, nil, time.Duration(40+30*k)*day, 900*mib, "", "")
	}
}

// buildOutside: a base image no rule covers.
func buildOutside(b *repoBuilder) {
	for _, r := range []struct {
		tags []string
		age  int
	}{{[]string{"3.19"}, 400}, {[]string{"3.20"}, 250}, {[]string{"3.21", "latest"}, 90}} {
		b.image(r.tags, make([]policy.Reason, len(r.tags)), time.Duration(r.age)*day, 3*mib+int64(r.age)*kib, "", "")
	}
}

package purge_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/purge"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu/emutest"
)

const day = 24 * time.Hour

func mustPolicy(t *testing.T, js string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(js))
	require.NoError(t, err)
	return p
}

// seedApp fills repository "team-a/app" with: 20 old ci-N tags (one image
// each, N=1 newest), one fresh ci tag, a protected "latest", a locked old
// release, an old multi-arch index tag "ci-multi" whose children are only
// its own, a signature referring to the newest kept image, and 3 old
// untagged leftovers.
type seeded struct {
	ciDigest  map[string]string
	fresh     string
	latest    string
	release   string
	index     string
	children  []string
	signature string
	leftovers []string
}

func seedApp(env *emutest.Env, repo string) seeded {
	reg := env.Registry
	now := reg.Now().Truncate(time.Second) // equal sizes across registries
	s := seeded{ciDigest: map[string]string{}}
	for i := 1; i <= 20; i++ {
		at := now.Add(-40*day - time.Duration(i)*time.Hour)
		tag := fmt.Sprintf("ci-%d", i)
		s.ciDigest[tag] = reg.Put(repo, acremu.Artifact{Tags: []string{tag}, Created: at, Size: 1000})
	}
	s.fresh = reg.Put(repo, acremu.Artifact{Tags: []string{"ci-fresh"}, Created: now.Add(-time.Hour), Size: 1000})
	s.latest = reg.Put(repo, acremu.Artifact{Tags: []string{"latest"}, Created: now.Add(-90 * day), Size: 1000})
	f := false
	s.release = reg.Put(repo, acremu.Artifact{Tags: []string{"ci-release"}, Created: now.Add(-100 * day), Size: 1000})
	if err := reg.SetTagAttributes(repo, "ci-release", acr.Attributes{DeleteEnabled: &f}); err != nil {
		panic(err)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		s.children = append(s.children, reg.Put(repo, acremu.Artifact{Architecture: arch, Created: now.Add(-50 * day), Size: 500, Seed: "multi"}))
	}
	s.index = reg.Put(repo, acremu.Artifact{Tags: []string{"ci-multi"}, Children: s.children, Created: now.Add(-50 * day)})
	s.signature = reg.Put(repo, acremu.Artifact{Subject: s.latest, ArtifactType: "application/vnd.cncf.notary.signature", Created: now.Add(-80 * day)})
	for i := 0; i < 3; i++ {
		s.leftovers = append(s.leftovers, reg.Put(repo, acremu.Artifact{Created: now.Add(-60 * day), Seed: fmt.Sprint("left", i), Size: 700}))
	}
	return s
}

const appPolicy = `{"rules":[{"name":"ci","filters":["team-a/app:^ci-"],"ago":"30d","keep":2,"untagged":true}],
 "protect":["^latest$"]}`

// registry is what *acr.Client gives the executor: the test wrappers embed
// it, so that the executor re-reads by listing pages as in production.
type registry interface {
	purge.Registry
	purge.PageLister
}

// singleReads hides the page listings: the executor re-reads with one GET
// per item, as with a Registry that has none.
type singleReads struct{ purge.Registry }

func newEnv(t *testing.T, o emutest.Options) *emutest.Env {
	if o.PageSize == 0 {
		o.PageSize = 5 // many pages: deletes must never disturb the listing
	}
	return emutest.Start(t, o)
}

func TestPurgeCarriesOutThePlan(t *testing.T) {
	env := newEnv(t, emutest.Options{})
	const repo = "team-a/app"
	s := seedApp(env, repo)
	reg := env.Registry

	ex := purge.New(env.Scoped(repo), purge.Options{Concurrency: 4, Now: reg.Now})
	res := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: mustPolicy(t, appPolicy)})
	require.Equal(t, purge.StatusDone, res.Status, res.Reason)

	// ci-1 and ci-2 are the keep-2; ci-3..ci-20 and ci-multi are old candidates.
	var tags []string
	for _, tg := range reg.Tags(repo) {
		tags = append(tags, tg.Name)
	}
	assert.ElementsMatch(t, []string{"ci-1", "ci-2", "ci-fresh", "ci-release", "latest"}, tags)
	assert.EqualValues(t, 19, res.TagsDeleted)

	// Untagged phase (keep 2 applies to untagged manifests too, as in acr
	// purge: ci-3 and ci-4's images are kept): ci-5..ci-20 images, the index,
	// its two children (no surviving index holds them) and three leftovers
	// are gone; the signature of "latest" stays.
	assert.EqualValues(t, 16+1+2+3, res.ManifestsDeleted)
	assert.True(t, reg.HasManifest(repo, s.ciDigest["ci-3"]))
	assert.False(t, reg.HasManifest(repo, s.ciDigest["ci-5"]))
	for _, d := range s.leftovers {
		assert.False(t, reg.HasManifest(repo, d))
	}
	assert.False(t, reg.HasManifest(repo, s.index))
	assert.True(t, reg.HasManifest(repo, s.signature), "signature of a kept image must survive")
	assert.True(t, reg.HasManifest(repo, s.latest))
	assert.True(t, reg.HasManifest(repo, s.release))
	assert.True(t, reg.HasManifest(repo, s.ciDigest["ci-2"]))
	assert.Greater(t, res.BytesFreed, int64(0))
	assert.EqualValues(t, 2+2, res.Kept[policy.ReasonKeep])
	assert.EqualValues(t, 1, res.Kept[policy.ReasonLocked])
	assert.EqualValues(t, 1, res.Kept[policy.ReasonNoMatch], "latest")
	assertNoDoubleDeletes(t, reg)
}

func TestMultiArchChildrenOfKeptIndexSurvive(t *testing.T) {
	env := newEnv(t, emutest.Options{})
	const repo = "team-a/app"
	reg := env.Registry
	now := reg.Now()
	var kids []string
	for _, arch := range []string{"amd64", "arm64", "s390x"} {
		kids = append(kids, reg.Put(repo, acremu.Artifact{Architecture: arch, Created: now.Add(-90 * day)}))
	}
	attest := reg.Put(repo, acremu.Artifact{Architecture: "unknown", OS: "unknown", Created: now.Add(-90 * day), Seed: "attestation"})
	idx := reg.Put(repo, acremu.Artifact{Tags: []string{"ci-keep"}, Children: append(kids, attest), Created: now.Add(-90 * day)})
	sbom := reg.Put(repo, acremu.Artifact{Subject: idx, ArtifactType: "application/spdx+json", Created: now.Add(-90 * day)})
	sig := reg.Put(repo, acremu.Artifact{Subject: sbom, ArtifactType: "application/vnd.cncf.notary.signature", Created: now.Add(-90 * day)})
	// An old index whose tag goes away, with a child that is missing.
	gone := reg.Put(repo, acremu.Artifact{Tags: []string{"ci-old"}, Children: []string{"sha256:" + fmt.Sprintf("%064d", 7)}, Created: now.Add(-95 * day)})

	pol := mustPolicy(t, `{"rules":[{"filters":["team-a/app:^ci-"],"ago":"30d","untagged":true}],"protect":["^ci-keep$"]}`)
	ex := purge.New(env.Scoped(repo), purge.Options{Now: reg.Now})
	res := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: pol})
	require.Equal(t, purge.StatusDone, res.Status, res.Reason)

	for _, d := range append(kids, attest, idx, sbom, sig) {
		assert.True(t, reg.HasManifest(repo, d), "kept index %s must keep %s", idx, d)
	}
	assert.False(t, reg.HasManifest(repo, gone), "untagged old index with a missing child is deleted")
	assert.EqualValues(t, 1, res.TagsDeleted)
	assertNoDoubleDeletes(t, reg)
}

func TestDryRunDeletesNothingAndCountsTheSame(t *testing.T) {
	dry := newEnv(t, emutest.Options{})
	real := newEnv(t, emutest.Options{})
	const repo = "team-a/app"
	seedApp(dry, repo)
	seedApp(real, repo)
	before := len(dry.Registry.Manifests(repo))

	var would atomic.Int64
	exDry := purge.New(dry.Scoped(repo), purge.Options{Now: dry.Registry.Now, OnDecision: func(_ policy.Decision, o purge.Outcome, _ error) {
		if o == purge.OutcomeWouldDelete {
			would.Add(1)
		}
	}})
	rd := exDry.Purge(t.Context(), purge.Job{Repository: repo, Policy: mustPolicy(t, appPolicy), DryRun: true})
	require.Equal(t, purge.StatusDone, rd.Status, rd.Reason)
	assert.Empty(t, dry.Registry.Deletes())
	assert.Len(t, dry.Registry.Manifests(repo), before)
	assert.Zero(t, dry.Registry.Stats().Requests["delete_tag"]+dry.Registry.Stats().Requests["delete_manifest"])

	exReal := purge.New(real.Scoped(repo), purge.Options{Now: real.Registry.Now})
	rr := exReal.Purge(t.Context(), purge.Job{Repository: repo, Policy: mustPolicy(t, appPolicy)})
	require.Equal(t, purge.StatusDone, rr.Status, rr.Reason)

	assert.Equal(t, rr.TagsDeleted, rd.TagsDeleted)
	assert.Equal(t, rr.ManifestsDeleted, rd.ManifestsDeleted)
	assert.Equal(t, rr.BytesFreed, rd.BytesFreed)
	assert.Equal(t, rr.TagsDeleted+rr.ManifestsDeleted, would.Load())
}

func TestForbiddenRepositoryIsReportedNotFatal(t *testing.T) {
	id := acremu.Identity{Name: "abac", Grants: []acremu.Grant{
		{RepositoryPrefix: "team-a/"},
		{RepositoryPrefix: "team-b/", Actions: []string{acr.ActionPull, acr.ActionMetadataRead}},
	}}
	env := newEnv(t, emutest.Options{Registry: acremu.Options{ABAC: true}, Identity: &id})
	seedApp(env, "team-a/app")
	seedApp(env, "team-b/app")
	client := env.Scoped("team-a/app", "team-b/app")
	pol := mustPolicy(t, `{"rules":[{"filters":["team-./app:^ci-"],"ago":"30d"}]}`)
	ex := purge.New(client, purge.Options{Now: env.Registry.Now})

	var wg sync.WaitGroup
	results := make([]purge.Result, 2)
	for i, repo := range []string{"team-a/app", "team-b/app"} {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: pol}) }()
	}
	wg.Wait()
	assert.Equal(t, purge.StatusDone, results[0].Status, results[0].Reason)
	assert.EqualValues(t, 21, results[0].TagsDeleted)
	assert.Equal(t, purge.StatusForbidden, results[1].Status)
	assert.False(t, results[1].Retryable)
	assert.Len(t, env.Registry.Tags("team-b/app"), 24, "nothing deleted where delete is not granted")
	assert.Equal(t, 1, env.Registry.Stats().AccessTokens, "one token for the whole batch")
}

func TestThrottleStormCompletes(t *testing.T) {
	env := newEnv(t, emutest.Options{})
	env.Registry.SetLimits(acremu.Limits{Window: time.Second, Delete: 8})
	const repo = "team-a/app"
	seedApp(env, repo)
	ex := purge.New(env.Scoped(repo), purge.Options{Concurrency: 8, Now: env.Registry.Now})
	res := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: mustPolicy(t, appPolicy)})
	require.Equal(t, purge.StatusDone, res.Status, res.Reason)
	assert.EqualValues(t, 19, res.TagsDeleted)
	assert.Positive(t, env.Registry.Stats().Throttled, "the storm must have happened")
	assertNoDoubleDeletes(t, env.Registry)
}

func TestDeadlineStopsAndResumeFinishesWithoutRedoing(t *testing.T) {
	for _, phase := range []string{"tags", "manifests"} {
		t.Run(phase, func(t *testing.T) {
			env := newEnv(t, emutest.Options{})
			const repo = "team-a/app"
			seedApp(env, repo)
			reg := env.Registry
			pol := mustPolicy(t, appPolicy)

			// The clock jumps past the deadline after a few deletes of the
			// chosen phase.
			var late atomic.Bool
			var n atomic.Int64
			now := func() time.Time {
				if late.Load() {
					return reg.Now().Add(time.Hour)
				}
				return reg.Now()
			}
			stopAfter := map[string]int64{"tags": 5, "manifests": 19 + 5}[phase]
			ex := purge.New(env.Scoped(repo), purge.Options{Concurrency: 2, Now: now,
				OnDecision: func(_ policy.Decision, o purge.Outcome, _ error) {
					if o == purge.OutcomeDeleted && n.Add(1) >= stopAfter {
						late.Store(true)
					}
				}})
			first := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: pol, Deadline: reg.Now().Add(10 * time.Minute)})
			require.Equal(t, purge.StatusPartial, first.Status, first.Reason)
			require.NotNil(t, first.Cursor)
			assert.Equal(t, phase, first.Cursor.Phase)
			deletedFirst := len(reg.Deletes())
			require.Greater(t, deletedFirst, 0)

			// Time passes before the redelivery: the cursor keeps the plan's "now",
			// so what was too new stays too new.
			reg.Advance(20 * day)
			late.Store(false)
			second := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: pol, Cursor: first.Cursor})
			require.Equal(t, purge.StatusDone, second.Status, second.Reason)
			assert.EqualValues(t, 19, first.TagsDeleted+second.TagsDeleted)
			assert.EqualValues(t, 22, first.ManifestsDeleted+second.ManifestsDeleted)
			assert.True(t, reg.HasTag(repo, "ci-fresh"))
			assertNoDoubleDeletes(t, reg)
		})
	}
}

// racing wraps the registry to change things between planning and deleting.
type racing struct {
	registry
	before func(tag string)
}

func (r racing) DeleteTag(ctx context.Context, repo, tag string) error {
	r.before(tag)
	return r.registry.DeleteTag(ctx, repo, tag)
}

func TestItemsChangingMidRun(t *testing.T) {
	env := newEnv(t, emutest.Options{})
	const repo = "team-a/app"
	s := seedApp(env, repo)
	reg := env.Registry
	client := env.Scoped(repo)
	f := false
	var once1, once2 sync.Once
	wrapped := racing{registry: client, before: func(tag string) {
		switch tag {
		case "ci-7": // someone else deletes it first: 404 is success
			once1.Do(func() { require.NoError(t, client.DeleteTag(context.Background(), repo, tag)) })
		case "ci-9": // someone locks it after we planned: 405, keep it and its image
			once2.Do(func() { require.NoError(t, reg.SetTagAttributes(repo, tag, acr.Attributes{WriteEnabled: &f})) })
		}
	}}
	ex := purge.New(wrapped, purge.Options{Now: reg.Now})
	res := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: mustPolicy(t, appPolicy)})
	require.Equal(t, purge.StatusDone, res.Status, res.Reason)
	assert.True(t, reg.HasTag(repo, "ci-9"))
	assert.True(t, reg.HasManifest(repo, s.ciDigest["ci-9"]), "image of a tag that could not be deleted stays")
	assert.False(t, reg.HasTag(repo, "ci-7"))
	assert.EqualValues(t, 2, res.Kept[policy.ReasonLocked], "ci-release planned locked + ci-9 refused")
	assert.EqualValues(t, 1, reg.Stats().DeleteNotFound)
}

// counting wraps the registry to measure deletes in flight.
type counting struct {
	registry
	cur, max atomic.Int64
}

func (c *counting) DeleteTag(ctx context.Context, repo, tag string) error {
	n := c.cur.Add(1)
	for {
		m := c.max.Load()
		if n <= m || c.max.CompareAndSwap(m, n) {
			break
		}
	}
	defer c.cur.Add(-1)
	return c.registry.DeleteTag(ctx, repo, tag)
}

func TestConcurrencyIsSharedAcrossRepositories(t *testing.T) {
	env := newEnv(t, emutest.Options{Registry: acremu.Options{}})
	env.Registry.SetFaults(acremu.Faults{Latency: 5 * time.Millisecond})
	repos := []string{"team-a/app", "team-a/api", "team-a/web"}
	pol := mustPolicy(t, `{"rules":[{"filters":["team-a/.*:^ci-"],"ago":"30d"}]}`)
	for _, r := range repos {
		seedApp(env, r)
	}
	c := &counting{registry: env.Scoped(repos...)}
	ex := purge.New(c, purge.Options{Concurrency: 3, Now: env.Registry.Now})
	var wg sync.WaitGroup
	for _, r := range repos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := ex.Purge(t.Context(), purge.Job{Repository: r, Policy: pol})
			assert.Equal(t, purge.StatusDone, res.Status, res.Reason)
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, c.max.Load(), int64(3))
	assert.GreaterOrEqual(t, c.max.Load(), int64(2), "deletes do run in parallel")
}

func TestRepositoryNotInPolicyOrGone(t *testing.T) {
	env := newEnv(t, emutest.Options{})
	ex := purge.New(env.Scoped("team-z/none", "team-a/gone"), purge.Options{Now: env.Registry.Now})
	pol := mustPolicy(t, appPolicy)
	r1 := ex.Purge(t.Context(), purge.Job{Repository: "team-z/none", Policy: pol})
	assert.Equal(t, purge.StatusSkipped, r1.Status)
	pol2 := mustPolicy(t, `{"rules":[{"filters":["team-a/.*:.*"],"ago":"1d"}]}`)
	r2 := ex.Purge(t.Context(), purge.Job{Repository: "team-a/gone", Policy: pol2})
	assert.Equal(t, purge.StatusSkipped, r2.Status, r2.Reason)
	assert.Equal(t, "repository not found", r2.Reason)
}

func TestRegistryOutageIsRetryable(t *testing.T) {
	env := newEnv(t, emutest.Options{Retry: acr.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}})
	const repo = "team-a/app"
	seedApp(env, repo)
	env.Registry.SetFaults(acremu.Faults{ErrorRate: 1})
	ex := purge.New(env.Scoped(repo), purge.Options{Now: env.Registry.Now})
	res := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: mustPolicy(t, appPolicy)})
	assert.Equal(t, purge.StatusFailed, res.Status)
	assert.True(t, res.Retryable, res.Reason)
}

// assertNoDoubleDeletes checks the registry never deleted the same thing twice.
func assertNoDoubleDeletes(t *testing.T, reg *acremu.Registry) {
	t.Helper()
	seen := map[string]int{}
	for _, d := range reg.Deletes() {
		seen[d.Repo+"@"+d.Ref]++
	}
	var dup []string
	for k, n := range seen {
		if n > 1 {
			dup = append(dup, k)
		}
	}
	sort.Strings(dup)
	assert.Empty(t, dup, "deleted twice")
}

// lockingManifests locks a manifest just before its delete is sent.
type lockingManifests struct {
	registry
	reg    *acremu.Registry
	target string
}

func (l lockingManifests) DeleteManifest(ctx context.Context, repo, digest string) error {
	if digest == l.target {
		f := false
		if err := l.reg.SetManifestAttributes(repo, digest, acr.Attributes{DeleteEnabled: &f}); err != nil {
			return err
		}
	}
	return l.registry.DeleteManifest(ctx, repo, digest)
}

func TestReferrerGoesOnlyAfterItsSubject(t *testing.T) {
	env := newEnv(t, emutest.Options{})
	const repo = "team-a/app"
	reg := env.Registry
	old := reg.Now().Add(-60 * day)
	img1 := reg.Put(repo, acremu.Artifact{Created: old, Seed: "1"})
	sig1 := reg.Put(repo, acremu.Artifact{Subject: img1, ArtifactType: "application/vnd.cncf.notary.signature", Created: old})
	img2 := reg.Put(repo, acremu.Artifact{Created: old, Seed: "2"})
	sig2 := reg.Put(repo, acremu.Artifact{Subject: img2, ArtifactType: "application/vnd.cncf.notary.signature", Created: old})
	sbom2 := reg.Put(repo, acremu.Artifact{Subject: sig2, ArtifactType: "application/spdx+json", Created: old})

	pol := mustPolicy(t, `{"rules":[{"filters":["team-a/app:.*"],"untaggedOnly":true,"ago":"30d"}]}`)
	ex := purge.New(lockingManifests{registry: env.Scoped(repo), reg: reg, target: img2}, purge.Options{Now: reg.Now})
	res := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: pol})
	require.Equal(t, purge.StatusDone, res.Status, res.Reason)

	assert.False(t, reg.HasManifest(repo, img1))
	assert.False(t, reg.HasManifest(repo, sig1))
	assert.True(t, reg.HasManifest(repo, img2), "locked in a race")
	assert.True(t, reg.HasManifest(repo, sig2), "the signature stays with its surviving image")
	assert.True(t, reg.HasManifest(repo, sbom2), "and so does what refers to the signature")
	assert.EqualValues(t, 2, res.ManifestsDeleted)
	assert.EqualValues(t, 2, res.Kept[policy.ReasonReferrer])
	assert.EqualValues(t, 1, res.Kept[policy.ReasonLocked])
	for _, d := range reg.Deletes() {
		assert.NotEqual(t, sig2, d.Ref)
	}
	// The signature of img1 went after img1 (by cascade, or by our delete finding it gone).
	var order []string
	for _, d := range reg.Deletes() {
		order = append(order, d.Ref)
	}
	assert.Equal(t, img1, order[0])
}

// hooked changes the registry between planning and deleting: afterTagPage
// runs once the executor has handled a page of the tag listing,
// beforeTagRead and beforeManifestRead before every re-read of tags
// (pages or single ones) and of manifests.
type hooked struct {
	registry
	afterTagPage       func()
	beforeTagRead      func()
	beforeManifestRead func()
	deleteTagErr       func(tag string) error
}

func call(f func()) {
	if f != nil {
		f()
	}
}

func (h hooked) Tags(ctx context.Context, repo string, fn func([]acr.Tag) error) error {
	return h.registry.Tags(ctx, repo, func(page []acr.Tag) error {
		err := fn(page)
		call(h.afterTagPage)
		return err
	})
}

func (h hooked) GetTag(ctx context.Context, repo, tag string) (*acr.Tag, error) {
	call(h.beforeTagRead)
	return h.registry.GetTag(ctx, repo, tag)
}

func (h hooked) TagsPage(ctx context.Context, repo, last string, n int) ([]acr.Tag, bool, error) {
	call(h.beforeTagRead)
	return h.registry.TagsPage(ctx, repo, last, n)
}

func (h hooked) GetManifest(ctx context.Context, repo, digest string) (*acr.Manifest, error) {
	call(h.beforeManifestRead)
	return h.registry.GetManifest(ctx, repo, digest)
}

func (h hooked) ManifestsPage(ctx context.Context, repo, last string, n int) ([]acr.Manifest, bool, error) {
	call(h.beforeManifestRead)
	return h.registry.ManifestsPage(ctx, repo, last, n)
}

func (h hooked) DeleteTag(ctx context.Context, repo, tag string) error {
	if h.deleteTagErr != nil {
		if err := h.deleteTagErr(tag); err != nil {
			return err
		}
	}
	return h.registry.DeleteTag(ctx, repo, tag)
}

// skewed is an executor clock that runs ahead of the registry's by an
// offset the test moves: it makes reads old without waiting.
type skewed struct {
	reg *acremu.Registry
	off atomic.Int64
}

func (c *skewed) now() time.Time                  { return c.reg.Now().Add(time.Duration(c.off.Load())) }
func (c *skewed) advance(d time.Duration)         { c.off.Add(int64(d)) }
func (c *skewed) frozen() func() time.Time        { t := c.now(); return func() time.Time { return t } }
func countOf(reg *acremu.Registry, ep string) int { return reg.Stats().Requests[ep] }

// Items changed after they were planned are found by the re-read before
// their delete and kept: a tag re-pushed onto another image, a leftover
// manifest tagged. One deleted by someone else meanwhile counts as done
// and gets no delete of ours. Both with page re-reads and with single GETs.
func TestChangedSincePlanningIsKept(t *testing.T) {
	for _, pages := range []bool{true, false} {
		t.Run(fmt.Sprintf("pages=%v", pages), func(t *testing.T) {
			env := newEnv(t, emutest.Options{})
			const repo = "team-a/app"
			s := seedApp(env, repo)
			reg := env.Registry
			client := env.Scoped(repo)
			fresh := reg.Put(repo, acremu.Artifact{Created: reg.Now(), Seed: "fresh build"})
			clock := &skewed{reg: reg}
			var once1, once2 sync.Once
			h := hooked{registry: client,
				// Each page's deletions come up for deleting with their
				// listing read 1.5 s old: they are read again.
				afterTagPage: func() { clock.advance(1500 * time.Millisecond) },
				beforeTagRead: func() {
					once1.Do(func() { // ci-6 re-pushed onto a fresh image after planning
						require.NoError(t, reg.Tag(repo, "ci-6", fresh, reg.Now()))
					})
				},
				beforeManifestRead: func() {
					once2.Do(func() { // after the listing: a leftover tagged, another deleted
						require.NoError(t, reg.Tag(repo, "rescued", s.leftovers[0], reg.Now()))
						require.NoError(t, client.DeleteManifest(context.Background(), repo, s.leftovers[1]))
					})
				}}
			tags := len(reg.Tags(repo))
			listed := len(reg.Manifests(repo)) // the tag phase deletes no manifest
			var r purge.Registry = h
			if !pages {
				r = singleReads{h}
			}
			ex := purge.New(r, purge.Options{Now: clock.now})
			res := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: mustPolicy(t, appPolicy)})
			require.Equal(t, purge.StatusDone, res.Status, res.Reason)

			assert.True(t, reg.HasTag(repo, "ci-6"), "a re-pointed tag is not deleted")
			assert.True(t, reg.HasManifest(repo, fresh))
			assert.True(t, reg.HasManifest(repo, s.ciDigest["ci-6"]), "its old image stays this run (it counted as tagged)")
			assert.True(t, reg.HasTag(repo, "rescued"))
			assert.True(t, reg.HasManifest(repo, s.leftovers[0]), "a manifest tagged after listing is not deleted")
			assert.EqualValues(t, 2, res.Kept[purge.ReasonChanged])
			assert.False(t, reg.HasManifest(repo, s.leftovers[1]))
			assert.Zero(t, reg.Stats().DeleteNotFound, "no delete sent for what was found gone")
			assert.EqualValues(t, 19-1, res.TagsDeleted, "all planned but ci-6")
			assert.EqualValues(t, 15+2+2, res.ManifestsDeleted, "the one someone else deleted meanwhile is not counted as ours")
			assert.EqualValues(t, 1, res.AlreadyGone)
			if pages {
				assert.Greater(t, countOf(reg, "tags"), (tags+4)/5, "tag pages were read again")
				assert.Positive(t, countOf(reg, "get_tag"), "the moved tag is read alone")
				assert.Greater(t, countOf(reg, "manifests"), (listed+4)/5, "manifest pages were read again")
			} else {
				assert.Equal(t, (listed+4)/5, countOf(reg, "manifests"), "the listing only: no page re-reads without PageLister")
			}
			assertNoDoubleDeletes(t, reg)
		})
	}
}

// delaying runs a hook just before a tag's delete is handed to the client.
type delaying struct {
	registry
	before func(tag string)
}

func (d delaying) DeleteTag(ctx context.Context, repo, tag string) error {
	d.before(tag)
	return d.registry.DeleteTag(ctx, repo, tag)
}

// MaxVerifyAge is enforced when the delete is sent: a read 2.5 s old by
// then (here the clock jumps; in production a wait for the delete budget
// or a retry) is replaced by a fresh one, which catches a re-push; a read
// 1.5 s old is trusted.
func TestReadOlderThanTheBoundIsReadAgain(t *testing.T) {
	for _, tc := range []struct {
		name string
		age  time.Duration
	}{{"2.5s", 2500 * time.Millisecond}, {"1.5s", 1500 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			require.Less(t, 1500*time.Millisecond, purge.MaxVerifyAge)
			require.Greater(t, 2500*time.Millisecond, purge.MaxVerifyAge)
			env := newEnv(t, emutest.Options{})
			const repo = "team-a/app"
			s := seedApp(env, repo)
			reg := env.Registry
			fresh := reg.Put(repo, acremu.Artifact{Created: reg.Now(), Seed: "fresh build"})
			clock := &skewed{reg: reg}
			stale := tc.age > purge.MaxVerifyAge
			var once sync.Once
			h := delaying{registry: env.Scoped(repo), before: func(tag string) {
				if tag != "ci-6" {
					return
				}
				once.Do(func() {
					clock.advance(tc.age)
					if stale { // re-pushed while the delete waited
						require.NoError(t, reg.Tag(repo, "ci-6", fresh, reg.Now()))
					}
				})
			}}
			ex := purge.New(h, purge.Options{Concurrency: 1, Now: clock.now})
			res := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: mustPolicy(t, appPolicy)})
			require.Equal(t, purge.StatusDone, res.Status, res.Reason)
			if stale {
				assert.True(t, reg.HasTag(repo, "ci-6"), "deleted on a read older than MaxVerifyAge")
				assert.True(t, reg.HasManifest(repo, s.ciDigest["ci-6"]))
				assert.EqualValues(t, 1, res.Kept[purge.ReasonChanged])
				assert.Positive(t, countOf(reg, "get_tag"))
			} else {
				assert.False(t, reg.HasTag(repo, "ci-6"))
				assert.Zero(t, countOf(reg, "get_tag"), "a read younger than MaxVerifyAge is not repeated")
				assert.EqualValues(t, 19, res.TagsDeleted)
			}
		})
	}
}

// unlocking runs a hook just before a tag's unlock is handed to the client.
type unlocking struct {
	registry
	before func(tag string)
}

func (u unlocking) UpdateTagAttributes(ctx context.Context, repo, tag string, a acr.Attributes) error {
	u.before(tag)
	return u.registry.UpdateTagAttributes(ctx, repo, tag, a)
}

// includeLocked: the unlock is guarded like the delete. A locked tag whose
// read grew stale before its unlock is read again; still as planned, it is
// unlocked and deleted; re-pushed meanwhile, it is neither unlocked nor
// deleted.
func TestUnlockIsGuardedToo(t *testing.T) {
	for _, repush := range []bool{false, true} {
		t.Run(fmt.Sprintf("repushed=%v", repush), func(t *testing.T) {
			env := newEnv(t, emutest.Options{})
			const repo = "team-a/app"
			s := seedApp(env, repo)
			reg := env.Registry
			clock := &skewed{reg: reg}
			var once sync.Once
			u := unlocking{registry: env.Scoped(repo), before: func(tag string) {
				if tag != "ci-release" {
					return
				}
				once.Do(func() {
					clock.advance(purge.MaxVerifyAge + time.Second)
					if repush {
						require.NoError(t, reg.Tag(repo, "ci-release", s.latest, reg.Now()))
					}
				})
			}}
			pol := mustPolicy(t, `{"rules":[{"filters":["team-a/app:^ci-release$"],"ago":"30d","includeLocked":true}]}`)
			res := purge.New(u, purge.Options{Now: clock.now}).Purge(t.Context(), purge.Job{Repository: repo, Policy: pol})
			require.Equal(t, purge.StatusDone, res.Status, res.Reason)
			assert.Equal(t, 1, countOf(reg, "get_tag"), "the stale read is repeated once, in the slot")
			if repush {
				assert.True(t, reg.HasTag(repo, "ci-release"))
				assert.Zero(t, countOf(reg, "patch_tag"), "not unlocked")
				assert.EqualValues(t, 1, res.Kept[purge.ReasonChanged])
				var rel acr.Tag
				for _, tg := range reg.Tags(repo) {
					if tg.Name == "ci-release" {
						rel = tg
					}
				}
				assert.True(t, rel.Attributes.Locked(), "still locked")
			} else {
				assert.False(t, reg.HasTag(repo, "ci-release"))
				assert.Equal(t, 1, countOf(reg, "patch_tag"))
				assert.EqualValues(t, 1, res.TagsDeleted)
			}
		})
	}
}

// badPages refuses page re-reads as bad requests.
type badPages struct{ registry }

func (badPages) ManifestsPage(_ context.Context, repo, _ string, _ int) ([]acr.Manifest, bool, error) {
	return nil, false, &acr.Error{Op: "list manifests", Repository: repo, StatusCode: 400, Code: "PAGINATION_NUMBER_INVALID"}
}

// A registry that refuses a page re-read costs GETs, not deletes.
func TestRefusedPageReadFallsBackToSingleReads(t *testing.T) {
	env := newEnv(t, emutest.Options{})
	const repo = "team-a/app"
	s := seedApp(env, repo)
	reg := env.Registry
	res := purge.New(badPages{env.Scoped(repo)}, purge.Options{Now: reg.Now}).Purge(t.Context(), purge.Job{Repository: repo, Policy: mustPolicy(t, appPolicy)})
	require.Equal(t, purge.StatusDone, res.Status, res.Reason)
	assert.Zero(t, res.DeleteErrors)
	assert.EqualValues(t, 22, res.ManifestsDeleted)
	assert.False(t, reg.HasManifest(repo, s.leftovers[0]))
	assert.Equal(t, 22, countOf(reg, "get_manifest_attributes"))
}

// Re-reading costs about one request per page of deletions, not one per
// delete; a lone deletion is read with one GET. The clock stands still, so
// no read ages.
func TestReReadsAreFewerThanDeletes(t *testing.T) {
	env := newEnv(t, emutest.Options{})
	const repo = "team-a/app"
	reg := env.Registry
	old := reg.Now().Add(-60 * day)
	for i := range 40 {
		reg.Put(repo, acremu.Artifact{Tags: []string{fmt.Sprintf("ci-%02d", i)}, Created: old.Add(-time.Duration(i) * time.Minute), Seed: fmt.Sprint("t", i)})
		reg.Put(repo, acremu.Artifact{Created: old, Seed: fmt.Sprint("u", i)})
	}
	for i := range 10 {
		reg.Put(repo, acremu.Artifact{Tags: []string{fmt.Sprintf("keep-%d", i)}, Created: old, Seed: fmt.Sprint("k", i)})
	}
	clock := &skewed{reg: reg}
	pol := mustPolicy(t, `{"rules":[{"filters":["team-a/app:^ci-"],"ago":"30d","untagged":true}]}`)
	ex := purge.New(env.Scoped(repo), purge.Options{Now: clock.frozen(), VerifyPageSize: 10})
	res := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: pol})
	require.Equal(t, purge.StatusDone, res.Status, res.Reason)
	require.EqualValues(t, 40, res.TagsDeleted)
	require.EqualValues(t, 80, res.ManifestsDeleted)

	// Tags: the listing pages (5 tags each) were their reads.
	assert.Equal(t, 50/5, countOf(reg, "tags"), "listing pages only")
	assert.Zero(t, countOf(reg, "get_tag"))
	// Manifests: 90 listed, 80 deleted, pages of 10 to re-read them.
	reads := countOf(reg, "manifests") - 90/5 + countOf(reg, "get_manifest_attributes")
	t.Logf("%d reads before 80 manifest deletes", reads)
	assert.Positive(t, reads)
	assert.LessOrEqual(t, reads, 80/10+2)
	assert.Equal(t, 80, countOf(reg, "delete_manifest"))

	t.Run("lone deletion", func(t *testing.T) {
		reg.Put(repo, acremu.Artifact{Created: old, Seed: "lone"})
		reg.ResetStats()
		res := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: pol})
		require.Equal(t, purge.StatusDone, res.Status, res.Reason)
		assert.EqualValues(t, 1, res.ManifestsDeleted)
		assert.Equal(t, 1, countOf(reg, "get_manifest_attributes"))
		assert.Equal(t, 3, countOf(reg, "manifests"), "the listing only (10 manifests, pages of 5)")
	})
}

func TestLockIsRestoredWhenDeleteFails(t *testing.T) {
	env := newEnv(t, emutest.Options{})
	const repo = "team-a/app"
	seedApp(env, repo)
	reg := env.Registry
	h := hooked{registry: env.Scoped(repo), deleteTagErr: func(tag string) error {
		if tag == "ci-release" {
			return &acr.Error{Op: "delete tag", Repository: repo, Ref: tag, StatusCode: 400, Code: "TAG_INVALID"}
		}
		return nil
	}}
	pol := mustPolicy(t, `{"rules":[{"filters":["team-a/app:^ci-"],"ago":"30d","includeLocked":true}]}`)
	ex := purge.New(h, purge.Options{Now: reg.Now})
	res := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: pol})
	require.Equal(t, purge.StatusDone, res.Status, res.Reason)
	assert.EqualValues(t, 1, res.DeleteErrors)
	var rel *acr.Tag
	for _, tg := range reg.Tags(repo) {
		if tg.Name == "ci-release" {
			rel = &tg
		}
	}
	require.NotNil(t, rel, "the failed delete left the tag")
	assert.True(t, rel.Attributes.Locked(), "its lock is put back")
}

// slowListing flips the clock past the deadline while the manifests are
// being listed.
type slowListing struct {
	registry
	pages int
	late  *atomic.Bool
}

func (s slowListing) Manifests(ctx context.Context, repo string, fn func([]acr.Manifest) error) error {
	n := 0
	return s.registry.Manifests(ctx, repo, func(p []acr.Manifest) error {
		if n++; n == s.pages {
			s.late.Store(true)
		}
		return fn(p)
	})
}

func TestDeadlineDuringPlanning(t *testing.T) {
	env := newEnv(t, emutest.Options{})
	const repo = "team-a/app"
	seedApp(env, repo)
	reg := env.Registry
	var late atomic.Bool
	now := func() time.Time {
		if late.Load() {
			return reg.Now().Add(time.Hour)
		}
		return reg.Now()
	}
	pol := mustPolicy(t, `{"rules":[{"filters":["team-a/app:.*"],"untaggedOnly":true,"ago":"1d"}]}`)
	ex := purge.New(slowListing{registry: env.Scoped(repo), pages: 2, late: &late}, purge.Options{Now: now})
	res := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: pol, Deadline: reg.Now().Add(time.Minute)})
	assert.Equal(t, purge.StatusPartial, res.Status, res.Reason)
	require.NotNil(t, res.Cursor)
	assert.Equal(t, policy.PhaseManifests, res.Cursor.Phase)
	assert.Empty(t, reg.Deletes(), "nothing deleted from a plan cut short")
	assert.Positive(t, res.Duration)
}

// An index the plan deletes is locked in a race: its delete is refused, so
// its children (which waited for it) stay, while the children of an index
// that did go are deleted after it. A child listed by both stays.
func TestChildrenStayWhenTheirIndexDeleteIsRefused(t *testing.T) {
	for _, dry := range []bool{false, true} {
		t.Run(fmt.Sprintf("dryRun=%v", dry), func(t *testing.T) {
			env := newEnv(t, emutest.Options{})
			const repo = "team-a/app"
			reg := env.Registry
			now := reg.Now()
			var kids, kids2 []string
			for _, arch := range []string{"amd64", "arm64"} {
				kids = append(kids, reg.Put(repo, acremu.Artifact{Architecture: arch, Created: now.Add(-50 * day), Seed: "locked"}))
				kids2 = append(kids2, reg.Put(repo, acremu.Artifact{Architecture: arch, Created: now.Add(-50 * day), Seed: "open"}))
			}
			shared := reg.Put(repo, acremu.Artifact{Architecture: "s390x", Created: now.Add(-50 * day), Seed: "shared"})
			idx := reg.Put(repo, acremu.Artifact{Children: append(slices.Clone(kids), shared), Created: now.Add(-40 * day)})
			idx2 := reg.Put(repo, acremu.Artifact{Children: append(slices.Clone(kids2), shared), Created: now.Add(-40 * day), Seed: "2"})
			// A nested index under the refused one: its child waits two levels.
			leaf := reg.Put(repo, acremu.Artifact{Architecture: "riscv64", Created: now.Add(-50 * day), Seed: "leaf"})
			inner := reg.Put(repo, acremu.Artifact{Children: []string{leaf}, Created: now.Add(-45 * day), Seed: "inner"})
			outer := reg.Put(repo, acremu.Artifact{Children: []string{inner}, Created: now.Add(-40 * day), Seed: "outer"})

			pol := mustPolicy(t, `{"rules":[{"filters":["team-a/app:.*"],"untaggedOnly":true,"ago":"30d"}]}`)
			locker := lockingManifests{registry: env.Scoped(repo), reg: reg, target: idx}
			var mu sync.Mutex
			outcomes := map[string]purge.Outcome{}
			reasons := map[string]policy.Reason{}
			ex := purge.New(multiLocking{locker, outer}, purge.Options{Now: reg.Now, OnDecision: func(d policy.Decision, o purge.Outcome, _ error) {
				mu.Lock()
				defer mu.Unlock()
				outcomes[d.Digest], reasons[d.Digest] = o, d.Reason
			}})
			res := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: pol, DryRun: dry})
			require.Equal(t, purge.StatusDone, res.Status, res.Reason)

			if dry {
				// Nothing refuses a dry run: everything would go.
				assert.EqualValues(t, 10, res.ManifestsDeleted)
				assert.Empty(t, reg.Deletes())
				return
			}
			assert.True(t, reg.HasManifest(repo, idx), "locked in a race")
			assert.True(t, reg.HasManifest(repo, outer), "locked in a race")
			for _, k := range append(slices.Clone(kids), shared, inner, leaf) {
				assert.True(t, reg.HasManifest(repo, k), "child %s of a surviving index deleted", k)
				assert.Equal(t, purge.OutcomeKept, outcomes[k], k)
				assert.Equal(t, policy.ReasonIndexChild, reasons[k], k)
			}
			assert.False(t, reg.HasManifest(repo, idx2))
			for _, k := range kids2 {
				assert.False(t, reg.HasManifest(repo, k), "child %s of a deleted index kept", k)
			}
			assert.EqualValues(t, 3, res.ManifestsDeleted)
			assert.EqualValues(t, 2, res.Kept[policy.ReasonLocked])
			assert.EqualValues(t, 5, res.Kept[policy.ReasonIndexChild])
			// idx2 went before its children.
			pos := map[string]int{}
			for i, d := range reg.Deletes() {
				pos[d.Ref] = i
			}
			for _, k := range kids2 {
				assert.Less(t, pos[idx2], pos[k])
			}
			assertNoDoubleDeletes(t, reg)
		})
	}
}

// multiLocking locks a second manifest just before its delete is sent.
type multiLocking struct {
	lockingManifests
	second string
}

func (m multiLocking) DeleteManifest(ctx context.Context, repo, digest string) error {
	if digest == m.second {
		return lockingManifests{registry: m.registry, reg: m.reg, target: digest}.DeleteManifest(ctx, repo, digest)
	}
	return m.lockingManifests.DeleteManifest(ctx, repo, digest)
}

// A referrer the policy keeps (protected tag, keep-N) keeps its subject:
// deleting the subject would make the registry delete the referrer too.
func TestKeptReferrerKeepsItsSubject(t *testing.T) {
	t.Run("protected tag", func(t *testing.T) {
		env := newEnv(t, emutest.Options{})
		const repo = "team-a/app"
		reg := env.Registry
		old := reg.Now().Add(-60 * day)
		subj := reg.Put(repo, acremu.Artifact{Created: old, Seed: "subj"})
		sbom := reg.Put(repo, acremu.Artifact{Subject: subj, ArtifactType: "application/spdx+json", Tags: []string{"sbom"}, Created: old})
		other := reg.Put(repo, acremu.Artifact{Created: old, Seed: "other"})
		pol := mustPolicy(t, `{"rules":[{"filters":["team-a/app:.*"],"ago":"30d","untagged":true}],"protect":["^sbom$"]}`)
		res := purge.New(env.Scoped(repo), purge.Options{Now: reg.Now}).Purge(t.Context(), purge.Job{Repository: repo, Policy: pol})
		require.Equal(t, purge.StatusDone, res.Status, res.Reason)
		assert.True(t, reg.HasTag(repo, "sbom"))
		assert.True(t, reg.HasManifest(repo, sbom))
		assert.True(t, reg.HasManifest(repo, subj))
		assert.False(t, reg.HasManifest(repo, other))
		assert.EqualValues(t, 1, res.Kept[policy.ReasonSubject])
	})
	t.Run("keep-N", func(t *testing.T) {
		env := newEnv(t, emutest.Options{})
		const repo = "team-a/app"
		reg := env.Registry
		now := reg.Now()
		subj := reg.Put(repo, acremu.Artifact{Created: now.Add(-60 * day), Seed: "subj"})
		sig := reg.Put(repo, acremu.Artifact{Subject: subj, ArtifactType: "application/vnd.cncf.notary.signature", Created: now.Add(-40 * day)})
		older := reg.Put(repo, acremu.Artifact{Created: now.Add(-70 * day), Seed: "older"})
		pol := mustPolicy(t, `{"rules":[{"filters":["team-a/app:.*"],"untaggedOnly":true,"ago":"30d","keep":1}]}`)
		res := purge.New(env.Scoped(repo), purge.Options{Now: reg.Now}).Purge(t.Context(), purge.Job{Repository: repo, Policy: pol})
		require.Equal(t, purge.StatusDone, res.Status, res.Reason)
		assert.True(t, reg.HasManifest(repo, sig), "kept by keep 1")
		assert.True(t, reg.HasManifest(repo, subj), "subject of the kept signature")
		assert.False(t, reg.HasManifest(repo, older))
	})
}

// lostBody answers 404 for one manifest body, as a lagging replica might.
type lostBody struct {
	registry
	digest string
}

func (l lostBody) ManifestBody(ctx context.Context, repo, digest string) (*acr.ManifestBody, error) {
	if digest == l.digest {
		return nil, &acr.Error{Op: "get manifest", Repository: repo, Ref: digest, StatusCode: 404, Code: "MANIFEST_UNKNOWN"}
	}
	return l.registry.ManifestBody(ctx, repo, digest)
}

func TestInconsistentListingIsRetryableAndDeletesNothing(t *testing.T) {
	env := newEnv(t, emutest.Options{})
	const repo = "team-a/app"
	reg := env.Registry
	old := reg.Now().Add(-60 * day)
	kid := reg.Put(repo, acremu.Artifact{Created: old, Seed: "kid"})
	idx := reg.Put(repo, acremu.Artifact{Tags: []string{"release"}, Children: []string{kid}, Created: old})
	reg.Put(repo, acremu.Artifact{Created: old, Seed: "leftover"})
	pol := mustPolicy(t, `{"rules":[{"filters":["team-a/app:.*"],"untaggedOnly":true,"ago":"30d"}]}`)
	ex := purge.New(lostBody{registry: env.Scoped(repo), digest: idx}, purge.Options{Now: reg.Now})
	res := ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: pol})
	assert.Equal(t, purge.StatusFailed, res.Status)
	assert.True(t, res.Retryable, res.Reason)
	assert.ErrorIs(t, res.Err, policy.ErrListingInconsistent)
	assert.Empty(t, reg.Deletes())
}

package localstack_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/localstack"
)

var t0 = time.Date(2025, 3, 4, 2, 0, 3, 0, time.UTC)

// TestSeedMatchesRegistry: every seeded item is in the registry, the
// registry holds nothing else, and an expectation is recorded exactly for
// the repositories a run purges.
func TestSeedMatchesRegistry(t *testing.T) {
	reg := acremu.New(acremu.Options{ABAC: true})
	demo := localstack.Seed(reg, t0, localstack.DefaultRepositories)
	require.Len(t, demo.Repos, localstack.DefaultRepositories)
	var names []string
	kinds := map[string]bool{}
	for _, r := range demo.Repos {
		names = append(names, r.Name)
		kinds[r.Kind] = true
		var tags []string
		for _, tg := range reg.Tags(r.Name) {
			tags = append(tags, tg.Name)
		}
		var seededTags, seededManifests, listed []string
		for _, it := range r.Tags {
			seededTags = append(seededTags, it.Ref)
		}
		for _, it := range r.Manifests {
			seededManifests = append(seededManifests, it.Ref)
		}
		for _, m := range reg.Manifests(r.Name) {
			listed = append(listed, m.Digest)
		}
		assert.ElementsMatch(t, tags, seededTags, r.Name)
		assert.ElementsMatch(t, listed, seededManifests, r.Name)
		assert.Equal(t, r.InPolicy, r.Kind != localstack.KindOutOfScope, r.Name)
		assert.Equal(t, r.Forbidden, strings.HasPrefix(r.Name, localstack.ForbiddenPrefix), r.Name)
		for _, it := range append(append([]localstack.Item(nil), r.Tags...), r.Manifests...) {
			if r.Purged() {
				assert.NotEmpty(t, it.Expect, "%s %s: a purged repository's items have an expected fate", r.Name, it.Ref)
			} else {
				assert.Empty(t, it.Expect, "%s %s: nothing is expected of a repository that is not purged", r.Name, it.Ref)
			}
		}
	}
	assert.ElementsMatch(t, reg.Repositories(), names)
	assert.Len(t, kinds, localstack.DefaultRepositories, "one repository of each kind")
}

// TestSeedShowsEveryCase: the default demo exercises every case the
// policy must handle, so the report has something to show for each.
func TestSeedShowsEveryCase(t *testing.T) {
	demo := localstack.Seed(acremu.New(acremu.Options{}), t0, 0)
	kept := map[string]int64{}
	var gone, goneTags int
	for _, r := range demo.Repos {
		for k, n := range r.Kept() {
			kept[k] += n
		}
		tags, manifests, _ := r.Deleted()
		gone += int(tags + manifests)
		goneTags += int(tags)
	}
	for _, reason := range []policy.Reason{policy.ReasonTooNew, policy.ReasonKeep, policy.ReasonProtected,
		policy.ReasonLocked, policy.ReasonNoMatch, policy.ReasonTagged, policy.ReasonIndexChild, policy.ReasonReferrer} {
		assert.Positive(t, kept[string(reason)], "something is kept as %s", reason)
	}
	assert.Positive(t, goneTags)
	assert.Greater(t, gone, goneTags, "untagged manifests go too")
	web, ok := demo.Repo("team-a/web")
	require.True(t, ok)
	assert.Equal(t, localstack.KindMultiArch, web.Kind)
	_, manifests, _ := web.Deleted()
	assert.GreaterOrEqual(t, manifests, int64(6), "deleted indexes take their platform images with them")
}

// TestSeedDeterministicAndScaled: the same instant and size give the same
// content; larger registries repeat the templates with numbered names.
func TestSeedDeterministicAndScaled(t *testing.T) {
	a := localstack.Seed(acremu.New(acremu.Options{}), t0, 16)
	b := localstack.Seed(acremu.New(acremu.Options{}), t0, 16)
	assert.Equal(t, a, b)
	require.Len(t, a.Repos, 16)
	assert.Equal(t, "team-a/api", a.Repos[0].Name)
	assert.Equal(t, "team-a/api-2", a.Repos[7].Name)
	assert.Equal(t, "team-a/api-3", a.Repos[14].Name)
	assert.Equal(t, "team-a/web-3", a.Repos[15].Name)
	for i, r := range a.Repos {
		first := a.Repos[i%localstack.DefaultRepositories]
		assert.Equal(t, first.Kind, r.Kind)
		assert.Equal(t, first.Kept(), r.Kept(), "%s behaves as %s", r.Name, first.Name)
		assert.Len(t, r.Manifests, len(first.Manifests))
	}
	assert.Len(t, localstack.Seed(acremu.New(acremu.Options{}), t0, 3).Repos, 3)
}

func TestDemoPolicyAndIdentity(t *testing.T) {
	pol, err := policy.Parse([]byte(localstack.DemoPolicy))
	require.NoError(t, err)
	demo := localstack.Seed(acremu.New(acremu.Options{}), t0, 0)
	id := localstack.DemoIdentity()
	assert.True(t, id.CatalogLister)
	for _, r := range demo.Repos {
		covered, err := pol.MatchRepository(r.Name)
		require.NoError(t, err)
		assert.Equal(t, r.InPolicy, covered, r.Name)
		granted := false
		for _, g := range id.Grants {
			granted = granted || strings.HasPrefix(r.Name, g.RepositoryPrefix)
		}
		if r.InPolicy {
			assert.Equal(t, !r.Forbidden, granted, "%s: the identity may purge exactly the permitted repositories", r.Name)
		}
	}
}

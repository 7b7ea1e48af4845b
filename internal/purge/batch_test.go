package purge_test

import (
	"context"
	"errors"
	"sync"
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

func TestNeededActions(t *testing.T) {
	tags := mustPolicy(t, `{"rules":[{"filters":["a:.*"],"ago":"1d"}]}`)
	untagged := mustPolicy(t, `{"rules":[{"filters":["a:.*"],"ago":"1d"},{"filters":["b:.*"],"ago":"1d","untagged":true}]}`)
	locked := mustPolicy(t, `{"rules":[{"filters":["a:.*"],"ago":"1d","includeLocked":true}]}`)
	assert.Equal(t, []string{acr.ActionMetadataRead, acr.ActionDelete}, purge.NeededActions(tags, false))
	assert.Equal(t, []string{acr.ActionMetadataRead}, purge.NeededActions(tags, true))
	assert.Equal(t, []string{acr.ActionMetadataRead, acr.ActionPull, acr.ActionDelete}, purge.NeededActions(untagged, false))
	assert.Equal(t, []string{acr.ActionMetadataRead, acr.ActionPull}, purge.NeededActions(untagged, true))
	assert.Equal(t, []string{acr.ActionMetadataRead, acr.ActionDelete, acr.ActionMetadataWrite}, purge.NeededActions(locked, false))
	assert.Nil(t, purge.MissingActions(&acr.Token{}, "a", []string{acr.ActionDelete}), "no claim: the registry decides")
}

// collect gathers a batch's outcomes by repository.
type collect struct {
	mu  sync.Mutex
	got map[string]purge.RepoOutcome
}

func (c *collect) done(o purge.RepoOutcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.got == nil {
		c.got = map[string]purge.RepoOutcome{}
	}
	if _, dup := c.got[o.Repository]; dup {
		panic("two outcomes for " + o.Repository)
	}
	c.got[o.Repository] = o
}

// TestRunBatchOutcomes: every repository of a batch ends in exactly one
// outcome: purged, not in policy, forbidden by the token's claim, or not
// started after the deadline; Begin's cursor reaches the executor and its
// failure is retryable.
func TestRunBatchOutcomes(t *testing.T) {
	identity := &acremu.Identity{Name: "abac", Grants: []acremu.Grant{{RepositoryPrefix: "team-a/"}}}
	env := emutest.Start(t, emutest.Options{Registry: acremu.Options{ABAC: true}, Identity: identity})
	reg := env.Registry
	now := reg.Now()
	for _, r := range []string{"team-a/one", "team-a/two", "team-b/app", "other/app"} {
		reg.Put(r, acremu.Artifact{Tags: []string{"ci-1"}, Created: now.Add(-40 * day)})
	}
	pol := mustPolicy(t, `{"rules":[{"filters":["team-.*:^ci-"],"ago":"30d"}]}`)
	repos := []string{"team-a/one", "team-a/two", "team-b/app", "other/app"}
	src := env.Broker.Source(acr.PurgeScopes(repos)...)
	b := purge.Batch{Repositories: repos, Policy: pol, Tokens: src, Registry: env.Client.WithTokens(src)}
	ex := purge.New(nil, purge.Options{Now: reg.Now})
	var c collect
	errBegin := errors.New("checkpoint store down")
	var cursors sync.Map
	purge.RunBatch(t.Context(), b, purge.BatchOptions{Executor: ex, Done: c.done,
		Begin: func(_ context.Context, repo string) (*policy.Cursor, error) {
			if repo == "team-a/two" {
				return nil, errBegin
			}
			cur := &policy.Cursor{Phase: policy.PhaseTags, PlanTime: now}
			cursors.Store(repo, cur)
			return cur, nil
		}})
	require.Len(t, c.got, 4)
	one := c.got["team-a/one"]
	assert.Equal(t, purge.StatusDone, one.Status)
	require.NotNil(t, one.Result)
	assert.EqualValues(t, 1, one.Result.TagsDeleted)
	cur, _ := cursors.Load("team-a/one")
	assert.Same(t, cur, one.Cursor)
	two := c.got["team-a/two"]
	assert.Equal(t, purge.StatusFailed, two.Status)
	assert.True(t, two.Retryable)
	assert.ErrorIs(t, two.Err, errBegin)
	assert.Nil(t, two.Result)
	assert.Equal(t, purge.StatusForbidden, c.got["team-b/app"].Status)
	assert.Contains(t, c.got["team-b/app"].Reason, "metadata_read, delete")
	assert.Equal(t, purge.StatusSkipped, c.got["other/app"].Status)
	assert.Len(t, reg.Tags("team-a/two"), 1, "a repository whose start could not be recorded is not purged")

	// After the deadline nothing starts.
	c = collect{}
	b.Deadline = now.Add(-time.Second)
	purge.RunBatch(t.Context(), b, purge.BatchOptions{Executor: ex, Done: c.done})
	assert.Equal(t, purge.StatusNotStarted, c.got["team-a/two"].Status)
	assert.NoError(t, c.got["team-a/two"].Err)
	assert.Len(t, reg.Tags("team-a/two"), 1)
}

// TestRunBatchTokenFailure: without the batch's token every covered
// repository fails retryably and nothing is purged.
func TestRunBatchTokenFailure(t *testing.T) {
	env := emutest.Start(t, emutest.Options{})
	pol := mustPolicy(t, `{"rules":[{"filters":["team-.*:^ci-"],"ago":"30d"}]}`)
	src := failingSource{}
	var c collect
	purge.RunBatch(t.Context(), purge.Batch{Repositories: []string{"team-a/x", "nope"}, Policy: pol, Tokens: src, Registry: env.Client},
		purge.BatchOptions{Executor: purge.New(nil, purge.Options{}), Done: c.done})
	require.Len(t, c.got, 2)
	assert.Equal(t, purge.StatusFailed, c.got["team-a/x"].Status)
	assert.True(t, c.got["team-a/x"].Retryable)
	assert.Equal(t, purge.StatusSkipped, c.got["nope"].Status)
}

type failingSource struct{}

func (failingSource) Token(context.Context) (*acr.Token, error) {
	return nil, errors.New("AAD is unreachable")
}

func (failingSource) Invalidate(*acr.Token) {}

// TestRacingExecutorsCountEachDeleteOnce: two deliveries of one message
// purging the same repository at once (a lost lock) delete everything
// once, and their counts add up to exactly what the registry deleted: an
// item the other one deleted first (found gone, or a 404 on delete) is not
// counted, a referrer removed with a subject this run deleted is.
func TestRacingExecutorsCountEachDeleteOnce(t *testing.T) {
	for trial := range 4 {
		env := newEnv(t, emutest.Options{})
		reg := env.Registry
		repo := "team-a/app"
		seedApp(env, repo)
		reg.SetFaults(acremu.Faults{Latency: time.Millisecond})
		pol := mustPolicy(t, appPolicy)
		results := make([]purge.Result, 2)
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() {
				ex := purge.New(env.Scoped(repo), purge.Options{Now: reg.Now, Concurrency: 1 + i*3})
				results[i] = ex.Purge(t.Context(), purge.Job{Repository: repo, Policy: pol})
			})
		}
		wg.Wait()
		var tags, manifests int64
		for _, r := range results {
			require.Equal(t, purge.StatusDone, r.Status, r.Reason)
			tags += r.TagsDeleted
			manifests += r.ManifestsDeleted
		}
		var wantTags, wantManifests int64
		for _, d := range reg.Deletes() {
			switch d.Kind {
			case "tag":
				wantTags++
			case "manifest", "cascade-referrer":
				wantManifests++
			}
		}
		assert.Equal(t, wantTags, tags, "trial %d: tags deleted", trial)
		assert.Equal(t, wantManifests, manifests, "trial %d: manifests deleted", trial)
	}
}

package chaos_test

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/chaos"
	"github.com/acrpurge/acrpurge/internal/testbed/e2e/e2etest"
)

// identityName is the app's managed identity in the emulator.
const identityName = "acrpurge-mi"

// fullGrants are the identity's role assignments: Repository Contributor
// under ABAC conditions for team-a/ and team-b/, and a reader role for
// team-d/ (pull and metadata_read, no delete). team-c/ is not granted.
func fullGrants() []acremu.Grant {
	return []acremu.Grant{
		{RepositoryPrefix: "team-a/"}, {RepositoryPrefix: "team-b/"},
		{RepositoryPrefix: "team-d/", Actions: []string{acr.ActionPull, acr.ActionMetadataRead}},
	}
}

// world is one harness with seeded repositories and what the policy must
// leave of each.
type world struct {
	t    *testing.T
	h    *e2etest.Harness
	spec chaos.Spec
	// seeded repositories and their expectations, by name
	repos map[string]*chaos.Repo
	exp   map[string]*chaos.Expectation
	names []string
}

type worldOpts struct {
	settings map[string]string
	retry    *acr.RetryPolicy
	hooks    e2etest.Hooks
	now      func() time.Time
	logger   *slog.Logger
	registry *acremu.Options
	spec     *chaos.Spec
}

func newWorld(t *testing.T, o worldOpts) *world {
	t.Helper()
	spec := chaos.DefaultSpec()
	if o.spec != nil {
		spec = *o.spec
	}
	settings := map[string]string{
		config.Policy:        spec.JSON(),
		config.MaxDeliveries: "10",
	}
	for k, v := range o.settings {
		settings[k] = v
	}
	h := e2etest.New(t, e2etest.Options{
		Settings: settings, Identity: &acremu.Identity{Name: identityName, CatalogLister: true, Grants: fullGrants()},
		Registry: o.registry, Logger: o.logger, Retry: o.retry, Now: o.now, Hooks: o.hooks,
	})
	return &world{t: t, h: h, spec: spec, repos: map[string]*chaos.Repo{}, exp: map[string]*chaos.Expectation{}}
}

// seed generates and stores a repository of n ci tags per name.
func (w *world) seed(rng *rand.Rand, n int, names ...string) {
	w.t.Helper()
	now := w.h.Reg.Now()
	for _, name := range names {
		r := chaos.GenRepo(rng, name, n, now)
		require.NoError(w.t, chaos.Seed(w.h.Reg, r))
		e, err := chaos.Expect(w.spec, r, now)
		require.NoError(w.t, err)
		w.repos[name], w.exp[name] = r, e
		w.names = append(w.names, name)
	}
}

// granted reports whether the identity may delete in the repository.
func granted(name string) bool {
	return strings.HasPrefix(name, "team-a/") || strings.HasPrefix(name, "team-b/")
}

// gone counts the deletions the policy implies in the named repositories.
func (w *world) gone(names ...string) int {
	n := 0
	for _, name := range names {
		n += w.exp[name].Gone()
	}
	return n
}

// purgeable are the seeded repositories the identity may purge.
func (w *world) purgeable() []string {
	var out []string
	for _, n := range w.names {
		if granted(n) && w.exp[n].InPolicy {
			out = append(out, n)
		}
	}
	return out
}

// checks tune world.check.
type checks struct {
	// complete: every repository recorded done holds exactly what the
	// policy keeps (everything it deletes is gone).
	complete bool
	// noRedo: no delete found its item already gone (there was no
	// ambiguous failure after which a retry is expected to find it gone).
	noRedo bool
	// deadLetters expected.
	deadLetters int
}

// check asserts the invariants every scenario must end with, and returns
// the statuses each repository was recorded with, over all runs that were
// not dry runs.
//
//   - every batch of every run ended (done or failed), and every
//     repository of every batch is in a terminal state with its reason;
//     every run report agrees (nothing pending or partial);
//   - nothing was deleted twice, and every deletion is one the policy
//     makes (so nothing the policy keeps was deleted);
//   - every kept tag and manifest is still there, and the checkpoints
//     never report more deletions than the policy makes;
//   - repositories never purged (only forbidden or skipped) are untouched;
//   - with c.complete, repositories recorded done hold exactly what the
//     policy keeps.
func (w *world) check(c checks) map[string][]checkpoint.Status {
	t, h := w.t, w.h
	t.Helper()
	ctx := t.Context()
	statuses := map[string][]checkpoint.Status{}
	counted := map[string][2]int64{} // tags and manifests reported deleted
	lower := map[string]bool{}       // some row says its counts are a lower bound
	recs, err := h.Store.LatestRuns(ctx, 1000)
	require.NoError(t, err)
	for _, run := range recs {
		batches, err := h.Store.ListBatches(ctx, run.ID)
		require.NoError(t, err)
		rows, err := h.Store.ListRepos(ctx, run.ID)
		require.NoError(t, err)
		byName := map[string]checkpoint.Repo{}
		for _, r := range rows {
			byName[r.Name] = r
		}
		for _, b := range batches {
			require.Contains(t, []checkpoint.Status{checkpoint.StatusDone, checkpoint.StatusFailed}, b.Status,
				"run %s batch %d did not end: %s (%s)", run.ID, b.N, b.Status, b.Error)
			for _, name := range b.Repositories {
				r, ok := byName[name]
				require.True(t, ok, "run %s batch %d: %s has no checkpoint", run.ID, b.N, name)
				switch r.Status {
				case checkpoint.StatusDone:
				case checkpoint.StatusFailed:
					require.NotEmpty(t, r.Reason+r.Error, "run %s: %s failed without a reason", run.ID, name)
				case checkpoint.StatusSkipped, checkpoint.StatusForbidden:
					require.NotEmpty(t, r.Reason, "run %s: %s %s without a reason", run.ID, name, r.Status)
				default:
					t.Fatalf("run %s batch %d: %s ended %s (%s %s)", run.ID, b.N, name, r.Status, r.Reason, r.Error)
				}
				if !run.DryRun { // a dry run purges nothing
					statuses[name] = append(statuses[name], r.Status)
					counted[name] = [2]int64{counted[name][0] + r.TagsDeleted, counted[name][1] + r.ManifestsDeleted}
					lower[name] = lower[name] || r.CountsAtLeast(time.Now(), checkpoint.StaleAttempt)
				}
			}
		}
		rep, code := h.RunReport(run.ID)
		require.Equal(t, http.StatusOK, code, "report of run %s", run.ID)
		require.Contains(t, []string{runs.RunDone, runs.RunFailed}, rep.Run.Status, "run %s", run.ID)
		require.Zero(t, rep.Totals.Pending+rep.Totals.Partial, "run %s: report totals %+v", run.ID, rep.Totals)
	}

	seen := map[string]bool{}
	actual := map[string][2]int64{} // tags and manifests the app's identity deleted
	for _, d := range h.Reg.Deletes() {
		if d.Identity == identityName {
			switch d.Kind {
			case acremu.KindTag:
				actual[d.Repo] = [2]int64{actual[d.Repo][0] + 1, actual[d.Repo][1]}
			case acremu.KindManifest, acremu.KindCascadeReferrer:
				actual[d.Repo] = [2]int64{actual[d.Repo][0], actual[d.Repo][1] + 1}
			}
		}
		k := d.Repo + "@" + d.Ref
		require.False(t, seen[k], "deleted twice: %s (%s)", k, d.Kind)
		seen[k] = true
		e := w.exp[d.Repo]
		require.NotNil(t, e, "deleted in a repository that was not seeded: %s", k)
		switch d.Kind {
		case acremu.KindTag, acremu.KindCascadeTag:
			require.True(t, e.GoneTags[d.Ref], "deleted tag %s, which the policy keeps (%s)", k, d.Kind)
		default:
			require.True(t, e.GoneManifests[d.Ref], "deleted manifest %s, which the policy keeps (%s)", k, d.Kind)
		}
	}

	for _, name := range w.names {
		e := w.exp[name]
		tags := map[string]bool{}
		for _, tg := range h.Reg.Tags(name) {
			tags[tg.Name] = true
		}
		manifests := map[string]bool{}
		for _, m := range h.Reg.Manifests(name) {
			manifests[m.Digest] = true
		}
		for tg := range e.KeepTags {
			require.True(t, tags[tg], "%s: kept tag %s is gone", name, tg)
		}
		for d := range e.KeepManifests {
			require.True(t, manifests[d], "%s: kept manifest %s is gone", name, d)
		}
		assert.LessOrEqual(t, counted[name][0], int64(len(e.GoneTags)), "%s: more tags reported deleted than the policy deletes", name)
		assert.LessOrEqual(t, counted[name][1], int64(len(e.GoneManifests)), "%s: more manifests reported deleted than the policy deletes", name)
		// The checkpoints count what the registry deleted for the app:
		// exactly, or, where a row says so (an attempt died uncounted),
		// at most that — never more, never silently less.
		if lower[name] {
			assert.LessOrEqual(t, counted[name][0], actual[name][0], "%s: tags counted vs deleted (a lower bound)", name)
			assert.LessOrEqual(t, counted[name][1], actual[name][1], "%s: manifests counted vs deleted (a lower bound)", name)
		} else {
			tagsOK := assert.Equal(t, actual[name][0], counted[name][0], "%s: tags counted vs deleted", name)
			manifestsOK := assert.Equal(t, actual[name][1], counted[name][1], "%s: manifests counted vs deleted", name)
			if !tagsOK || !manifestsOK {
				w.dumpCounts(name, recs)
			}
		}
		st := statuses[name]
		purged := slices.ContainsFunc(st, func(s checkpoint.Status) bool {
			return s == checkpoint.StatusDone || s == checkpoint.StatusFailed
		})
		switch {
		case !purged:
			if len(tags) != len(e.KeepTags)+len(e.GoneTags) {
				w.dumpCounts(name, recs)
			}
			require.Len(t, tags, len(e.KeepTags)+len(e.GoneTags), "%s (%v) was never purged: its tags", name, st)
			require.Len(t, manifests, len(e.KeepManifests)+len(e.GoneManifests), "%s (%v) was never purged: its manifests", name, st)
		case c.complete && slices.Contains(st, checkpoint.StatusDone):
			require.Len(t, tags, len(e.KeepTags), "%s is done: only kept tags remain", name)
			require.Len(t, manifests, len(e.KeepManifests), "%s is done: only kept manifests remain", name)
		}
	}
	if c.noRedo {
		require.Zero(t, h.Reg.Stats().DeleteNotFound, "a delete found its item already gone: work was redone")
	}
	require.Len(t, h.DeadLetters(), c.deadLetters, "dead letters")
	return statuses
}

// dumpCounts logs the registry's deletions in a repository and its rows,
// for a count that does not match.
func (w *world) dumpCounts(name string, recs []checkpoint.Run) {
	t, h := w.t, w.h
	for _, d := range h.Reg.Deletes() {
		if d.Repo == name {
			t.Logf("delete %s %s by %s at %s", d.Kind, d.Ref, d.Identity, d.At.Format("15:04:05.000"))
		}
	}
	for _, run := range recs {
		rows, err := h.Store.ListRepos(t.Context(), run.ID)
		require.NoError(t, err)
		for _, r := range rows {
			if r.Name == name {
				t.Logf("row %s: %+v", run.ID, r)
			}
		}
	}
}

// describe renders a short summary of the registry's counters for logs.
func describe(reg *acremu.Registry) string {
	s := reg.Stats()
	return fmt.Sprintf("deletes=%d requests=%d aad=%d refresh=%d access=%d throttled=%d unauthorized=%d faults=%d deleteNotFound=%d",
		len(reg.Deletes()), total(s.Requests), s.AADTokens, s.RefreshTokens, s.AccessTokens, s.Throttled, s.Unauthorized, s.Faults, s.DeleteNotFound)
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

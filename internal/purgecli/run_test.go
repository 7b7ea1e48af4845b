package purgecli

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	azpolicy "github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/purge"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu/emutest"
)

func TestDryRunIsTheDefaultAndDeletesNothing(t *testing.T) {
	c := newCLI(t, emutest.Options{})
	reg := c.env.Registry
	seedRepo(reg, "team-a/app")
	before := tagNames(reg, "team-a/app")
	manifests := len(reg.Manifests("team-a/app"))

	res := c.run(c.args("--repository", "team-a/app")...)
	require.Equal(t, exitOK, res.code, res.stderr)

	assert.Empty(t, reg.Deletes(), "a dry run must delete nothing")
	assert.Zero(t, reg.Stats().Requests["delete_tag"]+reg.Stats().Requests["delete_manifest"])
	assert.Equal(t, before, tagNames(reg, "team-a/app"))
	assert.Len(t, reg.Manifests("team-a/app"), manifests)

	out := res.stdout
	assert.True(t, strings.HasPrefix(out, "DRY RUN: nothing was deleted"), "the banner comes first:\n%s", out)
	assert.Contains(t, out, dryRunFooter)
	// ci-1 is the keep-1; ci-2..ci-5 would go, with their reason and rule.
	for _, tag := range []string{"ci-2", "ci-3", "ci-4", "ci-5"} {
		assert.Regexp(t, `(?m)^team-a/app\s+tag\s+`+tag+`\s+would-delete\s+old\s+ci\s`, out)
	}
	for _, tag := range []string{"ci-1", "ci-fresh", "ci-pinned", "stable"} {
		assert.NotRegexp(t, `(?m)^team-a/app\s+tag\s+`+regexp.QuoteMeta(tag)+`\s`, out, "kept items are summarised, not listed")
	}
	assert.Regexp(t, `(?m)^team-a/app\s+manifest\s+sha256:[0-9a-f]{12}\s+would-delete\s+untagged\s+ci\s`, out)
	// Why the rest was kept.
	assert.Regexp(t, `team-a/app: 4 tags \(.*keep 1.*\)`, out)
	for _, reason := range []string{"keep 1", "too-new 1", "protected 1", "no-match 1"} {
		assert.Contains(t, out, reason)
	}
	assert.Regexp(t, `(?m)^Would delete 4 tags and \d+ manifests \(.* freed\) in 1 repository: 1 done\.$`, out)
}

func TestRealRunDeletesWhatTheDryRunPlanned(t *testing.T) {
	c := newCLI(t, emutest.Options{PageSize: 2}) // several pages per listing
	reg := c.env.Registry
	seedRepo(reg, "team-a/app")

	dry := c.run(c.args("--repository", "team-a/app", "--output", "json")...)
	require.Equal(t, exitOK, dry.code, dry.stderr)
	planned := decodeReport(t, dry.stdout)
	require.True(t, planned.DryRun)
	require.Empty(t, reg.Deletes())

	real := c.run(c.args("--repository", "team-a/app", "--output", "json", "--dry-run=false")...)
	require.Equal(t, exitOK, real.code, real.stderr)
	done := decodeReport(t, real.stdout)
	require.False(t, done.DryRun)
	assert.NotContains(t, real.stdout+real.stderr, "DRY RUN")

	p, d := repoOf(t, planned, "team-a/app"), repoOf(t, done, "team-a/app")
	assert.Equal(t, string(purge.StatusDone), d.Status)
	assert.Positive(t, d.DurationSeconds)
	assert.Equal(t, p.TagsDeleted, d.TagsDeleted)
	assert.Equal(t, p.ManifestsDeleted, d.ManifestsDeleted)
	assert.Equal(t, p.BytesFreed, d.BytesFreed)
	require.Len(t, d.Items, len(p.Items))
	for i := range p.Items {
		assert.Equal(t, "would-delete", p.Items[i].Action)
		assert.Equal(t, "deleted", d.Items[i].Action)
		pi, di := p.Items[i], d.Items[i]
		pi.Action, di.Action = "", ""
		assert.Equal(t, pi, di, "the real run deletes exactly what the dry run listed")
	}

	// The report matches the emulator's final state.
	var tagDeletes, manifestDeletes int
	for _, rec := range reg.Deletes() {
		switch rec.Kind {
		case acremu.KindTag:
			tagDeletes++
		case acremu.KindManifest:
			manifestDeletes++
		}
	}
	assert.EqualValues(t, d.TagsDeleted, tagDeletes)
	assert.EqualValues(t, d.ManifestsDeleted, manifestDeletes)
	for _, it := range d.Items {
		if it.Kind == "tag" {
			assert.False(t, reg.HasTag("team-a/app", it.Tag), it.Tag)
		} else {
			assert.False(t, reg.HasManifest("team-a/app", it.Digest), it.Digest)
		}
	}
	assert.ElementsMatch(t, []string{"ci-1", "ci-fresh", "ci-pinned", "stable"}, tagNames(reg, "team-a/app"))
	var left int64
	for _, n := range d.Kept.Manifests {
		left += n
	}
	assert.EqualValues(t, left, len(reg.Manifests("team-a/app")), "every manifest left is a kept one")
	assert.Equal(t, done.Totals.TagsDeleted, d.TagsDeleted)
	assert.Equal(t, exitOK, done.ExitCode)
}

func TestRepositoryFlagNarrows(t *testing.T) {
	c := newCLI(t, emutest.Options{})
	reg := c.env.Registry
	seedRepo(reg, "team-a/app")
	seedRepo(reg, "team-a/web")
	seedRepo(reg, "team-a/api")

	res := c.run(c.args("--repository", "team-a/web,team-a/api", "--repository", "team-a/web", "--dry-run=false", "--output", "json")...)
	require.Equal(t, exitOK, res.code, res.stderr)
	rep := decodeReport(t, res.stdout)
	require.Len(t, rep.Repositories, 2)
	assert.Equal(t, "team-a/api", rep.Repositories[0].Repository)
	assert.Equal(t, "team-a/web", rep.Repositories[1].Repository)
	for _, rec := range reg.Deletes() {
		assert.NotEqual(t, "team-a/app", rec.Repo, "an unnamed repository was touched")
	}
	assert.True(t, reg.HasTag("team-a/app", "ci-5"))
	assert.False(t, reg.HasTag("team-a/web", "ci-5"))
	assert.Zero(t, reg.Stats().Requests["catalog"], "named repositories need no catalog")
	// One token per batch: both repositories fit one batch.
	assert.Equal(t, 1, reg.Stats().AccessTokens)
}

func TestCatalogFilteredByPolicyInBatches(t *testing.T) {
	c := newCLI(t, emutest.Options{})
	reg := c.env.Registry
	for _, r := range []string{"team-a/app", "team-a/web", "team-b/api", "other/tool"} {
		seedRepo(reg, r)
	}
	// Registry and policy from the environment, the policy from a file.
	c.env2[envLoginServer] = reg.URL()
	c.env2[envPolicy] = "@" + writePolicyFile(t, testPolicy)

	res := c.run("--dry-run=false", "--output", "json", "--batch-size", "2", "--deletes-per-minute", "60000")
	require.Equal(t, exitOK, res.code, res.stderr)
	rep := decodeReport(t, res.stdout)
	var names []string
	for _, r := range rep.Repositories {
		names = append(names, r.Repository)
		assert.Equal(t, string(purge.StatusDone), r.Status)
	}
	assert.Equal(t, []string{"team-a/app", "team-a/web", "team-b/api"}, names, "other/tool is not in the policy")
	assert.True(t, reg.HasTag("other/tool", "ci-5"))
	assert.False(t, reg.HasTag("team-b/api", "ci-5"))
	// One catalog token, then one token per batch of two: ceil(3/2) = 2.
	assert.Equal(t, 1+2, reg.Stats().AccessTokens)
	assert.Equal(t, 3, rep.Totals.Done)
}

func TestABACIdentityMissingAPrefix(t *testing.T) {
	c := newCLI(t, emutest.Options{
		Registry: acremu.Options{ABAC: true},
		Identity: &acremu.Identity{Name: "purger", CatalogLister: true, Grants: []acremu.Grant{{RepositoryPrefix: "team-a/"}}},
	})
	reg := c.env.Registry
	for _, r := range []string{"team-a/app", "team-a/web", "team-b/api"} {
		seedRepo(reg, r)
	}

	for _, output := range []string{"json", "table"} {
		t.Run(output, func(t *testing.T) {
			res := c.run(c.args("--dry-run=false", "--output", output, "--verbose")...)
			require.Equal(t, exitIncomplete, res.code, res.stderr)
			assert.True(t, reg.HasTag("team-b/api", "ci-5"), "a forbidden repository is untouched")
			assert.False(t, reg.HasTag("team-a/web", "ci-5"), "the others are done")
			for _, s := range []string{res.stdout, res.stderr} {
				assert.NotContains(t, s, "eyJ", "no JWT (refresh or access token) in any output")
			}
			if output == "table" {
				assert.Regexp(t, `(?m)^team-b/api\s+forbidden\s`, res.stdout)
				assert.Regexp(t, `team-b/api: forbidden: the access token does not grant metadata_read, pull, delete`, res.stdout)
				return
			}
			rep := decodeReport(t, res.stdout)
			assert.Equal(t, exitIncomplete, rep.ExitCode)
			b := repoOf(t, rep, "team-b/api")
			assert.Equal(t, string(purge.StatusForbidden), b.Status)
			assert.Contains(t, b.Reason, "ABAC")
			assert.Equal(t, string(purge.StatusDone), repoOf(t, rep, "team-a/app").Status)
			assert.Equal(t, 1, rep.Totals.Forbidden)
			assert.Equal(t, 2, rep.Totals.Done)
		})
	}
}

func TestCatalogRefusedIsARuntimeFailure(t *testing.T) {
	c := newCLI(t, emutest.Options{Identity: &acremu.Identity{Name: "purger", Grants: []acremu.Grant{{}}}})
	seedRepo(c.env.Registry, "team-a/app")
	res := c.run(c.args()...)
	assert.Equal(t, exitRuntime, res.code)
	assert.Contains(t, res.stderr, "Catalog Lister")
	assert.Contains(t, res.stderr, "--repository")
	assert.Empty(t, res.stdout)
	assert.NotContains(t, res.stderr, "eyJ")
}

func TestRegistryUnreachableIsARuntimeFailure(t *testing.T) {
	c := newCLI(t, emutest.Options{})
	require.NoError(t, c.env.Registry.Stop())
	res := c.run(c.args("--repository", "team-a/app")...)
	assert.Equal(t, exitRuntime, res.code, res.stderr)
	assert.Contains(t, res.stderr, "get an access token from")
	assert.Empty(t, res.stdout)
}

func TestUsageErrors(t *testing.T) {
	c := newCLI(t, emutest.Options{})
	url := c.env.Registry.URL()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--registry", url, "--policy", testPolicy, "--nope"}, "flag provided but not defined: -nope"},
		{"no registry", []string{"--policy", testPolicy}, "--registry is required"},
		{"no policy", []string{"--registry", url}, "--policy is required"},
		{"bad policy", []string{"--registry", url, "--policy", `{"rules":[{"filters":["x"]}]}`}, "--policy: "},
		{"unknown policy field", []string{"--registry", url, "--policy", `{"rulez":[]}`}, "--policy: "},
		{"missing policy file", []string{"--registry", url, "--policy", "@does-not-exist.json"}, "does-not-exist.json"},
		{"http to a remote host", []string{"--registry", "http://contoso.azurecr.io", "--policy", testPolicy}, "--registry: "},
		{"bad output", []string{"--registry", url, "--policy", testPolicy, "--output", "xml"}, "--output must be table or json"},
		{"concurrency 0", []string{"--registry", url, "--policy", testPolicy, "--concurrency", "0"}, "--concurrency must be from 1"},
		{"budget", []string{"--registry", url, "--policy", testPolicy, "--deletes-per-minute", "-5"}, "--deletes-per-minute must be"},
		{"absurd budget", []string{"--registry", url, "--policy", testPolicy, "--deletes-per-minute", "1000001"}, "--deletes-per-minute must be from 1 to 1000000"},
		{"batch size", []string{"--registry", url, "--policy", testPolicy, "--batch-size", "51"}, "--batch-size must be"},
		{"timeout", []string{"--registry", url, "--policy", testPolicy, "--timeout", "0s"}, "--timeout must be positive"},
		{"repository parallelism", []string{"--registry", url, "--policy", testPolicy, "--repository-parallelism", "0"}, "--repository-parallelism (or PURGE_REPOSITORY_PARALLELISM) must be"},
		{"repository parallelism not a number", []string{"--registry", url, "--policy", testPolicy, "--repository-parallelism", "many"}, `got "many"`},
		{"bad repository", []string{"--registry", url, "--policy", testPolicy, "--repository", "Team/App"}, `--repository "Team/App"`},
		{"dry-run false without =", []string{"--registry", url, "--policy", testPolicy, "--dry-run", "false"}, "--dry-run=false"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := c.run(tc.args...)
			assert.Equal(t, exitUsage, res.code)
			assert.Contains(t, res.stderr, tc.want)
			assert.Empty(t, res.stdout)
		})
	}
	assert.Zero(t, c.env.Registry.Stats().AccessTokens, "usage errors are found before any request")
	assert.Zero(t, c.env.Registry.Stats().AADTokens)
}

func TestHelp(t *testing.T) {
	c := newCLI(t, emutest.Options{})
	res := c.run("-h")
	assert.Equal(t, exitOK, res.code)
	for _, want := range []string{"Usage: handler purge", "-dry-run", "-repository", "Exit codes:", "130", "Examples:", "DefaultAzureCredential"} {
		assert.Contains(t, res.stderr, want)
	}
}

func TestInterruptStopsStartingDeletesAndReports(t *testing.T) {
	c := newCLI(t, emutest.Options{})
	reg := c.env.Registry
	now := reg.Now()
	for i := range 60 {
		reg.Put("team-a/app", acremu.Artifact{Tags: []string{fmt.Sprintf("ci-%02d", i)}, Created: now.Add(-40*day - time.Duration(i)*time.Minute)})
	}
	reg.SetFaults(acremu.Faults{Latency: 40 * time.Millisecond})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		for len(reg.Deletes()) < 3 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		cancel()
	}()
	res := c.runContext(ctx, c.args("--repository", "team-a/app", "--dry-run=false", "--output", "json", "--concurrency", "2")...)
	require.Equal(t, exitInterrupted, res.code, res.stderr)
	rep := decodeReport(t, res.stdout)
	assert.True(t, rep.Interrupted)
	assert.Equal(t, exitInterrupted, rep.ExitCode)
	r := repoOf(t, rep, "team-a/app")
	assert.Equal(t, statusInterrupted, r.Status)
	deleted := len(reg.Deletes())
	assert.Less(t, deleted, 59, "the interrupt stopped the run early")
	assert.EqualValues(t, deleted, r.TagsDeleted, "deletes in flight finished and are reported")
	var listed int
	for _, it := range r.Items {
		if it.Action == "deleted" {
			listed++
			assert.False(t, reg.HasTag("team-a/app", it.Tag))
		}
	}
	assert.Equal(t, deleted, listed)
	assert.Contains(t, res.stderr, "interrupted")
	time.Sleep(100 * time.Millisecond)
	assert.Equal(t, deleted, len(reg.Deletes()), "nothing is deleted after the run returned")
}

func TestTimeoutEndsPartial(t *testing.T) {
	c := newCLI(t, emutest.Options{})
	reg := c.env.Registry
	for _, r := range []string{"team-a/a", "team-a/b", "team-a/c", "team-a/d", "team-a/e", "team-a/f"} {
		seedRepo(reg, r)
	}
	reg.SetFaults(acremu.Faults{Latency: 60 * time.Millisecond})
	c.deps.progressEvery = 50 * time.Millisecond

	res := c.run(c.args("--dry-run=false", "--output", "json", "--timeout", "1s", "--concurrency", "1")...)
	require.Equal(t, exitIncomplete, res.code, res.stderr)
	rep := decodeReport(t, res.stdout)
	assert.Positive(t, rep.Totals.Partial+rep.Totals.NotStarted)
	for _, r := range rep.Repositories {
		if r.Status == statusNotStarted {
			assert.Contains(t, r.Reason, "--timeout")
			assert.True(t, reg.HasTag(r.Repository, "ci-5"), "a repository not started is untouched")
		}
	}
	assert.Regexp(t, `progress: \d+/6 repositories, \d+ deleted, [0-9.]+/s`, res.stderr)
}

func TestNoTokenInOutputOnFailures(t *testing.T) {
	c := newCLI(t, emutest.Options{})
	reg := c.env.Registry
	seedRepo(reg, "team-a/app")
	reg.SetFaults(acremu.Faults{ErrorRate: 1})
	res := c.run(c.args("--repository", "team-a/app", "--dry-run=false", "--verbose")...)
	assert.Equal(t, exitIncomplete, res.code, res.stderr)
	assert.Regexp(t, `team-a/app: failed: `, res.stdout)
	for _, s := range []string{res.stdout, res.stderr} {
		assert.NotContains(t, s, "eyJ")
	}
	// The credential's AAD token is opaque: it must not appear either.
	tok, err := c.env.Cred.GetToken(t.Context(), tokenRequest())
	require.NoError(t, err)
	assert.NotContains(t, res.stdout+res.stderr, tok.Token[:min(len(tok.Token), 16)])
}

func TestDeleteRateIsBudgeted(t *testing.T) {
	// Not a benchmark: a quick check that --deletes-per-minute reaches the
	// budget (600/min = 10 per one-second window: 30 deletes span three
	// windows, paced within each).
	c := newCLI(t, emutest.Options{})
	reg := c.env.Registry
	now := reg.Now()
	for i := range 30 {
		reg.Put("team-a/app", acremu.Artifact{Tags: []string{fmt.Sprintf("ci-%02d", i)}, Created: now.Add(-40*day - time.Duration(i)*time.Minute)})
	}
	start := time.Now()
	res := c.run(c.args("--repository", "team-a/app", "--dry-run=false", "--deletes-per-minute", "600",
		"--policy", `{"rules":[{"filters":["team-a/app:^ci-"],"ago":"30d"}]}`)...)
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Len(t, reg.Deletes(), 30)
	assert.GreaterOrEqual(t, time.Since(start), 1900*time.Millisecond)
}

func tokenRequest() azpolicy.TokenRequestOptions {
	return azpolicy.TokenRequestOptions{Scopes: []string{acremu.AADScope}}
}

// TestRepositoryParallelismSetting: PURGE_REPOSITORY_PARALLELISM is the
// flag's default, checked like the flag.
func TestRepositoryParallelismSetting(t *testing.T) {
	c := newCLI(t, emutest.Options{})
	c.env2["PURGE_REPOSITORY_PARALLELISM"] = "65"
	res := c.run(c.args()...)
	assert.Equal(t, exitUsage, res.code)
	assert.Contains(t, res.stderr, `must be a whole number from 1 to 64, got "65"`)
	c.env2["PURGE_REPOSITORY_PARALLELISM"] = "1"
	res = c.run(c.args()...)
	assert.Equal(t, exitOK, res.code, res.stderr)
	res = c.run(c.args("--repository-parallelism", "3")...)
	assert.Equal(t, exitOK, res.code, res.stderr)
}

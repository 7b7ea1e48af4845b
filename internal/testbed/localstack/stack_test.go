package localstack_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
	"github.com/acrpurge/acrpurge/internal/testbed/localstack"
)

func runStack(t *testing.T, o localstack.Options) *localstack.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := localstack.RunStack(ctx, o)
	require.NoError(t, err)
	return res
}

// assertRegistry checks the emulator holds exactly what the policy keeps
// of the purged repositories (everything, when dryRun) and all of the
// others, that nothing was deleted twice or found already gone, and that
// nothing the policy keeps was deleted.
func assertRegistry(t *testing.T, res *localstack.Result, purged func(localstack.RepoSeed) bool, dryRun bool) {
	t.Helper()
	reg := res.Emulator
	keep := map[string]bool{}
	for _, r := range res.Demo.Repos {
		gone := purged(r) && !dryRun
		for _, it := range r.Tags {
			assert.Equal(t, !(gone && it.Gone()), reg.HasTag(r.Name, it.Ref), "%s:%s (%s)", r.Name, it.Ref, it.Expect)
			if !(gone && it.Gone()) {
				keep[r.Name+"@"+it.Ref] = true
			}
		}
		for _, it := range r.Manifests {
			assert.Equal(t, !(gone && it.Gone()), reg.HasManifest(r.Name, it.Ref), "%s@%s (%s)", r.Name, it.Ref, it.Expect)
			if !(gone && it.Gone()) {
				keep[r.Name+"@"+it.Ref] = true
			}
		}
	}
	seen := map[string]bool{}
	for _, d := range reg.Deletes() {
		k := d.Repo + "@" + d.Ref
		assert.False(t, seen[k], "deleted twice: %s (%s)", k, d.Kind)
		seen[k] = true
		assert.False(t, keep[k], "deleted what the policy keeps: %s (%s)", k, d.Kind)
		assert.Equal(t, localstack.DemoIdentityName, d.Identity)
	}
	assert.Zero(t, reg.Stats().DeleteNotFound, "no delete found its item already gone")
	if dryRun {
		assert.Empty(t, reg.Deletes())
	}
}

// assertReport checks a run's report against the seed's expectations for
// the repositories it covers.
func assertReport(t *testing.T, rep *runs.Report, demo *localstack.Demo, dryRun bool) {
	t.Helper()
	assert.Equal(t, runs.RunDone, rep.Run.Status, rep.Run.ID)
	assert.Equal(t, dryRun, rep.Run.DryRun)
	require.NotEmpty(t, rep.Repositories)
	var tags, manifests, bytes int64
	for _, x := range rep.Repositories {
		r, ok := demo.Repo(x.Name)
		require.True(t, ok, x.Name)
		require.True(t, r.InPolicy, "%s: only covered repositories are purged", x.Name)
		if r.Forbidden {
			assert.Equal(t, "forbidden", x.Status, x.Name)
			assert.Contains(t, x.Reason, "metadata_read", x.Name)
			assert.Zero(t, x.TagsDeleted+x.ManifestsDeleted, x.Name)
			continue
		}
		wt, wm, wb := r.Deleted()
		assert.Equal(t, "done", x.Status, x.Name)
		assert.Equal(t, wt, x.TagsDeleted, "%s: tags deleted", x.Name)
		assert.Equal(t, wm, x.ManifestsDeleted, "%s: manifests deleted", x.Name)
		assert.Equal(t, wb, x.BytesFreed, "%s: bytes freed", x.Name)
		assert.Equal(t, r.Kept(), x.Kept, "%s: kept, by reason", x.Name)
		tags, manifests, bytes = tags+wt, manifests+wm, bytes+wb
	}
	assert.Equal(t, tags, rep.Totals.TagsDeleted)
	assert.Equal(t, manifests, rep.Totals.ManifestsDeleted)
	assert.Equal(t, bytes, rep.Totals.BytesFreed)
}

// TestNightlyRun: the timer fans the demo registry out in batches; every
// permitted repository ends exactly as the seed expects, the forbidden one
// is reported and untouched, the outside one never enters the run.
func TestNightlyRun(t *testing.T) {
	res := runStack(t, localstack.Options{})
	assertRegistry(t, res, localstack.RepoSeed.Purged, false)
	require.Len(t, res.Runs, 1)
	rep := res.Runs[0]
	assert.Equal(t, "schedule", rep.Run.Trigger)
	assert.Regexp(t, `^s-\d{8}T020000Z$`, rep.Run.ID, "the timer fires at the schedule's occurrence")
	assert.Equal(t, runs.BatchCounts{Total: 2, Done: 2}, rep.Batches, "6 covered repositories in batches of 3")
	assertReport(t, rep, res.Demo, false)
	assert.Equal(t, 6, rep.Totals.Repositories)
	assert.Equal(t, 1, rep.Totals.Forbidden)
	assert.Empty(t, res.DeadLetters)
	assert.Empty(t, res.Incomplete())
	assert.Empty(t, res.Rejections)

	var wt, wm int64
	for _, r := range res.Demo.Repos {
		if r.Purged() {
			tags, manifests, _ := r.Deleted()
			wt, wm = wt+tags, wm+manifests
		}
	}
	assert.Equal(t, res.Before.Tags-int(wt), res.After.Tags)
	assert.Equal(t, res.Before.Manifests-int(wm), res.After.Manifests)
	assert.Equal(t, res.Before.Bytes-rep.Totals.BytesFreed, res.After.Bytes)
	assert.Equal(t, res.Before.Repositories, res.After.Repositories)

	var fns []string
	for _, v := range res.Invocations {
		fns = append(fns, v.Function+"/"+v.MessageID)
		assert.True(t, v.OK(), "%+v", v)
	}
	assert.ElementsMatch(t, []string{"Scheduler/", "Worker/" + rep.Run.ID + "/1", "Worker/" + rep.Run.ID + "/2"}, fns)
}

// TestDryRunAtScale: a dry run of a larger registry in batches of 10
// deletes nothing and reports what a real run would delete.
func TestDryRunAtScale(t *testing.T) {
	res := runStack(t, localstack.Options{DryRun: true, Repositories: 30, BatchSize: 10})
	assertRegistry(t, res, localstack.RepoSeed.Purged, true)
	require.Len(t, res.Runs, 1)
	rep := res.Runs[0]
	assertReport(t, rep, res.Demo, true)
	assert.Equal(t, runs.BatchCounts{Total: 3, Done: 3}, rep.Batches, "26 covered repositories in batches of 10")
	assert.Equal(t, res.Before, res.After)
	assert.Positive(t, rep.Totals.TagsDeleted)
}

// TestPushPortalAndPoison: a push purges its repository only; a portal
// message purges the repositories it names (the forbidden one reported);
// a malformed message is rejected once; a push right after the timer's run
// is debounced.
func TestPushPortalAndPoison(t *testing.T) {
	res := runStack(t, localstack.Options{CloudEvents: true, Triggers: []localstack.Trigger{
		{Kind: localstack.TriggerPush, Ref: "team-a/api:ci-1501"},
		{Kind: localstack.TriggerSend, Body: `{"repositories":["team-b/worker","team-legacy/monolith"]}`},
		{Kind: localstack.TriggerSend, Body: `{"repositories":["team-a/api"],"loginServer":"evil.azurecr.io"}`},
		{Kind: localstack.TriggerTimer},
		{Kind: localstack.TriggerPush, Ref: "team-b/jobs:v1.4.0"},
	}})
	require.Len(t, res.Runs, 3, "push, portal, timer; the second push is debounced")
	push, portal, nightly := res.Runs[0], res.Runs[1], res.Runs[2]

	assert.Equal(t, "push", push.Run.Trigger)
	assert.Contains(t, push.Run.Note, "cloudevents")
	require.Len(t, push.Repositories, 1)
	assert.Equal(t, "team-a/api", push.Repositories[0].Name)
	api, _ := res.Demo.Repo("team-a/api")
	tags, manifests, _ := api.Deleted()
	assert.Equal(t, tags, push.Repositories[0].TagsDeleted)
	assert.Equal(t, manifests, push.Repositories[0].ManifestsDeleted)
	assert.True(t, res.Emulator.HasTag("team-a/api", "ci-1501"), "the pushed image is new: kept")

	assert.Equal(t, "portal", portal.Run.Trigger)
	assertReport(t, portal, res.Demo, false)
	assert.Equal(t, 1, portal.Totals.Forbidden)

	assert.Equal(t, "schedule", nightly.Run.Trigger)
	for _, x := range nightly.Repositories {
		if x.Name == "team-a/api" || x.Name == "team-b/worker" {
			assert.Zero(t, x.TagsDeleted+x.ManifestsDeleted, "%s was purged already", x.Name)
		}
	}
	assertRegistry(t, res, localstack.RepoSeed.Purged, false)

	require.Len(t, res.Rejections, 1)
	assert.Contains(t, res.Rejections[0].Reason, "loginServer")
	var debounced bool
	for _, v := range res.Invocations {
		debounced = debounced || strings.Contains(v.Summary, "debounced")
		assert.True(t, v.OK(), "%+v", v)
	}
	assert.True(t, debounced, "the last push comes within PUSH_DEBOUNCE of the timer's run")
	assert.True(t, res.Emulator.HasTag("team-b/jobs", "v1.4.0"))
}

// TestFailuresRedeliveredThenDeadLettered: with every registry request
// failing, the timer is retried as its retry policy says and a portal
// message is delivered up to the max delivery count, then dead-lettered,
// its failure recorded.
func TestFailuresRedeliveredThenDeadLettered(t *testing.T) {
	res := runStack(t, localstack.Options{ErrorRate: 1, MaxDeliveries: 2, Triggers: []localstack.Trigger{
		{Kind: localstack.TriggerTimer},
		{Kind: localstack.TriggerSend, Body: `{"repository":"team-a/web"}`},
	}})
	var timer, worker, dead []localstack.Invocation
	for _, v := range res.Invocations {
		switch v.Function {
		case "Scheduler":
			timer = append(timer, v)
		case "Worker":
			worker = append(worker, v)
		case "DeadLetters":
			dead = append(dead, v)
			continue
		}
		assert.False(t, v.OK(), "%+v", v)
	}
	require.Len(t, dead, 1, "the dead letter is handed to the DeadLetters function")
	assert.True(t, dead[0].OK(), "%+v", dead[0])
	require.Len(t, timer, 1+localstack.TimerRetries)
	assert.True(t, timer[0].Redelivered)
	assert.False(t, timer[len(timer)-1].Redelivered)
	require.Len(t, worker, 2)
	assert.Equal(t, []int{1, 2}, []int{worker[0].DeliveryCount, worker[1].DeliveryCount})
	assert.True(t, worker[0].Redelivered)
	assert.True(t, worker[1].DeadLettered)
	require.Len(t, res.DeadLetters, 1)
	assert.Equal(t, 2, res.DeadLetters[0].DeliveryCount)
	assert.Len(t, res.Incomplete(), 2, "the timer and the dead letter")
	require.Len(t, res.Runs, 1)
	rep := res.Runs[0]
	assert.Equal(t, runs.RunFailed, rep.Run.Status)
	require.Len(t, rep.Repositories, 1)
	assert.Equal(t, "failed", rep.Repositories[0].Status)
	assert.Contains(t, rep.Repositories[0].Reason, "gave up after 2 deliveries")
	assertRegistry(t, res, func(localstack.RepoSeed) bool { return false }, false)
	assert.Empty(t, res.Emulator.Deletes())
}

// TestCheckpointsInAzurite: the same nightly run with checkpoints in Table
// Storage (skipped without Azurite; `make test` starts it).
func TestCheckpointsInAzurite(t *testing.T) {
	conn := azurite.Azurite(t)
	table := azurite.TableName(t)
	res := runStack(t, localstack.Options{CheckpointStorage: conn, CheckpointTable: table})
	assert.Equal(t, "table "+table, res.Store)
	assertRegistry(t, res, localstack.RepoSeed.Purged, false)
	require.Len(t, res.Runs, 1)
	assertReport(t, res.Runs[0], res.Demo, false)

	// The deletes went through the registry-wide budget, shared through the
	// same table: its rows are in the registry's partition.
	svc, err := aztables.NewServiceClientFromConnectionString(conn, nil)
	require.NoError(t, err)
	filter := "PartitionKey eq 'budget|" + res.Emulator.Host() + "'"
	pager := svc.NewClient(table).NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &filter})
	rows := 0
	for pager.More() {
		page, err := pager.NextPage(t.Context())
		require.NoError(t, err)
		rows += len(page.Entities)
	}
	assert.GreaterOrEqual(t, rows, 2, "the rate row and at least one window row")
}

func TestRunStackRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]localstack.Options{
		"error rate":  {ErrorRate: 2},
		"policy":      {Policy: `{"rules":[{"filters":["x"]}]}`},
		"policy file": {Policy: "@does-not-exist.json", PolicyDir: t.TempDir()},
		"push":        {Triggers: []localstack.Trigger{{Kind: localstack.TriggerPush, Ref: "Not A Repo:tag"}}},
		"trigger":     {Triggers: []localstack.Trigger{{Kind: "cron"}}},
	} {
		_, err := localstack.RunStack(t.Context(), o)
		assert.Error(t, err, name)
	}
}

package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/e2e/e2etest"
)

// nightly is a firing of the default schedule (0 0 2 * * *), 3 s late.
var nightly = time.Date(2025, 3, 4, 2, 0, 3, 0, time.UTC)

const nightlyRun = "s-20250304T020000Z"

// TestNightlyFanOutWithABACIdentity: the timer fans the catalog out in
// batches; the identity's ABAC condition covers team-a/ and team-b/ only.
func TestNightlyFanOutWithABACIdentity(t *testing.T) {
	h := e2etest.New(t, e2etest.Options{Settings: map[string]string{config.BatchSize: "2"}})
	var granted []e2etest.CIRepo
	for _, name := range []string{"team-a/api", "team-a/jobs", "team-a/web", "team-b/api", "team-b/worker"} {
		granted = append(granted, e2etest.SeedCI(h.Reg, name, 8))
	}
	denied := e2etest.SeedCI(h.Reg, "team-c/api", 8) // in the policy, not in the grant
	outside := e2etest.SeedCI(h.Reg, "ops/tools", 8) // not in the policy

	resp, status := h.FireTimer(nightly, false)
	require.Equal(t, http.StatusOK, status, resp.Logs)
	require.Len(t, resp.Logs, 1)
	assert.Contains(t, resp.Logs[0], "6 repositories in 3 batches")
	assert.Equal(t, []string{nightlyRun + "/1", nightlyRun + "/2", nightlyRun + "/3"}, h.Queue.IDs(),
		"deterministic MessageIDs runId/batch")

	// The host retries the timer a minute later: nothing is enqueued twice.
	sends := len(h.Queue.Calls())
	resp, status = h.FireTimer(nightly.Add(time.Minute), false)
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, resp.Logs[0], "already enqueued")
	assert.Equal(t, sends, len(h.Queue.Calls()))
	assert.Len(t, h.Queue.IDs(), 3)

	h.Drain(funchost.BodyDoubleString)
	assert.Empty(t, h.DeadLetters())
	for _, r := range granted {
		h.AssertPurged(r)
	}
	h.AssertUntouched(denied)
	h.AssertUntouched(outside)
	h.AssertDeletesSafe(append(granted, denied, outside)...)

	rep, code := h.RunReport(nightlyRun)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, runs.RunDone, rep.Run.Status)
	assert.Equal(t, queue.TriggerSchedule, rep.Run.Trigger)
	assert.True(t, rep.Run.Enqueued)
	assert.Equal(t, runs.BatchCounts{Total: 3, Done: 3}, rep.Batches)
	tags, manifests := e2etest.ExpectedDeleted(granted...)
	assert.Equal(t, 6, rep.Totals.Repositories)
	assert.Equal(t, 5, rep.Totals.Done)
	assert.Equal(t, 1, rep.Totals.Forbidden)
	assert.Equal(t, tags, rep.Totals.TagsDeleted)
	assert.Equal(t, manifests, rep.Totals.ManifestsDeleted)
	for _, x := range rep.Repositories {
		if x.Name == denied.Name {
			assert.Equal(t, "forbidden", x.Status)
			assert.Contains(t, x.Reason, "metadata_read, pull, delete", "an untagged rule reads manifest bodies")
			continue
		}
		assert.Equal(t, "done", x.Status, x.Name)
		assert.EqualValues(t, 4, x.Kept["keep"], "%s: ci-1 and ci-2, and the images of ci-3 and ci-4 (keep 2 of each kind)", x.Name)
	}
	latest, code := h.RunReport("")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, nightlyRun, latest.Run.ID)
}

// TestWorkerKilledMidBatchThenRedelivered: the invocation is cancelled in
// the middle of its deletes (the host went away); Service Bus delivers the
// message again and the batch finishes without redoing anything.
func TestWorkerKilledMidBatchThenRedelivered(t *testing.T) {
	h := e2etest.New(t, e2etest.Options{})
	var repos []e2etest.CIRepo
	for _, name := range []string{"team-a/one", "team-a/two", "team-b/three"} {
		repos = append(repos, e2etest.SeedCI(h.Reg, name, 30))
	}
	_, status := h.FireTimer(nightly, false)
	require.Equal(t, http.StatusOK, status)
	m := h.Receive()
	require.NotNil(t, m)
	require.Equal(t, nightlyRun+"/1", m.ID)

	h.Reg.SetFaults(acremu.Faults{Latency: 8 * time.Millisecond})
	ctx, kill := context.WithCancel(t.Context())
	go func() {
		for len(h.Reg.Deletes()) < 12 && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		kill()
	}()
	_, _, err := h.Deliver(ctx, m, funchost.BodyDoubleString)
	require.Error(t, err, "the host dropped the invocation")
	h.Wait() // the handler winds down and checkpoints
	h.Settle()
	partial := len(h.Reg.Deletes())
	tags, manifests := e2etest.ExpectedDeleted(repos...)
	require.Greater(t, partial, 0)
	require.Less(t, partial, int(tags+manifests), "killed in the middle of the batch")
	rep, _ := h.RunReport(nightlyRun)
	require.NotEqual(t, runs.RunDone, rep.Run.Status, "the batch is not finished")

	// Redelivery (DeliveryCount 2) without faults.
	h.Reg.SetFaults(acremu.Faults{})
	h.Requeue(m)
	h.Drain(funchost.BodyDoubleString)
	assert.Equal(t, 2, h.Delivered(m.ID))
	assert.Empty(t, h.DeadLetters())
	for _, r := range repos {
		h.AssertPurged(r)
	}
	h.AssertDeletesSafe(repos...)

	rep, _ = h.RunReport(nightlyRun)
	assert.Equal(t, runs.RunDone, rep.Run.Status)
	assert.Equal(t, 3, rep.Totals.Done)
	assert.LessOrEqual(t, rep.Totals.TagsDeleted, tags, "never more than the policy deletes")
	assert.LessOrEqual(t, rep.Totals.ManifestsDeleted, manifests)
	assert.Greater(t, rep.Totals.TagsDeleted+rep.Totals.ManifestsDeleted, int64(partial)/2)
	attempts := 0
	for _, x := range rep.Repositories {
		attempts = max(attempts, x.Attempts)
	}
	assert.Equal(t, 2, attempts, "the repositories cut off were resumed by the second delivery")
}

// TestPoisonMessages: malformed messages are recorded and completed once;
// a message that keeps failing transiently is redelivered, and its last
// delivery records the failure before failing.
func TestPoisonMessages(t *testing.T) {
	h := e2etest.New(t, e2etest.Options{})
	repo := e2etest.SeedCI(h.Reg, "team-a/api", 6)
	h.Queue.Put("poison-1", []byte("this is not json"))
	h.Queue.Put("poison-2", []byte(`{"repositories":["team-a/api"],"loginServer":"evil.azurecr.io"}`))
	h.Queue.Put("poison-3", []byte(`{"version":1,"runId":"s-x","batch":3,"batches":2,"trigger":"schedule","repositories":["team-a/api"]}`))
	h.Drain(funchost.BodyBase64)
	for _, id := range []string{"poison-1", "poison-2", "poison-3"} {
		assert.Equal(t, 1, h.Delivered(id), "%s: completed on its first delivery", id)
	}
	assert.Empty(t, h.DeadLetters())
	h.AssertUntouched(repo)
	rejs, err := h.Store.ListRejections(t.Context(), 0)
	require.NoError(t, err)
	reasons := map[string]string{}
	for _, r := range rejs {
		reasons[r.MessageID] = r.Reason
	}
	assert.Contains(t, reasons["poison-1"], "not valid JSON")
	assert.Contains(t, reasons["poison-2"], "loginServer")
	assert.Contains(t, reasons["poison-3"], "batch 3 is out of range")

	// A registry that answers 503 to everything: redelivered up to
	// PURGE_MAX_DELIVERIES (3), then dead-lettered with the failure recorded.
	h.Reg.SetFaults(acremu.Faults{ErrorRate: 1})
	h.Queue.Put("portal-1", []byte(`{"repository":"team-a/api"}`))
	h.Drain(funchost.BodyDoubleString)
	assert.Equal(t, 3, h.Delivered("portal-1"))
	require.Len(t, h.DeadLetters(), 1)
	h.AssertUntouched(repo)
	rep, code := h.RunReport("")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, queue.TriggerPortal, rep.Run.Trigger)
	assert.Equal(t, runs.RunFailed, rep.Run.Status)
	require.Len(t, rep.Repositories, 1)
	assert.Equal(t, "failed", rep.Repositories[0].Status)
	assert.Contains(t, rep.Repositories[0].Reason, "gave up after 3 deliveries")
	require.Len(t, rep.FailedBatches, 1)
	assert.Equal(t, 3, rep.FailedBatches[0].Deliveries)
	assert.Len(t, rep.Rejections, 3, "the latest report lists the rejected messages")
}

// TestEventGridPushBothSchemas: ImagePushed events routed into the queue,
// in the Event Grid schema and as CloudEvents, purge the pushed repository.
func TestEventGridPushBothSchemas(t *testing.T) {
	h := e2etest.New(t, e2etest.Options{})
	api := e2etest.SeedCI(h.Reg, "team-a/api", 6)
	web := e2etest.SeedCI(h.Reg, "team-b/web", 6)
	other := e2etest.SeedCI(h.Reg, "team-a/other", 6)
	host := h.Env.Endpoint.Service

	h.Queue.Put("eg-1", e2etest.EventBody(t, queue.SchemaEventGrid, "9a3c1d2e-0001", "team-a/api", host))
	h.Queue.Put("ce-1", e2etest.EventBody(t, queue.SchemaCloudEvents, "9a3c1d2e-0002", "team-b/web", host))
	h.Queue.Put("eg-2", e2etest.EventBody(t, queue.SchemaEventGrid, "9a3c1d2e-0003", "team-a/other", "elsewhere.azurecr.io"))
	h.Drain(funchost.BodyString)
	assert.Empty(t, h.DeadLetters())
	h.AssertPurged(api)
	h.AssertPurged(web)
	h.AssertUntouched(other) // an event from another registry
	h.AssertDeletesSafe(api, web, other)

	recs, err := h.Store.LatestRuns(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, recs, 2)
	for _, run := range recs {
		assert.Equal(t, queue.TriggerPush, run.Trigger)
		assert.True(t, strings.HasPrefix(run.ID, "e-"), run.ID)
		rep, code := h.RunReport(run.ID)
		require.Equal(t, http.StatusOK, code)
		assert.Equal(t, runs.RunDone, rep.Run.Status)
		require.Len(t, rep.Repositories, 1)
		assert.Equal(t, "done", rep.Repositories[0].Status)
		assert.Equal(t, int64(len(api.GoneTags)), rep.Repositories[0].TagsDeleted)
	}

	// A second push within PUSH_DEBOUNCE is not purged again.
	before := h.Reg.Stats().Requests["tags"]
	h.Queue.Put("eg-4", e2etest.EventBody(t, queue.SchemaEventGrid, "9a3c1d2e-0004", "team-a/api", host))
	h.Drain(funchost.BodyString)
	assert.Equal(t, before, h.Reg.Stats().Requests["tags"])
	recs, err = h.Store.LatestRuns(t.Context(), 0)
	require.NoError(t, err)
	assert.Len(t, recs, 2, "a debounced push creates no run")
}

// TestPortalMessageRefannedIntoThreeBatches: an operator sends 25
// repositories from the portal; the Worker re-fans them into batches of
// ABAC_BATCH_SIZE (10), which are then processed.
func TestPortalMessageRefannedIntoThreeBatches(t *testing.T) {
	h := e2etest.New(t, e2etest.Options{})
	var repos []e2etest.CIRepo
	var names []string
	for i := range 25 {
		r := e2etest.SeedCI(h.Reg, fmt.Sprintf("team-a/svc-%02d", i), 5)
		repos, names = append(repos, r), append(names, r.Name)
	}
	body, err := json.Marshal(map[string]any{"repositories": names})
	require.NoError(t, err)
	h.Queue.Put("3f9e7c2a-portal", body)
	m := h.Receive()
	resp, status, err := h.Deliver(t.Context(), m, funchost.BodyObject)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, resp.Logs[0], "re-fanned out")
	ids := h.Queue.IDs()
	require.Len(t, ids, 3)
	runID := strings.Split(ids[0], "/")[0]
	assert.Regexp(t, `^p-[0-9a-f]{12}$`, runID)
	assert.Equal(t, []string{runID + "/1", runID + "/2", runID + "/3"}, ids)
	assert.Empty(t, h.Reg.Deletes(), "the re-fan-out itself purges nothing")

	h.Drain(funchost.BodyDoubleString)
	assert.Empty(t, h.DeadLetters())
	for _, r := range repos {
		h.AssertPurged(r)
	}
	h.AssertDeletesSafe(repos...)
	rep, code := h.RunReport(runID)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, queue.TriggerPortal, rep.Run.Trigger)
	assert.Equal(t, runs.BatchCounts{Total: 3, Done: 3}, rep.Batches)
	assert.Equal(t, 25, rep.Totals.Done)
	var sizes []int
	batchOf := map[int]int{}
	for _, x := range rep.Repositories {
		batchOf[x.Batch]++
	}
	for b := 1; b <= 3; b++ {
		sizes = append(sizes, batchOf[b])
	}
	assert.Equal(t, []int{10, 10, 5}, sizes)
}

// TestDryRunDeletesNothing: a portal message asking for a dry run, and a
// message that cannot widen a dry-run configuration, delete nothing but
// report what would go.
func TestDryRunDeletesNothing(t *testing.T) {
	t.Run("message asks for a dry run", func(t *testing.T) {
		h := e2etest.New(t, e2etest.Options{})
		a := e2etest.SeedCI(h.Reg, "team-a/api", 7)
		b := e2etest.SeedCI(h.Reg, "team-b/api", 7)
		h.Queue.Put("dry-1", []byte(`{"repositories":["team-a/api","team-b/api"],"dryRun":true}`))
		h.Drain(funchost.BodyDoubleString)
		assertDryRun(t, h, a, b)
	})
	t.Run("configuration is a dry run", func(t *testing.T) {
		h := e2etest.New(t, e2etest.Options{Settings: map[string]string{config.DryRun: "true"}})
		a := e2etest.SeedCI(h.Reg, "team-a/api", 7)
		b := e2etest.SeedCI(h.Reg, "team-b/api", 7)
		h.Queue.Put("dry-2", []byte(`{"repositories":["team-a/api","team-b/api"],"dryRun":false}`))
		h.Drain(funchost.BodyDoubleString)
		assertDryRun(t, h, a, b)

		_, status := h.FireTimer(nightly, false)
		require.Equal(t, http.StatusOK, status)
		h.Drain(funchost.BodyDoubleString)
		assert.Empty(t, h.Reg.Deletes(), "the nightly run of a dry-run configuration deletes nothing")
		rep, _ := h.RunReport(nightlyRun)
		assert.True(t, rep.Run.DryRun)
	})
}

func assertDryRun(t *testing.T, h *e2etest.Harness, repos ...e2etest.CIRepo) {
	t.Helper()
	assert.Empty(t, h.DeadLetters())
	assert.Empty(t, h.Reg.Deletes())
	for _, r := range repos {
		h.AssertUntouched(r)
	}
	rep, code := h.RunReport("")
	require.Equal(t, http.StatusOK, code)
	assert.True(t, rep.Run.DryRun)
	assert.Equal(t, runs.RunDone, rep.Run.Status)
	tags, manifests := e2etest.ExpectedDeleted(repos...)
	assert.Equal(t, tags, rep.Totals.TagsDeleted, "what would be deleted")
	assert.Equal(t, manifests, rep.Totals.ManifestsDeleted)
	for _, x := range rep.Repositories {
		assert.Equal(t, string(checkpoint.StatusDone), x.Status)
	}
}

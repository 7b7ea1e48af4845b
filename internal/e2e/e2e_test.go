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

	"github.com/acrpurge/acrpurge/internal/acremu"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/report"
)

// nightly is a firing of the default schedule (0 0 2 * * *), 3 s late.
var nightly = time.Date(2025, 3, 4, 2, 0, 3, 0, time.UTC)

const nightlyRun = "s-20250304T020000Z"

// TestNightlyFanOutWithABACIdentity: the timer fans the catalog out in
// batches; the identity's ABAC condition covers team-a/ and team-b/ only.
func TestNightlyFanOutWithABACIdentity(t *testing.T) {
	h := newHarness(t, harnessOpts{settings: map[string]string{config.BatchSize: "2"}})
	var granted []ciRepo
	for _, name := range []string{"team-a/api", "team-a/jobs", "team-a/web", "team-b/api", "team-b/worker"} {
		granted = append(granted, seedCI(h.reg, name, 8))
	}
	denied := seedCI(h.reg, "team-c/api", 8) // in the policy, not in the grant
	outside := seedCI(h.reg, "ops/tools", 8) // not in the policy

	resp, status := h.fireTimer(nightly, false)
	require.Equal(t, http.StatusOK, status, resp.Logs)
	require.Len(t, resp.Logs, 1)
	assert.Contains(t, resp.Logs[0], "6 repositories in 3 batches")
	assert.Equal(t, []string{nightlyRun + "/1", nightlyRun + "/2", nightlyRun + "/3"}, h.queue.ids(),
		"deterministic MessageIDs runId/batch")

	// The host retries the timer a minute later: nothing is enqueued twice.
	sends := len(h.queue.Calls())
	resp, status = h.fireTimer(nightly.Add(time.Minute), false)
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, resp.Logs[0], "already enqueued")
	assert.Equal(t, sends, len(h.queue.Calls()))
	assert.Len(t, h.queue.ids(), 3)

	h.drain(funchost.BodyDoubleString)
	assert.Empty(t, h.deadLetters)
	for _, r := range granted {
		h.assertPurged(r)
	}
	h.assertUntouched(denied)
	h.assertUntouched(outside)
	h.assertDeletesSafe(append(granted, denied, outside)...)

	rep, code := h.runReport(nightlyRun)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, report.RunDone, rep.Run.Status)
	assert.Equal(t, queue.TriggerSchedule, rep.Run.Trigger)
	assert.True(t, rep.Run.Enqueued)
	assert.Equal(t, report.BatchCounts{Total: 3, Done: 3}, rep.Batches)
	tags, manifests := expectedDeleted(granted...)
	assert.Equal(t, 6, rep.Totals.Repositories)
	assert.Equal(t, 5, rep.Totals.Done)
	assert.Equal(t, 1, rep.Totals.Forbidden)
	assert.Equal(t, tags, rep.Totals.TagsDeleted)
	assert.Equal(t, manifests, rep.Totals.ManifestsDeleted)
	for _, x := range rep.Repositories {
		if x.Name == denied.name {
			assert.Equal(t, "forbidden", x.Status)
			assert.Contains(t, x.Reason, "metadata_read, delete")
			continue
		}
		assert.Equal(t, "done", x.Status, x.Name)
		assert.EqualValues(t, 4, x.Kept["keep"], "%s: ci-1 and ci-2, and the images of ci-3 and ci-4 (keep 2 of each kind)", x.Name)
	}
	latest, code := h.runReport("")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, nightlyRun, latest.Run.ID)
}

// TestWorkerKilledMidBatchThenRedelivered: the invocation is cancelled in
// the middle of its deletes (the host went away); Service Bus delivers the
// message again and the batch finishes without redoing anything.
func TestWorkerKilledMidBatchThenRedelivered(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	var repos []ciRepo
	for _, name := range []string{"team-a/one", "team-a/two", "team-b/three"} {
		repos = append(repos, seedCI(h.reg, name, 30))
	}
	_, status := h.fireTimer(nightly, false)
	require.Equal(t, http.StatusOK, status)
	m := h.queue.pop()
	require.NotNil(t, m)
	require.Equal(t, nightlyRun+"/1", m.ID)

	h.reg.SetFaults(acremu.Faults{Latency: 8 * time.Millisecond})
	ctx, kill := context.WithCancel(t.Context())
	go func() {
		for len(h.reg.Deletes()) < 12 && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		kill()
	}()
	_, _, err := h.deliver(ctx, m, funchost.BodyDoubleString)
	require.Error(t, err, "the host dropped the invocation")
	h.inflight.Wait() // the handler winds down and checkpoints
	partial := len(h.reg.Deletes())
	tags, manifests := expectedDeleted(repos...)
	require.Greater(t, partial, 0)
	require.Less(t, partial, int(tags+manifests), "killed in the middle of the batch")
	rep, _ := h.runReport(nightlyRun)
	require.NotEqual(t, report.RunDone, rep.Run.Status, "the batch is not finished")

	// Redelivery (DeliveryCount 2) without faults.
	h.reg.SetFaults(acremu.Faults{})
	h.queue.pushFront(m)
	h.drain(funchost.BodyDoubleString)
	assert.Equal(t, 2, h.delivered[m.ID])
	assert.Empty(t, h.deadLetters)
	for _, r := range repos {
		h.assertPurged(r)
	}
	h.assertDeletesSafe(repos...)

	rep, _ = h.runReport(nightlyRun)
	assert.Equal(t, report.RunDone, rep.Run.Status)
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
	h := newHarness(t, harnessOpts{})
	repo := seedCI(h.reg, "team-a/api", 6)
	h.queue.put("poison-1", []byte("this is not json"))
	h.queue.put("poison-2", []byte(`{"repositories":["team-a/api"],"loginServer":"evil.azurecr.io"}`))
	h.queue.put("poison-3", []byte(`{"version":1,"runId":"s-x","batch":3,"batches":2,"trigger":"schedule","repositories":["team-a/api"]}`))
	h.drain(funchost.BodyBase64)
	for _, id := range []string{"poison-1", "poison-2", "poison-3"} {
		assert.Equal(t, 1, h.delivered[id], "%s: completed on its first delivery", id)
	}
	assert.Empty(t, h.deadLetters)
	h.assertUntouched(repo)
	rejs, err := h.store.ListRejections(t.Context(), 0)
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
	h.reg.SetFaults(acremu.Faults{ErrorRate: 1})
	h.queue.put("portal-1", []byte(`{"repository":"team-a/api"}`))
	h.drain(funchost.BodyDoubleString)
	assert.Equal(t, 3, h.delivered["portal-1"])
	require.Len(t, h.deadLetters, 1)
	h.assertUntouched(repo)
	rep, code := h.runReport("")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, queue.TriggerPortal, rep.Run.Trigger)
	assert.Equal(t, report.RunFailed, rep.Run.Status)
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
	h := newHarness(t, harnessOpts{})
	api := seedCI(h.reg, "team-a/api", 6)
	web := seedCI(h.reg, "team-b/web", 6)
	other := seedCI(h.reg, "team-a/other", 6)
	host := h.env.Endpoint.Service

	h.queue.put("eg-1", eventBody(t, queue.SchemaEventGrid, "9a3c1d2e-0001", "team-a/api", host))
	h.queue.put("ce-1", eventBody(t, queue.SchemaCloudEvents, "9a3c1d2e-0002", "team-b/web", host))
	h.queue.put("eg-2", eventBody(t, queue.SchemaEventGrid, "9a3c1d2e-0003", "team-a/other", "elsewhere.azurecr.io"))
	h.drain(funchost.BodyString)
	assert.Empty(t, h.deadLetters)
	h.assertPurged(api)
	h.assertPurged(web)
	h.assertUntouched(other) // an event from another registry
	h.assertDeletesSafe(api, web, other)

	runs, err := h.store.LatestRuns(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, runs, 2)
	for _, run := range runs {
		assert.Equal(t, queue.TriggerPush, run.Trigger)
		assert.True(t, strings.HasPrefix(run.ID, "e-"), run.ID)
		rep, code := h.runReport(run.ID)
		require.Equal(t, http.StatusOK, code)
		assert.Equal(t, report.RunDone, rep.Run.Status)
		require.Len(t, rep.Repositories, 1)
		assert.Equal(t, "done", rep.Repositories[0].Status)
		assert.Equal(t, int64(len(api.goneTags)), rep.Repositories[0].TagsDeleted)
	}

	// A second push within PUSH_DEBOUNCE is not purged again.
	before := h.reg.Stats().Requests["tags"]
	h.queue.put("eg-4", eventBody(t, queue.SchemaEventGrid, "9a3c1d2e-0004", "team-a/api", host))
	h.drain(funchost.BodyString)
	assert.Equal(t, before, h.reg.Stats().Requests["tags"])
	runs, err = h.store.LatestRuns(t.Context(), 0)
	require.NoError(t, err)
	assert.Len(t, runs, 2, "a debounced push creates no run")
}

// eventBody renders an ImagePushed event as Event Grid delivers it to a
// Service Bus queue.
func eventBody(t *testing.T, schema, id, repo, host string) []byte {
	t.Helper()
	data := map[string]any{
		"id": id + "-data", "timestamp": "2025-03-04T21:39:47.276585742Z", "action": "push", "location": "westeurope",
		"target": map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1609, "length": 1609,
			"digest": "sha256:9f2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809", "repository": repo, "tag": "1.4.2"},
		"request": map[string]any{"id": id + "-req", "host": host, "method": "PUT", "useragent": "buildkit/v0.17"},
	}
	topic := "/subscriptions/5f3c1a2b/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/contoso"
	var ev map[string]any
	if schema == queue.SchemaCloudEvents {
		ev = map[string]any{"specversion": "1.0", "id": id, "source": topic, "subject": repo + ":1.4.2",
			"type": queue.EventTypeImagePushed, "time": "2025-03-04T21:39:47.6549614Z", "datacontenttype": "application/json", "data": data}
	} else {
		ev = map[string]any{"id": id, "topic": topic, "subject": repo + ":1.4.2", "eventType": queue.EventTypeImagePushed,
			"eventTime": "2025-03-04T21:39:47.6549614Z", "data": data, "dataVersion": "1.0", "metadataVersion": "1"}
	}
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	return b
}

// TestPortalMessageRefannedIntoThreeBatches: an operator sends 25
// repositories from the portal; the Worker re-fans them into batches of
// ABAC_BATCH_SIZE (10), which are then processed.
func TestPortalMessageRefannedIntoThreeBatches(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	var repos []ciRepo
	var names []string
	for i := range 25 {
		r := seedCI(h.reg, fmt.Sprintf("team-a/svc-%02d", i), 5)
		repos, names = append(repos, r), append(names, r.name)
	}
	body, err := json.Marshal(map[string]any{"repositories": names})
	require.NoError(t, err)
	h.queue.put("3f9e7c2a-portal", body)
	m := h.queue.pop()
	resp, status, err := h.deliver(t.Context(), m, funchost.BodyObject)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, resp.Logs[0], "re-fanned out")
	ids := h.queue.ids()
	require.Len(t, ids, 3)
	runID := strings.Split(ids[0], "/")[0]
	assert.Regexp(t, `^p-[0-9a-f]{12}$`, runID)
	assert.Equal(t, []string{runID + "/1", runID + "/2", runID + "/3"}, ids)
	assert.Empty(t, h.reg.Deletes(), "the re-fan-out itself purges nothing")

	h.drain(funchost.BodyDoubleString)
	assert.Empty(t, h.deadLetters)
	for _, r := range repos {
		h.assertPurged(r)
	}
	h.assertDeletesSafe(repos...)
	rep, code := h.runReport(runID)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, queue.TriggerPortal, rep.Run.Trigger)
	assert.Equal(t, report.BatchCounts{Total: 3, Done: 3}, rep.Batches)
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
		h := newHarness(t, harnessOpts{})
		a := seedCI(h.reg, "team-a/api", 7)
		b := seedCI(h.reg, "team-b/api", 7)
		h.queue.put("dry-1", []byte(`{"repositories":["team-a/api","team-b/api"],"dryRun":true}`))
		h.drain(funchost.BodyDoubleString)
		assertDryRun(t, h, a, b)
	})
	t.Run("configuration is a dry run", func(t *testing.T) {
		h := newHarness(t, harnessOpts{settings: map[string]string{config.DryRun: "true"}})
		a := seedCI(h.reg, "team-a/api", 7)
		b := seedCI(h.reg, "team-b/api", 7)
		h.queue.put("dry-2", []byte(`{"repositories":["team-a/api","team-b/api"],"dryRun":false}`))
		h.drain(funchost.BodyDoubleString)
		assertDryRun(t, h, a, b)

		_, status := h.fireTimer(nightly, false)
		require.Equal(t, http.StatusOK, status)
		h.drain(funchost.BodyDoubleString)
		assert.Empty(t, h.reg.Deletes(), "the nightly run of a dry-run configuration deletes nothing")
		rep, _ := h.runReport(nightlyRun)
		assert.True(t, rep.Run.DryRun)
	})
}

func assertDryRun(t *testing.T, h *harness, repos ...ciRepo) {
	t.Helper()
	assert.Empty(t, h.deadLetters)
	assert.Empty(t, h.reg.Deletes())
	for _, r := range repos {
		h.assertUntouched(r)
	}
	rep, code := h.runReport("")
	require.Equal(t, http.StatusOK, code)
	assert.True(t, rep.Run.DryRun)
	assert.Equal(t, report.RunDone, rep.Run.Status)
	tags, manifests := expectedDeleted(repos...)
	assert.Equal(t, tags, rep.Totals.TagsDeleted, "what would be deleted")
	assert.Equal(t, manifests, rep.Totals.ManifestsDeleted)
	for _, x := range rep.Repositories {
		assert.Equal(t, string(checkpoint.StatusDone), x.Status)
	}
}

package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/worker"
)

// pushEvent renders an ImagePushed event (or another type) in one of the
// two schemas.
func pushEvent(t *testing.T, schema, id, typ, repo, host string) []byte {
	t.Helper()
	data := map[string]any{
		"id": "data-" + id, "timestamp": "2025-03-04T21:39:47.276585742Z", "action": "push",
		"target": map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1609,
			"digest":     "sha256:9f2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809",
			"repository": repo, "tag": "v9",
		},
		"request": map[string]any{"id": "req-" + id, "host": host, "method": "PUT", "useragent": "docker/27"},
	}
	var ev map[string]any
	if schema == queue.SchemaCloudEvents {
		ev = map[string]any{"specversion": "1.0", "id": id, "type": typ, "source": "/subscriptions/x/registries/r",
			"subject": repo + ":v9", "time": "2025-03-04T21:39:47.6549614Z", "datacontenttype": "application/json", "data": data}
	} else {
		ev = map[string]any{"id": id, "eventType": typ, "topic": "/subscriptions/x/registries/r", "subject": repo + ":v9",
			"eventTime": "2025-03-04T21:39:47.6549614Z", "data": data, "dataVersion": "1.0", "metadataVersion": "1"}
	}
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	if schema == queue.SchemaEventGrid {
		b = append(append([]byte("["), b...), ']') // Event Grid delivers arrays
	}
	return b
}

func TestPushEvents(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	reg := f.env.Registry
	seedCI(reg, "team-a/api", 5)
	seedCI(reg, "team-b/web", 5)
	host := f.env.Endpoint.Service
	clock := reg.Now()
	f.opts.Now = func() time.Time { return clock }
	w := f.worker(t)
	handle := func(body []byte, id string) worker.Outcome {
		t.Helper()
		out, err := w.Handle(t.Context(), worker.Delivery{Body: body, MessageID: id, DeliveryCount: 1})
		require.NoError(t, err)
		return out
	}

	ignored := []struct {
		name, body, reason string
	}{
		{"another registry", string(pushEvent(t, queue.SchemaEventGrid, "e1", queue.EventTypeImagePushed, "team-a/api", "evil.azurecr.io")), "another registry"},
		{"not in policy", string(pushEvent(t, queue.SchemaCloudEvents, "e2", queue.EventTypeImagePushed, "ops/tools", host)), "not in policy"},
		{"other event type", string(pushEvent(t, queue.SchemaEventGrid, "e3", "Microsoft.ContainerRegistry.ImageDeleted", "team-a/api", host)), "ImageDeleted"},
		{"no host", string(pushEvent(t, queue.SchemaEventGrid, "e4", queue.EventTypeImagePushed, "team-a/api", "")), "names no registry host"},
	}
	for _, c := range ignored {
		out := handle([]byte(c.body), "m-"+c.name)
		assert.Equal(t, worker.KindIgnored, out.Kind, c.name)
		assert.Contains(t, out.Reason, c.reason, c.name)
	}
	assert.Empty(t, reg.Deletes())
	runs, err := f.store.LatestRuns(t.Context(), 0)
	require.NoError(t, err)
	assert.Empty(t, runs, "ignored events create no run")

	// Event Grid schema, host compared case-insensitively.
	out := handle(pushEvent(t, queue.SchemaEventGrid, "evt-a", queue.EventTypeImagePushed, "team-a/api", strings.ToUpper(host)), "m-a")
	require.Equal(t, worker.KindEvent, out.Kind)
	assert.Regexp(t, `^e-[0-9a-f]{12}$`, out.RunID)
	assert.Equal(t, ciSurvivors, tagNames(reg, "team-a/api"))
	run, err := f.store.GetRun(t.Context(), out.RunID)
	require.NoError(t, err)
	assert.Equal(t, queue.TriggerPush, run.Trigger)
	assert.Equal(t, 1, run.Batches)

	// CloudEvents schema, for the other repository.
	out2 := handle(pushEvent(t, queue.SchemaCloudEvents, "evt-b", queue.EventTypeImagePushed, "team-b/web", host), "m-b")
	require.Equal(t, worker.KindEvent, out2.Kind)
	assert.NotEqual(t, out.RunID, out2.RunID)
	assert.Equal(t, ciSurvivors, tagNames(reg, "team-b/web"))

	// Another push soon after is debounced; after the window it runs again.
	for i := 1; i <= 3; i++ {
		reg.Put("team-a/api", acremu.Artifact{Tags: []string{fmt.Sprintf("ci-late-%d", i)}, Created: clock.Add(-35*day - time.Duration(i)*time.Hour)})
	}
	clock = clock.Add(5 * time.Minute)
	out3 := handle(pushEvent(t, queue.SchemaEventGrid, "evt-c", queue.EventTypeImagePushed, "team-a/api", host), "m-c")
	assert.Equal(t, worker.KindIgnored, out3.Kind)
	assert.Contains(t, out3.Reason, "debounced")
	assert.Contains(t, tagNames(reg, "team-a/api"), "ci-late-3")
	clock = clock.Add(6 * time.Minute)
	out4 := handle(pushEvent(t, queue.SchemaEventGrid, "evt-d", queue.EventTypeImagePushed, "team-a/api", host), "m-d")
	assert.Equal(t, worker.KindEvent, out4.Kind)
	assert.Equal(t, []string{"ci-fresh", "ci-late-1", "ci-late-2", "latest"}, tagNames(reg, "team-a/api"))

	// A redelivered event (past the debounce window) is the same run and
	// finds its work done.
	out5 := handle(pushEvent(t, queue.SchemaCloudEvents, "evt-b", queue.EventTypeImagePushed, "team-b/web", host), "m-b")
	assert.Equal(t, worker.KindEvent, out5.Kind)
	assert.Equal(t, out2.RunID, out5.RunID)
	require.Len(t, out5.Repos, 1)
	assert.True(t, out5.Repos[0].Already)

	// Two events sharing an id, for different repositories, are two runs.
	clock = clock.Add(time.Hour)
	out6 := handle(pushEvent(t, queue.SchemaEventGrid, "evt-same", queue.EventTypeImagePushed, "team-a/api", host), "m-same-1")
	out7 := handle(pushEvent(t, queue.SchemaEventGrid, "evt-same", queue.EventTypeImagePushed, "team-b/web", host), "m-same-2")
	require.Equal(t, worker.KindEvent, out6.Kind)
	require.Equal(t, worker.KindEvent, out7.Kind)
	assert.NotEqual(t, out6.RunID, out7.RunID)
	require.Len(t, out7.Repos, 1)
	assert.Equal(t, "team-b/web", out7.Repos[0].Name)
	assert.False(t, out7.Repos[0].Already, "the second repository is purged, not taken for the first's")
	assertNoDoubleDeletes(t, reg)
}

func TestPortalMessages(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	reg := f.env.Registry
	seedCI(reg, "team-a/api", 5)
	seedCI(reg, "team-b/web", 5)
	f.opts.BatchSize = 3
	w := f.worker(t)

	// A dry run from the portal deletes nothing but reports what it would.
	out, err := w.Handle(t.Context(), worker.Delivery{
		Body: []byte(`{"repositories":["team-b/web","team-a/api","team-a/api"],"dryRun":true}`), MessageID: "portal-1", DeliveryCount: 1})
	require.NoError(t, err)
	assert.Equal(t, worker.KindPortal, out.Kind)
	assert.Regexp(t, `^p-[0-9a-f]{12}$`, out.RunID)
	assert.Empty(t, reg.Deletes())
	rows, err := f.store.ListRepos(t.Context(), out.RunID)
	require.NoError(t, err)
	require.Len(t, rows, 2)
	for _, r := range rows {
		assert.Equal(t, checkpoint.StatusDone, r.Status)
		assert.EqualValues(t, 3, r.TagsDeleted, "would delete")
	}
	run, err := f.store.GetRun(t.Context(), out.RunID)
	require.NoError(t, err)
	assert.True(t, run.DryRun)
	assert.Equal(t, queue.TriggerPortal, run.Trigger)
	_, by, err := f.store.LastPurge(t.Context(), "team-a/api")
	require.NoError(t, err)
	assert.Empty(t, by, "a dry run is not a purge for the debounce")

	// More repositories than a batch: re-fanned out, nothing purged here.
	var many []string
	for i := range 7 {
		many = append(many, fmt.Sprintf("team-c/r%d", i))
	}
	body, _ := json.Marshal(map[string]any{"repositories": many})
	out, err = w.Handle(t.Context(), worker.Delivery{Body: body, MessageID: "portal-2", DeliveryCount: 1})
	require.NoError(t, err)
	require.NotNil(t, out.Fanout)
	assert.Equal(t, 3, out.Fanout.Batches)
	sent := f.sender.Take()
	require.Len(t, sent, 3)
	for i, o := range sent {
		m := decodeOwn(t, o)
		assert.Equal(t, out.RunID, m.RunID)
		assert.Equal(t, i+1, m.Batch)
		assert.Equal(t, queue.TriggerPortal, m.Trigger)
		assert.False(t, m.DryRun)
	}
	// Redelivered: the run is enqueued already.
	_, err = w.Handle(t.Context(), worker.Delivery{Body: body, MessageID: "portal-2", DeliveryCount: 2})
	require.NoError(t, err)
	assert.Empty(t, f.sender.Take())

	// The configuration's dry run cannot be widened by a message.
	f.opts.DryRun = true
	w = f.worker(t)
	out, err = w.Handle(t.Context(), worker.Delivery{Body: []byte(`{"repository":"team-a/api","dryRun":false}`), MessageID: "portal-3", DeliveryCount: 1})
	require.NoError(t, err)
	assert.Empty(t, reg.Deletes())
	run, err = f.store.GetRun(t.Context(), out.RunID)
	require.NoError(t, err)
	assert.True(t, run.DryRun)
}

// failingStore refuses rejections.
type failingStore struct{ checkpoint.Store }

func (failingStore) RecordRejection(context.Context, checkpoint.Rejection) error {
	return errors.New("table unavailable")
}

func TestPoisonMessagesAreRecordedAndCompleted(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	seedCI(f.env.Registry, "team-a/api", 5)
	w := f.worker(t)
	cases := []struct{ name, body, reason string }{
		{"not json", "purge everything\x1b[31m please\n", "not valid JSON"},
		{"names a registry", `{"repositories":["team-a/api"],"registry":"evil.azurecr.io"}`, "registry"},
		{"unknown shape", `{"hello":"world"}`, "unknown message shape"},
		{"bad repository", `{"repositories":["../etc"]}`, "repositories[0]"},
		{"empty", ``, "empty"},
		{"bad version", `{"version":2,"runId":"r","batch":1,"batches":1,"trigger":"schedule","repositories":["a"]}`, "version 2"},
	}
	for i, c := range cases {
		out, err := w.Handle(t.Context(), worker.Delivery{Body: []byte(c.body), MessageID: fmt.Sprintf("poison-%d", i), DeliveryCount: 1})
		require.NoError(t, err, "%s: completed, never retried", c.name)
		assert.Equal(t, worker.KindRejected, out.Kind, c.name)
		assert.Contains(t, out.Reason, c.reason, c.name)
	}
	assert.Empty(t, f.env.Registry.Deletes())
	assert.Empty(t, f.sender.Take())
	rejs, err := f.store.ListRejections(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, rejs, len(cases))
	byID := map[string]checkpoint.Rejection{}
	for _, r := range rejs {
		byID[r.MessageID] = r
	}
	first := byID["poison-0"]
	assert.Contains(t, first.Reason, "not valid JSON")
	assert.Equal(t, `purge everything\u001b[31m please\n`, first.Excerpt, "control characters are escaped")

	// If the rejection cannot be recorded, the message is retried.
	f.opts.Store = failingStore{f.store}
	w = f.worker(t)
	_, err = w.Handle(t.Context(), worker.Delivery{Body: []byte(`{}`), MessageID: "poison-x", DeliveryCount: 1})
	require.Error(t, err)
}

// TestOwnMessagesMustBelongToAnExistingRun: a message in the app's own
// format cannot create a run (it could name a future nightly run and so
// switch that night off), cannot name a batch the run does not have, nor a
// repository outside its batch; it is rejected, recorded and completed.
// A real batch keeps its run's dry run whatever the message says.
func TestOwnMessagesMustBelongToAnExistingRun(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	seedCI(f.env.Registry, "team-a/app", 6)
	w := f.worker(t)
	future := queue.Message{Version: queue.Version, RunID: "s-20991231T020000Z", Batch: 1, Batches: 1,
		Trigger: queue.TriggerSchedule, Repositories: []string{"team-a/app"}, DryRun: true}
	deliver := func(m queue.Message) worker.Outcome {
		t.Helper()
		out, err := w.Handle(t.Context(), worker.Delivery{Body: ownBody(t, m), MessageID: m.MessageID(), DeliveryCount: 1})
		require.NoError(t, err, "a refused message is completed, not retried")
		return out
	}
	out := deliver(future)
	assert.Equal(t, worker.KindRejected, out.Kind)
	assert.Contains(t, out.Reason, "does not exist")
	_, err := f.store.GetRun(t.Context(), future.RunID)
	require.ErrorIs(t, err, checkpoint.ErrNotFound, "no run was created for the forged message")

	// A real run (created by its trigger, a dry run) with one batch.
	real := queue.Message{RunID: "s-20250101T020000Z", Batch: 1, Batches: 1, Trigger: queue.TriggerSchedule, Repositories: []string{"team-a/app"}}
	run := checkpoint.Run{ID: real.RunID, Trigger: queue.TriggerSchedule, DryRun: true, Batches: 1, Repositories: 1, Enqueued: true}
	_, _, err = f.store.CreateRun(t.Context(), run, []checkpoint.Batch{{N: 1, Repositories: real.Repositories}})
	require.NoError(t, err)
	other := real
	other.Batch, other.Batches = 2, 2
	assert.Contains(t, deliver(other).Reason, "has no batch 2")
	outside := real
	outside.Repositories = []string{"team-a/app", "team-b/other"}
	assert.Contains(t, deliver(outside).Reason, `"team-b/other" is not part of run`)
	rejs, err := f.store.ListRejections(t.Context(), 0)
	require.NoError(t, err)
	assert.Len(t, rejs, 3, "every refusal is recorded")

	out = deliver(real) // asks for deletes; the run is a dry run
	assert.Equal(t, worker.KindOwn, out.Kind)
	assert.Len(t, f.env.Registry.Tags("team-a/app"), 8, "the run's dry run wins: nothing deleted")
	rows, err := f.store.GetRepos(t.Context(), real.RunID, real.Repositories)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusDone, rows["team-a/app"].Status)
	assert.Positive(t, rows["team-a/app"].TagsDeleted, "counted as would-delete")
}

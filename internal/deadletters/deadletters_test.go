package deadletters_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/deadletters"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/queue"
)

// invoke hands a dead-lettered body to the function as the host does.
func invoke(t *testing.T, f *deadletters.Function, id string, body []byte, reason string) *funchost.Response {
	t.Helper()
	req := funchost.ServiceBusRequest(deadletters.BindingMessage, body, funchost.BodyDoubleString, funchost.ServiceBusMeta{
		MessageID: id, DeliveryCount: 5, DeliveryCountAsString: true, EnqueuedTime: time.Date(2025, 3, 4, 2, 0, 0, 0, time.UTC),
		ApplicationProperties: map[string]string{"DeadLetterReason": reason, "DeadLetterErrorDescription": "Message could not be consumed after 5 delivery attempts."},
	})
	resp, err := f.Invoke(t.Context(), &req)
	require.NoError(t, err, "a dead letter is completed")
	return resp
}

func TestDeadLetteredBatchIsRecordedAsFailed(t *testing.T) {
	store := checkpoint.NewMemory()
	f := &deadletters.Function{Store: store}
	run := checkpoint.Run{ID: "s-20250304T020000Z", Trigger: queue.TriggerSchedule, Batches: 1, Repositories: 3, Enqueued: true}
	repos := []string{"team-a/api", "team-a/web", "team-a/db"}
	_, _, err := store.CreateRun(t.Context(), run, []checkpoint.Batch{{N: 1, Repositories: repos}})
	require.NoError(t, err)
	require.NoError(t, store.SaveProgress(t.Context(), run.ID, []checkpoint.Repo{
		{RunID: run.ID, Name: "team-a/api", Batch: 1, Status: checkpoint.StatusDone, TagsDeleted: 4},
		{RunID: run.ID, Name: "team-a/web", Batch: 1, Status: checkpoint.StatusPartial, TagsDeleted: 2, Cursor: `{"phase":"tags"}`},
	}, &checkpoint.Batch{RunID: run.ID, N: 1, Repositories: repos, Status: checkpoint.StatusRunning, Deliveries: 5}))

	msg := queue.Message{Version: queue.Version, RunID: run.ID, Batch: 1, Batches: 1, Trigger: queue.TriggerSchedule, Repositories: repos}
	body, err := msg.Encode()
	require.NoError(t, err)
	resp := invoke(t, f, msg.MessageID(), body, "MaxDeliveryCountExceeded")
	assert.Contains(t, resp.Logs[0], "2 unfinished repositories marked failed")

	b, err := store.GetBatch(t.Context(), run.ID, 1)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusFailed, b.Status)
	assert.Contains(t, b.Error, "dead-lettered (MaxDeliveryCountExceeded) after 5 deliveries: Message could not be consumed")
	rows, err := store.GetRepos(t.Context(), run.ID, repos)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusDone, rows["team-a/api"].Status, "finished repositories keep their outcome")
	assert.Equal(t, checkpoint.StatusFailed, rows["team-a/web"].Status)
	assert.EqualValues(t, 2, rows["team-a/web"].TagsDeleted, "counts are kept")
	assert.Contains(t, rows["team-a/web"].Reason, "MaxDeliveryCountExceeded")
	assert.Equal(t, checkpoint.StatusFailed, rows["team-a/db"].Status, "a repository never started is failed too")
}

func TestDeadLettersWithoutARecordedBatch(t *testing.T) {
	store := checkpoint.NewMemory()
	f := &deadletters.Function{Store: store}
	invoke(t, f, "garbage", []byte("not json"), "MaxDeliveryCountExceeded")
	msg := queue.Message{Version: queue.Version, RunID: "s-20250101T020000Z", Batch: 1, Batches: 1, Trigger: queue.TriggerSchedule, Repositories: []string{"a"}}
	body, err := msg.Encode()
	require.NoError(t, err)
	invoke(t, f, msg.MessageID(), body, "")
	rejs, err := store.ListRejections(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, rejs, 2)
	reasons := rejs[0].Reason + " | " + rejs[1].Reason
	assert.Contains(t, reasons, "unreadable body")
	assert.Contains(t, reasons, "dead-lettered (no reason given)")
	assert.Contains(t, reasons, "no batch 1 of run")
}

// TestDeadLetteredEventFindsItsRun: an event's run is derived as the
// Worker derives it (event id and repository).
func TestDeadLetteredEventFindsItsRun(t *testing.T) {
	store := checkpoint.NewMemory()
	f := &deadletters.Function{Store: store}
	runID := queue.EventRunID("evt-1", "m-1", nil, "team-a/api")
	_, _, err := store.CreateRun(t.Context(), checkpoint.Run{ID: runID, Trigger: queue.TriggerPush, Batches: 1, Repositories: 1, Enqueued: true},
		[]checkpoint.Batch{{N: 1, Repositories: []string{"team-a/api"}}})
	require.NoError(t, err)
	body := []byte(`{"id":"evt-1","eventType":"Microsoft.ContainerRegistry.ImagePushed","subject":"team-a/api:v1",` +
		`"eventTime":"2025-03-04T02:00:00Z","dataVersion":"1.0","topic":"/subscriptions/x",` +
		`"data":{"target":{"repository":"team-a/api","tag":"v1"},"request":{"host":"contoso.azurecr.io"}}}`)
	resp := invoke(t, f, "m-1", body, "MaxDeliveryCountExceeded")
	assert.Contains(t, resp.Logs[0], runID)
	b, err := store.GetBatch(t.Context(), runID, 1)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusFailed, b.Status)
}

package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/worker"
)

// A message carrying a cursor planned in the future (sent by hand) cannot
// make new images look old: the cursor is ignored and ages count from now.
func TestFutureCursorIsIgnored(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	reg := f.env.Registry
	seedCI(reg, "team-a/app", 6)
	w := f.worker(t)
	future := cursorJSON(t, policy.Cursor{Phase: policy.PhaseTags, PlanTime: reg.Now().Add(100 * 365 * day)})
	msg := queue.Message{RunID: "s-future", Repositories: []string{"team-a/app"},
		Resume: &queue.Resume{N: 1, Cursors: map[string]json.RawMessage{"team-a/app": json.RawMessage(future)}}}
	_, err := w.Handle(t.Context(), worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1})
	require.NoError(t, err)
	assert.Equal(t, ciSurvivors, tagNames(reg, "team-a/app"), "ci-fresh (1 h old) survives")

	// A cursor a little ahead (clock skew between instances) is used.
	seedCI(reg, "team-a/skew", 6)
	skew := cursorJSON(t, policy.Cursor{Phase: policy.PhaseTags, PlanTime: reg.Now().Add(time.Minute)})
	msg = queue.Message{RunID: "s-skew", Repositories: []string{"team-a/skew"},
		Resume: &queue.Resume{N: 1, Cursors: map[string]json.RawMessage{"team-a/skew": json.RawMessage(skew)}}}
	_, err = w.Handle(t.Context(), worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1})
	require.NoError(t, err)
	assert.Equal(t, ciSurvivors, tagNames(reg, "team-a/skew"))
}

// On the last delivery, a continuation that cannot be sent fails the
// unfinished repositories and the batch in the checkpoints.
func TestLastDeliveryRecordsAnUnsentContinuation(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	seedCI(f.env.Registry, "team-a/r1", 3)
	f.opts.Deadline = time.Nanosecond // nothing can start: everything is left for a continuation
	f.sender.FailAfter(0, errors.New("service bus unreachable"))
	w := f.worker(t)
	msg := queue.Message{RunID: "s-unsent", Repositories: []string{"team-a/r1"}}
	d := worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1}

	_, err := w.Handle(t.Context(), d)
	require.ErrorContains(t, err, "service bus unreachable")
	b, err := f.store.GetBatch(t.Context(), msg.RunID, 1)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusRunning, b.Status, "not the last delivery: retried")
	assert.Contains(t, b.Error, "service bus unreachable")

	d.DeliveryCount = f.opts.MaxDeliveries
	_, err = w.Handle(t.Context(), d)
	require.Error(t, err)
	b, err = f.store.GetBatch(t.Context(), msg.RunID, 1)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusFailed, b.Status)
	rows, err := f.store.GetRepos(t.Context(), msg.RunID, msg.Repositories)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusFailed, rows["team-a/r1"].Status)
	assert.Contains(t, rows["team-a/r1"].Reason, "continuation could not be sent")
	assert.Contains(t, rows["team-a/r1"].Error, "service bus unreachable")
}

// continuedSaveFails refuses to record a continued batch.
type continuedSaveFails struct{ checkpoint.Store }

func (s continuedSaveFails) SaveProgress(ctx context.Context, runID string, rows []checkpoint.Repo, b *checkpoint.Batch) error {
	if b != nil && b.Status == checkpoint.StatusContinued {
		return errors.New("table storage answered 503")
	}
	return s.Store.SaveProgress(ctx, runID, rows, b)
}

// Once its continuation is sent, a message completes even if the batch row
// cannot record it: a redelivery would only run beside the continuation.
func TestContinuationSentCompletesTheMessage(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	seedCI(f.env.Registry, "team-a/r1", 3)
	f.opts.Deadline = time.Nanosecond
	f.opts.Store = continuedSaveFails{f.store}
	w := f.worker(t)
	msg := queue.Message{RunID: "s-sent", Repositories: []string{"team-a/r1"}}
	out, err := w.Handle(t.Context(), worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1})
	require.NoError(t, err)
	assert.True(t, out.Continued)
	assert.Len(t, f.sender.Take(), 1)
}

// A message whose batch has moved on to a continuation (it sent one, then
// its invocation died) is completed without purging beside it.
func TestSupersededMessageDoesNothing(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	reg := f.env.Registry
	seedCI(reg, "team-a/r1", 6)
	f.opts.Deadline = time.Nanosecond
	w := f.worker(t)
	msg := queue.Message{RunID: "s-super", Repositories: []string{"team-a/r1"}}
	d := worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1}
	out, err := w.Handle(t.Context(), d)
	require.NoError(t, err)
	require.True(t, out.Continued)
	cont := f.sender.Take()
	require.Len(t, cont, 1)

	f.opts.Deadline = time.Minute
	w = f.worker(t)
	d.DeliveryCount = 2
	out, err = w.Handle(t.Context(), d)
	require.NoError(t, err)
	assert.Contains(t, out.Summary, "superseded by continuation 1")
	assert.Empty(t, reg.Deletes(), "the original message purged nothing")
	assert.Empty(t, f.sender.Take())

	// The continuation does the work.
	_, err = w.Handle(t.Context(), worker.Delivery{Body: cont[0].Body, MessageID: cont[0].ID, DeliveryCount: 1})
	require.NoError(t, err)
	assert.Equal(t, ciSurvivors, tagNames(reg, "team-a/r1"))
}

// The checkpoints of a delivery carry its time, not the time the rows were
// first written.
func TestProgressIsStamped(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	reg := f.env.Registry
	seedCI(reg, "team-a/r1", 3)
	w := f.worker(t)
	msg := queue.Message{RunID: "s-stamp", Repositories: []string{"team-a/r1"}}
	created := reg.Now()
	_, _, err := f.store.CreateRun(t.Context(), checkpoint.Run{ID: msg.RunID, Trigger: queue.TriggerSchedule, Started: created, Batches: 1, Enqueued: true},
		[]checkpoint.Batch{{N: 1, Repositories: msg.Repositories, Updated: created}})
	require.NoError(t, err)
	reg.Advance(3 * time.Hour)
	_, err = w.Handle(t.Context(), worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1})
	require.NoError(t, err)
	b, err := f.store.GetBatch(t.Context(), msg.RunID, 1)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusDone, b.Status)
	assert.WithinDuration(t, reg.Now(), b.Updated, time.Minute)
	rows, err := f.store.GetRepos(t.Context(), msg.RunID, msg.Repositories)
	require.NoError(t, err)
	assert.WithinDuration(t, reg.Now(), rows["team-a/r1"].Updated, time.Minute)
}

// A portal message sent again later with the same MessageID (a new enqueue
// time) is a new request; a redelivery (same enqueue time) is the same run.
func TestPortalMessageIDReusedLater(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	reg := f.env.Registry
	seedCI(reg, "team-a/api", 5)
	w := f.worker(t)
	first := reg.Now()
	dry := worker.Delivery{Body: []byte(`{"repository":"team-a/api","dryRun":true}`), MessageID: "purge-api", DeliveryCount: 1, EnqueuedAt: first}
	out1, err := w.Handle(t.Context(), dry)
	require.NoError(t, err)
	assert.Empty(t, reg.Deletes())

	dry.DeliveryCount = 2
	again, err := w.Handle(t.Context(), dry)
	require.NoError(t, err)
	assert.Equal(t, out1.RunID, again.RunID, "a redelivery is the same run")

	real := worker.Delivery{Body: []byte(`{"repository":"team-a/api"}`), MessageID: "purge-api", DeliveryCount: 1, EnqueuedAt: first.Add(2 * time.Hour)}
	out2, err := w.Handle(t.Context(), real)
	require.NoError(t, err)
	assert.NotEqual(t, out1.RunID, out2.RunID)
	assert.Equal(t, ciSurvivors, tagNames(reg, "team-a/api"), "the second request purged")
}

// deadlineStore records the deadline of the context GetRun is called with.
type deadlineStore struct {
	checkpoint.Store
	deadline *time.Time
}

func (s deadlineStore) GetRun(ctx context.Context, id string) (checkpoint.Run, error) {
	if d, ok := ctx.Deadline(); ok {
		*s.deadline = d
	}
	return s.Store.GetRun(ctx, id)
}

// The I/O before the purge (run rows, re-fan-out, debounce) is bounded too:
// the whole invocation ends within deadline + grace + set-up.
func TestInvocationIsBounded(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	seedCI(f.env.Registry, "team-a/r1", 3)
	var got time.Time
	f.opts.Store = deadlineStore{f.store, &got}
	w := f.worker(t)
	msg := queue.Message{RunID: "s-bounded", Repositories: []string{"team-a/r1"}}
	_, err := w.Handle(t.Context(), worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1})
	require.NoError(t, err)
	require.False(t, got.IsZero(), "the run row is read under a deadline")
	assert.WithinDuration(t, time.Now().Add(f.opts.Deadline+worker.Grace+worker.SetupTimeout), got, 5*time.Second)
}

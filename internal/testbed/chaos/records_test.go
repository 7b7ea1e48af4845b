package chaos_test

import (
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/scheduler"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/e2e/e2etest"
)

// forgedFutureRun: before the night, someone who may send to the queue
// sends a message in the app's own format naming tonight's scheduled run.
// It is rejected and recorded without creating the run, so when the timer
// fires the Scheduler fans the night out as usual and the run completes.
func forgedFutureRun(t *testing.T, p params, rng *rand.Rand) {
	w := newWorld(t, worldOpts{})
	w.populate(rng, p)
	occ := nightly.Truncate(time.Hour) // the 02:00:00 occurrence the timer fires for
	runID := "s-" + occ.UTC().Format(scheduler.RunIDLayout)
	victim := w.purgeable()[rng.IntN(len(w.purgeable()))]
	forged := queue.Message{Version: queue.Version, RunID: runID, Batch: 1, Batches: 1,
		Trigger: queue.TriggerSchedule, Repositories: []string{victim}, DryRun: true}
	body, err := forged.Encode()
	require.NoError(t, err)
	w.h.Queue.Put("forged-"+forged.MessageID(), body)
	w.h.DrainParallel(encoding(rng), 1)
	_, err = w.h.Store.GetRun(t.Context(), runID)
	require.ErrorIs(t, err, checkpoint.ErrNotFound, "the forged message created no run")
	rejs, err := w.h.Store.ListRejections(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, rejs, 1)
	assert.Contains(t, rejs[0].Reason, "does not exist")

	batches := w.fireNightly()
	require.Positive(t, batches, "the night was fanned out")
	w.h.DrainParallel(encoding(rng), p.parallel)
	w.check(checks{complete: true, noRedo: true})
	rep, code := w.h.RunReport(runID)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, runs.RunDone, rep.Run.Status)
	assert.False(t, rep.Run.DryRun)
}

// everyDeliveryDies: every delivery of the first batch's message is killed
// mid-batch, up to the max delivery count, so Service Bus dead-letters it.
// The DeadLetters function records the batch and its unfinished
// repositories as failed with the reason (never left "running"), the
// counts of what the killed attempts deleted are reported exactly or as
// lower bounds, and the rest of the night completes.
func everyDeliveryDies(t *testing.T, p params, rng *rand.Rand) {
	var ks atomic.Pointer[killSwitch]
	var killAtDelete atomic.Int64
	hooks := func() e2etest.Hooks {
		k := newKillSwitch()
		ks.Store(k)
		return e2etest.Hooks{Transport: chain(k.transport, onDelete(func(n int64) {
			if n == killAtDelete.Load() {
				k.kill()
			}
		}))}
	}
	w := newWorld(t, worldOpts{hooks: hooks()})
	w.populate(rng, p)
	w.h.Reg.SetFaults(acremu.Faults{Latency: time.Millisecond})
	w.fireNightly()
	m, batchRepos := w.firstBatch()
	want := w.gone(batchRepos...)
	if want < 2*w.h.Config.MaxDeliveries {
		t.Skipf("the first batch deletes only %d items", want)
	}
	runID := strings.SplitN(m.ID, "/", 2)[0]
	for d := 1; d <= w.h.Config.MaxDeliveries; d++ {
		killAtDelete.Store(1 + int64(rng.IntN(2)))
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _, _ = w.h.Deliver(t.Context(), m, encoding(rng))
		}()
		select {
		case <-ks.Load().killed:
		case <-done:
			t.Fatalf("delivery %d ended before the kill", d)
		case <-t.Context().Done():
			t.Fatal("timed out waiting for the kill")
		}
		w.h.StopApp()
		<-done
		w.h.Settle()
		w.h.StartApp(hooks())
	}
	killAtDelete.Store(-1)
	w.h.Queue.DeadLetter(m, "the instance died during every delivery")
	require.NoError(t, w.h.Driver.DeliverDeadLetters(t.Context()))
	w.h.DrainParallel(encoding(rng), p.parallel)

	statuses := w.check(checks{deadLetters: 1})
	rep, code := w.h.RunReport(runID)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, runs.RunFailed, rep.Run.Status, "a dead-lettered batch ends the run failed, not running")
	require.NotEmpty(t, rep.FailedBatches)
	// Whoever wrote last (the Worker on the last delivery, when its
	// checkpoint writes got through before the kill, or the DeadLetters
	// function), the batch says why it ended.
	assert.Regexp(t, `MaxDeliveryCountExceeded|failed transiently|gave up`, rep.FailedBatches[0].Error)
	failed := 0
	for _, r := range rep.Repositories {
		if r.Batch == 1 && r.Status == string(checkpoint.StatusFailed) {
			failed++
			assert.Regexp(t, `dead-lettered|gave up|refused`, r.Reason+r.Error, r.Name)
		}
	}
	assert.Positive(t, failed, "the batch's unfinished repositories are failed")
	t.Logf("%d repositories failed by the dead letter; statuses %v", failed, statuses)
}

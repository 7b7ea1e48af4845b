package runs_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
)

var t0 = time.Date(2025, 3, 4, 2, 0, 0, 0, time.UTC)

// seed writes a run with four batches: 1 done, 2 continued (one repository
// partial, one not started), 3 failed, 4 queued.
func seed(t *testing.T, store checkpoint.Store) {
	t.Helper()
	ctx := t.Context()
	_, _, err := store.CreateRun(ctx, checkpoint.Run{ID: "s-1", Trigger: "schedule", PolicyHash: "abc", Started: t0, Batches: 4, Repositories: 8, Enqueued: true},
		[]checkpoint.Batch{
			{N: 1, Repositories: []string{"a/done", "a/skip"}},
			{N: 2, Repositories: []string{"b/partial", "b/later"}},
			{N: 3, Repositories: []string{"c/failed", "c/forbidden"}},
			{N: 4, Repositories: []string{"d/one", "d/two"}},
		})
	require.NoError(t, err)
	require.NoError(t, store.SaveProgress(ctx, "s-1", []checkpoint.Repo{
		{Name: "a/done", Batch: 1, Status: checkpoint.StatusDone, TagsDeleted: 7, ManifestsDeleted: 3, BytesFreed: 3 << 20,
			Kept: map[string]int64{"keep": 2, "protected": 1}, Attempts: 1},
		{Name: "a/skip", Batch: 1, Status: checkpoint.StatusSkipped, Reason: "not in policy"},
	}, &checkpoint.Batch{N: 1, Repositories: []string{"a/done", "a/skip"}, Status: checkpoint.StatusDone, Deliveries: 1}))
	require.NoError(t, store.SaveProgress(ctx, "s-1", []checkpoint.Repo{
		{Name: "b/partial", Batch: 2, Status: checkpoint.StatusPartial, TagsDeleted: 4, Kept: map[string]int64{"keep": 2}, Attempts: 1, Cursor: `{"phase":"tags"}`},
	}, &checkpoint.Batch{N: 2, Repositories: []string{"b/partial", "b/later"}, Status: checkpoint.StatusContinued, Continuations: 1}))
	require.NoError(t, store.SaveProgress(ctx, "s-1", []checkpoint.Repo{
		{Name: "c/failed", Batch: 3, Status: checkpoint.StatusFailed, Reason: "gave up after 5 deliveries", Error: "503 service unavailable\nretry"},
		{Name: "c/forbidden", Batch: 3, Status: checkpoint.StatusForbidden, Reason: "the access token does not grant delete"},
	}, &checkpoint.Batch{N: 3, Repositories: []string{"c/failed", "c/forbidden"}, Status: checkpoint.StatusFailed, Error: "transient", Deliveries: 5}))
}

func stores(t *testing.T, f func(t *testing.T, store checkpoint.Store)) {
	t.Run("memory", func(t *testing.T) { f(t, checkpoint.NewMemory()) })
	t.Run("table", func(t *testing.T) { f(t, azurite.NewTable(t)) })
}

func TestBuild(t *testing.T) {
	stores(t, func(t *testing.T, store checkpoint.Store) {
		seed(t, store)
		r, err := runs.Build(t.Context(), store, "s-1")
		require.NoError(t, err)
		assert.Equal(t, "s-1", r.Run.ID)
		assert.Equal(t, runs.RunRunning, r.Run.Status)
		assert.Equal(t, runs.BatchCounts{Total: 4, Queued: 1, Continued: 1, Done: 1, Failed: 1}, r.Batches)

		var names, statuses []string
		for _, x := range r.Repositories {
			names = append(names, x.Name)
			statuses = append(statuses, x.Status)
		}
		assert.Equal(t, []string{"a/done", "a/skip", "b/later", "b/partial", "c/failed", "c/forbidden", "d/one", "d/two"}, names)
		assert.Equal(t, []string{"done", "skipped", "pending", "partial", "failed", "forbidden", "pending", "pending"}, statuses)
		assert.Equal(t, runs.Totals{
			Repositories: 8, Pending: 3, Partial: 1, Done: 1, Skipped: 1, Forbidden: 1, Failed: 1,
			TagsDeleted: 11, ManifestsDeleted: 3, BytesFreed: 3 << 20, Kept: map[string]int64{"keep": 4, "protected": 1},
		}, r.Totals)
		require.Len(t, r.FailedBatches, 1)
		assert.Equal(t, 3, r.FailedBatches[0].Batch)
		assert.Equal(t, 5, r.FailedBatches[0].Deliveries)
		assert.Empty(t, r.Rejections, "rejections only in the latest report")

		_, err = runs.Build(t.Context(), store, "s-unknown")
		assert.ErrorIs(t, err, runs.ErrNotFound)
	})
}

func TestLatestIncludesRejections(t *testing.T) {
	store := checkpoint.NewMemory()
	_, err := runs.Build(t.Context(), store, "")
	require.ErrorIs(t, err, runs.ErrNotFound)

	seed(t, store)
	_, _, err = store.CreateRun(t.Context(), checkpoint.Run{ID: "e-2", Trigger: "push", Started: t0.Add(time.Hour), Batches: 1},
		[]checkpoint.Batch{{N: 1, Repositories: []string{"x/y"}, Status: checkpoint.StatusDone}})
	require.NoError(t, err)
	require.NoError(t, store.RecordRejection(t.Context(), checkpoint.Rejection{MessageID: "m1", Reason: "body is not valid JSON", Excerpt: "nope", At: t0}))
	r, err := runs.Build(t.Context(), store, "")
	require.NoError(t, err)
	assert.Equal(t, "e-2", r.Run.ID)
	assert.Equal(t, runs.RunDone, r.Run.Status)
	require.Len(t, r.Rejections, 1)
	assert.Equal(t, "m1", r.Rejections[0].MessageID)
}

func TestRunStatus(t *testing.T) {
	cases := []struct {
		statuses []checkpoint.Status
		want     string
	}{
		{nil, runs.RunDone},
		{[]checkpoint.Status{"queued", "queued"}, runs.RunQueued},
		{[]checkpoint.Status{"queued", "running"}, runs.RunRunning},
		{[]checkpoint.Status{"done", "continued"}, runs.RunRunning},
		{[]checkpoint.Status{"done", "done"}, runs.RunDone},
		{[]checkpoint.Status{"done", "failed"}, runs.RunFailed},
		{[]checkpoint.Status{"queued", "failed"}, runs.RunRunning},
	}
	for _, c := range cases {
		store := checkpoint.NewMemory()
		var bs []checkpoint.Batch
		for i, s := range c.statuses {
			bs = append(bs, checkpoint.Batch{N: i + 1, Status: s, Repositories: []string{"r"}})
		}
		_, _, err := store.CreateRun(t.Context(), checkpoint.Run{ID: "r", Batches: len(bs)}, bs)
		require.NoError(t, err)
		r, err := runs.Build(t.Context(), store, "r")
		require.NoError(t, err)
		assert.Equal(t, c.want, r.Run.Status, "%v", c.statuses)
	}
}

func TestJSONFieldNames(t *testing.T) {
	store := checkpoint.NewMemory()
	seed(t, store)
	r, err := runs.Build(t.Context(), store, "s-1")
	require.NoError(t, err)
	b, err := json.Marshal(r)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	assert.ElementsMatch(t, []string{"run", "batches", "totals", "repositories", "failedBatches"}, keys(m))
	assert.ElementsMatch(t, []string{"id", "trigger", "dryRun", "policyHash", "started", "status", "batches", "repositories", "enqueued"},
		keys(m["run"].(map[string]any)))
	assert.ElementsMatch(t, []string{"total", "queued", "running", "continued", "done", "failed", "rejected", "stalled"}, keys(m["batches"].(map[string]any)))
	assert.ElementsMatch(t, []string{"repositories", "pending", "partial", "done", "skipped", "forbidden", "failed",
		"tagsDeleted", "manifestsDeleted", "bytesFreed", "kept"}, keys(m["totals"].(map[string]any)))
	first := m["repositories"].([]any)[0].(map[string]any)
	assert.ElementsMatch(t, []string{"name", "batch", "status", "tagsDeleted", "manifestsDeleted", "bytesFreed", "kept", "attempts", "updated"}, keys(first))
	assert.ElementsMatch(t, []string{"batch", "status", "error", "deliveries", "continuations"},
		keys(m["failedBatches"].([]any)[0].(map[string]any)))
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestWriteText(t *testing.T) {
	store := checkpoint.NewMemory()
	seed(t, store)
	r, err := runs.Build(t.Context(), store, "s-1")
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, r.WriteText(&buf))
	out := buf.String()
	lines := strings.Split(out, "\n")
	assert.Contains(t, lines[0], "Run s-1: running, trigger schedule, started 2025-03-04T02:00:00Z")
	assert.Contains(t, out, "Batches: 4 total, 1 done, 1 continued, 0 running, 1 queued, 1 failed, 0 rejected")
	assert.Regexp(t, `(?m)^a/done\s+1\s+done\s+7\s+3\s+3\.0 MiB\s+keep=2 protected=1\s*$`, out)
	assert.Regexp(t, `(?m)^c/failed\s+3\s+failed\s+0\s+0\s+0 B\s+gave up after 5 deliveries; error: 503 service unavailable retry$`, out,
		"errors stay on one line")
	assert.Regexp(t, `(?m)^TOTAL \(8\)\s+1 done, 1 partial, 3 pending, 1 skipped, 1 forbidden, 1 failed\s+11\s+3\s+3\.0 MiB\s+keep=4 protected=1`, out)
	assert.Contains(t, out, "batch 3 failed after 5 deliveries: transient")

	r.Run.DryRun = true
	buf.Reset()
	require.NoError(t, r.WriteText(&buf))
	assert.Contains(t, buf.String(), "dry run")
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB", 1 << 62: "4.0 EiB"} {
		assert.Equal(t, want, runs.Bytes(n), n)
	}
}

func TestOneLine(t *testing.T) {
	assert.Equal(t, "a b c", runs.OneLine(" a\nb\t c \n"))
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestErrWriterKeepsTheFirstError(t *testing.T) {
	ew := runs.NewErrWriter(failWriter{})
	_, _ = ew.Write([]byte("a"))
	_, _ = ew.Write([]byte("b"))
	require.EqualError(t, ew.Err(), "disk full")
	var buf bytes.Buffer
	ok := runs.NewErrWriter(&buf)
	_, _ = ok.Write([]byte("fine"))
	require.NoError(t, ok.Err())
	assert.Equal(t, "fine", buf.String())
}

// TestStalledAndAtLeast: a running batch without progress for longer than
// StallAfter is reported stalled (and so is the run, when nothing else
// moves); a repository whose row still lists an attempt after it ended, or
// one that was found dead, reports its counts as a lower bound.
func TestStalledAndAtLeast(t *testing.T) {
	store := checkpoint.NewMemory()
	t0 := time.Date(2025, 3, 4, 2, 0, 0, 0, time.UTC)
	_, _, err := store.CreateRun(t.Context(), checkpoint.Run{ID: "s-1", Started: t0, Batches: 2, Repositories: 3},
		[]checkpoint.Batch{{N: 1, Repositories: []string{"a", "b"}}, {N: 2, Repositories: []string{"c"}}})
	require.NoError(t, err)
	require.NoError(t, store.SaveProgress(t.Context(), "s-1", []checkpoint.Repo{
		{RunID: "s-1", Name: "a", Batch: 1, Status: checkpoint.StatusDone, TagsDeleted: 7, Live: map[string]time.Time{"dead": t0}, Updated: t0},
		{RunID: "s-1", Name: "b", Batch: 1, Status: checkpoint.StatusPartial, TagsDeleted: 3, Updated: t0},
		{RunID: "s-1", Name: "c", Batch: 2, Status: checkpoint.StatusDone, TagsDeleted: 1, Updated: t0},
	}, &checkpoint.Batch{RunID: "s-1", N: 1, Repositories: []string{"a", "b"}, Status: checkpoint.StatusRunning, Updated: t0}))
	require.NoError(t, store.SaveProgress(t.Context(), "s-1", nil,
		&checkpoint.Batch{RunID: "s-1", N: 2, Repositories: []string{"c"}, Status: checkpoint.StatusDone, Updated: t0}))

	soon := runs.Options{Now: func() time.Time { return t0.Add(time.Minute) }, StallAfter: time.Hour}
	r, err := runs.BuildWith(t.Context(), store, "s-1", soon)
	require.NoError(t, err)
	assert.Equal(t, runs.RunRunning, r.Run.Status)
	assert.Zero(t, r.Batches.Stalled)
	assert.True(t, r.Repositories[0].CountsAtLeast, "a finished row still listing an attempt: it died uncounted")
	assert.False(t, r.Repositories[1].CountsAtLeast)
	assert.True(t, r.Totals.CountsAtLeast)

	late := runs.Options{Now: func() time.Time { return t0.Add(2 * time.Hour) }, StallAfter: time.Hour}
	r, err = runs.BuildWith(t.Context(), store, "s-1", late)
	require.NoError(t, err)
	assert.Equal(t, runs.RunStalled, r.Run.Status)
	assert.Equal(t, 1, r.Batches.Stalled)
	require.Len(t, r.FailedBatches, 1)
	assert.Equal(t, runs.BatchStalled, r.FailedBatches[0].Status)
	assert.Contains(t, r.FailedBatches[0].Error, "no progress since 2025-03-04T02:00:00Z")
	var buf bytes.Buffer
	require.NoError(t, r.WriteText(&buf))
	assert.Contains(t, buf.String(), "1 stalled")
	assert.Contains(t, buf.String(), ">=7")
	assert.Contains(t, buf.String(), "at least")
}

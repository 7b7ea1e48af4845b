package worker_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu/emutest"
	"github.com/acrpurge/acrpurge/internal/testbed/fakebus"
	"github.com/acrpurge/acrpurge/internal/worker"
)

const day = 24 * time.Hour

// ciPolicy deletes ci-* tags older than 30 days beyond the 2 newest.
const ciPolicy = `{"rules":[{"name":"ci","filters":["team-.*:^ci-"],"ago":"30d","keep":2}],"protect":["^latest$"]}`

type fixture struct {
	env    *emutest.Env
	store  checkpoint.Store
	sender *fakebus.Queue
	opts   worker.Options
}

type fixtureOpts struct {
	emu   emutest.Options
	store checkpoint.Store
}

func newFixture(t *testing.T, fo fixtureOpts, policyJSON string) *fixture {
	t.Helper()
	if fo.emu.PageSize == 0 {
		fo.emu.PageSize = 4
	}
	if fo.emu.Retry.MaxAttempts == 0 {
		fo.emu.Retry = acr.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
	}
	env := emutest.Start(t, fo.emu)
	if fo.store == nil {
		fo.store = checkpoint.NewMemory()
	}
	f := &fixture{env: env, store: fo.store, sender: fakebus.New(fakebus.Options{})}
	f.opts = worker.Options{
		Registry: env.Endpoint, Policy: mustPolicy(t, policyJSON), Store: f.store, Sender: f.sender,
		Tokens: env.Broker, Client: env.Client, BatchSize: 10, Concurrency: 4, MaxDeliveries: 3,
		PushDebounce: 10 * time.Minute, Deadline: time.Minute, Now: env.Registry.Now,
	}
	return f
}

func (f *fixture) worker(t *testing.T) *worker.Worker {
	t.Helper()
	w, err := worker.New(f.opts)
	require.NoError(t, err)
	return w
}

func mustPolicy(t *testing.T, js string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(js))
	require.NoError(t, err)
	return p
}

// seedCI gives repo n old ci-N tags (ci-1 newest, each its own image),
// a fresh ci tag and an old "latest". The policy keeps ci-1, ci-2, ci-fresh
// and latest.
func seedCI(reg *acremu.Registry, repo string, n int) {
	now := reg.Now()
	for i := 1; i <= n; i++ {
		reg.Put(repo, acremu.Artifact{Tags: []string{fmt.Sprintf("ci-%d", i)}, Created: now.Add(-40*day - time.Duration(i)*time.Hour), Seed: repo})
	}
	reg.Put(repo, acremu.Artifact{Tags: []string{"ci-fresh"}, Created: now.Add(-time.Hour), Seed: repo})
	reg.Put(repo, acremu.Artifact{Tags: []string{"latest"}, Created: now.Add(-90 * day), Seed: repo})
}

// ciSurvivors is what the policy leaves of a seedCI repository.
var ciSurvivors = []string{"ci-1", "ci-2", "ci-fresh", "latest"}

func tagNames(reg *acremu.Registry, repo string) []string {
	var out []string
	for _, t := range reg.Tags(repo) {
		out = append(out, t.Name)
	}
	slices.Sort(out)
	return out
}

// own creates the run and batch of an own message, as its trigger would
// have (the Worker refuses own messages of runs that do not exist), and
// encodes the message.
func (f *fixture) own(t *testing.T, m queue.Message) []byte {
	t.Helper()
	if m.Trigger == "" {
		m.Trigger = queue.TriggerSchedule
	}
	if m.Batches == 0 {
		m.Batches, m.Batch = 1, 1
	}
	run := checkpoint.Run{ID: m.RunID, Trigger: m.Trigger, Batches: m.Batches, Repositories: len(m.Repositories), Enqueued: true}
	_, _, err := f.store.CreateRun(t.Context(), run, []checkpoint.Batch{{N: m.Batch, Repositories: m.Repositories}})
	require.NoError(t, err)
	if _, err := f.store.GetBatch(t.Context(), m.RunID, m.Batch); errors.Is(err, checkpoint.ErrNotFound) {
		require.NoError(t, f.store.SaveProgress(t.Context(), m.RunID, nil,
			&checkpoint.Batch{RunID: m.RunID, N: m.Batch, Repositories: m.Repositories, Status: checkpoint.StatusQueued}))
	}
	return ownBody(t, m)
}

// ownBody encodes an own message.
func ownBody(t *testing.T, m queue.Message) []byte {
	t.Helper()
	if m.Version == 0 {
		m.Version = queue.Version
	}
	if m.Trigger == "" {
		m.Trigger = queue.TriggerSchedule
	}
	if m.Batches == 0 {
		m.Batches, m.Batch = 1, 1
	}
	b, err := m.Encode()
	require.NoError(t, err)
	return b
}

// decodeOwn decodes a captured message.
func decodeOwn(t *testing.T, o queue.Outgoing) *queue.Message {
	t.Helper()
	d, err := queue.Decode(o.Body)
	require.NoError(t, err)
	require.Equal(t, queue.KindOwn, d.Kind)
	require.Equal(t, d.Own.MessageID(), o.ID)
	return d.Own
}

// assertNoDoubleDeletes fails when the registry deleted anything twice or a
// delete found its item already gone.
func assertNoDoubleDeletes(t *testing.T, reg *acremu.Registry) {
	t.Helper()
	seen := map[string]bool{}
	for _, d := range reg.Deletes() {
		k := d.Repo + "@" + d.Ref + "#" + d.Kind
		require.False(t, seen[k], "deleted twice: %s", k)
		seen[k] = true
	}
	require.Zero(t, reg.Stats().DeleteNotFound, "a delete found its item already gone")
}

func cursorJSON(t *testing.T, c policy.Cursor) string {
	t.Helper()
	b, err := json.Marshal(c)
	require.NoError(t, err)
	return string(b)
}

package scheduler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/ncrontab"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/scheduler"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu/emutest"
	"github.com/acrpurge/acrpurge/internal/testbed/fakebus"
)

func nightly(t testing.TB) *ncrontab.Schedule {
	s, err := ncrontab.Parse("0 0 2 * * *")
	require.NoError(t, err)
	return s
}

func TestRunID(t *testing.T) {
	s := nightly(t)
	occ := time.Date(2025, 3, 4, 2, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		f       scheduler.Firing
		id, trg string
	}{
		{"on time", scheduler.Firing{At: occ.Add(40 * time.Millisecond)}, "s-20250304T020000Z", queue.TriggerSchedule},
		{"first retry", scheduler.Firing{At: occ.Add(time.Minute + 3*time.Second)}, "s-20250304T020000Z", queue.TriggerSchedule},
		{"edge of the window", scheduler.Firing{At: occ.Add(scheduler.RetryWindow)}, "s-20250304T020000Z", queue.TriggerSchedule},
		{"other time zone", scheduler.Firing{At: occ.Add(2 * time.Minute).In(time.FixedZone("X", 5*3600))}, "s-20250304T020000Z", queue.TriggerSchedule},
		{"last retry after two attempts ran out of time", scheduler.Firing{At: occ.Add(2*(scheduler.RunTimeout+time.Minute) + 5*time.Minute)}, "s-20250304T020000Z", queue.TriggerSchedule},
		{"manual later", scheduler.Firing{At: occ.Add(scheduler.RetryWindow + time.Second)}, "m-20250304T024001Z", queue.TriggerManual},
		{"manual before", scheduler.Firing{At: occ.Add(-time.Hour)}, "m-20250304T010000Z", queue.TriggerManual},
		{"past due catches up the missed occurrence", scheduler.Firing{At: occ.Add(5 * time.Hour), PastDue: true}, "s-20250304T020000Z", queue.TriggerSchedule},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, trg := scheduler.RunID(s, c.f)
			assert.Equal(t, c.id, id)
			assert.Equal(t, c.trg, trg)
		})
	}
	id, trg := scheduler.RunID(nil, scheduler.Firing{At: occ})
	assert.Equal(t, "m-20250304T020000Z", id, "no schedule: every firing is manual")
	assert.Equal(t, queue.TriggerManual, trg)
}

// seedCatalog puts one image into each repository.
func seedCatalog(env *emutest.Env, repos ...string) {
	for _, r := range repos {
		env.Registry.Put(r, acremu.Artifact{Tags: []string{"v1"}})
	}
}

func TestSchedulerFansOutTheCatalog(t *testing.T) {
	stores(t, func(t *testing.T, store checkpoint.Store) {
		env := emutest.Start(t, emutest.Options{PageSize: 3})
		seedCatalog(env, "team-b/web", "team-a/api", "other/tool", "team-a/web", "team-c/db", "team-a/jobs", "ops/x")
		pol := mustPolicy(t, `{"rules":[{"filters":["team-.*:.*"],"ago":"30d"}]}`)
		sender := fakebus.New(fakebus.Options{})
		at := time.Date(2025, 3, 4, 2, 0, 1, 0, time.UTC)
		s, err := scheduler.New(scheduler.Options{
			Policy: pol, Schedule: nightly(t), BatchSize: 2, Catalog: env.Client.WithTokens(env.Broker.Source(acr.CatalogScope())),
			Store: store, Sender: sender, Now: func() time.Time { return at },
		})
		require.NoError(t, err)

		sum, err := s.Run(t.Context(), scheduler.Firing{At: at})
		require.NoError(t, err)
		assert.Equal(t, "s-20250304T020000Z", sum.RunID)
		assert.Equal(t, 7, sum.Listed)
		assert.Equal(t, 5, sum.Repositories)
		assert.Equal(t, 3, sum.Batches)
		assert.Equal(t, 3, sum.Sent)

		msgs := decodeAll(t, sender.Messages())
		require.Len(t, msgs, 3)
		var all []string
		for i, m := range msgs {
			assert.Equal(t, i+1, m.Batch)
			assert.Equal(t, 3, m.Batches)
			assert.Equal(t, queue.TriggerSchedule, m.Trigger)
			assert.LessOrEqual(t, len(m.Repositories), 2)
			all = append(all, m.Repositories...)
		}
		assert.Equal(t, []string{"team-a/api", "team-a/jobs", "team-a/web", "team-b/web", "team-c/db"}, all,
			"policy-filtered, sorted, in batch order")

		run, err := store.GetRun(t.Context(), sum.RunID)
		require.NoError(t, err)
		assert.True(t, run.Enqueued)
		assert.Equal(t, 5, run.Repositories)
		assert.Equal(t, pol.Hash(), run.PolicyHash)
		batches, err := store.ListBatches(t.Context(), sum.RunID)
		require.NoError(t, err)
		require.Len(t, batches, 3)
		for i, b := range batches {
			assert.Equal(t, msgs[i].Repositories, b.Repositories)
			assert.Equal(t, checkpoint.StatusQueued, b.Status)
		}

		// The timer's retry a minute later finds the run enqueued.
		before := env.Registry.Stats().Requests["catalog"]
		sum2, err := s.Run(t.Context(), scheduler.Firing{At: at.Add(time.Minute)})
		require.NoError(t, err)
		assert.True(t, sum2.AlreadyEnqueued)
		assert.Equal(t, 0, sum2.Sent)
		assert.Len(t, decodeAll(t, sender.Messages()), 3)
		assert.Equal(t, before, env.Registry.Stats().Requests["catalog"], "an enqueued run does not list the catalog again")
	})
}

func TestSchedulerResendsAfterACrashMidSend(t *testing.T) {
	stores(t, func(t *testing.T, store checkpoint.Store) {
		pol := mustPolicy(t, `{"rules":[{"filters":["team-.*:.*"],"ago":"30d"}]}`)
		var repos []string
		for i := range 1100 {
			repos = append(repos, fmt.Sprintf("team-a/svc-%04d", i))
		}
		sender := fakebus.New(fakebus.Options{})
		sender.FailAfter(1, errSend) // the first chunk goes out, then the process "dies"
		at := time.Date(2025, 3, 4, 2, 0, 30, 0, time.UTC)
		opts := scheduler.Options{Policy: pol, Schedule: nightly(t), BatchSize: 1, Repositories: repos, Store: store, Sender: sender}
		s, err := scheduler.New(opts)
		require.NoError(t, err)
		_, err = s.Run(t.Context(), scheduler.Firing{At: at})
		require.ErrorIs(t, err, errSend)
		assert.Len(t, sender.Messages(), queue.SendChunk)
		run, err := store.GetRun(t.Context(), "s-20250304T020000Z")
		require.NoError(t, err)
		assert.False(t, run.Enqueued, "not every message went out")

		// The retry sees a different repository list (the catalog moved on)
		// but re-sends the batches that were recorded.
		sender.FailAfter(0, nil)
		opts.Repositories = []string{"team-z/new"}
		s, err = scheduler.New(opts)
		require.NoError(t, err)
		sum, err := s.Run(t.Context(), scheduler.Firing{At: at.Add(time.Minute)})
		require.NoError(t, err)
		assert.True(t, sum.Resent)
		assert.Equal(t, 1100, sum.Sent, "everything is sent again; duplicate detection drops repeats")
		assert.Equal(t, []int{500, 500, 500, 100}, sender.Calls(), "sends are chunked")
		msgs := decodeAll(t, sender.Messages())
		require.Len(t, msgs, 1100)
		for i, m := range msgs {
			assert.Equal(t, []string{repos[i]}, m.Repositories)
		}
		run, err = store.GetRun(t.Context(), sum.RunID)
		require.NoError(t, err)
		assert.True(t, run.Enqueued)
	})
}

func TestSchedulerCatalogNotPermitted(t *testing.T) {
	env := emutest.Start(t, emutest.Options{Identity: &acremu.Identity{Name: "no-lister", Grants: []acremu.Grant{{}}}})
	seedCatalog(env, "team-a/api")
	store := checkpoint.NewMemory()
	s, err := scheduler.New(scheduler.Options{
		Policy: mustPolicy(t, `{"rules":[{"filters":[".*:.*"],"ago":"30d"}]}`), Schedule: nightly(t), BatchSize: 10,
		Catalog: env.Client.WithTokens(env.Broker.Source(acr.CatalogScope())), Store: store, Sender: fakebus.New(fakebus.Options{}),
	})
	require.NoError(t, err)
	at := time.Date(2025, 3, 4, 2, 0, 0, 0, time.UTC)
	_, err = s.Run(t.Context(), scheduler.Firing{At: at})
	require.ErrorIs(t, err, scheduler.ErrCatalogNotPermitted)
	assert.Contains(t, err.Error(), "PURGE_REPOSITORIES")
	assert.Contains(t, err.Error(), "Catalog Lister")
	_, err = store.GetRun(t.Context(), "s-20250304T020000Z")
	assert.ErrorIs(t, err, checkpoint.ErrNotFound, "no run is created when listing fails")
}

func TestSchedulerSkipsInvalidNamesAndFilters(t *testing.T) {
	store := checkpoint.NewMemory()
	sender := fakebus.New(fakebus.Options{})
	catalog := pages{
		{"team-a/api", "Team-A/Upper", "team-a//double", "team-b/x"},
		{"team-a/api", "../escape", "team-a/" + strings.Repeat("x", 300), "other/y", "team-a/z"},
	}
	s, err := scheduler.New(scheduler.Options{
		Policy: mustPolicy(t, `{"rules":[{"filters":["team-a/.*:.*"],"ago":"30d"}]}`), BatchSize: 10,
		Catalog: catalog, Store: store, Sender: sender,
	})
	require.NoError(t, err)
	sum, err := s.Run(t.Context(), scheduler.Firing{At: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)})
	require.NoError(t, err)
	assert.Equal(t, "m-20250101T120000Z", sum.RunID)
	assert.Equal(t, queue.TriggerManual, sum.Trigger)
	assert.Equal(t, 9, sum.Listed)
	assert.Equal(t, 4, sum.Invalid)
	msgs := decodeAll(t, sender.Messages())
	require.Len(t, msgs, 1)
	assert.Equal(t, []string{"team-a/api", "team-a/z"}, msgs[0].Repositories)
}

func TestSchedulerUsesRepositoryListAndDryRun(t *testing.T) {
	store := checkpoint.NewMemory()
	sender := fakebus.New(fakebus.Options{})
	s, err := scheduler.New(scheduler.Options{
		Policy:       mustPolicy(t, `{"rules":[{"filters":["team-.*:.*"],"ago":"30d"}]}`),
		Schedule:     nightly(t),
		BatchSize:    3,
		DryRun:       true,
		Repositories: []string{"team-b/b", "team-a/a", "ops/not-covered", "team-a/a", "team-c/c"},
		Store:        store, Sender: sender,
	})
	require.NoError(t, err)
	sum, err := s.Run(t.Context(), scheduler.Firing{At: time.Date(2025, 1, 1, 2, 0, 0, 0, time.UTC)})
	require.NoError(t, err)
	assert.True(t, sum.DryRun)
	msgs := decodeAll(t, sender.Messages())
	require.Len(t, msgs, 1)
	assert.Equal(t, []string{"team-a/a", "team-b/b", "team-c/c"}, msgs[0].Repositories)
	assert.True(t, msgs[0].DryRun)
	run, err := store.GetRun(t.Context(), sum.RunID)
	require.NoError(t, err)
	assert.True(t, run.DryRun)
}

func TestSchedulerNothingToDo(t *testing.T) {
	store := checkpoint.NewMemory()
	sender := fakebus.New(fakebus.Options{})
	s, err := scheduler.New(scheduler.Options{
		Policy: mustPolicy(t, `{"rules":[{"filters":["team-.*:.*"],"ago":"30d"}]}`), Schedule: nightly(t), BatchSize: 3,
		Catalog: pages{{"ops/a", "ops/b"}}, Store: store, Sender: sender,
	})
	require.NoError(t, err)
	sum, err := s.Run(t.Context(), scheduler.Firing{At: time.Date(2025, 1, 1, 2, 0, 0, 0, time.UTC)})
	require.NoError(t, err)
	assert.Equal(t, 0, sum.Batches)
	assert.Empty(t, sender.Messages())
	run, err := store.GetRun(t.Context(), sum.RunID)
	require.NoError(t, err)
	assert.True(t, run.Enqueued)
	assert.Contains(t, run.Note, "no repository matched")
}

func TestEnqueueSplitsBatches(t *testing.T) {
	store := checkpoint.NewMemory()
	sender := fakebus.New(fakebus.Options{})
	var repos []string
	for i := range 25 {
		repos = append(repos, fmt.Sprintf("r%02d", i))
	}
	run := checkpoint.Run{ID: "p-0123456789ab", Trigger: queue.TriggerPortal, DryRun: true}
	sum, err := queue.Enqueue(t.Context(), store, sender, run, repos, 10, nil)
	require.NoError(t, err)
	assert.Equal(t, 3, sum.Batches)
	msgs := decodeAll(t, sender.Messages())
	require.Len(t, msgs, 3)
	var sizes []int
	var all []string
	for _, m := range msgs {
		sizes = append(sizes, len(m.Repositories))
		all = append(all, m.Repositories...)
		assert.True(t, m.DryRun)
		assert.Equal(t, queue.TriggerPortal, m.Trigger)
	}
	assert.Equal(t, []int{10, 10, 5}, sizes)
	assert.Equal(t, repos, all)

	// Enqueuing the same run again (a redelivered portal message) sends nothing.
	sum, err = queue.Enqueue(t.Context(), store, sender, run, repos, 10, nil)
	require.NoError(t, err)
	assert.True(t, sum.AlreadyEnqueued)
	assert.Equal(t, []int{3}, sender.Calls())

	_, err = queue.Enqueue(t.Context(), store, sender, run, repos, 0, nil)
	assert.Error(t, err)
}

func TestNewValidates(t *testing.T) {
	_, err := scheduler.New(scheduler.Options{})
	require.Error(t, err)
	for _, want := range []string{"policy", "batch size", "catalog", "store", "sender"} {
		assert.Contains(t, err.Error(), want)
	}
}

// deadlineCatalog records the deadline of the context it is called with.
type deadlineCatalog struct{ deadline *time.Time }

func (c deadlineCatalog) Catalog(ctx context.Context, fn func([]string) error) error {
	if d, ok := ctx.Deadline(); ok {
		*c.deadline = d
	}
	return fn([]string{"team-a/api"})
}

func TestSchedulerRunIsBounded(t *testing.T) {
	var got time.Time
	s, err := scheduler.New(scheduler.Options{
		Policy: mustPolicy(t, `{"rules":[{"filters":["team-a/.*:.*"],"ago":"30d"}]}`), BatchSize: 10,
		Catalog: deadlineCatalog{&got}, Store: checkpoint.NewMemory(), Sender: fakebus.New(fakebus.Options{}),
	})
	require.NoError(t, err)
	_, err = s.Run(t.Context(), scheduler.Firing{At: time.Now()})
	require.NoError(t, err)
	require.False(t, got.IsZero(), "the catalog is listed under a deadline")
	assert.WithinDuration(t, time.Now().Add(scheduler.RunTimeout), got, 5*time.Second)
	assert.Less(t, 3*(scheduler.RunTimeout+time.Minute), scheduler.RetryWindow, "three bounded attempts fit in the retry window")
}

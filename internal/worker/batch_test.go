package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azpolicy "github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu/emutest"
	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
	"github.com/acrpurge/acrpurge/internal/worker"
)

func TestOwnMessagePurgesAndCheckpoints(t *testing.T) {
	for _, name := range []string{"memory", "table"} {
		t.Run(name, func(t *testing.T) {
			var store checkpoint.Store
			if name == "table" {
				store = azurite.NewTable(t)
			}
			f := newFixture(t, fixtureOpts{store: store}, ciPolicy)
			reg := f.env.Registry
			seedCI(reg, "team-a/api", 9)
			seedCI(reg, "team-b/web", 5)
			seedCI(reg, "ops/tools", 5) // no rule covers it
			w := f.worker(t)
			msg := queue.Message{RunID: "s-20250101T020000Z", Batch: 2, Batches: 3,
				Repositories: []string{"team-a/api", "ops/tools", "team-b/web"}}
			d := worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1}

			out, err := w.Handle(t.Context(), d)
			require.NoError(t, err)
			assert.Equal(t, worker.KindOwn, out.Kind)
			assert.False(t, out.Continued)
			assert.Contains(t, out.Summary, "2 done, 1 skipped")

			assert.Equal(t, ciSurvivors, tagNames(reg, "team-a/api"))
			assert.Equal(t, ciSurvivors, tagNames(reg, "team-b/web"))
			assert.Len(t, reg.Tags("ops/tools"), 7, "a message cannot widen the policy")

			rows, err := f.store.GetRepos(t.Context(), msg.RunID, msg.Repositories)
			require.NoError(t, err)
			require.Len(t, rows, 3)
			api := rows["team-a/api"]
			assert.Equal(t, checkpoint.StatusDone, api.Status)
			assert.EqualValues(t, 7, api.TagsDeleted)
			assert.EqualValues(t, 2, api.Kept[string(policy.ReasonKeep)])
			assert.EqualValues(t, 1, api.Attempts)
			assert.Empty(t, api.Cursor)
			assert.Equal(t, 2, api.Batch)
			assert.EqualValues(t, 3, rows["team-b/web"].TagsDeleted)
			assert.Equal(t, checkpoint.StatusSkipped, rows["ops/tools"].Status)
			assert.Contains(t, rows["ops/tools"].Reason, "not in policy")

			b, err := f.store.GetBatch(t.Context(), msg.RunID, 2)
			require.NoError(t, err)
			assert.Equal(t, checkpoint.StatusDone, b.Status)
			assert.Equal(t, 1, b.Deliveries)
			at, by, err := f.store.LastPurge(t.Context(), "team-a/api")
			require.NoError(t, err)
			assert.Equal(t, msg.RunID, by)
			assert.WithinDuration(t, reg.Now(), at, time.Minute)
			run, err := f.store.GetRun(t.Context(), msg.RunID)
			require.NoError(t, err, "a missing run row is created from the message")
			assert.Equal(t, 3, run.Batches)

			// Redelivery: everything is finished, nothing is asked of the registry.
			deletes, tokens := len(reg.Deletes()), reg.Stats().AccessTokens
			d.DeliveryCount = 2
			out, err = w.Handle(t.Context(), d)
			require.NoError(t, err)
			for _, r := range out.Repos {
				assert.True(t, r.Already, r.Name)
			}
			assert.Len(t, reg.Deletes(), deletes)
			assert.Equal(t, tokens, reg.Stats().AccessTokens, "no token needed when nothing is left")
			rows, err = f.store.GetRepos(t.Context(), msg.RunID, msg.Repositories)
			require.NoError(t, err)
			assert.EqualValues(t, 1, rows["team-a/api"].Attempts)
			b, err = f.store.GetBatch(t.Context(), msg.RunID, 2)
			require.NoError(t, err)
			assert.Equal(t, 2, b.Deliveries)
			assertNoDoubleDeletes(t, reg)
		})
	}
}

func TestRedeliveryResumesFromTheRowsCursor(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	reg := f.env.Registry
	now := reg.Now()
	const repo = "team-a/api"
	// Tags 40..47 days old, and 80..87 days old.
	for i := range 8 {
		reg.Put(repo, acremu.Artifact{Tags: []string{"ci-new-" + string(rune('a'+i))}, Created: now.Add(-40*day - time.Duration(i)*time.Hour)})
		reg.Put(repo, acremu.Artifact{Tags: []string{"ci-old-" + string(rune('a'+i))}, Created: now.Add(-80*day - time.Duration(i)*time.Hour)})
	}
	// A first attempt planned 20 days ago, deleted 3 tags, then died: against
	// its plan time only the 80-day-old tags are old.
	planTime := now.Add(-20 * day)
	msg := queue.Message{RunID: "s-x", Repositories: []string{repo}}
	require.NoError(t, f.store.SaveProgress(t.Context(), msg.RunID, []checkpoint.Repo{{
		Name: repo, Batch: 1, Status: checkpoint.StatusPartial, Attempts: 1, TagsDeleted: 3,
		Cursor: cursorJSON(t, policy.Cursor{Phase: policy.PhaseTags, PlanTime: planTime}),
	}}, nil))

	w := f.worker(t)
	_, err := w.Handle(t.Context(), worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 2})
	require.NoError(t, err)
	tags := tagNames(reg, repo)
	for i := range 8 {
		assert.Contains(t, tags, "ci-new-"+string(rune('a'+i)), "not old at the first attempt's plan time")
	}
	assert.Contains(t, tags, "ci-old-a")
	assert.Contains(t, tags, "ci-old-b")
	assert.Len(t, tags, 10)
	rows, err := f.store.GetRepos(t.Context(), msg.RunID, []string{repo})
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusDone, rows[repo].Status)
	assert.EqualValues(t, 3+6, rows[repo].TagsDeleted, "counts add up across attempts")
	assert.EqualValues(t, 2, rows[repo].Attempts)
}

func TestDeadlineSendsAContinuation(t *testing.T) {
	f := newFixture(t, fixtureOpts{emu: emutest.Options{PageSize: 2}}, ciPolicy)
	reg := f.env.Registry
	repos := []string{"team-a/r1", "team-a/r2", "team-a/r3", "team-a/r4", "team-a/r5", "team-a/r6"}
	for _, r := range repos {
		seedCI(reg, r, 12)
	}
	reg.SetFaults(acremu.Faults{Latency: 15 * time.Millisecond})
	f.opts.Deadline = 120 * time.Millisecond
	w := f.worker(t)
	msg := queue.Message{RunID: "s-deadline", Batch: 4, Batches: 5, Repositories: repos}
	out, err := w.Handle(t.Context(), worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1})
	require.NoError(t, err, "the deadline is not a failure")
	require.True(t, out.Continued)

	sent := f.sender.Take()
	require.Len(t, sent, 1)
	cont := decodeOwn(t, sent[0])
	assert.Equal(t, "s-deadline/4/resume-1", sent[0].ID)
	assert.Equal(t, 4, cont.Batch)
	assert.Equal(t, 5, cont.Batches)
	require.NotNil(t, cont.Resume)
	assert.Equal(t, 1, cont.Resume.N)
	require.NotEmpty(t, cont.Repositories)
	rows, err := f.store.GetRepos(t.Context(), msg.RunID, repos)
	require.NoError(t, err)
	for _, r := range cont.Repositories {
		if c, ok := cont.Resume.Cursors[r]; ok {
			assert.Equal(t, checkpoint.StatusPartial, rows[r].Status, r)
			assert.JSONEq(t, rows[r].Cursor, string(c), "the continuation carries the row's cursor")
		} else {
			assert.NotContains(t, rows, r, "a repository without cursor was not started")
		}
	}
	b, err := f.store.GetBatch(t.Context(), msg.RunID, 4)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusContinued, b.Status)
	assert.Equal(t, 1, b.Continuations)
	assert.Equal(t, repos, b.Repositories, "the batch row keeps the whole batch")

	// The continuation, with time enough, finishes the batch.
	reg.SetFaults(acremu.Faults{})
	f.opts.Deadline = time.Minute
	w = f.worker(t)
	out, err = w.Handle(t.Context(), worker.Delivery{Body: sent[0].Body, MessageID: sent[0].ID, DeliveryCount: 1})
	require.NoError(t, err)
	assert.False(t, out.Continued)
	assert.Empty(t, f.sender.Take())
	for _, r := range repos {
		assert.Equal(t, ciSurvivors, tagNames(reg, r), r)
	}
	rows, err = f.store.GetRepos(t.Context(), msg.RunID, repos)
	require.NoError(t, err)
	for _, r := range repos {
		assert.Equal(t, checkpoint.StatusDone, rows[r].Status, r)
		assert.EqualValues(t, 10, rows[r].TagsDeleted, "%s: deleted counts add up over the attempts", r)
	}
	b, err = f.store.GetBatch(t.Context(), msg.RunID, 4)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusDone, b.Status)
	assertNoDoubleDeletes(t, reg)
}

func TestTooManyContinuationsFail(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	seedCI(f.env.Registry, "team-a/r1", 3)
	f.opts.Deadline = time.Nanosecond // nothing can start
	w := f.worker(t)
	msg := queue.Message{RunID: "s-stuck", Repositories: []string{"team-a/r1"}, Resume: &queue.Resume{N: worker.MaxContinuations}}
	out, err := w.Handle(t.Context(), worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1})
	require.NoError(t, err)
	assert.False(t, out.Continued)
	assert.Empty(t, f.sender.Take())
	rows, err := f.store.GetRepos(t.Context(), msg.RunID, msg.Repositories)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusFailed, rows["team-a/r1"].Status)
	assert.Contains(t, rows["team-a/r1"].Reason, "not finished after 50 continuations")
	b, err := f.store.GetBatch(t.Context(), msg.RunID, 1)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusFailed, b.Status, "the batch is not done either")
	assert.Contains(t, b.Error, "not finished after 50 continuations")
}

func TestTransientFailuresAreRetriedThenRecorded(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	reg := f.env.Registry
	seedCI(reg, "team-a/ok", 4)
	seedCI(reg, "team-a/flaky", 4)
	w := f.worker(t)
	msg := queue.Message{RunID: "s-flaky", Repositories: []string{"team-a/flaky", "team-a/ok"}}
	d := worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1}

	reg.SetFaults(acremu.Faults{ErrorRate: 1})
	_, err := w.Handle(t.Context(), d)
	require.Error(t, err, "a transient failure asks for redelivery")
	rows, err2 := f.store.GetRepos(t.Context(), msg.RunID, msg.Repositories)
	require.NoError(t, err2)
	for _, r := range msg.Repositories {
		assert.Equal(t, checkpoint.StatusPartial, rows[r].Status, r)
		assert.NotEmpty(t, rows[r].Error, r)
		assert.NotEmpty(t, rows[r].Cursor, "%s keeps its cursor for the next delivery", r)
	}
	b, err2 := f.store.GetBatch(t.Context(), msg.RunID, 1)
	require.NoError(t, err2)
	assert.Equal(t, checkpoint.StatusRunning, b.Status)
	assert.NotEmpty(t, b.Error)

	// The last delivery records the failure before failing.
	d.DeliveryCount = 3
	_, err = w.Handle(t.Context(), d)
	require.Error(t, err)
	rows, err2 = f.store.GetRepos(t.Context(), msg.RunID, msg.Repositories)
	require.NoError(t, err2)
	for _, r := range msg.Repositories {
		assert.Equal(t, checkpoint.StatusFailed, rows[r].Status, r)
		assert.Contains(t, rows[r].Reason, "gave up after 3 deliveries")
		assert.Contains(t, rows[r].Error, "injected fault", "the registry's own error is kept")
	}
	b, err2 = f.store.GetBatch(t.Context(), msg.RunID, 1)
	require.NoError(t, err2)
	assert.Equal(t, checkpoint.StatusFailed, b.Status)
	assert.Equal(t, 3, b.Deliveries)
	assert.Empty(t, reg.Deletes())
}

func TestRetryThenSuccessResumes(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	reg := f.env.Registry
	seedCI(reg, "team-a/app", 6)
	w := f.worker(t)
	msg := queue.Message{RunID: "s-retry", Repositories: []string{"team-a/app"}}
	d := worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1}
	reg.SetFaults(acremu.Faults{ErrorRate: 1})
	_, err := w.Handle(t.Context(), d)
	require.Error(t, err)
	reg.SetFaults(acremu.Faults{})
	d.DeliveryCount = 2
	_, err = w.Handle(t.Context(), d)
	require.NoError(t, err)
	assert.Equal(t, ciSurvivors, tagNames(reg, "team-a/app"))
	rows, err := f.store.GetRepos(t.Context(), msg.RunID, msg.Repositories)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusDone, rows["team-a/app"].Status)
	assert.Empty(t, rows["team-a/app"].Error)
	assert.EqualValues(t, 2, rows["team-a/app"].Attempts)
}

func TestForbiddenRepositoriesAreNamed(t *testing.T) {
	identity := &acremu.Identity{Name: "abac", Grants: []acremu.Grant{
		{RepositoryPrefix: "team-a/"},
		{RepositoryPrefix: "team-r/", Actions: []string{acr.ActionPull, acr.ActionMetadataRead}},
	}}
	f := newFixture(t, fixtureOpts{emu: emutest.Options{Registry: acremu.Options{ABAC: true}, Identity: identity}}, ciPolicy)
	reg := f.env.Registry
	for _, r := range []string{"team-a/app", "team-b/app", "team-r/app"} {
		seedCI(reg, r, 4)
	}
	w := f.worker(t)
	msg := queue.Message{RunID: "s-abac", Repositories: []string{"team-a/app", "team-b/app", "team-r/app"}}
	_, err := w.Handle(t.Context(), worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1})
	require.NoError(t, err, "a forbidden repository is not a failure of the message")
	rows, err := f.store.GetRepos(t.Context(), msg.RunID, msg.Repositories)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusDone, rows["team-a/app"].Status)
	assert.Equal(t, checkpoint.StatusForbidden, rows["team-b/app"].Status)
	assert.Contains(t, rows["team-b/app"].Reason, "metadata_read, delete")
	assert.Contains(t, rows["team-b/app"].Reason, "ABAC")
	assert.Equal(t, checkpoint.StatusForbidden, rows["team-r/app"].Status)
	assert.Contains(t, rows["team-r/app"].Reason, "delete")
	assert.NotContains(t, rows["team-r/app"].Reason, "metadata_read")
	for _, d := range reg.Deletes() {
		assert.Equal(t, "team-a/app", d.Repo)
	}

	// A dry run needs no delete permission: the read-only grant suffices.
	f.opts.DryRun = true
	w = f.worker(t)
	msg.RunID = "s-abac-dry"
	_, err = w.Handle(t.Context(), worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1})
	require.NoError(t, err)
	rows, err = f.store.GetRepos(t.Context(), msg.RunID, msg.Repositories)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusDone, rows["team-r/app"].Status)
	assert.EqualValues(t, 2, rows["team-r/app"].TagsDeleted, "would delete")
	assert.Len(t, reg.Tags("team-r/app"), 6)
	assert.Equal(t, checkpoint.StatusForbidden, rows["team-b/app"].Status)
}

// failingCredential is an AAD credential that cannot get a token.
type failingCredential struct{}

func (failingCredential) GetToken(context.Context, azpolicy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, errors.New("AAD is unreachable")
}

func TestTokenFailureIsTransient(t *testing.T) {
	f := newFixture(t, fixtureOpts{}, ciPolicy)
	seedCI(f.env.Registry, "team-a/app", 4)
	broker, err := acr.NewBroker(acr.BrokerOptions{Endpoint: f.env.Endpoint, Credential: failingCredential{},
		Retry: acr.RetryPolicy{MaxAttempts: 1, BaseDelay: time.Millisecond}})
	require.NoError(t, err)
	f.opts.Tokens = broker
	w := f.worker(t)
	msg := queue.Message{RunID: "s-token", Repositories: []string{"team-a/app"}}
	_, err = w.Handle(t.Context(), worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "access token")
	_, err = w.Handle(t.Context(), worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 3})
	require.Error(t, err)
	rows, err := f.store.GetRepos(t.Context(), msg.RunID, msg.Repositories)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusFailed, rows["team-a/app"].Status)
	assert.Contains(t, rows["team-a/app"].Error, "AAD is unreachable")
}

func TestCancelledInvocationKeepsProgressAndRetries(t *testing.T) {
	f := newFixture(t, fixtureOpts{emu: emutest.Options{PageSize: 2}}, ciPolicy)
	reg := f.env.Registry
	repos := []string{"team-a/r1", "team-a/r2"}
	for _, r := range repos {
		seedCI(reg, r, 20)
	}
	reg.SetFaults(acremu.Faults{Latency: 10 * time.Millisecond})
	w := f.worker(t)
	msg := queue.Message{RunID: "s-cancel", Repositories: repos}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		// One more than the concurrency: a delete can only start after an
		// earlier one has been answered, so some progress is known.
		for len(reg.Deletes()) < 5 {
			time.Sleep(2 * time.Millisecond)
		}
		cancel()
	}()
	_, err := w.Handle(ctx, worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1})
	require.Error(t, err, "a cancelled invocation is redelivered")
	assert.Empty(t, f.sender.Take(), "no continuation for a cancelled invocation")
	rows, err := f.store.GetRepos(t.Context(), msg.RunID, repos)
	require.NoError(t, err)
	var saved int64
	for _, r := range repos {
		assert.Equal(t, checkpoint.StatusPartial, rows[r].Status)
		saved += rows[r].TagsDeleted
	}
	assert.Positive(t, saved, "what was deleted before the cancellation is recorded")

	// Requests the cancelled invocation left behind settle before the
	// redelivery, as they would before a message lock expires.
	require.NoError(t, reg.WaitIdle(t.Context(), 50*time.Millisecond))
	reg.SetFaults(acremu.Faults{})
	_, err = w.Handle(t.Context(), worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 2})
	require.NoError(t, err)
	rows, err = f.store.GetRepos(t.Context(), msg.RunID, repos)
	require.NoError(t, err)
	var total int64
	for _, r := range repos {
		assert.Equal(t, ciSurvivors, tagNames(reg, r))
		assert.Equal(t, checkpoint.StatusDone, rows[r].Status)
		total += rows[r].TagsDeleted
	}
	assert.LessOrEqual(t, total, int64(36), "never more than was deleted")
	assertNoDoubleDeletes(t, reg)
}

func TestNewValidates(t *testing.T) {
	_, err := worker.New(worker.Options{})
	require.Error(t, err)
	for _, want := range []string{"policy", "store", "token", "client", "registry", "batch size", "deadline"} {
		assert.True(t, strings.Contains(err.Error(), want), want)
	}
}

// TestUntaggedRulesNeedPull: a rule that deletes untagged manifests reads
// their bodies (index children, subjects), so the token must grant pull.
// The Worker used to check only metadata_read and delete (the CLI checked
// pull too); both now use purge.NeededActions.
func TestUntaggedRulesNeedPull(t *testing.T) {
	identity := &acremu.Identity{Name: "abac", Grants: []acremu.Grant{
		{RepositoryPrefix: "team-a/"},
		{RepositoryPrefix: "team-u/", Actions: []string{acr.ActionDelete, acr.ActionMetadataRead, acr.ActionMetadataWrite}},
	}}
	const untaggedPolicy = `{"rules":[{"filters":["team-.*:^ci-"],"ago":"30d","keep":2,"untagged":true}]}`
	f := newFixture(t, fixtureOpts{emu: emutest.Options{Registry: acremu.Options{ABAC: true}, Identity: identity}}, untaggedPolicy)
	reg := f.env.Registry
	for _, r := range []string{"team-a/app", "team-u/app"} {
		seedCI(reg, r, 4)
	}
	w := f.worker(t)
	msg := queue.Message{RunID: "s-pull", Repositories: []string{"team-a/app", "team-u/app"}}
	_, err := w.Handle(t.Context(), worker.Delivery{Body: f.own(t, msg), MessageID: msg.MessageID(), DeliveryCount: 1})
	require.NoError(t, err)
	rows, err := f.store.GetRepos(t.Context(), msg.RunID, msg.Repositories)
	require.NoError(t, err)
	assert.Equal(t, checkpoint.StatusDone, rows["team-a/app"].Status)
	assert.Equal(t, checkpoint.StatusForbidden, rows["team-u/app"].Status)
	assert.Contains(t, rows["team-u/app"].Reason, "grant pull on this repository")
	for _, d := range reg.Deletes() {
		assert.Equal(t, "team-a/app", d.Repo, "nothing is deleted where the plan cannot be made safely")
	}
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/queue"
)

// own processes a batch written by the Scheduler, a re-fan-out or a
// continuation. Runs are created only by their trigger (the Scheduler, a
// portal re-fan-out), before any of their messages is sent: a message in
// the app's own format must name a run and batch that exist and only
// repositories of that batch, or it is rejected (recorded and completed).
// Anyone allowed to send to the queue could otherwise create a future
// nightly run and so switch that night off. The run's dry-run flag and
// trigger win over the message's; a message may only ask for a dry run.
func (w *Worker) own(ctx context.Context, log *slog.Logger, d Delivery, m *queue.Message) (Outcome, error) {
	out := Outcome{Kind: KindOwn, RunID: m.RunID, Batch: m.Batch}
	run, err := w.o.Store.GetRun(ctx, m.RunID)
	switch {
	case errors.Is(err, checkpoint.ErrNotFound) || errors.Is(err, checkpoint.ErrInvalid):
		return w.reject(ctx, log, d, fmt.Errorf("run %.80q does not exist: a message in the app's own format must "+
			"belong to a run its trigger created (send {\"repositories\":[…]} to start a run by hand)", m.RunID))
	case err != nil:
		return out, fmt.Errorf("run %s: %w", m.RunID, err)
	}
	batch, err := w.o.Store.GetBatch(ctx, m.RunID, m.Batch)
	switch {
	case errors.Is(err, checkpoint.ErrNotFound) || errors.Is(err, checkpoint.ErrInvalid):
		return w.reject(ctx, log, d, fmt.Errorf("run %s has no batch %d", m.RunID, m.Batch))
	case err != nil:
		return out, fmt.Errorf("run %s batch %d: %w", m.RunID, m.Batch, err)
	}
	for _, r := range m.Repositories {
		if !slices.Contains(batch.Repositories, r) {
			return w.reject(ctx, log, d, fmt.Errorf("repository %.100q is not part of run %s batch %d", r, m.RunID, m.Batch))
		}
	}
	return w.process(ctx, d, batchJob{
		runID: m.RunID, n: m.Batch, batches: run.Batches, trigger: run.Trigger,
		repos: m.Repositories, dryRun: run.DryRun || m.DryRun || w.o.DryRun, resume: m.Resume,
	}, out)
}

// portal handles {"repositories":[…]} sent by an operator.
func (w *Worker) portal(ctx context.Context, log *slog.Logger, d Delivery, dec queue.Decoded) (Outcome, error) {
	runID := queue.PortalRunID(d.MessageID, d.Body, d.EnqueuedAt)
	dryRun := dec.DryRun || w.o.DryRun
	repos := slices.Clone(dec.Repositories)
	slices.Sort(repos)
	out := Outcome{Kind: KindPortal, RunID: runID, Batch: 1}
	run := checkpoint.Run{
		ID: runID, Trigger: queue.TriggerPortal, DryRun: dryRun, PolicyHash: w.o.Policy.Hash(), Started: w.o.Now(),
		Note: fmt.Sprintf("portal message %s", d.MessageID),
	}
	if len(repos) > w.o.BatchSize {
		sum, err := queue.Enqueue(ctx, w.o.Store, w.o.Sender, run, repos, w.o.BatchSize, log)
		out.Batch, out.Fanout = 0, &sum
		out.Summary = "portal message re-fanned out: " + sum.String()
		if err != nil {
			return out, fmt.Errorf("re-fan-out portal message: %w", err)
		}
		return out, nil
	}
	if err := w.createSingle(ctx, run, repos); err != nil {
		return out, err
	}
	return w.process(ctx, d, batchJob{runID: runID, n: 1, batches: 1, trigger: queue.TriggerPortal, repos: repos, dryRun: dryRun}, out)
}

// createSingle creates a run whose only batch is processed right away.
func (w *Worker) createSingle(ctx context.Context, run checkpoint.Run, repos []string) error {
	run.Batches, run.Repositories, run.Enqueued = 1, len(repos), true
	if _, _, err := w.o.Store.CreateRun(ctx, run, []checkpoint.Batch{{N: 1, Repositories: repos}}); err != nil {
		return fmt.Errorf("run %s: create run: %w", run.ID, err)
	}
	return nil
}

// event handles an ImagePushed event: a targeted purge of one repository.
func (w *Worker) event(ctx context.Context, log *slog.Logger, d Delivery, ev *queue.Event) (Outcome, error) {
	repo := ev.Repository
	ignore := func(reason string) (Outcome, error) {
		return Outcome{Kind: KindIgnored, Reason: reason, Summary: fmt.Sprintf("push to %s ignored: %s", repo, reason)}, nil
	}
	switch {
	case ev.Host == "":
		log.Warn("push event without data.request.host ignored: it cannot be shown to come from this registry", "repository", repo, "eventId", ev.ID)
		return ignore("the event names no registry host (data.request.host)")
	case !strings.EqualFold(ev.Host, w.o.Registry.Service):
		log.Warn("push event from another registry ignored", "repository", repo, "eventId", ev.ID, "host", fmt.Sprintf("%.100q", ev.Host))
		return ignore(fmt.Sprintf("event from another registry (%.100q)", ev.Host))
	}
	ok, err := w.o.Policy.MatchRepository(repo)
	switch {
	case err != nil:
		return ignore("the policy's repository filter failed: " + err.Error())
	case !ok:
		return ignore("not in policy")
	}
	if w.o.PushDebounce > 0 {
		at, by, err := w.o.Store.LastPurge(ctx, repo)
		if err != nil {
			return Outcome{Kind: KindEvent}, fmt.Errorf("push to %s: debounce: %w", repo, err)
		}
		if since := w.o.Now().Sub(at); !at.IsZero() && since < w.o.PushDebounce {
			return ignore(fmt.Sprintf("debounced: purged %s ago by run %s", since.Round(1e9), by))
		}
	}
	runID := queue.EventRunID(ev.ID, d.MessageID, d.Body, repo)
	out := Outcome{Kind: KindEvent, RunID: runID, Batch: 1}
	dryRun := w.o.DryRun
	run := checkpoint.Run{
		ID: runID, Trigger: queue.TriggerPush, DryRun: dryRun, PolicyHash: w.o.Policy.Hash(), Started: w.o.Now(),
		Note: fmt.Sprintf("%s event %s: %s:%s", ev.Schema, ev.ID, repo, ev.Tag),
	}
	if err := w.createSingle(ctx, run, []string{repo}); err != nil {
		return out, err
	}
	return w.process(ctx, d, batchJob{runID: runID, n: 1, batches: 1, trigger: queue.TriggerPush, repos: []string{repo}, dryRun: dryRun}, out)
}

package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/purge"
	"github.com/acrpurge/acrpurge/internal/queue"
)

// batchJob is one batch to process: a message's repositories.
type batchJob struct {
	runID      string
	n, batches int
	trigger    string
	repos      []string
	dryRun     bool
	resume     *queue.Resume // nil on the batch's first message
}

// repoState follows one repository through a delivery.
type repoState struct {
	name    string
	row     checkpoint.Repo
	already bool // terminal before this delivery
	work    bool // to be purged in this delivery
	started bool
	cursor  *policy.Cursor // the cursor this attempt started from
	res     *purge.Result
	// retry is a transient failure of this delivery (token, purge,
	// checkpoint write); the message should be delivered again.
	retry error
}

// unfinished reports whether the repository still needs work after this
// delivery ended normally (deadline or not started).
func (s *repoState) unfinished() bool {
	return s.work && s.retry == nil && (!s.started || s.res.Status == purge.StatusPartial)
}

func terminal(s checkpoint.Status) bool {
	switch s {
	case checkpoint.StatusDone, checkpoint.StatusSkipped, checkpoint.StatusForbidden, checkpoint.StatusFailed:
		return true
	}
	return false
}

// save writes progress, stamping what it writes with the current time so that
// a run's report tells an active batch from a stuck one.
func (w *Worker) save(ctx context.Context, runID string, rows []checkpoint.Repo, batch *checkpoint.Batch) error {
	now := w.o.Now()
	for i := range rows {
		rows[i].Updated = now
	}
	if batch != nil {
		batch.Updated = now
	}
	return w.o.Store.SaveProgress(ctx, runID, rows, batch)
}

// process runs one batch: see the package docs.
func (w *Worker) process(ctx context.Context, d Delivery, job batchJob, out Outcome) (Outcome, error) {
	start := w.o.Now()
	deadline := start.Add(w.o.Deadline)
	ctx, cancel := context.WithTimeout(ctx, w.o.Deadline+Grace)
	defer cancel()
	log := w.log.With("run", job.runID, "batch", job.n, "messageId", d.MessageID, "deliveryCount", d.DeliveryCount)
	out.RunID, out.Batch = job.runID, job.n

	batch, err := w.o.Store.GetBatch(ctx, job.runID, job.n)
	if errors.Is(err, checkpoint.ErrNotFound) {
		batch = checkpoint.Batch{RunID: job.runID, N: job.n, Repositories: job.repos}
	} else if err != nil {
		return out, fmt.Errorf("run %s batch %d: %w", job.runID, job.n, err)
	}
	// A message that a continuation has replaced (its delivery sent the
	// continuation, then failed, and it came back) must not purge alongside
	// the continuation: the newest continuation owns the batch.
	if n := job.resume.Number(); n < batch.Continuations {
		out.Summary = fmt.Sprintf("run %s batch %d: superseded by continuation %d; nothing to do", job.runID, job.n, batch.Continuations)
		log.Info("message superseded by a continuation: completed without work", "continuation", batch.Continuations, "resume", n)
		return out, nil
	}
	batch.Status, batch.Error = checkpoint.StatusRunning, ""
	batch.Deliveries = max(batch.Deliveries, d.DeliveryCount)

	rows, err := w.o.Store.GetRepos(ctx, job.runID, job.repos)
	if err != nil {
		return out, fmt.Errorf("run %s batch %d: %w", job.runID, job.n, err)
	}
	states := make([]*repoState, len(job.repos))
	var first []checkpoint.Repo // rows decided before any purge
	for i, name := range job.repos {
		row, ok := rows[name]
		if !ok {
			row = checkpoint.Repo{RunID: job.runID, Name: name, Batch: job.n, Status: checkpoint.StatusPending}
		}
		st := &repoState{name: name, row: row}
		states[i] = st
		if terminal(row.Status) {
			st.already = true
			continue
		}
		switch covered, err := w.o.Policy.MatchRepository(name); {
		case err != nil:
			st.row.Status, st.row.Reason, st.row.Error = checkpoint.StatusFailed, "the policy's repository filter failed", err.Error()
			first = append(first, st.row)
		case !covered:
			st.row.Status, st.row.Reason = checkpoint.StatusSkipped, "not in policy: no rule applies to this repository"
			first = append(first, st.row)
		default:
			st.work = true
		}
	}
	if err := w.save(ctx, job.runID, first, &batch); err != nil {
		return out, fmt.Errorf("run %s batch %d: save progress: %w", job.runID, job.n, err)
	}

	w.purgeAll(ctx, log, job, states, deadline)
	return w.finish(ctx, log, d, job, batch, states, out)
}

// purgeAll obtains the message's token and purges every repository marked
// work, Options.RepoParallelism at a time, updating each state.
func (w *Worker) purgeAll(ctx context.Context, log *slog.Logger, job batchJob, states []*repoState, deadline time.Time) {
	var work []*repoState
	for _, st := range states {
		if st.work {
			work = append(work, st)
		}
	}
	if len(work) == 0 {
		return
	}
	scopes := make([]acr.Scope, len(work))
	for i, st := range work {
		scopes[i] = acr.RepositoryScope(st.name, acr.PurgeActions...)
	}
	src := w.o.Tokens.Source(scopes...)
	tok, err := src.Token(ctx)
	if err != nil {
		err = fmt.Errorf("access token for %d repositories: %w", len(work), err)
		for _, st := range work {
			st.retry = err
			st.row.Error = err.Error()
		}
		return
	}

	// The access claim is advisory but tells us early what the registry
	// will refuse; a nil claim means unknown, and the registry decides.
	var forbidden []checkpoint.Repo
	if tok.Granted != nil {
		for _, st := range work {
			if missing := w.missingActions(tok, st.name, job.dryRun); len(missing) > 0 {
				st.work = false
				st.row.Status = checkpoint.StatusForbidden
				st.row.Reason = fmt.Sprintf("the access token does not grant %s on this repository: "+
					"check that the identity's role assignment (its ABAC repository condition) covers it",
					strings.Join(missing, ", "))
				forbidden = append(forbidden, st.row)
			}
		}
	}
	if len(forbidden) > 0 {
		log.Warn("repositories not permitted", "count", len(forbidden))
		if err := w.save(ctx, job.runID, forbidden, nil); err != nil {
			err = fmt.Errorf("save progress: %w", err)
			for _, st := range work {
				if !st.work {
					st.retry = err
				}
			}
		}
	}

	exec := purge.New(w.o.Client.WithTokens(src), purge.Options{
		Concurrency: w.o.Concurrency, Now: w.o.Now, Logger: log,
	})
	g := new(errgroup.Group)
	g.SetLimit(w.o.RepoParallelism)
	for _, st := range work {
		if !st.work {
			continue
		}
		// Wait for a slot before deciding: a repository whose turn comes
		// after the deadline is left for the continuation.
		g.Go(func() error {
			switch {
			case ctx.Err() != nil:
				st.retry = fmt.Errorf("the invocation ended before %s started: %w", st.name, context.Cause(ctx))
			case w.o.Now().Before(deadline):
				w.purgeOne(ctx, log, exec, job, st, deadline)
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines report through their states
}

// missingActions lists the actions a purge needs on repo that tok lacks.
func (w *Worker) missingActions(tok *acr.Token, repo string, dryRun bool) []string {
	need := []string{acr.ActionMetadataRead}
	if !dryRun {
		need = append(need, acr.ActionDelete)
		if w.locked {
			need = append(need, acr.ActionMetadataWrite)
		}
	}
	var missing []string
	for _, a := range need {
		if !tok.Allows(repo, a) {
			missing = append(missing, a)
		}
	}
	return missing
}

// purgeOne purges one repository between two checkpoints.
func (w *Worker) purgeOne(ctx context.Context, log *slog.Logger, exec *purge.Executor, job batchJob, st *repoState, deadline time.Time) {
	st.cursor = w.startCursor(log, job, st)
	raw, err := json.Marshal(st.cursor)
	if err != nil {
		st.retry = fmt.Errorf("encode cursor: %w", err)
		return
	}
	st.row.Status, st.row.Cursor, st.row.Batch = checkpoint.StatusPartial, string(raw), job.n
	st.row.Attempts++
	if err := w.save(ctx, job.runID, []checkpoint.Repo{st.row}, nil); err != nil {
		st.retry = fmt.Errorf("save progress: %w", err)
		return
	}
	st.started = true
	res := exec.Purge(ctx, purge.Job{
		Repository: st.name, Policy: w.o.Policy, DryRun: job.dryRun, Cursor: st.cursor, Deadline: deadline,
	})
	st.res = &res
	w.apply(st, job.dryRun)

	// Keep the progress even when the host cancelled the invocation.
	sctx, cancel := detached(ctx)
	defer cancel()
	if err := w.save(sctx, job.runID, []checkpoint.Repo{st.row}, nil); err != nil {
		st.retry = fmt.Errorf("save progress: %w", err)
		return
	}
	if res.Status == purge.StatusDone && !job.dryRun {
		if err := w.o.Store.SetLastPurge(sctx, st.name, w.o.Now(), job.runID); err != nil {
			log.Warn("could not record the purge time (push debounce)", "repository", st.name, "err", err)
		}
	}
}

// detached returns a context that survives ctx's cancellation for
// saveTimeout, for the checkpoints that record what was done.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
}

// startCursor is the cursor of an earlier attempt (the repository's row,
// else the continuation message), or a fresh one planning against now.
func (w *Worker) startCursor(log *slog.Logger, job batchJob, st *repoState) *policy.Cursor {
	raws := []string{st.row.Cursor}
	if job.resume != nil {
		raws = append(raws, string(job.resume.Cursors[st.name]))
	}
	for _, raw := range raws {
		if raw == "" {
			continue
		}
		var c policy.Cursor
		if err := json.Unmarshal([]byte(raw), &c); err != nil || c.PlanTime.IsZero() ||
			(c.Phase != policy.PhaseTags && c.Phase != policy.PhaseManifests) {
			log.Warn("ignoring an unreadable resume cursor", "repository", st.name)
			continue
		}
		// The plan time is the "now" that ages are measured from: a later
		// one would make new images look old, so a cursor (which a message
		// sent by hand can carry) never moves it past the clock.
		if now := w.o.Now(); c.PlanTime.After(now.Add(MaxClockSkew)) {
			log.Warn("ignoring a resume cursor planned in the future", "repository", st.name,
				"planTime", c.PlanTime, "now", now)
			continue
		}
		return &c
	}
	return &policy.Cursor{Phase: policy.PhaseTags, PlanTime: w.o.Now()}
}

// apply folds a purge result into the repository's row.
func (w *Worker) apply(st *repoState, dryRun bool) {
	res, row := st.res, &st.row
	fullPlan := st.cursor.Phase != policy.PhaseManifests
	if dryRun {
		// Nothing was deleted: the counts of this attempt replace those of
		// the phases it planned again.
		if fullPlan {
			row.TagsDeleted = res.TagsDeleted
		}
		row.ManifestsDeleted, row.BytesFreed = res.ManifestsDeleted, res.BytesFreed
	} else {
		row.TagsDeleted += res.TagsDeleted
		row.ManifestsDeleted += res.ManifestsDeleted
		row.BytesFreed += res.BytesFreed
	}
	if fullPlan || len(row.Kept) == 0 {
		row.Kept = make(map[string]int64, len(res.Kept))
		for k, v := range res.Kept {
			row.Kept[string(k)] = v
		}
	}
	row.Reason, row.Error = res.Reason, ""
	if res.DeleteErrors > 0 {
		row.Reason = strings.TrimPrefix(fmt.Sprintf("%s; %d deletes refused and left in place", res.Reason, res.DeleteErrors), "; ")
	}
	switch {
	case res.Status == purge.StatusFailed && res.Retryable:
		// Keep the cursor and try again on the next delivery.
		row.Status = checkpoint.StatusPartial
		row.Error = errText(res.Err)
		st.retry = fmt.Errorf("purge %s: %w", st.name, res.Err)
	case res.Status == purge.StatusPartial:
		row.Status = checkpoint.StatusPartial
		if raw, err := json.Marshal(res.Cursor); err == nil && res.Cursor != nil {
			row.Cursor = string(raw)
		}
	default:
		row.Status = checkpoint.Status(res.Status)
		row.Cursor = ""
		if res.Status != purge.StatusDone {
			row.Error = errText(res.Err)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// finish decides how the delivery ends: redelivery (transient failures),
// continuation (deadline) or done, and records it in the batch row.
func (w *Worker) finish(ctx context.Context, log *slog.Logger, d Delivery, job batchJob, batch checkpoint.Batch,
	states []*repoState, out Outcome) (Outcome, error) {
	sctx, cancel := detached(ctx)
	defer cancel()

	var retryErrs []error
	var retry, unfinished []*repoState
	for _, st := range states {
		switch {
		case st.retry != nil:
			retry = append(retry, st)
			retryErrs = append(retryErrs, st.retry)
		case st.unfinished():
			unfinished = append(unfinished, st)
		}
	}
	last := d.DeliveryCount >= w.o.MaxDeliveries
	var failErr error
	if len(retry) > 0 {
		failErr = fmt.Errorf("run %s batch %d: %d of %d repositories failed transiently: %w",
			job.runID, job.n, len(retry), len(job.repos), errors.Join(retryErrs...))
		if !last {
			w.recordBatchError(sctx, log, job, &batch, failErr)
			return w.outcome(out, states), failErr
		}
		// Last delivery: nobody will try these again; say so.
		for _, st := range retry {
			st.row.Error = st.retry.Error()
		}
		rows := failRows(retry, fmt.Sprintf("gave up after %d deliveries", d.DeliveryCount))
		if err := w.save(sctx, job.runID, rows, nil); err != nil {
			log.Error("could not record the failed repositories", "err", err)
		}
	}

	if len(unfinished) > 0 {
		if err := w.continueBatch(sctx, log, job, &batch, unfinished); err != nil {
			err = errors.Join(failErr, err)
			if last {
				w.giveUp(sctx, log, job, &batch, unfinished, fmt.Sprintf("gave up after %d deliveries: the continuation could not be sent", d.DeliveryCount), err)
			} else {
				w.recordBatchError(sctx, log, job, &batch, err)
			}
			return w.outcome(out, states), err
		}
		out.Continued = batch.Status == checkpoint.StatusContinued
	} else {
		batch.Status = checkpoint.StatusDone
	}
	if failErr != nil {
		batch.Status, batch.Error = checkpoint.StatusFailed, failErr.Error()
	}
	if err := w.save(sctx, job.runID, nil, &batch); err != nil {
		err = fmt.Errorf("run %s batch %d: save progress: %w", job.runID, job.n, err)
		if out.Continued && failErr == nil {
			// The continuation owns the rest of the batch; a redelivery of
			// this message would only duplicate its work.
			log.Error("could not record the continuation in the batch row; completing anyway", "err", err)
			return w.outcome(out, states), nil
		}
		return w.outcome(out, states), errors.Join(failErr, err)
	}
	return w.outcome(out, states), failErr
}

// continueBatch sends the continuation message for the unfinished
// repositories, or fails them after MaxContinuations.
func (w *Worker) continueBatch(ctx context.Context, log *slog.Logger, job batchJob, batch *checkpoint.Batch, unfinished []*repoState) error {
	n := job.resume.Number() + 1
	if n > MaxContinuations {
		reason := fmt.Sprintf("not finished after %d continuations", MaxContinuations)
		rows := failRows(unfinished, reason)
		if err := w.save(ctx, job.runID, rows, nil); err != nil {
			return fmt.Errorf("run %s batch %d: save progress: %w", job.runID, job.n, err)
		}
		batch.Status, batch.Error = checkpoint.StatusFailed, fmt.Sprintf("%d repositories %s", len(rows), reason)
		log.Error("batch gave up after too many continuations", "repositories", len(rows))
		return nil
	}
	msg := queue.Message{
		Version: queue.Version, RunID: job.runID, Batch: job.n, Batches: job.batches, Trigger: job.trigger,
		DryRun: job.dryRun, Resume: &queue.Resume{N: n},
	}
	for _, st := range unfinished {
		msg.Repositories = append(msg.Repositories, st.name)
		if st.row.Cursor != "" {
			if msg.Resume.Cursors == nil {
				msg.Resume.Cursors = map[string]json.RawMessage{}
			}
			msg.Resume.Cursors[st.name] = json.RawMessage(st.row.Cursor)
		}
	}
	o, err := queue.NewOutgoing(msg)
	if err == nil {
		if w.o.Sender == nil {
			err = errors.New("no sender configured")
		} else {
			err = w.o.Sender.Send(ctx, []queue.Outgoing{o})
		}
	}
	if err != nil {
		return fmt.Errorf("run %s batch %d: send continuation %d: %w", job.runID, job.n, n, err)
	}
	batch.Status, batch.Continuations = checkpoint.StatusContinued, n
	log.Info("deadline reached: continuation sent", "continuation", n, "repositories", len(unfinished), "messageIdSent", o.ID)
	return nil
}

// failRows marks the states failed with reason and returns their rows.
func failRows(states []*repoState, reason string) []checkpoint.Repo {
	rows := make([]checkpoint.Repo, 0, len(states))
	for _, st := range states {
		st.row.Status, st.row.Reason = checkpoint.StatusFailed, reason
		rows = append(rows, st.row)
	}
	return rows
}

// recordBatchError records err in the batch row of a delivery that will be
// retried.
func (w *Worker) recordBatchError(ctx context.Context, log *slog.Logger, job batchJob, batch *checkpoint.Batch, err error) {
	batch.Error = err.Error()
	if serr := w.save(ctx, job.runID, nil, batch); serr != nil {
		log.Error("could not record the batch's failure", "err", serr)
	}
}

// giveUp records, on the last delivery, that nobody will finish the states'
// repositories or the batch.
func (w *Worker) giveUp(ctx context.Context, log *slog.Logger, job batchJob, batch *checkpoint.Batch, states []*repoState, reason string, cause error) {
	rows := failRows(states, reason)
	for i := range rows {
		rows[i].Error = cause.Error()
	}
	batch.Status, batch.Error = checkpoint.StatusFailed, cause.Error()
	if err := w.save(ctx, job.runID, rows, batch); err != nil {
		log.Error("could not record the batch's failure", "err", err)
	}
}

// outcome adds the repositories' outcomes to out.
func (w *Worker) outcome(out Outcome, states []*repoState) Outcome {
	for _, st := range states {
		ro := RepoOutcome{Name: st.name, Status: st.row.Status, Reason: st.row.Reason, Already: st.already}
		if st.res != nil {
			ro.TagsDeleted, ro.ManifestsDeleted, ro.BytesFreed = st.res.TagsDeleted, st.res.ManifestsDeleted, st.res.BytesFreed
		}
		if st.retry != nil && ro.Reason == "" {
			ro.Reason = st.retry.Error()
		}
		out.Repos = append(out.Repos, ro)
	}
	return out
}

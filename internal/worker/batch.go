package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

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
	// attempt identifies this delivery's purge of the repository in the
	// row's Live set; prog holds its deletes not yet checkpointed.
	attempt string
	prog    progress
}

// progress is what one attempt deleted, and how much of it is already in
// the repository's row. OnDecision feeds it; flushes and the final update
// move the difference into the row with a merge (checkpoint.UpdateRepo),
// so that a process killed mid-repository loses at most FlushDeletes
// deletes or FlushEvery of them from the counts, and marks the row a
// lower bound when it does.
type progress struct {
	mu                        sync.Mutex // serialises flushes too
	tags, manifests, bytes    int64      // deleted by this attempt
	fTags, fManifests, fBytes int64      // of which in the row
	lastFlush                 time.Time
	begun, finished           bool // the attempt's row is written / final
}

// add counts one delete of this attempt.
func (p *progress) add(d policy.Decision) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d.Kind == policy.KindTag {
		p.tags++
	} else {
		p.manifests++
		p.bytes += d.Size
	}
}

// pending is how many deletes are not in the row yet. Caller holds mu.
func (p *progress) pending() int64 { return p.tags - p.fTags + p.manifests - p.fManifests }

// moveInto adds the deletes not yet in the row to row. Caller holds mu and
// calls flushed once the row is written.
func (p *progress) moveInto(row *checkpoint.Repo) {
	row.TagsDeleted += p.tags - p.fTags
	row.ManifestsDeleted += p.manifests - p.fManifests
	row.BytesFreed += p.bytes - p.fBytes
}

func (p *progress) flushed(at time.Time) {
	p.fTags, p.fManifests, p.fBytes, p.lastFlush = p.tags, p.manifests, p.bytes, at
}

// unfinished reports whether the repository still needs work after this
// delivery ended normally (deadline or not started).
func (s *repoState) unfinished() bool {
	return s.work && s.retry == nil && (!s.started || s.res.Status == purge.StatusPartial)
}

// saveBatch writes the batch row, stamped with the current time so that a
// run's report tells an active batch from a stuck one. Repository rows go
// through update, which merges.
func (w *Worker) saveBatch(ctx context.Context, runID string, batch *checkpoint.Batch) error {
	batch.Updated = w.o.Now()
	return w.o.Store.SaveProgress(ctx, runID, nil, batch)
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
	for i, name := range job.repos {
		row, ok := rows[name]
		if !ok {
			row = checkpoint.Repo{RunID: job.runID, Name: name, Batch: job.n, Status: checkpoint.StatusPending}
		}
		states[i] = &repoState{name: name, row: row, already: row.Status.Terminal(), work: !row.Status.Terminal()}
	}
	if err := w.saveBatch(ctx, job.runID, &batch); err != nil {
		return out, fmt.Errorf("run %s batch %d: save progress: %w", job.runID, job.n, err)
	}

	w.purgeAll(ctx, log, job, states, deadline)
	return w.finish(ctx, log, d, job, batch, states, out)
}

// purgeAll purges every repository marked work with purge.RunBatch (one
// token for the message), checkpointing each repository when it starts and
// when it ends.
func (w *Worker) purgeAll(ctx context.Context, log *slog.Logger, job batchJob, states []*repoState, deadline time.Time) {
	byName := make(map[string]*repoState, len(states))
	var repos []string
	for _, st := range states {
		if st.work {
			byName[st.name] = st
			repos = append(repos, st.name)
		}
	}
	if len(repos) == 0 {
		return
	}
	src := w.o.Tokens.Source(acr.PurgeScopes(repos)...)
	reg := w.o.Client.WithTokens(src)
	exec := purge.New(reg, purge.Options{Concurrency: w.o.Concurrency, Now: w.o.Now, Logger: log,
		OnDecision: func(d policy.Decision, o purge.Outcome, _ error) {
			if st := byName[d.Repo]; st != nil && o == purge.OutcomeDeleted {
				st.prog.add(d)
			}
		}})
	if !job.dryRun {
		stop := w.flusher(ctx, log, job.runID, byName)
		defer stop()
	}
	purge.RunBatch(ctx, purge.Batch{
		Repositories: repos, Policy: w.o.Policy, DryRun: job.dryRun, Deadline: deadline, Tokens: src, Registry: reg,
	}, purge.BatchOptions{
		Executor: exec, Parallelism: w.o.RepoParallelism,
		Begin: func(ctx context.Context, repo string) (*policy.Cursor, error) {
			return w.begin(ctx, log, job, byName[repo])
		},
		Done: func(o purge.RepoOutcome) { w.done(ctx, log, job, byName[o.Repository], o) },
	})
}

// flusher checkpoints the repositories' progress every FlushCheck until
// stop is called.
func (w *Worker) flusher(ctx context.Context, log *slog.Logger, runID string, states map[string]*repoState) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(FlushCheck)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, st := range states {
				w.flush(ctx, log, runID, st, false)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// begin checkpoints a repository as partial, with the cursor it starts
// from, just before it is purged, and adds this attempt to the row's Live
// set (an attempt found there stale has died, and its uncounted deletes
// make the counts a lower bound).
func (w *Worker) begin(ctx context.Context, log *slog.Logger, job batchJob, st *repoState) (*policy.Cursor, error) {
	st.cursor = w.startCursor(log, job, st)
	raw, err := json.Marshal(st.cursor)
	if err != nil {
		return nil, fmt.Errorf("encode cursor: %w", err)
	}
	st.attempt = newAttemptID()
	now := w.o.Now()
	err = w.update(ctx, job.runID, st, func(row *checkpoint.Repo) {
		row.Status, row.Cursor, row.Batch = checkpoint.StatusPartial, string(raw), job.n
		row.Attempts++
		row.Prune(now, StaleAttempt)
		if row.Live == nil {
			row.Live = map[string]time.Time{}
		}
		row.Live[st.attempt] = now
	})
	if err != nil {
		return nil, fmt.Errorf("save progress: %w", err)
	}
	st.started = true
	st.prog.mu.Lock()
	st.prog.begun, st.prog.lastFlush = true, now
	st.prog.mu.Unlock()
	return st.cursor, nil
}

// update merges fn's change into the repository's stored row (see
// checkpoint.Store.UpdateRepo) and keeps the result as st.row.
func (w *Worker) update(ctx context.Context, runID string, st *repoState, fn func(row *checkpoint.Repo)) error {
	row, err := w.o.Store.UpdateRepo(ctx, runID, st.name, func(row *checkpoint.Repo) error {
		fn(row)
		row.Updated = w.o.Now()
		return nil
	})
	if err != nil {
		return err
	}
	st.row = row
	return nil
}

// flush moves the deletes of st's attempt not yet checkpointed into its
// row, with a heartbeat, when enough are pending or enough time passed.
// force flushes whatever is pending.
func (w *Worker) flush(ctx context.Context, log *slog.Logger, runID string, st *repoState, force bool) {
	p := &st.prog
	p.mu.Lock()
	defer p.mu.Unlock()
	now := w.o.Now()
	due := p.pending() >= FlushDeletes || (p.pending() > 0 && now.Sub(p.lastFlush) >= FlushEvery) ||
		now.Sub(p.lastFlush) >= StaleAttempt/4
	if !p.begun || p.finished || (!due && !force) {
		return
	}
	err := w.update(ctx, runID, st, func(row *checkpoint.Repo) {
		p.moveInto(row)
		if row.Live == nil {
			row.Live = map[string]time.Time{}
		}
		row.Live[st.attempt] = now
	})
	if err != nil {
		// The deletes stay pending and go with the next flush.
		log.Warn("could not checkpoint progress; trying again later", "repository", st.name, "err", err)
		return
	}
	p.flushed(now)
}

// newAttemptID returns a random id for one attempt at a repository.
func newAttemptID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// done folds a repository's outcome into its state and checkpoints it.
func (w *Worker) done(ctx context.Context, log *slog.Logger, job batchJob, st *repoState, o purge.RepoOutcome) {
	switch {
	case o.Result != nil:
		st.res = o.Result
	case o.Status == purge.StatusNotStarted:
		if o.Err != nil {
			st.retry = fmt.Errorf("%s: %s: %w", st.name, o.Reason, o.Err)
		}
		return // otherwise left for the continuation
	case o.Retryable:
		st.retry = fmt.Errorf("%s: %s: %w", st.name, o.Reason, o.Err)
		st.row.Error = errText(o.Err)
		return
	default: // decided without purging: skipped, forbidden, failed
		st.work = false
		if o.Status == purge.StatusForbidden {
			log.Warn("repository not permitted", "repository", st.name, "reason", o.Reason)
		}
	}

	// Keep the progress even when the host cancelled the invocation.
	sctx, cancel := detached(ctx)
	defer cancel()
	p := &st.prog
	p.mu.Lock()
	defer p.mu.Unlock()
	now := w.o.Now()
	var retry error
	err := w.update(sctx, job.runID, st, func(row *checkpoint.Repo) {
		if o.Result == nil {
			row.Batch = job.n
			row.Status, row.Reason, row.Error = checkpoint.Status(o.Status), o.Reason, errText(o.Err)
			return
		}
		if !job.dryRun {
			p.moveInto(row)
		}
		retry = applyResult(row, st.name, o.Result, st.cursor, job.dryRun)
		delete(row.Live, st.attempt)
		row.Prune(now, StaleAttempt)
	})
	if err != nil {
		st.retry = fmt.Errorf("save progress: %w", err)
		return
	}
	p.flushed(now)
	p.finished = true
	if retry != nil {
		st.retry = retry
	}
	if o.Result != nil && o.Result.Status == purge.StatusDone && !job.dryRun {
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

// applyResult folds a purge result into the repository's row, except
// the deleted counts of a real run, which progress moves in as they
// happen. It returns the error that calls for a redelivery, if any.
func applyResult(row *checkpoint.Repo, name string, res *purge.Result, cursor *policy.Cursor, dryRun bool) (retry error) {
	fullPlan := cursor.Phase != policy.PhaseManifests
	if !dryRun && res.Uncertain > 0 {
		row.AtLeast = true // a delete's answer was lost: it may have happened uncounted
	}
	if dryRun {
		// Nothing was deleted: the counts of this attempt replace those of
		// the phases it planned again.
		if fullPlan {
			row.TagsDeleted = res.TagsDeleted
		}
		row.ManifestsDeleted, row.BytesFreed = res.ManifestsDeleted, res.BytesFreed
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
		return fmt.Errorf("purge %s: %w", name, res.Err)
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
	return nil
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
		if err := w.fail(sctx, job.runID, retry, fmt.Sprintf("gave up after %d deliveries", d.DeliveryCount), nil); err != nil {
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
	if err := w.saveBatch(sctx, job.runID, &batch); err != nil {
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
		if err := w.fail(ctx, job.runID, unfinished, reason, nil); err != nil {
			return fmt.Errorf("run %s batch %d: save progress: %w", job.runID, job.n, err)
		}
		batch.Status, batch.Error = checkpoint.StatusFailed, fmt.Sprintf("%d repositories %s", len(unfinished), reason)
		log.Error("batch gave up after too many continuations", "repositories", len(unfinished))
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

// fail marks the states' repositories failed with reason (and the error
// of cause, else each one's retry error), merging into their rows so that
// counts another delivery wrote meanwhile stay.
func (w *Worker) fail(ctx context.Context, runID string, states []*repoState, reason string, cause error) error {
	var errs []error
	for _, st := range states {
		text := errText(cause)
		if text == "" {
			text = errText(st.retry)
		}
		errs = append(errs, w.update(ctx, runID, st, func(row *checkpoint.Repo) {
			row.Status, row.Reason = checkpoint.StatusFailed, reason
			if text != "" {
				row.Error = text
			}
		}))
	}
	return errors.Join(errs...)
}

// recordBatchError records err in the batch row of a delivery that will be
// retried.
func (w *Worker) recordBatchError(ctx context.Context, log *slog.Logger, job batchJob, batch *checkpoint.Batch, err error) {
	batch.Error = err.Error()
	if serr := w.saveBatch(ctx, job.runID, batch); serr != nil {
		log.Error("could not record the batch's failure", "err", serr)
	}
}

// giveUp records, on the last delivery, that nobody will finish the states'
// repositories or the batch.
func (w *Worker) giveUp(ctx context.Context, log *slog.Logger, job batchJob, batch *checkpoint.Batch, states []*repoState, reason string, cause error) {
	batch.Status, batch.Error = checkpoint.StatusFailed, cause.Error()
	if err := errors.Join(w.fail(ctx, job.runID, states, reason, cause), w.saveBatch(ctx, job.runID, batch)); err != nil {
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

// Package worker is the queue-triggered Worker: it takes one Service Bus
// message, gets one access token scoped to exactly the message's
// repositories, purges them by policy and checkpoints every repository, so
// that a redelivered message resumes instead of redoing.
//
// # Messages
//
// queue.Decode classifies the body:
//
//   - Own messages (Scheduler batches, portal re-fan-outs, continuations)
//     name a run, a batch and its repositories; the batch is processed.
//     A missing run row is created from the message.
//   - Portal messages ({"repositories":[…]} or {"repository":"…"}) become a
//     run "p-" + the first 12 hex digits of sha256(MessageID and
//     EnqueuedTimeUtc, which redeliveries share and a later re-send with the
//     same MessageID does not), trigger portal. Up to ABAC_BATCH_SIZE repositories are processed at once as
//     the run's only batch; more are re-fanned out as own messages with
//     queue.Enqueue. A message may ask for a dry run, never for deletes
//     the configuration does not allow (PURGE_DRY_RUN wins).
//   - ImagePushed events (Event Grid schema or CloudEvents) become a run
//     "e-" + the first 12 hex digits of sha256(event id), trigger push, with
//     the pushed repository as its only batch; they are ignored when the
//     event comes from another registry (data.request.host), when no policy
//     rule covers the repository, or when the repository was purged less
//     than PUSH_DEBOUNCE ago.
//   - Other event types are completed as ignored; anything malformed is
//     recorded as a rejection (reason and an excerpt of the body) and
//     completed, so a poison message causes no retry storm.
//
// The registry never comes from a message: it is Options.Registry.
//
// # Processing a batch
//
// Repositories already in a terminal state (done, skipped, forbidden,
// failed) are skipped. The remaining ones go to purge.RunBatch, the batch
// purge `handler purge` uses too; the Worker only adds checkpoints (its
// Begin and Done callbacks). RunBatch records repositories no rule covers
// as skipped ("not in policy": a message cannot widen the policy), gets one
// token for the batch (acr.PurgeScopes), checks its access claim against
// purge.NeededActions (metadata_read; pull when a rule deletes untagged
// manifests; delete unless dry run; metadata_write when a rule has
// includeLocked) and records a repository lacking any as forbidden with the
// missing actions named, then purges up to Options.RepoParallelism
// (PURGE_REPOSITORY_PARALLELISM) at a time on one
// purge.Executor.
//
// Before a repository is purged its row is written as partial with a cursor
// (phase tags, planTime now, or the cursor of an earlier attempt), so a crash
// and redelivery re-plan against the same instant. After it, the row gets
// the result: deleted counts add up across attempts (in a dry run they are
// recounted instead, as nothing was deleted), kept counts are those of the
// latest full plan.
//
// # Failures and deadlines
//
//   - At Deadline (PURGE_MESSAGE_DEADLINE) after the message started no new
//     delete and no new repository starts; the unfinished repositories go
//     into a continuation message (same run and batch, Resume.N one higher,
//     MessageID runId/batch/resume-N) and the invocation succeeds. After
//     MaxContinuations continuations the repositories are failed instead.
//     The invocation's context ends Grace after the deadline.
//   - Transient failures (token, network, 5xx, throttling beyond its budget,
//     checkpoint writes) fail the invocation so that Service Bus redelivers
//     the message; the rows keep their cursor and the error. On the last
//     delivery (DeliveryCount >= MaxDeliveries) the repositories and the
//     batch are recorded as failed first.
//   - Permanent failures of one repository (a refused or malformed answer,
//     a filter timing out) record it as failed; the batch still completes.
package worker

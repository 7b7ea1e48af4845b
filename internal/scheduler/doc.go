// Package scheduler is the Scheduler: it turns a timer firing into one purge run
// and fans the run's repositories out to the Service Bus queue in batches of
// ABAC_BATCH_SIZE, one message per batch (one message = one access token).
//
// A run goes through three steps, in this order, so that a crash at any point
// can be retried without enqueuing twice:
//
//  1. the repository list: the registry catalog (a registry:catalog:* token)
//     or, when the identity may not list it, PURGE_REPOSITORIES; invalid names
//     are skipped with a warning, the policy's repository filter applies, and
//     the result is sorted and de-duplicated;
//  2. the run row and its batch rows are written (checkpoint.Store.CreateRun,
//     idempotent);
//  3. every batch message is sent, with the deterministic MessageID
//     "runId/batch" so that Service Bus duplicate detection drops re-sends,
//     and the run is marked enqueued.
//
// # Run IDs
//
// A timer firing maps to its schedule occurrence: occ = Schedule.Prev(At).
// When At is at most RetryWindow (40 minutes) after occ, or the host says the
// firing is past due, the run is the scheduled one: ID "s-" + occ formatted
// as 20060102T150405Z, trigger "schedule". The window covers the timer's retry
// policy (functions/Scheduler/function.json: 2 retries 1 minute apart), each
// attempt bounded by RunTimeout (10 minutes), and host start-up delays, so a
// retried or duplicated firing finds the run it already created: if that run is enqueued nothing is sent again; if it is
// not (a crash mid-send), every message is sent again (duplicate detection
// drops what already went) and the run is then marked enqueued.
//
// Any other firing is a manual run ("Run" from the portal or the admin API):
// ID "m-" + At in the same format, trigger "manual". A manual run started
// within RetryWindow after a scheduled occurrence is that occurrence, and is
// therefore a no-op when the occurrence was already enqueued.
//
// Enqueue is shared with the Worker, which uses it to re-fan-out a portal
// message naming more repositories than one batch holds.
package scheduler

// Package purgecli implements `handler purge`: a one-shot run of the purge
// policy against a real registry with DefaultAzureCredential, for trying a
// policy before deploying it. It is a dry run unless --dry-run=false is given.
//
// The run works like the Worker: repositories (named with --repository, or
// read from the catalog and filtered by the policy) are grouped into
// ABAC-sized batches with one access token per batch, and one
// purge.Executor, shared by the whole run, bounds the deletes in flight.
// A delete budget of this process alone (internal/budget on an in-memory
// store, the algorithm the app shares registry-wide) holds deletes under
// --deletes-per-minute, slowing down on 429s; --repository-parallelism
// repositories are purged at once.
//
// Output goes to stdout, as a table or as one JSON document; progress (for
// runs longer than a couple of seconds) and logs go to stderr. The JSON
// document's field names are lowerCamel and stable:
//
//	registry, dryRun, interrupted, policyHash, startedAt, finishedAt,
//	durationSeconds, exitCode,
//	repositories[]: repository, status, reason, tagsDeleted,
//	    manifestsDeleted, bytesFreed, deleteErrors, durationSeconds,
//	    kept{tags{<reason>: n}, manifests{<reason>: n}},
//	    items[]: kind, tag, digest, action, reason, rule, size, updated, error
//	totals: repositories, done, skipped, partial, forbidden, failed,
//	    notStarted, interrupted, tagsDeleted, manifestsDeleted, bytesFreed,
//	    deleteErrors, keptTags, keptManifests
//
// Items list deletions (would-delete, deleted, and deletes that failed, were
// refused as locked or never started); kept items appear only with
// --verbose. Exit codes are documented in the usage text (see exit* below).
package purgecli

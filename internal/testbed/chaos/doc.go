// Package chaos is the fault-injection suite of acrpurge, and the small
// model it checks results against.
//
// The tests (run by `make test` in a short version, and by `make chaos` at a
// larger scale with randomized seeds and fault rates, ACRPURGE_CHAOS_LONG=1)
// drive the whole Functions app end to end through internal/testbed/e2e/e2etest:
// the ACR emulator, Azurite for the checkpoints, an in-memory Service Bus
// queue and the custom-handler protocol. Each scenario injects one kind of
// fault while messages are being handled: the Worker process killed in the
// middle of a batch (before a delete, or before a checkpoint write) and the
// message redelivered to a new process, the invocation cancelled by the
// host, the access token expiring in the middle of a repository (noticed
// by the app's clock, or only by the registry's 401), the refresh token
// rolling over at 3 h, an ABAC partial grant (and a grant removed mid-run),
// a 429 storm, 5xx answers with dropped connections and lost responses,
// the registry restarted mid-run, a message handled twice at once (lock
// lost), and all of them together with failing checkpoint writes and
// deadline continuations. After each, every repository of every message
// must be in a recorded terminal state, nothing may have been deleted
// twice, nothing the policy keeps may have been deleted, the checkpoints
// may not report more deletions than the policy makes, and, where the
// scenario lets the run complete, everything the policy deletes must be
// gone.
//
// What must survive is not computed by the planner under test but by
// Expect, an independent reference written for the repositories that
// GenRepo builds: a direct transcription of the purge semantics in the
// design (tag filter, ago, keep, locks, protect patterns, the untagged
// phase with its one-hour floor and the closure that keeps the children of
// kept indexes, the referrers of kept manifests and the subjects of kept
// referrers).
//
// The package also holds the hostile-input tests that need the whole app:
// no token appears in any log, report, checkpoint or message of a full run,
// and a message or setting naming another registry is refused.
package chaos

// Package checkpoint records the progress of purge runs so that a redelivered
// Service Bus message resumes instead of redoing work, and so that a run can be
// reported on.
//
// A run has one row, one row per batch (queue message) and one row per
// repository; repositories also have a "last purged" row used to debounce
// push-triggered purges, and rejected (poison) messages are kept for
// inspection. Two implementations share the Store interface and one
// conformance test suite: Table, backed by Azure Table Storage (or Azurite),
// and Memory, for local runs and unit tests.
//
// Table layout (all keys escaped with EscapeKey):
//
//	partition "run|{runID}"    rows "run", "batch|{n:06d}", "repo|{name}"
//	partition "runs"           rows "{invertedTicks:019d}|{runID}" (index for LatestRuns)
//	partition "repo|{name}"    row  "last" (debounce)
//	partition "rejected"       rows "{invertedTicks:019d}|{messageID}"
//
// Escaped keys longer than MaxKeyLen are cut and suffixed with "~" and a
// SHA-256 of the name; every row also stores its names in properties, so keys
// are never parsed back. Rows that change together share a partition and are
// written in entity group transactions of at most 100 operations. CreateRun
// writes the run row last (with "add" semantics), so an existing run row means
// all of its batch rows exist too.
package checkpoint

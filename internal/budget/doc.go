// Package budget holds the delete budget of a whole registry
// (PURGE_DELETES_PER_MINUTE) across every instance of the app.
//
// Azure Container Registry throttles per registry, by SKU, not per identity
// or per client: every Worker instance (Flex Consumption runs 40 and more)
// and every other client of the registry draw on one limit. A Budget lets
// all instances share one budget through the checkpoint table, adapts that
// budget to the 429s the registry answers, and never lets an instance run
// unbounded when the table cannot be reached.
//
// # The algorithm, step by step
//
//  1. Time is cut into windows of Options.Window (1 s by default), numbered
//     from the Unix epoch, so every instance agrees on them without talking.
//     The shared rate R (deletes per minute, at most the budget) gives each
//     window k a capacity cap(k) = ⌊r·(k+1)⌋ − ⌊r·k⌋ with r = R per window:
//     fractional rates (Basic's 50/min is 0.83 per second) add up exactly
//     over time.
//
//  2. Each window has a row in the table, partition "budget|<registry>",
//     holding Window, Claimed, Cap, the rate generation Gen and Members (a
//     bit per instance that leased in the window). Rows are reused round
//     robin (32 slots), so the table never grows. An instance that needs
//     deletes leases a slice of the current window: it reads the row, and
//     writes Claimed + n with If-Match on the row's ETag; a row of an older
//     window counts as empty; a missing row is created with AddEntity. A
//     412 (someone else wrote first) or a 409 (someone else created it)
//     means: read again and retry. An instance alone skips the read: the
//     copy it wrote last is still current.
//
//  3. A slice is what the instance's waiters want, at most the window's
//     capacity shared among the instances seen leasing lately (at least
//     Options.Slices ways, 4), and the instance leases its next slice only
//     when the last one is used up: in between, the others get their turn,
//     so busy instances share a window about equally whatever their speed,
//     and an instance alone still gets all of it. A busy instance spends one
//     to three table operations per slice — a few per hundred deletes at
//     high rates — and an idle one none.
//
//  4. Slice [a, a+n) of window k is released at start(k) + W·j/cap(k) for
//     j in [a, a+n): the deletes of all instances together are spread evenly
//     over the window rather than fired at its start. A slice is only good
//     within its window: what an instance leased and did not use (it died,
//     or its work ran out) expires with the window, and the next window
//     starts empty. So in any window the instances together start at most
//     cap(k) deletes. When a window is full, waiters sleep until the next
//     one (spread over its first half when other instances share the
//     budget, so that they do not all hit the row at once: the tokens keep
//     their places in the window).
//
//  5. A 429 from the registry (Throttled) lowers the shared rate for every
//     instance. The instance counts what the registry admitted over the
//     last second (Admitted: every answer but 429), scales it by its share
//     of the window rows' leases (the others were admitted in the same
//     proportion), and writes 97 % of that — just below what was admitted —
//     into the shared "rate" row (If-Match again) with Gen bumped and the
//     admitted rate as the knee. One cut is at most ÷8 and at least −5 %,
//     never below 1 % of the budget, and there is at most one cut per
//     window or per Retry-After, whichever is longer, across all instances
//     (the row records when it was last cut). Tokens leased at the old rate
//     and not handed out yet are dropped, and the rest of the window is
//     leased again at the new rate, paced from now (the old rate's leases
//     already fill its row; without that the window would idle). A Retry-After longer than one
//     second also pauses every instance for the rest of it (the registry's
//     window is evidently long); one second — the shortest whole-second
//     answer — is left to the cut.
//
//  6. Instances re-read the rate row every two windows, and at once when a
//     window row carries a newer Gen, and apply the lower capacity to the
//     window rows they write. After ProbeEvery without a cut the rate probes
//     back up, × (1 + 2 %·q) after the q-th quiet step, up to the budget:
//     within 30 s of a cut, fast only up to 99 % of the knee and then by
//     0.5 % steps, so that it stays close to what the registry admits and
//     429s stay rare; after that, fast again.
//
//  7. Every table call has a short deadline (Options.OpTimeout) and no SDK
//     retries. If the store fails or times out, the instance falls back to a
//     local share of the rate, R ÷ PURGE_MAX_INSTANCES, paced locally, logs
//     one warning for the outage (not one per call), tries the store again
//     every RetryStoreEvery, and returns to the shared budget once it
//     answers. It is never unbounded.
//
// NewLocal runs the same algorithm on an in-memory store, for one process
// alone (`handler purge`). NewShared runs it on the checkpoint table.
//
// The acr package's Limiter consumes a Budget for its delete class through
// the small Gate interface (Wait, Throttled, Admitted).
package budget

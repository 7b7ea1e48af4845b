package benchmarks

import (
	"fmt"
	"time"
)

// Notes explain the table: the machine, what each baseline is, which
// figures are samples and how the heap was measured.
func (r *Results) Notes() []string {
	m := r.Machine
	notes := []string{
		fmt.Sprintf("Machine: %d CPUs, GOMAXPROCS %d, %s %s/%s; load average (1/5/15 min) %s before, %s after; %s in all.",
			m.CPUs, m.GOMAXPROCS, m.GoVersion, m.OS, m.Arch, orDash(m.LoadBefore), orDash(m.LoadAfter), r.Elapsed.Round(time.Second)),
		"Every scenario runs the real client, token broker, planner and executor against the ACR emulator on loopback; " +
			"timings depend on the machine and on whatever else it runs (see the load average).",
		"acrpurge runs as deployed: one message (one access token, one executor) per 10 repositories, 4 messages in flight " +
			"(host.json maxConcurrentCalls), PURGE_CONCURRENCY 8 deletes in flight per message, 4 repositories at a time per " +
			"message; every delete goes out at most 2 s after a read of its item (the tag listing page while fresh, else a " +
			"re-read listing page, or one GET), which the requests-per-delete row counts. Its delete budget is far " +
			"above what a run reaches except in the governance rows. Slots ÷ latency: the deletes/s that all the " +
			"deletes allowed in flight (messages × PURGE_CONCURRENCY) would reach if each took exactly the injected latency.",
		"Sequential baseline: one request at a time, one delete at a time, one access token per repository; the same " +
			"planner (so the same deletions), the same client retries (5xx backoff, 429 Retry-After); no re-read before a " +
			"delete. It runs in the same process right after acrpurge, on a fresh registry seeded identically, under the same " +
			"latency, faults and limits. 'first N of M repos': a sample; a strictly sequential client's rate does not depend " +
			"on how many repositories it goes through.",
	}
	if t := r.Errors; t != nil {
		notes = append(notes, fmt.Sprintf("5xx row: the emulator answers %.0f %% of data-plane requests (deletes, listings, "+
			"re-reads) 500 or 503 before doing anything; both sides retry through the client (up to 5 attempts, jittered "+
			"exponential backoff from 200 ms).", 100*t.Options.ErrorRate))
	}
	if g := r.Governance; g != nil {
		notes = append(notes, governanceNotes(g)...)
	}
	if p := r.Plan; p != nil {
		notes = append(notes, fmt.Sprintf("Planner heap: peak HeapInuse (runtime.ReadMemStats every 2 ms and after every "+
			"listing page) in a fresh subprocess that only plans, listings streamed page by page (100 tags, 1,000 "+
			"manifests); live heap peak %.0f MB; %s tags/s; %s manifest bodies fetched; %s tags and %s manifests deleted. "+
			"Baseline: "+
			"the same listings held in memory at once, measured the same way after a GC, nothing planned (a lower bound "+
			"for a tool that lists everything before planning). MB = 2^20 bytes.",
			mb(p.Heap.Live), thousands(int(p.TagsPerSecond)), thousands(int(p.BodiesFetched)), thousands(p.DeletedTags), thousands(p.DeletedManifests)))
	}
	if f := r.FanOut; f != nil {
		notes = append(notes, fmt.Sprintf("Fan-out: catalog listed through the real client (100 names per page, its default), run and "+
			"batch rows written, one message per batch handed to a counting sender (%d send calls). The emulator's "+
			"repositories live in the same process, so heap is the peak HeapAlloc above the live heap just before (an upper "+
			"bound: garbage included), 'live' the largest live heap a GC measured above it; GOGC is 25 while measuring, "+
			"and the time includes that GC work. No sequential baseline: a fan-out is one catalog walk, sequential by "+
			"nature, and acr purge has none.", f.Memory.SendCalls))
		if f.Table != nil {
			notes = append(notes, "Table store on Azurite: Azurite (one Node.js process, in-memory) slows down as one "+
				"partition grows, and a run's partition holds one row per batch; ~20–30 s is known and is Azurite's cost, "+
				"not the app's (the Memory row is the app's). Azure Table Storage itself was not measured.")
		}
	}
	if l := r.LocalStack; l != nil {
		notes = append(notes, fmt.Sprintf("Local stack: localstack.RunStack, the nightly purge of the demo registry (ABAC "+
			"emulator, %d of %d repositories purged, %d forbidden, the rest outside the policy) through the timer, "+
			"Scheduler, in-process queue, custom-handler HTTP protocol, Worker and in-memory checkpoints, %d per message; "+
			"setup (seed, wiring) %.1f s not counted. Tokens per message leave out the Scheduler's catalog token. The "+
			"emulator adds no latency here (RunStack has no such option), so both sides are bound by this machine's CPU, "+
			"not by waiting on a registry: acrpurge's concurrency buys little, and its extra work (fan-out, the HTTP hop "+
			"to the handler, checkpoints) costs; here it was %.2f× the baseline. With "+
			"registry latency, concurrency dominates (see the throughput rows). Baseline: the catalog listed, then "+
			"Sequential over %s; both sides' deletions are checked against what the seed expects.",
			l.Purged, l.Repositories, l.Forbidden, l.Options.BatchSize, l.Setup.Seconds(), l.Speedup, baselineScope(l.Baseline)))
	}
	if len(r.Failed) > 0 {
		notes = append(notes, fmt.Sprintf("%d scenario(s) FAILED; see the rows marked FAILED.", len(r.Failed)))
	}
	return notes
}

// baselineScope says which repositories a local-stack baseline went through.
func baselineScope(b SequentialFigures) string {
	if b.Sample {
		return fmt.Sprintf("a sample of %d covered repositories spread over the catalog, its time scaled to all of them", b.Repositories)
	}
	return fmt.Sprintf("every covered repository (%d)", b.Repositories)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

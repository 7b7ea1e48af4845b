package checkpoint_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
)

// The conformance suite: every test runs against Memory and against Table on
// Azurite (skipped without Azurite unless ACRPURGE_REQUIRE_AZURITE=1).

type factory struct {
	name string
	new  func(t *testing.T) checkpoint.Store
}

var factories = []factory{
	{"memory", func(*testing.T) checkpoint.Store { return checkpoint.NewMemory() }},
	{"table", func(t *testing.T) checkpoint.Store { return azurite.NewTable(t) }},
}

// forEachStore runs fn in parallel subtests, one fresh store each.
func forEachStore(t *testing.T, fn func(t *testing.T, ctx context.Context, s checkpoint.Store)) {
	t.Helper()
	t.Parallel()
	for _, f := range factories {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			s := f.new(t)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			fn(t, ctx, s)
		})
	}
}

// norm is what the stores promise to keep of a time.
func norm(t time.Time) time.Time { return t.UTC().Truncate(100 * time.Nanosecond) }

// base is a fixed point in time with a sub-100ns part and a non-UTC zone, so
// normalisation is exercised.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("UTC+2", 2*3600))

func makeBatches(runID string, n, perBatch int) []checkpoint.Batch {
	out := make([]checkpoint.Batch, n)
	for i := range out {
		repos := make([]string, perBatch)
		for j := range repos {
			repos[j] = fmt.Sprintf("team-%d/svc-%d", i, j)
		}
		out[i] = checkpoint.Batch{RunID: runID, N: i, Repositories: repos, Updated: base.Add(time.Duration(i) * time.Second)}
	}
	return out
}

// wantBatch is b as the stores return it after CreateRun.
func wantBatch(b checkpoint.Batch, runID string) checkpoint.Batch {
	b.RunID = runID
	if b.Status == "" {
		b.Status = checkpoint.StatusQueued
	}
	b.Updated = norm(b.Updated)
	return b
}

func TestCreateRunAndRead(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		run := checkpoint.Run{ID: "2025-03-14T02:00:00Z-schedule", Trigger: "schedule", DryRun: true,
			PolicyHash: "sha256:abc", Started: base, Batches: 3, Repositories: 7, Note: "nightly"}
		batches := makeBatches("", 3, 2)
		batches[2].Repositories = batches[2].Repositories[:1]
		batches[1].Status = checkpoint.StatusRunning

		got, created, err := s.CreateRun(ctx, run, batches)
		must(t, err)
		mustTrue(t, created)
		want := run
		want.Started = norm(run.Started)
		checkEqual(t, want, got)

		read, err := s.GetRun(ctx, run.ID)
		must(t, err)
		checkEqual(t, want, read)

		list, err := s.ListBatches(ctx, run.ID)
		must(t, err)
		mustLen(t, list, len(batches))
		for i, b := range list {
			checkEqual(t, wantBatch(batches[i], run.ID), b)
		}
		one, err := s.GetBatch(ctx, run.ID, 2)
		must(t, err)
		checkEqual(t, wantBatch(batches[2], run.ID), one)

		must(t, s.MarkEnqueued(ctx, run.ID))
		read, err = s.GetRun(ctx, run.ID)
		must(t, err)
		want.Enqueued = true
		checkEqual(t, want, read)
	})
}

func TestCreateRunDefaults(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		before := time.Now().UTC()
		got, created, err := s.CreateRun(ctx, checkpoint.Run{ID: "defaults"}, []checkpoint.Batch{{N: 0}})
		after := time.Now().UTC()
		must(t, err)
		mustTrue(t, created)
		checkTrue(t, !got.Started.Before(before.Truncate(100*time.Nanosecond)) && !got.Started.After(after), "Started %v defaults to now", got.Started)
		checkEqual(t, time.UTC, got.Started.Location())
		b, err := s.GetBatch(ctx, "defaults", 0)
		must(t, err)
		checkEqual(t, checkpoint.StatusQueued, b.Status)
		checkTrue(t, b.Repositories == nil, "no repositories")
		checkTrue(t, !b.Updated.IsZero(), "Updated set")
	})
}

func TestCreateRunIdempotent(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		run := checkpoint.Run{ID: "retried", Trigger: "schedule", Started: base, Batches: 3}
		first, created, err := s.CreateRun(ctx, run, makeBatches("retried", 3, 1))
		must(t, err)
		mustTrue(t, created)

		// Progress made by a worker must survive a retried create.
		progress := checkpoint.Batch{N: 0, Repositories: []string{"team-0/svc-0"}, Status: checkpoint.StatusDone, Deliveries: 1, Updated: base}
		must(t, s.SaveProgress(ctx, "retried", nil, &progress))
		must(t, s.MarkEnqueued(ctx, "retried"))

		again := run
		again.Trigger, again.Note, again.Started, again.Batches = "manual", "second", base.Add(time.Hour), 5
		got, created, err := s.CreateRun(ctx, again, makeBatches("retried", 5, 2))
		must(t, err)
		checkTrue(t, !created)
		first.Enqueued = true
		checkEqual(t, first, got)

		list, err := s.ListBatches(ctx, "retried")
		must(t, err)
		mustLen(t, list, 3, "the second create wrote nothing")
		checkEqual(t, checkpoint.StatusDone, list[0].Status)
		checkEqual(t, []string{"team-1/svc-0"}, list[1].Repositories)

		runs, err := s.LatestRuns(ctx, 10)
		must(t, err)
		mustLen(t, runs, 1, "no second index entry")
		checkEqual(t, first, runs[0])
	})
}

func TestCreateRunConcurrent(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		const n = 4
		type result struct {
			run     checkpoint.Run
			created bool
			err     error
		}
		results := make([]result, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				run := checkpoint.Run{ID: "race", Trigger: "schedule", Started: base, Note: fmt.Sprintf("creator %d", i)}
				r, c, err := s.CreateRun(ctx, run, makeBatches("race", 120, 1))
				results[i] = result{r, c, err}
			})
		}
		wg.Wait()
		winners := 0
		for _, r := range results {
			must(t, r.err)
			if r.created {
				winners++
			}
		}
		mustEqual(t, 1, winners)
		stored, err := s.GetRun(ctx, "race")
		must(t, err)
		for _, r := range results {
			checkEqual(t, stored, r.run, "every creator sees the stored run")
		}
		list, err := s.ListBatches(ctx, "race")
		must(t, err)
		checkLen(t, list, 120)
	})
}

func TestManyBatches(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		const n = 250 // three transactions: run row + 99, 100, 51
		batches := makeBatches("big", n, 10)
		_, created, err := s.CreateRun(ctx, checkpoint.Run{ID: "big", Started: base, Batches: n}, batches)
		must(t, err)
		mustTrue(t, created)
		list, err := s.ListBatches(ctx, "big")
		must(t, err)
		mustLen(t, list, n)
		for i, b := range list {
			mustEqual(t, wantBatch(batches[i], "big"), b)
		}
		last, err := s.GetBatch(ctx, "big", n-1)
		must(t, err)
		checkEqual(t, wantBatch(batches[n-1], "big"), last)
		_, err = s.GetBatch(ctx, "big", n)
		checkErrorIs(t, err, checkpoint.ErrNotFound)
	})
}

func sampleRepo(name string, batch int, i int) checkpoint.Repo {
	return checkpoint.Repo{
		Name: name, Batch: batch, Status: checkpoint.StatusPartial,
		Reason: "deadline", Error: fmt.Sprintf("attempt %d: 503", i),
		Cursor:      fmt.Sprintf(`{"phase":"tags","last":"v%d"}`, i),
		TagsDeleted: int64(i), ManifestsDeleted: int64(2 * i), BytesFreed: 1<<40 + int64(i),
		Kept:     map[string]int64{"keep": 3, "locked": int64(i)},
		Attempts: 1, Updated: base.Add(time.Duration(i) * time.Millisecond),
	}
}

func wantRepo(r checkpoint.Repo, runID string) checkpoint.Repo {
	r.RunID = runID
	r.Updated = norm(r.Updated)
	if len(r.Kept) == 0 {
		r.Kept = nil
	}
	return r
}

func TestSaveProgress150(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		_, _, err := s.CreateRun(ctx, checkpoint.Run{ID: "p", Started: base, Batches: 1}, makeBatches("p", 1, 150))
		must(t, err)
		repos := make([]checkpoint.Repo, 150) // two transactions; the batch row in the second
		for i := range repos {
			repos[i] = sampleRepo(fmt.Sprintf("team/svc-%03d", i), 0, i)
		}
		batch := checkpoint.Batch{N: 0, Repositories: []string{"x"}, Status: checkpoint.StatusDone, Deliveries: 2, Continuations: 1, Updated: base}
		must(t, s.SaveProgress(ctx, "p", repos, &batch))

		list, err := s.ListRepos(ctx, "p")
		must(t, err)
		mustLen(t, list, len(repos))
		for i, r := range list {
			mustEqual(t, wantRepo(repos[i], "p"), r)
		}
		b, err := s.GetBatch(ctx, "p", 0)
		must(t, err)
		checkEqual(t, wantBatch(batch, "p"), b)

		names := []string{"team/svc-000", "team/svc-149", "team/absent"}
		got, err := s.GetRepos(ctx, "p", names)
		must(t, err)
		checkEqual(t, map[string]checkpoint.Repo{
			"team/svc-000": wantRepo(repos[0], "p"),
			"team/svc-149": wantRepo(repos[149], "p"),
		}, got)
	})
}

func TestSaveProgressReplaces(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		r := sampleRepo("a/b", 1, 5)
		must(t, s.SaveProgress(ctx, "rp", []checkpoint.Repo{r}, nil))

		// A later save replaces the row: cleared fields stay cleared.
		done := checkpoint.Repo{Name: "a/b", Batch: 1, Status: checkpoint.StatusDone, TagsDeleted: 9, Attempts: 2, Updated: base.Add(time.Minute)}
		// The same name twice in one call: the last entry wins.
		stale := done
		stale.Status = checkpoint.StatusPending
		must(t, s.SaveProgress(ctx, "rp", []checkpoint.Repo{stale, done}, nil))
		got, err := s.GetRepos(ctx, "rp", []string{"a/b", "a/b"})
		must(t, err)
		checkEqual(t, map[string]checkpoint.Repo{"a/b": wantRepo(done, "rp")}, got)

		// Nothing to save is fine; the batch alone is fine.
		must(t, s.SaveProgress(ctx, "rp", nil, nil))
		must(t, s.SaveProgress(ctx, "rp", nil, &checkpoint.Batch{N: 1, Status: checkpoint.StatusRunning, Updated: base}))
		b, err := s.GetBatch(ctx, "rp", 1)
		must(t, err)
		checkEqual(t, checkpoint.StatusRunning, b.Status)
	})
}

// awkwardNames need escaping, hashing or both.
var awkwardNames = []string{
	"plain",
	"team-a/api",
	"deep/nested/path/x",
	`back\slash`,
	"hash#tag",
	"what?now",
	"per%cent%2F",
	"it's",
	"tilde~x",
	"pipe|bar",
	"space name",
	"ünïcødé/名前",
	"emoji/🐳",
	"ctl\x01\x1f\x7f\u0085x",
	"\uFFFE\uFFFF",
	strings.Repeat("ab/", 300),          // escaped form exceeds the key limit
	strings.Repeat("ab/", 300) + "tail", // same cut prefix, different hash
	strings.Repeat("名/", 400),
}

func TestAwkwardRepositoryNames(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		runID := "run/with#odd?id%" // run IDs are escaped too
		_, created, err := s.CreateRun(ctx, checkpoint.Run{ID: runID, Started: base}, []checkpoint.Batch{{N: 0, Repositories: awkwardNames}})
		must(t, err)
		mustTrue(t, created)
		b, err := s.GetBatch(ctx, runID, 0)
		must(t, err)
		checkEqual(t, awkwardNames, b.Repositories)

		var repos []checkpoint.Repo
		for i, n := range awkwardNames {
			repos = append(repos, sampleRepo(n, 0, i))
		}
		must(t, s.SaveProgress(ctx, runID, repos, nil))

		list, err := s.ListRepos(ctx, runID)
		must(t, err)
		sorted := slices.Clone(awkwardNames)
		slices.Sort(sorted)
		var listed []string
		for _, r := range list {
			listed = append(listed, r.Name)
		}
		checkEqual(t, sorted, listed)

		got, err := s.GetRepos(ctx, runID, awkwardNames)
		must(t, err)
		mustLen(t, got, len(awkwardNames))
		for i, n := range awkwardNames {
			checkEqual(t, wantRepo(repos[i], runID), got[n], "repository %q", n)
		}

		for i, n := range awkwardNames {
			at := base.Add(time.Duration(i) * time.Hour)
			must(t, s.SetLastPurge(ctx, n, at, runID))
		}
		for i, n := range awkwardNames {
			at, id, err := s.LastPurge(ctx, n)
			must(t, err)
			checkEqual(t, norm(base.Add(time.Duration(i)*time.Hour)), at, "repository %q", n)
			checkEqual(t, runID, id)
		}
	})
}

func TestLatestRuns(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		// Created out of order; "tie-a" and "tie-b" start at the same time.
		offsets := map[string]time.Duration{
			"r3": 3 * time.Hour, "r1": time.Hour, "r5": 5 * time.Hour, "tie-b": 4 * time.Hour,
			"tie-a": 4 * time.Hour, "r0": 0, "r2": 2*time.Hour + 50*time.Nanosecond,
		}
		for _, id := range slices.Sorted(maps.Keys(offsets)) {
			_, created, err := s.CreateRun(ctx, checkpoint.Run{ID: id, Started: base.Add(offsets[id])}, nil)
			must(t, err)
			mustTrue(t, created)
		}
		want := []string{"r5", "tie-a", "tie-b", "r3", "r2", "r1", "r0"}
		for _, limit := range []int{1, 3, 7, 50, 0} {
			runs, err := s.LatestRuns(ctx, limit)
			must(t, err)
			var ids []string
			for _, r := range runs {
				ids = append(ids, r.ID)
				checkEqual(t, norm(base.Add(offsets[r.ID])), r.Started)
			}
			n := limit
			if n <= 0 || n > len(want) {
				n = len(want)
			}
			checkEqual(t, want[:n], ids, "limit %d", limit)
		}
	})
}

func TestLastPurge(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		at, id, err := s.LastPurge(ctx, "never/purged")
		must(t, err)
		checkTrue(t, at.IsZero())
		checkLen(t, id, 0)

		must(t, s.SetLastPurge(ctx, "team/api", base, "run-1"))
		at, id, err = s.LastPurge(ctx, "team/api")
		must(t, err)
		checkEqual(t, norm(base), at)
		checkEqual(t, "run-1", id)

		later := base.Add(10 * time.Minute)
		must(t, s.SetLastPurge(ctx, "team/api", later, "run-2"))
		at, id, err = s.LastPurge(ctx, "team/api")
		must(t, err)
		checkEqual(t, norm(later), at)
		checkEqual(t, "run-2", id)

		// Zero means now.
		before := time.Now()
		must(t, s.SetLastPurge(ctx, "team/now", time.Time{}, "run-3"))
		at, _, err = s.LastPurge(ctx, "team/now")
		must(t, err)
		checkTrue(t, at.Sub(before).Abs() < time.Minute, "zero time means now, got %v", at)
	})
}

func TestRejections(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		list, err := s.ListRejections(ctx, 5)
		must(t, err)
		checkLen(t, list, 0)

		in := []checkpoint.Rejection{
			{MessageID: "m/2", Reason: "unknown shape", Excerpt: `{"x":2}`, At: base.Add(2 * time.Minute)},
			{MessageID: "m#0", Reason: "malformed JSON", Excerpt: `{`, At: base},
			{MessageID: "m?3", Reason: "widens policy", Excerpt: strings.Repeat("z", checkpoint.MaxExcerptLen*2), At: base.Add(3 * time.Minute)},
			{MessageID: "m'1", Reason: "names a registry", Excerpt: "\xff\xfe", At: base.Add(time.Minute)},
		}
		for _, r := range in {
			must(t, s.RecordRejection(ctx, r))
		}
		all, err := s.ListRejections(ctx, 0)
		must(t, err)
		var ids []string
		for _, r := range all {
			ids = append(ids, r.MessageID)
		}
		checkEqual(t, []string{"m?3", "m/2", "m'1", "m#0"}, ids)
		checkEqual(t, norm(base.Add(3*time.Minute)), all[0].At)
		checkTrue(t, len(all[0].Excerpt) <= checkpoint.MaxExcerptLen, "excerpt length %d", len(all[0].Excerpt))
		checkTrue(t, strings.HasPrefix(all[0].Excerpt, "zzzz"))
		checkEqual(t, "\uFFFD", all[2].Excerpt, "a run of invalid UTF-8 becomes one U+FFFD")

		two, err := s.ListRejections(ctx, 2)
		must(t, err)
		checkEqual(t, all[:2], two)
	})
}

func TestNotFound(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		_, err := s.GetRun(ctx, "nope")
		checkErrorIs(t, err, checkpoint.ErrNotFound)
		_, err = s.GetBatch(ctx, "nope", 0)
		checkErrorIs(t, err, checkpoint.ErrNotFound)
		checkErrorIs(t, s.MarkEnqueued(ctx, "nope"), checkpoint.ErrNotFound)
		batches, err := s.ListBatches(ctx, "nope")
		must(t, err)
		checkLen(t, batches, 0)
		repos, err := s.ListRepos(ctx, "nope")
		must(t, err)
		checkLen(t, repos, 0)
		got, err := s.GetRepos(ctx, "nope", []string{"a"})
		must(t, err)
		checkLen(t, got, 0)
		runs, err := s.LatestRuns(ctx, 3)
		must(t, err)
		checkLen(t, runs, 0)

		// Progress rows alone do not make a run.
		must(t, s.SaveProgress(ctx, "orphan", []checkpoint.Repo{{Name: "a"}}, nil))
		_, err = s.GetRun(ctx, "orphan")
		checkErrorIs(t, err, checkpoint.ErrNotFound)
		checkErrorIs(t, s.MarkEnqueued(ctx, "orphan"), checkpoint.ErrNotFound)
	})
}

func TestInvalidArguments(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		tooBig := strings.Repeat("c", checkpoint.MaxValueLen+1)
		cases := []struct {
			name string
			call func() error
			want error
		}{
			{"empty run ID", func() error { _, _, err := s.CreateRun(ctx, checkpoint.Run{}, nil); return err }, checkpoint.ErrInvalid},
			{"non-UTF-8 run ID", func() error { _, _, err := s.CreateRun(ctx, checkpoint.Run{ID: "a\xff"}, nil); return err }, checkpoint.ErrInvalid},
			{"start before 1601", func() error {
				_, _, err := s.CreateRun(ctx, checkpoint.Run{ID: "old", Started: time.Date(1500, 1, 1, 0, 0, 0, 0, time.UTC)}, nil)
				return err
			}, checkpoint.ErrInvalid},
			{"batch of another run", func() error {
				_, _, err := s.CreateRun(ctx, checkpoint.Run{ID: "x"}, []checkpoint.Batch{{RunID: "y"}})
				return err
			}, checkpoint.ErrInvalid},
			{"batch twice", func() error {
				_, _, err := s.CreateRun(ctx, checkpoint.Run{ID: "x"}, []checkpoint.Batch{{N: 1}, {N: 1}})
				return err
			}, checkpoint.ErrInvalid},
			{"negative batch", func() error {
				_, _, err := s.CreateRun(ctx, checkpoint.Run{ID: "x"}, []checkpoint.Batch{{N: -1}})
				return err
			}, checkpoint.ErrInvalid},
			{"empty repository name in batch", func() error {
				_, _, err := s.CreateRun(ctx, checkpoint.Run{ID: "x"}, []checkpoint.Batch{{Repositories: []string{""}}})
				return err
			}, checkpoint.ErrInvalid},
			{"empty repository name", func() error { return s.SaveProgress(ctx, "x", []checkpoint.Repo{{}}, nil) }, checkpoint.ErrInvalid},
			{"repository of another run", func() error {
				return s.SaveProgress(ctx, "x", []checkpoint.Repo{{RunID: "y", Name: "a"}}, nil)
			}, checkpoint.ErrInvalid},
			{"empty run ID in progress", func() error { return s.SaveProgress(ctx, "", nil, nil) }, checkpoint.ErrInvalid},
			{"cursor too large", func() error {
				return s.SaveProgress(ctx, "x", []checkpoint.Repo{{Name: "a", Cursor: tooBig}}, nil)
			}, checkpoint.ErrTooLarge},
			{"non-UTF-8 cursor", func() error {
				return s.SaveProgress(ctx, "x", []checkpoint.Repo{{Name: "a", Cursor: "\xff"}}, nil)
			}, checkpoint.ErrInvalid},
			{"empty name for debounce", func() error { return s.SetLastPurge(ctx, "", base, "r") }, checkpoint.ErrInvalid},
			{"empty run ID to read", func() error { _, err := s.GetRun(ctx, ""); return err }, checkpoint.ErrInvalid},
		}
		for _, c := range cases {
			err := c.call()
			checkErrorIs(t, err, c.want, c.name)
		}
		// Nothing of the refused calls was written.
		repos, err := s.ListRepos(ctx, "x")
		must(t, err)
		checkLen(t, repos, 0)
		_, err = s.GetRun(ctx, "x")
		checkErrorIs(t, err, checkpoint.ErrNotFound)
	})
}

func TestLongTextsAreTruncated(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		long := strings.Repeat("é", checkpoint.MaxTextLen) // 2 bytes per rune
		r := checkpoint.Repo{Name: "a", Error: long, Reason: "bad \xff byte"}
		must(t, s.SaveProgress(ctx, "long", []checkpoint.Repo{r}, nil))
		got, err := s.GetRepos(ctx, "long", []string{"a"})
		must(t, err)
		e := got["a"].Error
		checkTrue(t, len(e) <= checkpoint.MaxTextLen, "error length %d", len(e))
		checkTrue(t, strings.HasPrefix(e, "éé"))
		checkTrue(t, strings.Contains(e, "truncated"), "marked truncated")
		checkEqual(t, "bad \uFFFD byte", got["a"].Reason)
	})
}

func TestCanceledContext(t *testing.T) {
	forEachStore(t, func(t *testing.T, _ context.Context, s checkpoint.Store) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		calls := map[string]func() error{
			"CreateRun": func() error {
				_, _, err := s.CreateRun(ctx, checkpoint.Run{ID: "c"}, []checkpoint.Batch{{N: 0}})
				return err
			},
			"MarkEnqueued":    func() error { return s.MarkEnqueued(ctx, "c") },
			"GetRun":          func() error { _, err := s.GetRun(ctx, "c"); return err },
			"LatestRuns":      func() error { _, err := s.LatestRuns(ctx, 1); return err },
			"GetBatch":        func() error { _, err := s.GetBatch(ctx, "c", 0); return err },
			"ListBatches":     func() error { _, err := s.ListBatches(ctx, "c"); return err },
			"SaveProgress":    func() error { return s.SaveProgress(ctx, "c", []checkpoint.Repo{{Name: "a"}}, nil) },
			"GetRepos":        func() error { _, err := s.GetRepos(ctx, "c", []string{"a"}); return err },
			"ListRepos":       func() error { _, err := s.ListRepos(ctx, "c"); return err },
			"LastPurge":       func() error { _, _, err := s.LastPurge(ctx, "a"); return err },
			"SetLastPurge":    func() error { return s.SetLastPurge(ctx, "a", base, "c") },
			"RecordRejection": func() error { return s.RecordRejection(ctx, checkpoint.Rejection{MessageID: "m"}) },
			"ListRejections":  func() error { _, err := s.ListRejections(ctx, 1); return err },
		}
		for name, call := range calls {
			err := call()
			checkErrorIs(t, err, context.Canceled, name)
		}
		// And nothing was written.
		_, err := s.GetRun(t.Context(), "c")
		checkErrorIs(t, err, checkpoint.ErrNotFound)
	})
}

func TestConcurrentProgress(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		const workers, each = 8, 5
		var wg sync.WaitGroup
		errs := make([]error, workers)
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					r := sampleRepo(fmt.Sprintf("w%d/r%d", w, i), w, i)
					b := checkpoint.Batch{N: w, Status: checkpoint.StatusRunning, Updated: base}
					if err := s.SaveProgress(ctx, "conc", []checkpoint.Repo{r}, &b); err != nil {
						errs[w] = err
						return
					}
					if _, err := s.GetRepos(ctx, "conc", []string{r.Name}); err != nil {
						errs[w] = err
						return
					}
				}
			})
		}
		wg.Wait()
		must(t, errors.Join(errs...))
		repos, err := s.ListRepos(ctx, "conc")
		must(t, err)
		checkLen(t, repos, workers*each)
		batches, err := s.ListBatches(ctx, "conc")
		must(t, err)
		checkLen(t, batches, workers)
	})
}

func TestReturnedValuesAreCopies(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		names := []string{"a", "b"}
		_, _, err := s.CreateRun(ctx, checkpoint.Run{ID: "copy", Started: base}, []checkpoint.Batch{{N: 0, Repositories: names}})
		must(t, err)
		names[0] = "mutated"
		kept := map[string]int64{"keep": 1}
		must(t, s.SaveProgress(ctx, "copy", []checkpoint.Repo{{Name: "a", Kept: kept}}, nil))
		kept["keep"] = 99

		b, err := s.GetBatch(ctx, "copy", 0)
		must(t, err)
		checkEqual(t, []string{"a", "b"}, b.Repositories)
		b.Repositories[1] = "changed"
		got, err := s.GetRepos(ctx, "copy", []string{"a"})
		must(t, err)
		checkEqual(t, map[string]int64{"keep": 1}, got["a"].Kept)
		got["a"].Kept["keep"] = 7

		b, err = s.GetBatch(ctx, "copy", 0)
		must(t, err)
		checkEqual(t, []string{"a", "b"}, b.Repositories)
		list, err := s.ListRepos(ctx, "copy")
		must(t, err)
		checkEqual(t, map[string]int64{"keep": 1}, list[0].Kept)
	})
}

// TestUpdateRepoMerges: concurrent updates of one row (two deliveries of a
// message purging the same repository) never lose each other's counts, and
// the row keeps what other writers put there.
func TestUpdateRepoMerges(t *testing.T) {
	forEachStore(t, func(t *testing.T, ctx context.Context, s checkpoint.Store) {
		const writers, rounds = 6, 5
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for r := range rounds {
					_, err := s.UpdateRepo(ctx, "merge", "team-a/app", func(row *checkpoint.Repo) error {
						row.TagsDeleted++
						row.BytesFreed += 10
						if row.Live == nil {
							row.Live = map[string]time.Time{}
						}
						row.Live[fmt.Sprintf("w%d", w)] = base.Add(time.Duration(r) * time.Second)
						return nil
					})
					assert.NoError(t, err)
				}
			})
		}
		wg.Wait()
		rows, err := s.GetRepos(ctx, "merge", []string{"team-a/app"})
		require.NoError(t, err)
		got := rows["team-a/app"]
		assert.EqualValues(t, writers*rounds, got.TagsDeleted, "no update lost")
		assert.EqualValues(t, writers*rounds*10, got.BytesFreed)
		assert.Len(t, got.Live, writers)
		assert.Equal(t, "merge", got.RunID)

		// fn's error aborts the update; the row stays.
		errStop := errors.New("stop")
		_, err = s.UpdateRepo(ctx, "merge", "team-a/app", func(row *checkpoint.Repo) error {
			row.TagsDeleted = -1
			return errStop
		})
		require.ErrorIs(t, err, errStop)
		rows, err = s.GetRepos(ctx, "merge", []string{"team-a/app"})
		require.NoError(t, err)
		assert.EqualValues(t, writers*rounds, rows["team-a/app"].TagsDeleted)

		// Prune: a stale attempt is dropped and makes the counts a lower bound.
		row := rows["team-a/app"]
		assert.False(t, row.CountsAtLeast(base.Add(5*time.Second), time.Minute))
		assert.True(t, row.Prune(base.Add(time.Hour), time.Minute))
		assert.True(t, row.AtLeast)
		assert.Empty(t, row.Live)
	})
}

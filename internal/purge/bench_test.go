package purge_test

// Issue 4 benchmarks. `make bench` runs them once each (-benchtime 1x) and
// prints every figure through b.ReportMetric. Each benchmark measures one
// run, whatever b.N is: a run needs a freshly seeded registry.
//
// The planning peak heap of a 1,000,000-tag repository is measured by
// internal/policy BenchmarkPlanHugeRepository and is not repeated here.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/acremu"
	"github.com/acrpurge/acrpurge/internal/acremu/emutest"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/purge"
)

const (
	benchRepos       = 200
	benchOldTags     = 10 // deleted per repository
	benchKeptTags    = 2  // too new: kept
	benchLatency     = 50 * time.Millisecond
	benchBatchSize   = 10 // ABAC_BATCH_SIZE: repositories per message and per token
	benchInFlight    = 4  // batches in flight, like concurrent Worker invocations
	benchConcurrency = 8  // PURGE_CONCURRENCY of each invocation
	benchRepoPar     = 4  // repositories in parallel within one batch, as the Worker does

	// The sequential baseline needs ~0.55 s per repository at 50 ms per
	// request (one listing and ten deletes); all 200 would take ~2 minutes
	// on their own. It therefore runs over the first baselineRepos
	// repositories of its (identical, full) registry: a strictly sequential
	// client's rate does not depend on how many repositories it goes
	// through. ACRPURGE_BENCH_FULL_BASELINE=1 runs it over all 200.
	baselineRepos = 20

	benchPolicy = `{"rules":[{"name":"old","filters":["bench/.*:.*"],"ago":"30d"}]}`
)

// seedBench fills repos repositories with old tags (each on its own image)
// and a few fresh ones, and returns the repository names.
func seedBench(reg *acremu.Registry, repos, old, fresh int) []string {
	now := reg.Now()
	names := make([]string, repos)
	for r := range repos {
		name := fmt.Sprintf("bench/r%03d", r)
		names[r] = name
		for i := range old {
			reg.Put(name, acremu.Artifact{Tags: []string{fmt.Sprintf("old-%02d", i)}, Seed: fmt.Sprint("old", i),
				Created: now.Add(-60*day - time.Duration(i)*time.Hour)})
		}
		for i := range fresh {
			reg.Put(name, acremu.Artifact{Tags: []string{fmt.Sprintf("new-%02d", i)}, Seed: fmt.Sprint("new", i),
				Created: now.Add(-time.Hour - time.Duration(i)*time.Minute)})
		}
	}
	return names
}

func benchPolicyOrFail(b *testing.B) *policy.Policy {
	b.Helper()
	p, err := policy.Parse([]byte(benchPolicy))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// purgeLikeWorkers purges repos the way the deployed app does: batches of
// benchBatchSize repositories, each with one token source (one token) and
// one executor (Concurrency benchConcurrency), benchInFlight batches at a
// time, benchRepoPar repositories at a time within a batch. It returns the
// deletes done and the number of batches.
func purgeLikeWorkers(ctx context.Context, env *emutest.Env, repos []string, pol *policy.Policy, deadline time.Time) (int64, int, error) {
	var deleted atomic.Int64
	var g errgroup.Group
	g.SetLimit(benchInFlight)
	batches := 0
	for batch := range slices.Chunk(repos, benchBatchSize) {
		batches++
		g.Go(func() error {
			ex := purge.New(env.Scoped(batch...), purge.Options{Concurrency: benchConcurrency, Now: env.Registry.Now})
			var rg errgroup.Group
			rg.SetLimit(benchRepoPar)
			for _, repo := range batch {
				rg.Go(func() error {
					if !deadline.IsZero() && !env.Registry.Now().Before(deadline) {
						return nil
					}
					res := ex.Purge(ctx, purge.Job{Repository: repo, Policy: pol, Deadline: deadline})
					deleted.Add(res.TagsDeleted + res.ManifestsDeleted)
					if res.Status != purge.StatusDone && res.Status != purge.StatusPartial {
						return fmt.Errorf("%s: %s: %s", repo, res.Status, res.Reason)
					}
					return nil
				})
			}
			return rg.Wait()
		})
	}
	err := g.Wait()
	return deleted.Load(), batches, err
}

// remintEveryCall is a TokenSource that mints a fresh token for every
// request, as the tool acrpurge replaces does.
type remintEveryCall struct {
	src  acr.TokenSource
	last *acr.Token
}

func (r *remintEveryCall) Token(ctx context.Context) (*acr.Token, error) {
	if r.last != nil {
		r.src.Invalidate(r.last)
	}
	t, err := r.src.Token(ctx)
	r.last = t
	return t, err
}

func (r *remintEveryCall) Invalidate(t *acr.Token) { r.src.Invalidate(t) }

// purgeSequentially is the baseline: one request at a time; per repository
// a token for it, the tag listing, then the old tags deleted one by one with
// a token minted before each delete. The same planner decides what is old.
func purgeSequentially(ctx context.Context, env *emutest.Env, repos []string, pol *policy.Policy) (int64, error) {
	var deleted int64
	for _, repo := range repos {
		client := env.Client.WithTokens(&remintEveryCall{src: env.Broker.Source(emutest.PurgeScopes(repo)...)})
		pl, err := pol.Planner(repo, env.Registry.Now())
		if err != nil {
			return deleted, err
		}
		var old []string
		err = client.Tags(ctx, repo, func(page []acr.Tag) error {
			return pl.TagPage(page, func(d policy.Decision) error {
				if d.Delete {
					old = append(old, d.Tag)
				}
				return nil
			})
		})
		if err != nil {
			return deleted, err
		}
		for _, tag := range old {
			if err := client.DeleteTag(ctx, repo, tag); err != nil {
				return deleted, err
			}
			deleted++
		}
	}
	return deleted, nil
}

// BenchmarkThroughput: deletes/s over 200 repositories × 10 old tags (plus
// 2 kept each) with 50 ms emulator latency on every data-plane request,
// acrpurge's batched, concurrent path against a strictly sequential
// one-delete-at-a-time client on a fresh identical emulator, in the same
// run. Also reports the access tokens minted per batch (goal: 1).
func BenchmarkThroughput(b *testing.B) {
	ctx := b.Context()
	pol := benchPolicyOrFail(b)
	b.ReportMetric(0, "ns/op")

	// acrpurge: a delete budget far above what the run can reach, so the
	// limiter is not what is measured.
	lim := acr.NewLimiter(acr.LimiterOptions{DeletesPerMinute: 10_000_000})
	env := emutest.Start(b, emutest.Options{Limiter: lim})
	repos := seedBench(env.Registry, benchRepos, benchOldTags, benchKeptTags)
	env.Registry.SetFaults(acremu.Faults{Latency: benchLatency})
	env.Registry.ResetStats()
	start := time.Now()
	deleted, batches, err := purgeLikeWorkers(ctx, env, repos, pol, time.Time{})
	elapsed := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if want := int64(benchRepos * benchOldTags); deleted != want {
		b.Fatalf("acrpurge deleted %d, want %d", deleted, want)
	}
	tokens := env.Registry.Stats().AccessTokens
	rate := float64(deleted) / elapsed.Seconds()

	// Baseline on a fresh, identical emulator.
	base := emutest.Start(b, emutest.Options{})
	baseRepos := seedBench(base.Registry, benchRepos, benchOldTags, benchKeptTags)
	if os.Getenv("ACRPURGE_BENCH_FULL_BASELINE") != "1" {
		baseRepos = baseRepos[:baselineRepos]
	}
	base.Registry.SetFaults(acremu.Faults{Latency: benchLatency})
	base.Registry.ResetStats()
	start = time.Now()
	baseDeleted, err := purgeSequentially(ctx, base, baseRepos, pol)
	baseElapsed := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if want := int64(len(baseRepos) * benchOldTags); baseDeleted != want {
		b.Fatalf("baseline deleted %d, want %d", baseDeleted, want)
	}
	baseRate := float64(baseDeleted) / baseElapsed.Seconds()

	b.ReportMetric(rate, "deletes/s")
	b.ReportMetric(elapsed.Seconds(), "acrpurge-s")
	b.ReportMetric(baseRate, "baseline-deletes/s")
	b.ReportMetric(float64(len(baseRepos)), "baseline-repos")
	b.ReportMetric(rate/baseRate, "x-faster")
	b.ReportMetric(float64(tokens)/float64(batches), "tokens/batch")
	b.ReportMetric(float64(base.Registry.Stats().AccessTokens)/float64(len(baseRepos)), "baseline-tokens/repo")
}

// BenchmarkDeleteBudget: deletes per minute held under a budget of
// budgetPerMinute while the registry's own delete limit is far above it.
// The steady-state rate counts the deletes the registry recorded between
// budgetWarmup and budgetRun after the start: the first budgetWarmup are
// excluded on purpose, because the limiter's token bucket starts full and
// lets its burst (10 deletes) through at once.
func BenchmarkDeleteBudget(b *testing.B) {
	const (
		budgetPerMinute = 1200
		budgetRun       = 30 * time.Second
		budgetWarmup    = 5 * time.Second
		registryLimit   = 5000 // deletes per minute per identity, well above the budget
		repos, oldTags  = 80, 10
	)
	ctx := b.Context()
	pol := benchPolicyOrFail(b)
	b.ReportMetric(0, "ns/op")

	lim := acr.NewLimiter(acr.LimiterOptions{DeletesPerMinute: budgetPerMinute})
	env := emutest.Start(b, emutest.Options{Limiter: lim})
	reg := env.Registry
	names := seedBench(reg, repos, oldTags, 0)
	if capacity := repos * oldTags; float64(capacity) < 1.2*budgetPerMinute*budgetRun.Minutes() {
		b.Fatalf("seed %d deletes: not enough to keep the budget busy for %s", capacity, budgetRun)
	}
	reg.SetLimits(acremu.Limits{Delete: registryLimit})
	reg.SetFaults(acremu.Faults{Latency: benchLatency})
	reg.ResetStats()
	reg.ResetDeletes()

	start := reg.Now()
	if _, _, err := purgeLikeWorkers(ctx, env, names, pol, start.Add(budgetRun)); err != nil {
		b.Fatal(err)
	}
	from, to := start.Add(budgetWarmup), start.Add(budgetRun)
	var steady, whole, total int
	for _, rec := range reg.Deletes() {
		total++
		if rec.At.Before(to) {
			whole++ // burst included, for comparison
			if !rec.At.Before(from) {
				steady++
			}
		}
	}
	perMinute := float64(steady) / to.Sub(from).Minutes()
	b.ReportMetric(perMinute, "deletes/min")
	b.ReportMetric(100*(perMinute-budgetPerMinute)/budgetPerMinute, "budget-deviation-%")
	b.ReportMetric(float64(reg.Stats().Throttled), "429s")
	b.ReportMetric(budgetPerMinute, "budget/min")
	b.ReportMetric(budgetWarmup.Seconds(), "warmup-excluded-s")
	b.ReportMetric(float64(whole)/budgetRun.Minutes(), "deletes/min-incl-burst")
	// Deletes already waiting on the limiter at the deadline still go
	// through after it, so total exceeds whole.
	b.ReportMetric(float64(total), "deletes-total")
}

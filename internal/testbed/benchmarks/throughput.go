package benchmarks

import (
	"context"
	"fmt"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/budget"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/localstack"
)

// ThroughputOptions configure Throughput. Zero fields take the defaults of
// DefaultThroughput.
type ThroughputOptions struct {
	// Repositories (bench/rNNNN) each hold OldTags tags older than the
	// policy's 30 days, deleted, and KeptTags fresh ones, kept.
	Repositories, OldTags, KeptTags int
	// Latency is added to every data-plane request (not to /oauth2);
	// negative means none.
	Latency time.Duration
	// ErrorRate is the fraction of data-plane requests the registry
	// answers 500 or 503 (deterministic per FaultSeed).
	ErrorRate float64
	FaultSeed int64
	// Limits are the registry's throttling windows (zero: none).
	Limits acremu.Limits
	// DeletesPerMinute is acrpurge's PURGE_DELETES_PER_MINUTE; the default
	// is far above what a run reaches, so that the limiter is not what is
	// measured.
	DeletesPerMinute int
	// BatchSize (ABAC_BATCH_SIZE), InFlight (concurrent Worker
	// invocations, host.json maxConcurrentCalls) and Concurrency
	// (PURGE_CONCURRENCY) shape acrpurge's run.
	BatchSize, InFlight, Concurrency int
	// BaselineRepositories is how many of the repositories (the first
	// ones) the sequential baseline goes through, on its own identical
	// registry; 0 or more than Repositories means all of them.
	BaselineRepositories int
	// SkipBaseline runs acrpurge only.
	SkipBaseline bool
	// RepoParallelism is PURGE_REPOSITORY_PARALLELISM (default the app's).
	RepoParallelism int
}

// DefaultThroughput is the throughput scenario of issue 4: 200 repositories
// × 10 old tags (plus 2 kept) with 50 ms latency on every data-plane
// request; the app's batch size and concurrency, 4 batches in flight. The
// sequential baseline, at ~0.55 s per repository, goes through the first
// 20 only (it would take about 2 minutes over all 200).
func DefaultThroughput() ThroughputOptions {
	return ThroughputOptions{
		Repositories: 200, OldTags: 10, KeptTags: 2, Latency: 50 * time.Millisecond,
		DeletesPerMinute: budget.MaxPerMinute,
		BatchSize:        config.DefaultBatchSize, InFlight: localstack.DefaultMaxConcurrentCalls,
		Concurrency: config.DefaultConcurrency, BaselineRepositories: 20,
	}
}

// ErrorsScenario is DefaultThroughput with 5 % of data-plane requests
// answered 500 or 503, for acrpurge and the baseline alike.
func ErrorsScenario() ThroughputOptions {
	o := DefaultThroughput()
	o.ErrorRate, o.FaultSeed = 0.05, 5
	return o
}

// Storm429Limit is the registry's write-operations limit in StormScenario,
// for the whole registry, per Storm429Window.
const (
	Storm429Limit  = 15
	Storm429Window = time.Second
)

// StormScenario is a 429 storm: 40 repositories × 10 old tags, 50 ms
// latency, and a registry that admits Storm429Limit write operations
// (deletes) per Storm429Window (15/s) for the whole registry, while
// acrpurge's delete budget is set to 4 times that (3,600/min), as when
// PURGE_DELETES_PER_MINUTE is set above the registry's real limit.
func StormScenario() ThroughputOptions {
	o := DefaultThroughput()
	o.Repositories, o.BaselineRepositories = 40, 0
	o.Limits = acremu.Limits{RegistryWrites: Storm429Limit, RegistryWindow: Storm429Window}
	o.DeletesPerMinute = 4 * Storm429Limit * int(time.Minute/Storm429Window)
	return o
}

func (o *ThroughputOptions) defaults() {
	d := DefaultThroughput()
	if o.Repositories < 1 {
		o.Repositories = d.Repositories
	}
	if o.OldTags < 1 {
		o.OldTags = d.OldTags
	}
	if o.KeptTags < 0 {
		o.KeptTags = 0
	}
	if o.Latency == 0 {
		o.Latency = d.Latency
	}
	if o.Latency < 0 {
		o.Latency = 0
	}
	if o.DeletesPerMinute < 1 {
		o.DeletesPerMinute = d.DeletesPerMinute
	}
	if o.BatchSize < 1 {
		o.BatchSize = d.BatchSize
	}
	if o.InFlight < 1 {
		o.InFlight = d.InFlight
	}
	if o.Concurrency < 1 {
		o.Concurrency = d.Concurrency
	}
	if o.BaselineRepositories < 1 || o.BaselineRepositories > o.Repositories {
		o.BaselineRepositories = o.Repositories
	}
	if o.RepoParallelism < 1 {
		o.RepoParallelism = config.DefaultRepoParallelism
	}
}

// ThroughputFigures are the results of Throughput.
type ThroughputFigures struct {
	Options ThroughputOptions `json:"options"`
	// Repositories purged in Batches messages.
	Repositories int `json:"repositories"`
	Batches      int `json:"batches"`
	// Deleted by acrpurge; DeleteErrors failed after the client's retries
	// and were left in place.
	Deleted      int64         `json:"deleted"`
	DeleteErrors int64         `json:"deleteErrors"`
	Elapsed      time.Duration `json:"elapsedNs"`
	// DeletesPerSecond is Deleted/Elapsed.
	DeletesPerSecond float64 `json:"deletesPerSecond"`
	// Tokens is the access tokens the registry issued to acrpurge;
	// TokensPerBatch = Tokens/Batches (goal 1: one per message).
	Tokens         int     `json:"tokens"`
	TokensPerBatch float64 `json:"tokensPerBatch"`
	// Throttled and Faults are the 429s and injected faults the registry
	// answered acrpurge.
	Throttled int `json:"throttled"`
	Faults    int `json:"faults"`
	// Requests counts every request acrpurge made to the registry, token
	// requests included; RequestsPerDelete = Requests/Deleted.
	Requests          int     `json:"requests"`
	RequestsPerDelete float64 `json:"requestsPerDelete"`
	// SlotUsePercent is DeletesPerSecond as a percentage of what the
	// deletes allowed in flight (InFlight × Concurrency) could do if each
	// took exactly Latency: 100 means every slot always busy deleting.
	SlotUsePercent float64 `json:"slotUsePercent"`
	// SteadyDeletesPerSecond is the rate between the first and the last
	// delete the registry recorded (listing before the first and the tail
	// after the last left out).
	SteadyDeletesPerSecond float64 `json:"steadyDeletesPerSecond"`
	// Budget is the delete budget's own counters.
	Budget budget.Stats `json:"budget"`
	// Baseline is the sequential client on an identical registry.
	Baseline SequentialFigures `json:"baseline"`
	// Speedup is DeletesPerSecond / Baseline.DeletesPerSecond.
	Speedup float64 `json:"speedup"`
}

// Throughput seeds a registry, purges it the way the deployed app does
// (batches, one token each, bounded concurrency; see workerShape) and
// measures deletes per second, then runs the Sequential baseline on a
// fresh, identically seeded registry under the same latency, faults and
// limits. Every old tag must be deleted (or counted as a failed delete).
func Throughput(ctx context.Context, o ThroughputOptions) (ThroughputFigures, error) {
	o.defaults()
	f := ThroughputFigures{Options: o, Repositories: o.Repositories}
	pol, err := parseOldTagsPolicy()
	if err != nil {
		return f, err
	}
	faults := acremu.Faults{Latency: o.Latency, ErrorRate: o.ErrorRate, Seed: o.FaultSeed}

	deletes, err := budget.NewLocal(budget.Options{PerMinute: o.DeletesPerMinute})
	if err != nil {
		return f, fmt.Errorf("throughput: %w", err)
	}
	lim := acr.NewLimiter(acr.LimiterOptions{Deletes: deletes})
	e, err := startEnv(envOptions{limiter: lim})
	if err != nil {
		return f, err
	}
	defer e.Close()
	repos := seedOldTags(e.reg, o.Repositories, o.OldTags, o.KeptTags)
	e.reg.SetFaults(faults)
	e.reg.SetLimits(o.Limits)
	e.reg.ResetStats()
	e.reg.ResetDeletes()
	start := time.Now()
	tot, err := purgeLikeWorkers(ctx, e, workerShape{o.BatchSize, o.InFlight, o.Concurrency, o.RepoParallelism}, repos, pol, time.Time{})
	f.Elapsed = time.Since(start)
	if err != nil {
		return f, fmt.Errorf("throughput: acrpurge: %w", err)
	}
	if want := int64(o.Repositories * o.OldTags); tot.deleted+tot.deleteErrors != want {
		return f, fmt.Errorf("throughput: acrpurge deleted %d and failed %d, want %d in all", tot.deleted, tot.deleteErrors, want)
	}
	st := e.reg.Stats()
	f.Batches, f.Deleted, f.DeleteErrors = tot.batches, tot.deleted, tot.deleteErrors
	f.DeletesPerSecond = perSecond(f.Deleted, f.Elapsed)
	f.Tokens, f.Throttled, f.Faults = st.AccessTokens, st.Throttled, st.Faults
	f.TokensPerBatch = float64(f.Tokens) / float64(f.Batches)
	for _, n := range st.Requests {
		f.Requests += n
	}
	if f.Deleted > 0 {
		f.RequestsPerDelete = float64(f.Requests) / float64(f.Deleted)
	}
	if o.Latency > 0 {
		f.SlotUsePercent = 100 * f.DeletesPerSecond / (float64(o.InFlight*o.Concurrency) / o.Latency.Seconds())
	}
	f.SteadyDeletesPerSecond = steadyRate(e.reg.Deletes())
	f.Budget = deletes.Stats()
	if o.SkipBaseline {
		return f, nil
	}

	base, err := startEnv(envOptions{})
	if err != nil {
		return f, err
	}
	defer base.Close()
	baseRepos := seedOldTags(base.reg, o.Repositories, o.OldTags, o.KeptTags)[:o.BaselineRepositories]
	base.reg.SetFaults(faults)
	base.reg.SetLimits(o.Limits)
	f.Baseline, err = Sequential(ctx, SequentialOptions{
		Client: base.client, Broker: base.broker, Registry: base.reg,
		Repositories: baseRepos, Policy: pol, Now: base.reg.Now(),
	})
	if err != nil {
		return f, fmt.Errorf("throughput: %w", err)
	}
	f.Baseline.Sample = o.BaselineRepositories < o.Repositories
	if want := int64(len(baseRepos) * o.OldTags); f.Baseline.Deleted()+f.Baseline.Failed != want {
		return f, fmt.Errorf("throughput: the baseline deleted %d and failed %d, want %d in all", f.Baseline.Deleted(), f.Baseline.Failed, want)
	}
	if f.Baseline.DeletesPerSecond > 0 {
		f.Speedup = f.DeletesPerSecond / f.Baseline.DeletesPerSecond
	}
	return f, nil
}

// steadyRate is the deletes per second between the first and the last of
// recs (registry clock), 0 with fewer than two.
func steadyRate(recs []acremu.DeleteRecord) float64 {
	if len(recs) < 2 {
		return 0
	}
	first, last := recs[0].At, recs[0].At
	for _, r := range recs {
		if r.At.Before(first) {
			first = r.At
		}
		if r.At.After(last) {
			last = r.At
		}
	}
	if d := last.Sub(first).Seconds(); d > 0 {
		return float64(len(recs)-1) / d
	}
	return 0
}

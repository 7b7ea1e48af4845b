package benchmarks

import (
	"context"
	"fmt"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/app"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/localstack"
)

// LocalStackOptions configure LocalStack.
type LocalStackOptions struct {
	// Repositories is the size of the demo registry (default 2,000).
	Repositories int
	// BatchSize is ABAC_BATCH_SIZE (default config.DefaultBatchSize).
	BatchSize int
	// BaselineRepositories is how many of the repositories the policy
	// covers the sequential baseline goes through, spread evenly over the
	// catalog; 0 or more than there are means all of them. With a sample,
	// its wall time is extrapolated.
	BaselineRepositories int
}

// DefaultLocalStack is the local stack scenario: the nightly purge of a
// 2,000-repository demo registry in batches of 10, and the sequential
// baseline over all of it.
func DefaultLocalStack() LocalStackOptions {
	return LocalStackOptions{Repositories: 2000, BatchSize: DefaultThroughput().BatchSize}
}

// LocalStackFigures are the results of LocalStack.
type LocalStackFigures struct {
	Options LocalStackOptions `json:"options"`
	// Repositories in the registry; Purged the ones the run purged
	// (covered by the policy and permitted), Forbidden the covered ones
	// the identity may not touch.
	Repositories int `json:"repositories"`
	Purged       int `json:"purged"`
	Forbidden    int `json:"forbidden"`
	// Messages is the Worker messages handled, Deliveries the Worker
	// invocations (more when a message is delivered again).
	Messages   int `json:"messages"`
	Deliveries int `json:"deliveries"`
	// Tokens is every access token the registry issued; WorkerTokens
	// leaves out the Scheduler's catalog token(s) (one per Scheduler
	// invocation), and TokensPerMessage = WorkerTokens/Messages (goal 1).
	Tokens           int     `json:"tokens"`
	WorkerTokens     int     `json:"workerTokens"`
	TokensPerMessage float64 `json:"tokensPerMessage"`
	TagsDeleted      int64   `json:"tagsDeleted"`
	ManifestsDeleted int64   `json:"manifestsDeleted"`
	// Setup seeds and wires the stack; Purge is from the timer firing to
	// the queue drained (fan-out, every message, checkpoints).
	Setup time.Duration `json:"setupNs"`
	Purge time.Duration `json:"purgeNs"`
	// DeletesPerSecond is the deletions over Purge.
	DeletesPerSecond float64 `json:"deletesPerSecond"`
	// Baseline is the sequential client over an identical registry: its
	// catalog listing (CatalogElapsed) then Sequential over the covered
	// repositories. BaselinePurge is CatalogElapsed plus its Elapsed,
	// scaled to every covered repository when it went through a sample.
	Baseline       SequentialFigures `json:"baseline"`
	CatalogElapsed time.Duration     `json:"baselineCatalogNs"`
	BaselinePurge  time.Duration     `json:"baselinePurgeNs"`
	// Speedup is BaselinePurge / Purge.
	Speedup float64 `json:"speedup"`
}

// Deleted is the tags and manifests the stack deleted.
func (f LocalStackFigures) Deleted() int64 { return f.TagsDeleted + f.ManifestsDeleted }

// LocalStack runs the nightly purge of the demo registry through the whole
// local stack (localstack.RunStack: timer, Scheduler, in-process queue, the
// custom-handler protocol, Worker, checkpoints in memory, emulator in ABAC
// mode) and checks that it deleted exactly what the demo seed expects, then
// runs the Sequential baseline over an identically seeded registry and
// checks the same of it. The emulator adds no latency here: the figures are
// the stack's own cost on this machine.
func LocalStack(ctx context.Context, o LocalStackOptions) (LocalStackFigures, error) {
	d := DefaultLocalStack()
	if o.Repositories < 1 {
		o.Repositories = d.Repositories
	}
	if o.BatchSize < 1 {
		o.BatchSize = d.BatchSize
	}
	f := LocalStackFigures{Options: o, Repositories: o.Repositories}
	res, err := localstack.RunStack(ctx, localstack.Options{Repositories: o.Repositories, BatchSize: o.BatchSize})
	if err != nil {
		return f, fmt.Errorf("local stack: %w", err)
	}
	if bad := res.Incomplete(); len(bad) > 0 {
		return f, fmt.Errorf("local stack: incomplete: %v", bad)
	}
	if len(res.Runs) != 1 {
		return f, fmt.Errorf("local stack: %d runs, want 1", len(res.Runs))
	}
	var wantTags, wantManifests int64
	for _, r := range res.Demo.Repos {
		if r.Purged() {
			t, m, _ := r.Deleted()
			wantTags += t
			wantManifests += m
		}
	}
	t := res.Runs[0].Totals
	if t.TagsDeleted != wantTags || t.ManifestsDeleted != wantManifests {
		return f, fmt.Errorf("local stack: deleted %d tags and %d manifests, the seed expects %d and %d",
			t.TagsDeleted, t.ManifestsDeleted, wantTags, wantManifests)
	}
	f.TagsDeleted, f.ManifestsDeleted = t.TagsDeleted, t.ManifestsDeleted
	f.Purged, f.Forbidden = t.Done, t.Forbidden
	messages := map[string]bool{}
	schedulers := 0
	for _, v := range res.Invocations {
		switch v.Function {
		case app.FunctionWorker:
			f.Deliveries++
			messages[v.MessageID] = true
		case app.FunctionScheduler:
			schedulers++
		}
	}
	f.Messages = len(messages)
	f.Tokens = res.Emulator.Stats().AccessTokens
	f.WorkerTokens = f.Tokens - schedulers
	if f.Messages > 0 {
		f.TokensPerMessage = float64(f.WorkerTokens) / float64(f.Messages)
	}
	f.Setup, f.Purge = res.Timings.Setup, res.Timings.Triggers
	f.DeletesPerSecond = perSecond(f.Deleted(), f.Purge)

	if err := localStackBaseline(ctx, o, res.Demo, &f); err != nil {
		return f, err
	}
	if f.Purge > 0 {
		f.Speedup = f.BaselinePurge.Seconds() / f.Purge.Seconds()
	}
	return f, nil
}

// localStackBaseline runs the sequential baseline over a registry seeded
// as demo was, and checks what it deleted against the seed.
func localStackBaseline(ctx context.Context, o LocalStackOptions, demo *localstack.Demo, f *LocalStackFigures) error {
	id := localstack.DemoIdentity()
	e, err := startEnv(envOptions{registry: acremu.Options{ABAC: true}, identity: &id})
	if err != nil {
		return err
	}
	defer e.Close()
	e.reg.SetNow(demo.Now)
	localstack.Seed(e.reg, demo.Now, o.Repositories)
	pol, err := localStackPolicy()
	if err != nil {
		return err
	}

	start := time.Now()
	var all []string
	err = e.client.WithTokens(e.broker.Source(acr.CatalogScope())).Catalog(ctx, func(page []string) error {
		all = append(all, page...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("local stack baseline: catalog: %w", err)
	}
	covered, err := pol.Filter(all)
	if err != nil {
		return fmt.Errorf("local stack baseline: %w", err)
	}
	f.CatalogElapsed = time.Since(start)
	repos := covered
	if n := o.BaselineRepositories; n > 0 && n < len(covered) {
		// Evenly spread: the catalog is sorted, so its first repositories
		// would all be of the same team and kinds.
		repos = make([]string, n)
		for i := range n {
			repos[i] = covered[i*len(covered)/n]
		}
	}
	f.Baseline, err = Sequential(ctx, SequentialOptions{
		Client: e.client, Broker: e.broker, Registry: e.reg, Repositories: repos, Policy: pol, Now: e.reg.Now(),
	})
	if err != nil {
		return fmt.Errorf("local stack: %w", err)
	}
	f.Baseline.Sample = len(repos) < len(covered)
	scale := float64(len(covered)) / float64(len(repos))
	f.BaselinePurge = f.CatalogElapsed + time.Duration(float64(f.Baseline.Elapsed)*scale)

	var wantTags, wantManifests int64
	for _, name := range repos {
		r, ok := demo.Repo(name)
		if !ok {
			return fmt.Errorf("local stack baseline: %s is not in the seed", name)
		}
		if r.Purged() {
			t, m, _ := r.Deleted()
			wantTags += t
			wantManifests += m
		}
	}
	if b := f.Baseline; b.TagsDeleted != wantTags || b.ManifestsDeleted != wantManifests || b.Failed != 0 {
		return fmt.Errorf("local stack baseline: deleted %d tags and %d manifests (%d failed), the seed expects %d and %d",
			b.TagsDeleted, b.ManifestsDeleted, b.Failed, wantTags, wantManifests)
	}
	return nil
}

// localStackPolicy is the demo policy RunStack uses by default.
func localStackPolicy() (*policy.Policy, error) {
	p, err := policy.Parse([]byte(localstack.DemoPolicy))
	if err != nil {
		return nil, fmt.Errorf("demo policy: %w", err)
	}
	return p, nil
}

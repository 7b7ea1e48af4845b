package benchmarks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/purge"
	"github.com/acrpurge/acrpurge/internal/worker"
)

// workerShape is how the deployed app spreads a purge: batches of
// batchSize repositories (one message, one token, one executor each),
// inFlight batches at a time (concurrent Worker invocations), concurrency
// deletes in flight per batch (PURGE_CONCURRENCY) and repoParallelism
// repositories at a time within a batch (PURGE_REPOSITORY_PARALLELISM; 0:
// worker.RepoParallelism).
type workerShape struct {
	batchSize, inFlight, concurrency, repoParallelism int
}

// workerTotals is what purgeLikeWorkers did.
type workerTotals struct {
	deleted, deleteErrors int64
	batches               int
}

// purgeLikeWorkers purges repos the way the deployed app does (see
// workerShape): purge.RunBatch per batch, on e's clients. With a deadline,
// no repository starts and no delete starts after it. A repository that
// ends neither done nor partial, after the retries a redelivery would give,
// is an error.
func purgeLikeWorkers(ctx context.Context, e *env, shape workerShape, repos []string, pol *policy.Policy, deadline time.Time) (workerTotals, error) {
	var deleted, deleteErrors atomic.Int64
	var g errgroup.Group
	g.SetLimit(shape.inFlight)
	batches := 0
	for batch := range slices.Chunk(repos, shape.batchSize) {
		batches++
		g.Go(func() error {
			src := e.broker.Source(acr.PurgeScopes(batch)...)
			reg := e.client.WithTokens(src)
			ex := purge.New(reg, purge.Options{Concurrency: shape.concurrency, Now: e.reg.Now})
			// A transient failure is tried again, as the message's
			// redelivery would (up to the default PURGE_MAX_DELIVERIES),
			// starting afresh.
			pending := batch
			for delivery := 1; len(pending) > 0; delivery++ {
				var mu sync.Mutex
				var retry []string
				var errs []error
				purge.RunBatch(ctx, purge.Batch{Repositories: pending, Policy: pol, Deadline: deadline, Tokens: src, Registry: reg},
					purge.BatchOptions{Executor: ex, Parallelism: cmp.Or(shape.repoParallelism, worker.RepoParallelism), Done: func(o purge.RepoOutcome) {
						if o.Result != nil {
							deleted.Add(o.Result.TagsDeleted + o.Result.ManifestsDeleted)
							deleteErrors.Add(o.Result.DeleteErrors)
						}
						mu.Lock()
						defer mu.Unlock()
						switch {
						case o.Status == purge.StatusDone || o.Status == purge.StatusPartial || o.Status == purge.StatusNotStarted:
						case o.Retryable && delivery < config.DefaultMaxDeliveries && ctx.Err() == nil:
							retry = append(retry, o.Repository)
						default:
							errs = append(errs, fmt.Errorf("purge %s: %s: %s", o.Repository, o.Status, o.Reason))
						}
					}})
				if err := errors.Join(errs...); err != nil {
					return err
				}
				pending = retry
			}
			return nil
		})
	}
	err := g.Wait()
	return workerTotals{deleted: deleted.Load(), deleteErrors: deleteErrors.Load(), batches: batches}, err
}

package benchmarks

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/purge"
)

// workerShape is how the deployed app spreads a purge: batches of
// batchSize repositories (one message, one token, one executor each),
// inFlight batches at a time (concurrent Worker invocations), concurrency
// deletes in flight per batch (PURGE_CONCURRENCY) and repoParallelism
// repositories at a time within a batch (PURGE_REPOSITORY_PARALLELISM).
type workerShape struct {
	batchSize, inFlight, concurrency, repoParallelism int
}

// workerTotals is what purgeLikeWorkers did.
type workerTotals struct {
	deleted, deleteErrors int64
	batches               int
}

// purgeLikeWorkers purges repos the way the deployed app does (see
// workerShape), through executors on e's clients. With a deadline, no
// repository starts and no delete starts after it. A repository that ends
// neither done nor partial, after the retries a redelivery would give, is an
// error.
func purgeLikeWorkers(ctx context.Context, e *env, shape workerShape, repos []string, pol *policy.Policy, deadline time.Time) (workerTotals, error) {
	var deleted, deleteErrors atomic.Int64
	var g errgroup.Group
	g.SetLimit(shape.inFlight)
	batches := 0
	for batch := range slices.Chunk(repos, shape.batchSize) {
		batches++
		g.Go(func() error {
			ex := purge.New(e.scoped(batch...), purge.Options{Concurrency: shape.concurrency, Now: e.reg.Now})
			var rg errgroup.Group
			rg.SetLimit(max(shape.repoParallelism, 1))
			for _, repo := range batch {
				rg.Go(func() error {
					if !deadline.IsZero() && !e.reg.Now().Before(deadline) {
						return nil
					}
					// A transient failure is tried again, as the
					// message's redelivery would (up to the default
					// PURGE_MAX_DELIVERIES), starting afresh.
					for delivery := 1; ; delivery++ {
						res := ex.Purge(ctx, purge.Job{Repository: repo, Policy: pol, Deadline: deadline})
						deleted.Add(res.TagsDeleted + res.ManifestsDeleted)
						deleteErrors.Add(res.DeleteErrors)
						switch {
						case res.Status == purge.StatusDone || res.Status == purge.StatusPartial:
							return nil
						case res.Status == purge.StatusFailed && res.Retryable && delivery < config.DefaultMaxDeliveries && ctx.Err() == nil:
							continue
						}
						return fmt.Errorf("purge %s: %s: %s", repo, res.Status, res.Reason)
					}
				})
			}
			return rg.Wait()
		})
	}
	err := g.Wait()
	return workerTotals{deleted: deleted.Load(), deleteErrors: deleteErrors.Load(), batches: batches}, err
}

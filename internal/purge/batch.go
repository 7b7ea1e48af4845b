package purge

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/policy"
)

// DefaultRepoParallelism is how many repositories of a batch are purged at
// once by default; deletes in flight are bounded separately by the
// executor's Concurrency across all of them.
const DefaultRepoParallelism = 4

// StatusNotStarted is the outcome of a repository whose turn did not come:
// the deadline passed or the context ended first. It is never a checkpoint
// status; the caller leaves the repository for later.
const StatusNotStarted Status = "not-started"

// NeededActions returns the registry actions purging under pol needs on
// each repository: metadata_read to list, pull when a rule plans untagged
// manifests (their bodies are read for index children and subjects), and
// unless dry-run delete, plus metadata_write when a rule may unlock.
func NeededActions(pol *policy.Policy, dryRun bool) []string {
	need := []string{acr.ActionMetadataRead}
	var untagged, unlock bool
	for _, r := range pol.Rules {
		untagged = untagged || r.Untagged || r.UntaggedOnly
		unlock = unlock || r.IncludeLocked
	}
	if untagged {
		need = append(need, acr.ActionPull)
	}
	if !dryRun {
		need = append(need, acr.ActionDelete)
		if unlock {
			need = append(need, acr.ActionMetadataWrite)
		}
	}
	return need
}

// MissingActions returns the actions of need that tok's access claim does
// not grant on repo. A token without a readable claim grants nothing
// missing: the claim is advisory and the registry decides.
func MissingActions(tok *acr.Token, repo string, need []string) []string {
	if tok == nil || tok.Granted == nil {
		return nil
	}
	var missing []string
	for _, a := range need {
		if !tok.Allows(repo, a) {
			missing = append(missing, a)
		}
	}
	return missing
}

// Batch is one ABAC-sized group of repositories purged with one access
// token.
type Batch struct {
	Repositories []string
	Policy       *policy.Policy
	DryRun       bool
	// Deadline is soft: no repository starts, and no delete, after it.
	Deadline time.Time
	// Tokens yields the batch's one token, scoped with
	// acr.PurgeScopes(Repositories).
	Tokens acr.TokenSource
	// Registry is the data plane bound to Tokens (an *acr.Client from
	// WithTokens, possibly wrapped).
	Registry Registry
}

// RepoOutcome is how one repository of a batch ended.
type RepoOutcome struct {
	Repository string
	// Status is a Result status, or StatusNotStarted.
	Status Status
	// Reason explains a status other than done, for people.
	Reason string
	// Err is the error behind a failed, forbidden or not-started outcome.
	Err error
	// Retryable: a transient failure; the batch may succeed when tried
	// again (redelivery).
	Retryable bool
	// Cursor is where the purge started (nil: afresh); Result is the
	// executor's, nil when the repository was not purged.
	Cursor *policy.Cursor
	Result *Result
}

// BatchOptions configure RunBatch. Executor is required.
type BatchOptions struct {
	// Executor carries out the purges; share one between batches run at
	// once so that its Concurrency bounds the deletes of all of them.
	Executor *Executor
	// Parallelism is how many repositories are purged at once; default
	// DefaultRepoParallelism. Ignored when Slots is set.
	Parallelism int
	// Slots, if set, is a semaphore shared by batches run at once (its
	// capacity is their combined repository parallelism).
	Slots chan struct{}
	// Begin, if set, runs just before a repository is purged and returns
	// the cursor to resume it from (nil: afresh). An error leaves the
	// repository failed and retryable, not purged. The Worker checkpoints
	// the start here.
	Begin func(ctx context.Context, repo string) (*policy.Cursor, error)
	// Done receives each repository's outcome, from several goroutines,
	// once per repository. The Worker checkpoints it, the CLI reports it.
	Done func(RepoOutcome)
}

// RunBatch purges the repositories of b: every repository the policy covers
// and the batch's token grants is purged, Parallelism at a time; each ends
// in exactly one Done call, in no particular order. It returns when every
// repository has been reported.
//
// In order: repositories outside the policy are skipped; the batch's token
// is obtained once (a failure fails every repository, retryably); its
// access claim is checked against NeededActions (a repository it does not
// cover is forbidden, with the missing actions named); then each
// repository waits for a slot, and one whose slot comes after the deadline
// or after ctx ended is not started.
func RunBatch(ctx context.Context, b Batch, o BatchOptions) {
	if o.Parallelism < 1 {
		o.Parallelism = DefaultRepoParallelism
	}
	if o.Slots == nil {
		o.Slots = make(chan struct{}, o.Parallelism)
	}
	work := make([]string, 0, len(b.Repositories))
	for _, repo := range b.Repositories {
		switch covered, err := b.Policy.MatchRepository(repo); {
		case err != nil:
			o.Done(RepoOutcome{Repository: repo, Status: StatusFailed, Reason: "the policy's repository filter failed", Err: err})
		case !covered:
			o.Done(RepoOutcome{Repository: repo, Status: StatusSkipped, Reason: "not in policy: no rule applies to this repository"})
		default:
			work = append(work, repo)
		}
	}
	if len(work) == 0 {
		return
	}
	tok, err := b.Tokens.Token(ctx)
	if err != nil {
		err = fmt.Errorf("access token for %d repositories: %w", len(b.Repositories), err)
		for _, repo := range work {
			if ctx.Err() != nil {
				o.Done(RepoOutcome{Repository: repo, Status: StatusNotStarted, Reason: "the invocation ended before the repository started", Err: err, Retryable: true})
				continue
			}
			o.Done(RepoOutcome{Repository: repo, Status: StatusFailed, Reason: "could not get the batch's access token", Err: err, Retryable: true})
		}
		return
	}
	need := NeededActions(b.Policy, b.DryRun)
	permitted := work[:0]
	for _, repo := range work {
		if missing := MissingActions(tok, repo, need); len(missing) > 0 {
			o.Done(RepoOutcome{Repository: repo, Status: StatusForbidden, Reason: fmt.Sprintf(
				"the access token does not grant %s on this repository: check the identity's role "+
					"assignment (on ABAC registries, the repository prefix in its condition)", strings.Join(missing, ", "))})
			continue
		}
		permitted = append(permitted, repo)
	}

	var g errgroup.Group
	for _, repo := range permitted {
		// Wait for a slot before deciding: a repository whose turn comes
		// after the deadline is left for later.
		acquired := false
		select {
		case o.Slots <- struct{}{}:
			acquired = true
		case <-ctx.Done():
		}
		late := !b.Deadline.IsZero() && !o.Executor.opts.Now().Before(b.Deadline)
		if ctx.Err() != nil || late {
			if acquired {
				<-o.Slots
			}
			out := RepoOutcome{Repository: repo, Status: StatusNotStarted, Reason: "the deadline passed before the repository started"}
			if ctx.Err() != nil {
				out.Reason, out.Err = "the invocation ended before the repository started", context.Cause(ctx)
			}
			o.Done(out)
			continue
		}
		g.Go(func() error {
			defer func() { <-o.Slots }()
			o.Done(runOne(ctx, b, o, repo))
			return nil
		})
	}
	_ = g.Wait() // outcomes go through Done
}

// runOne purges one repository of the batch.
func runOne(ctx context.Context, b Batch, o BatchOptions, repo string) RepoOutcome {
	out := RepoOutcome{Repository: repo}
	if o.Begin != nil {
		c, err := o.Begin(ctx, repo)
		if err != nil {
			out.Status, out.Reason, out.Err, out.Retryable = StatusFailed, "could not record the start", err, true
			return out
		}
		out.Cursor = c
	}
	res := o.Executor.Purge(ctx, Job{
		Repository: repo, Policy: b.Policy, DryRun: b.DryRun, Cursor: out.Cursor, Deadline: b.Deadline, Registry: b.Registry,
	})
	out.Result = &res
	out.Status, out.Reason, out.Err, out.Retryable = res.Status, res.Reason, res.Err, res.Retryable
	return out
}

package purge

import (
	"context"
	"errors"
	"sync"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/policy"
)

// dispatcher starts deletes of one phase of one repository, each holding a
// slot of the executor's shared semaphore, and remembers the first error
// that must stop the repository.
type dispatcher struct {
	r      *repoRun
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
}

func (r *repoRun) newDispatcher(ctx context.Context, cancel context.CancelFunc) *dispatcher {
	return &dispatcher{r: r, ctx: ctx, cancel: cancel}
}

// run starts a delete for every decision. It returns errStopped once the
// deadline has passed (the remaining decisions are reported not-started),
// or the first error that stopped the repository.
func (d *dispatcher) run(decs []policy.Decision, del func(context.Context, policy.Decision) error) error {
	for i, dec := range decs {
		if err := d.failure(); err != nil {
			return err
		}
		if d.r.pastDeadline() {
			d.r.markStopped()
			for _, rest := range decs[i:] {
				d.r.report(rest, OutcomeNotStarted, nil)
			}
			return errStopped
		}
		if d.r.job.DryRun {
			d.r.deleted(dec, OutcomeWouldDelete)
			continue
		}
		select {
		case d.r.e.sem <- struct{}{}:
		case <-d.ctx.Done():
			if err := d.failure(); err != nil {
				return err
			}
			return d.ctx.Err()
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer func() { <-d.r.e.sem }()
			if err := del(d.ctx, dec); err != nil {
				d.fail(err)
			}
		}()
	}
	return nil
}

func (d *dispatcher) fail(err error) {
	d.mu.Lock()
	if d.err == nil {
		d.err = err
		d.cancel()
	}
	d.mu.Unlock()
}

func (d *dispatcher) failure() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// wait waits for every started delete and returns the stopping error, if any.
func (d *dispatcher) wait() error {
	d.wg.Wait()
	return d.failure()
}

func (r *repoRun) markStopped() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
}

func (r *repoRun) deleted(d policy.Decision, o Outcome) {
	r.mu.Lock()
	if d.Kind == policy.KindTag {
		r.res.TagsDeleted++
	} else {
		r.res.ManifestsDeleted++
		r.res.BytesFreed += d.Size
		if r.gone != nil {
			r.gone[d.Digest] = true
		}
	}
	r.mu.Unlock()
	r.report(d, o, nil)
}

var unlocked = func() acr.Attributes {
	t := true
	return acr.Attributes{DeleteEnabled: &t, WriteEnabled: &t}
}

func (r *repoRun) deleteTag(ctx context.Context, d policy.Decision) error {
	reg, repo := r.e.reg, r.job.Repository
	if d.Unlock {
		if err := reg.UpdateTagAttributes(ctx, repo, d.Tag, unlocked()); err != nil && !acr.IsNotFound(err) {
			r.pl.TagDeleteFailed(d.Digest)
			return r.deleteFailed(ctx, d, err)
		}
	}
	if err := reg.DeleteTag(ctx, repo, d.Tag); err != nil {
		r.pl.TagDeleteFailed(d.Digest)
		return r.deleteFailed(ctx, d, err)
	}
	r.deleted(d, OutcomeDeleted)
	return nil
}

func (r *repoRun) deleteManifest(ctx context.Context, d policy.Decision) error {
	reg, repo := r.e.reg, r.job.Repository
	if d.Unlock {
		if err := reg.UpdateManifestAttributes(ctx, repo, d.Digest, unlocked()); err != nil && !acr.IsNotFound(err) {
			return r.deleteFailed(ctx, d, err)
		}
	}
	if err := reg.DeleteManifest(ctx, repo, d.Digest); err != nil {
		return r.deleteFailed(ctx, d, err)
	}
	r.deleted(d, OutcomeDeleted)
	return nil
}

// deleteFailed decides whether a failed delete stops the repository (the
// returned error) or is recorded and left behind (nil).
func (r *repoRun) deleteFailed(ctx context.Context, d policy.Decision, err error) error {
	var ae *acr.Error
	switch {
	case acr.IsLocked(err):
		// Locked after planning: the registry keeps it, and so do we.
		r.mu.Lock()
		r.res.Kept[policy.ReasonLocked]++
		r.mu.Unlock()
		r.report(d, OutcomeLocked, err)
		return nil
	case ctx.Err() != nil:
		// Stopped by another failure or by the caller; not this item's fault.
		r.report(d, OutcomeNotStarted, nil)
		return ctx.Err()
	case acr.IsNotPermitted(err):
		r.report(d, OutcomeFailed, err)
		return err
	case errors.As(err, &ae) && ae.StatusCode >= 400 && ae.StatusCode < 500 && ae.StatusCode != 429:
		// A permanent answer about this one item: note it and go on.
		r.mu.Lock()
		r.res.DeleteErrors++
		r.mu.Unlock()
		r.report(d, OutcomeFailed, err)
		r.log.Warn("delete refused", "kind", d.Kind, "tag", d.Tag, "digest", d.Digest, "error", err)
		return nil
	default:
		// Server errors and network failures that outlived the client's
		// retries: stop, so the message can be tried again later.
		r.mu.Lock()
		r.res.DeleteErrors++
		r.mu.Unlock()
		r.report(d, OutcomeFailed, err)
		return err
	}
}

package purge

import (
	"context"
	"errors"
	"sync"
	"time"

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
		if d.r.pastDeadline() { // the wait for a slot may have crossed it
			<-d.r.e.sem
			d.r.markStopped()
			for _, rest := range decs[i:] {
				d.r.report(rest, OutcomeNotStarted, nil)
			}
			return errStopped
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

// ReasonChanged keeps an item that changed between planning and its turn to
// be deleted: a tag now pointing elsewhere or re-pushed, a manifest tagged
// again, anything updated since it was listed. The plan no longer describes
// it; the next run will decide afresh.
const ReasonChanged policy.Reason = "changed-since-planning"

// verdict is what a fresh read says about an item about to be deleted.
type verdict int

const (
	verdictDelete  verdict = iota
	verdictGone            // already deleted by someone else
	verdictChanged         // not what was planned: keep
	verdictLocked          // locked since planning: keep
)

// checkTag reads the tag again just before deleting it: DELETE removes
// whatever the name points at now, which may no longer be what was planned.
func (r *repoRun) checkTag(ctx context.Context, d policy.Decision) (verdict, acr.Attributes, error) {
	cur, err := r.reg.GetTag(ctx, r.job.Repository, d.Tag)
	switch {
	case acr.IsNotFound(err):
		return verdictGone, acr.Attributes{}, nil
	case err != nil:
		return 0, acr.Attributes{}, err
	case cur.Digest != d.Digest || !cur.LastUpdateTime.Equal(d.Updated):
		return verdictChanged, cur.Attributes, nil
	case cur.Attributes.Locked() && !d.Unlock:
		return verdictLocked, cur.Attributes, nil
	}
	return verdictDelete, cur.Attributes, nil
}

// checkManifest reads the manifest again just before deleting it: deleting a
// manifest also deletes any tag given to it since it was listed.
func (r *repoRun) checkManifest(ctx context.Context, d policy.Decision) (verdict, acr.Attributes, error) {
	cur, err := r.reg.GetManifest(ctx, r.job.Repository, d.Digest)
	switch {
	case acr.IsNotFound(err):
		return verdictGone, acr.Attributes{}, nil
	case err != nil:
		return 0, acr.Attributes{}, err
	case len(cur.Tags) > 0 || (!d.Updated.IsZero() && !cur.LastUpdateTime.Equal(d.Updated)):
		return verdictChanged, cur.Attributes, nil
	case cur.Attributes.Locked() && !d.Unlock:
		return verdictLocked, cur.Attributes, nil
	}
	return verdictDelete, cur.Attributes, nil
}

func (r *repoRun) deleteTag(ctx context.Context, d policy.Decision) error {
	reg, repo := r.reg, r.job.Repository
	gone, err := r.deleteChecked(ctx, d, r.checkTag,
		func(ctx context.Context, a acr.Attributes) error { return reg.UpdateTagAttributes(ctx, repo, d.Tag, a) },
		func(ctx context.Context) error { return reg.DeleteTag(ctx, repo, d.Tag) })
	if !gone {
		r.pl.TagDeleteFailed(d.Digest) // the tag stays, so its manifest stays tagged
	}
	return err
}

func (r *repoRun) deleteManifest(ctx context.Context, d policy.Decision) error {
	reg, repo := r.reg, r.job.Repository
	_, err := r.deleteChecked(ctx, d, r.checkManifest,
		func(ctx context.Context, a acr.Attributes) error {
			return reg.UpdateManifestAttributes(ctx, repo, d.Digest, a)
		},
		func(ctx context.Context) error { return reg.DeleteManifest(ctx, repo, d.Digest) })
	return err
}

// deleteChecked verifies the item, unlocks it if the plan says so, deletes
// it, and puts a lock back if the delete then fails. gone reports whether
// the item is gone afterwards; err is an error that stops the repository.
func (r *repoRun) deleteChecked(ctx context.Context, d policy.Decision,
	check func(context.Context, policy.Decision) (verdict, acr.Attributes, error),
	setAttrs func(context.Context, acr.Attributes) error,
	del func(context.Context) error) (gone bool, err error) {
	v, attrs, err := check(ctx, d)
	if err != nil {
		return false, r.deleteFailed(ctx, d, err)
	}
	switch v {
	case verdictGone:
		r.deleted(d, OutcomeDeleted)
		return true, nil
	case verdictChanged:
		r.keepAs(d, ReasonChanged, OutcomeKept)
		return false, nil
	case verdictLocked:
		r.keepAs(d, policy.ReasonLocked, OutcomeLocked)
		return false, nil
	}
	unlockedHere := d.Unlock && attrs.Locked()
	if unlockedHere {
		if err := setAttrs(ctx, unlocked()); err != nil && !acr.IsNotFound(err) {
			return false, r.deleteFailed(ctx, d, err)
		}
	}
	if err := del(ctx); err != nil {
		if unlockedHere {
			r.relock(d, attrs, setAttrs)
		}
		return false, r.deleteFailed(ctx, d, err)
	}
	r.deleted(d, OutcomeDeleted)
	return true, nil
}

// relock restores the locks of an item whose delete failed after it was
// unlocked, even when the run is being cancelled.
func (r *repoRun) relock(d policy.Decision, attrs acr.Attributes, setAttrs func(context.Context, acr.Attributes) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	restore := acr.Attributes{DeleteEnabled: attrs.DeleteEnabled, WriteEnabled: attrs.WriteEnabled}
	if err := setAttrs(ctx, restore); err != nil {
		r.log.Error("could not restore the lock of an item whose delete failed; lock it again by hand",
			"kind", d.Kind, "tag", d.Tag, "digest", d.Digest, "error", err)
	}
}

// keepAs records a planned deletion that was not done, for reason.
func (r *repoRun) keepAs(d policy.Decision, reason policy.Reason, o Outcome) {
	r.mu.Lock()
	r.res.Kept[reason]++
	r.mu.Unlock()
	d.Delete, d.Reason = false, reason
	r.report(d, o, nil)
}

// deleteFailed decides whether a failed delete stops the repository (the
// returned error) or is recorded and left behind (nil).
func (r *repoRun) deleteFailed(ctx context.Context, d policy.Decision, err error) error {
	var ae *acr.Error
	switch {
	case acr.IsLocked(err):
		// Locked after planning: the registry keeps it, and so do we.
		r.keepAs(d, policy.ReasonLocked, OutcomeLocked)
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

package purge

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/policy"
)

// dispatcher is the verifier stage of one phase of one repository: it takes
// planned deletions in order, makes sure each was read recently enough
// (re-reading them in bulk when not), and starts the delete of each one
// still as planned in a slot of the executor's shared semaphore. It
// remembers the first error that must stop the repository.
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

// run handles every item in order and returns once each has been settled
// or has its delete started. Reads happen here, outside the delete slots:
// an item whose last read is missing or older than refreshAge is read again
// (with the items after it, one listing page for many) before it waits for
// a slot. It returns errStopped once the deadline has passed (the remaining
// items are reported not-started), or the first error that stopped the
// repository.
func (d *dispatcher) run(items []*item) error {
	r := d.r
	for i, it := range items {
		if err := d.failure(); err != nil {
			return err
		}
		if r.pastDeadline() {
			r.markStopped()
			r.notStarted(items[i:])
			return errStopped
		}
		if r.job.DryRun {
			r.deleted(it.d, OutcomeWouldDelete)
			continue
		}
		if r.needsRead(it) {
			if err := r.verify(d.ctx, items[i:]); err != nil {
				if stop := r.deleteFailed(d.ctx, it.d, err); stop != nil {
					d.fail(stop)
					r.notStarted(items[i+1:])
					return stop
				}
				r.left(it.d) // recorded as a failed delete; it stays
				continue
			}
		}
		if it.verdict != verdictDelete {
			r.settle(it.d, it.verdict)
			continue
		}
		select {
		case r.e.sem <- struct{}{}:
		case <-d.ctx.Done():
			if err := d.failure(); err != nil {
				return err
			}
			return d.ctx.Err()
		}
		if r.pastDeadline() { // the wait for a slot may have crossed it
			<-r.e.sem
			r.markStopped()
			r.notStarted(items[i:])
			return errStopped
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer func() { <-r.e.sem }()
			if err := r.delete(d.ctx, it); err != nil {
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

func (r *repoRun) notStarted(items []*item) {
	for _, it := range items {
		r.report(it.d, OutcomeNotStarted, nil)
	}
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
		if r.ours != nil && o == OutcomeDeleted {
			r.ours[d.Digest] = true
		}
	}
	r.mu.Unlock()
	r.report(d, o, nil)
}

// uncertain counts a delete whose outcome is unknown.
func (r *repoRun) uncertain() {
	r.mu.Lock()
	r.res.Uncertain++
	r.mu.Unlock()
}

// ambiguous reports whether a failed delete may still have been carried
// out: no answer came back (cancelled, network failure), or a 5xx whose
// request the registry may have acted on. A 4xx answer is definite.
func ambiguous(err error) bool {
	var ae *acr.Error
	if errors.As(err, &ae) && ae.StatusCode != 0 {
		return ae.StatusCode >= 500
	}
	return true
}

// vanished records a planned deletion whose item was already gone: ours
// when the registry removed it with a subject this run deleted (a referrer
// goes with its subject), otherwise someone else's, not counted, so that
// two deliveries racing on one repository never count one delete twice.
func (r *repoRun) vanished(d policy.Decision) {
	r.mu.Lock()
	cascaded := d.Subject != "" && r.ours[d.Subject]
	if !cascaded {
		r.res.AlreadyGone++
		if r.gone != nil && d.Kind == policy.KindManifest {
			r.gone[d.Digest] = true
		}
	}
	r.mu.Unlock()
	if cascaded {
		r.deleted(d, OutcomeDeleted)
		return
	}
	r.report(d, OutcomeGone, nil)
}

// left tells the planner that a tag it chose to delete is still there, so
// its manifest counts as tagged and survives.
func (r *repoRun) left(d policy.Decision) {
	if d.Kind == policy.KindTag {
		r.pl.TagDeleteFailed(d.Digest)
	}
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

// ReasonUnverified keeps an item that could not be read within MaxVerifyAge
// of its delete: the registry answered reads too slowly (a read itself took
// longer than the bound, several times). The next run will try again.
const ReasonUnverified policy.Reason = "not-verified-in-time"

// settle records an item that is not deleted here, for what a read found.
// It reports whether the item is gone.
func (r *repoRun) settle(d policy.Decision, v verdict) (gone bool) {
	switch v {
	case verdictGone:
		// Deleted by someone else, or with its subject: done either way,
		// as a delete answering 404 is; counted only in the second case.
		r.vanished(d)
		return true
	case verdictLocked:
		r.keepAs(d, policy.ReasonLocked, OutcomeLocked)
	case verdictUnverified:
		r.keepAs(d, ReasonUnverified, OutcomeKept)
	default:
		r.keepAs(d, ReasonChanged, OutcomeKept)
	}
	r.left(d)
	return false
}

// delete runs in the item's slot: it unlocks the item if the plan says so,
// deletes it, and puts a lock back if the delete then fails. Both requests
// carry the item's guard, so neither is sent on a read older than
// MaxVerifyAge. The returned error stops the repository.
func (r *repoRun) delete(ctx context.Context, it *item) error {
	reg, repo, d := r.reg, r.job.Repository, it.d
	setAttrs := func(ctx context.Context, a acr.Attributes) error {
		return reg.UpdateManifestAttributes(ctx, repo, d.Digest, a)
	}
	del := func(ctx context.Context) error { return reg.DeleteManifest(ctx, repo, d.Digest) }
	if d.Kind == policy.KindTag {
		setAttrs = func(ctx context.Context, a acr.Attributes) error { return reg.UpdateTagAttributes(ctx, repo, d.Tag, a) }
		del = func(ctx context.Context) error { return reg.DeleteTag(ctx, repo, d.Tag) }
	}
	orig := it.attrs
	guard := r.guard(ctx, it)
	gctx := acr.WithSendGuard(ctx, guard)
	// The delete's own context counts its attempts (a guard check precedes
	// each) and learns of a 404: an item found gone after an attempt of
	// ours was sent may be our own doing, its answer lost.
	var notFound, afterRetry atomic.Bool
	var sent atomic.Int32
	dctx := acr.WithGoneNotice(acr.WithSendGuard(ctx, func() error {
		sent.Add(1)
		return guard()
	}), func(retried bool) {
		notFound.Store(true)
		afterRetry.Store(retried)
	})
	unlockedHere := d.Unlock && orig.Locked()
	if unlockedHere {
		if err := setAttrs(gctx, unlocked()); err != nil && !acr.IsNotFound(err) {
			if v, ok := verdictOf(err); ok {
				r.settle(d, v)
				return nil
			}
			r.left(d)
			return r.deleteFailed(ctx, d, err)
		}
	}
	if err := del(dctx); err != nil {
		v, ok := verdictOf(err)
		if unlockedHere && (!ok || v != verdictGone) {
			r.relock(d, orig, setAttrs)
		}
		if ok {
			if v == verdictGone && sent.Load() > 1 {
				r.uncertain() // refused on a retry: the lost attempt may have deleted it
			}
			r.settle(d, v)
			return nil
		}
		if ambiguous(err) {
			r.uncertain()
		}
		r.left(d)
		return r.deleteFailed(ctx, d, err)
	}
	if notFound.Load() {
		if afterRetry.Load() {
			r.uncertain() // maybe our own lost attempt deleted it
		}
		r.vanished(d)
		return nil
	}
	r.deleted(d, OutcomeDeleted)
	return nil
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

// deleteFailed decides whether a failed delete (or a failed read before
// it) stops the repository (the returned error) or is recorded and left
// behind (nil).
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

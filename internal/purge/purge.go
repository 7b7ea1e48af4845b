// Package purge carries out the planner's decisions against a registry: tags
// first (deleted while the listing streams on), then untagged manifests
// (deleted once the planner has finished its protected closure).
//
// The executor is deliberately small. It decides nothing itself: every
// verdict comes from policy.RepoPlanner, so a dry run, a report and a real run
// see the same plan. What it adds is how deletes are done: a bounded number in
// flight (shared by every repository the executor works on), a soft deadline
// after which no new delete starts, and a Result per repository with counts,
// a status and, when stopped early, a resume Cursor.
//
// RunBatch is the one batch purge of the app and the CLI: one token per
// batch, the policy and the token's access claim checked per repository
// (NeededActions, MissingActions), Parallelism repositories at a time, and
// every repository's outcome through a callback. The Worker adds
// checkpoints to it, `handler purge` its report.
//
// Deletes go through two stages, and every delete is sent at most
// MaxVerifyAge (2 s) after a read of its item. The verifier stage (one per
// phase of a repository) takes the planned deletions in order and makes
// sure each has a recent read: a tag's own listing page is its first read;
// a manifest has none after planning; a read whose answer is older than
// MaxVerifyAge/2 is due again. Due items are read before they wait for a
// delete slot, with the items after them: one listing page (GET _tags
// from the nearest tag the plan keeps, newest first; GET _manifests from
// the item's digest) for up to a page of them, or a single GET where a
// page would not hold two. An item that changed (a tag re-pushed or
// re-pointed, a manifest tagged or updated), was locked or is gone is
// settled there, without a slot; a tag missing from where its page should
// list it is read alone, which tells which. The rest go to the delete
// slots, where a slot only unlocks (includeLocked) and deletes. Both
// requests are guarded (acr.WithSendGuard): if, once the limiter and any
// retry wait are over, the read was sent more than MaxVerifyAge ago, the
// item is read again with one GET in its slot and deleted only if still
// as planned. So a delete normally costs one request in its slot, and
// re-reading costs about one request per page of deletions instead of one
// per delete.
package purge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/policy"
)

// Registry is what the executor needs from the data plane; *acr.Client
// (bound to a token for the repository) satisfies it.
type Registry interface {
	Tags(ctx context.Context, repo string, fn func(page []acr.Tag) error) error
	Manifests(ctx context.Context, repo string, fn func(page []acr.Manifest) error) error
	ManifestBody(ctx context.Context, repo, digest string) (*acr.ManifestBody, error)
	DeleteTag(ctx context.Context, repo, tag string) error
	DeleteManifest(ctx context.Context, repo, digest string) error
	// GetTag and GetManifest re-read one item before it is deleted.
	GetTag(ctx context.Context, repo, tag string) (*acr.Tag, error)
	GetManifest(ctx context.Context, repo, digest string) (*acr.Manifest, error)
	UpdateTagAttributes(ctx context.Context, repo, tag string, a acr.Attributes) error
	UpdateManifestAttributes(ctx context.Context, repo, digest string, a acr.Attributes) error
}

// PageLister re-reads many items with one request. When the Registry has
// it (*acr.Client does), the executor re-reads the items about to be
// deleted a listing page at a time; without it, one GET each.
type PageLister interface {
	// TagsPage lists at most n tags after the tag named last (from the
	// start when last is empty), most recently updated first; more
	// reports a next page.
	TagsPage(ctx context.Context, repo, last string, n int) (tags []acr.Tag, more bool, err error)
	// ManifestsPage lists at most n manifests whose digests sort after
	// last, by digest; more reports a next page.
	ManifestsPage(ctx context.Context, repo, last string, n int) (manifests []acr.Manifest, more bool, err error)
}

// Status is where a repository ended.
type Status string

// Repository statuses. They are also the checkpoint statuses.
const (
	StatusDone      Status = "done"      // the plan was carried out completely
	StatusPartial   Status = "partial"   // stopped at the deadline; resume with Cursor
	StatusSkipped   Status = "skipped"   // nothing to do (not in policy, repository gone)
	StatusForbidden Status = "forbidden" // the identity may not do what the plan needs
	StatusFailed    Status = "failed"    // an error stopped it; see Retryable
)

// Outcome is what happened to one decision.
type Outcome string

// Decision outcomes reported through Options.OnDecision.
const (
	OutcomeDeleted     Outcome = "deleted"
	OutcomeWouldDelete Outcome = "would-delete" // dry run
	OutcomeKept        Outcome = "kept"
	OutcomeLocked      Outcome = "locked" // the registry refused: locked after planning
	OutcomeFailed      Outcome = "failed" // the delete failed; the item is still there
	// OutcomeGone: the item was gone when it was re-read or deleted (404),
	// removed by someone else; not counted as deleted.
	OutcomeGone       Outcome = "gone"
	OutcomeNotStarted Outcome = "not-started" // the deadline passed before its turn
)

// Options configure an Executor.
type Options struct {
	// Concurrency bounds deletes in flight across every repository this
	// executor is working on (PURGE_CONCURRENCY). Default 8.
	Concurrency int
	// FetchConcurrency bounds manifest-body reads while planning untagged
	// manifests. Default: Concurrency.
	FetchConcurrency int
	// VerifyPageSize is the n of the listing pages that re-read items
	// before their delete. Default acr.DefaultPageSize (100).
	VerifyPageSize int
	// Now is the clock for planning, the deadline and the age of reads
	// (MaxVerifyAge). Default time.Now.
	Now func() time.Time
	// OnDecision, if set, sees every decision with its outcome (err set for
	// OutcomeFailed). It is called from several goroutines.
	OnDecision func(d policy.Decision, o Outcome, err error)
	Logger     *slog.Logger
}

// Executor runs purge jobs. One executor is meant to be shared by the
// repositories of a message (or a CLI run) so that Concurrency bounds them all.
type Executor struct {
	reg  Registry
	opts Options
	sem  chan struct{}
	log  *slog.Logger
}

// New returns an executor working against reg.
func New(reg Registry, opts Options) *Executor {
	if opts.Concurrency < 1 {
		opts.Concurrency = 8
	}
	if opts.FetchConcurrency < 1 {
		opts.FetchConcurrency = opts.Concurrency
	}
	if opts.VerifyPageSize < 1 {
		opts.VerifyPageSize = acr.DefaultPageSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Executor{reg: reg, opts: opts, sem: make(chan struct{}, opts.Concurrency), log: log}
}

// Job is one repository to purge.
type Job struct {
	Repository string
	Policy     *policy.Policy
	DryRun     bool
	// Cursor resumes an earlier, partial attempt (nil: start afresh).
	Cursor *policy.Cursor
	// Deadline is soft: after it no new delete starts, in-flight ones finish
	// and the result is partial. Zero means none.
	Deadline time.Time
	// Registry, if set, serves this job instead of the executor's own (a
	// client bound to the job's batch token), so that one executor can
	// serve several batches.
	Registry Registry
}

// Result is the outcome of one Job.
type Result struct {
	Repository string
	Status     Status
	// Reason explains a status other than done, for people.
	Reason string
	// Err is the error behind StatusFailed or StatusForbidden.
	Err error
	// Retryable: the failure is transient (network, 5xx, throttling beyond
	// its budget, cancellation); trying the message again may succeed.
	Retryable bool
	DryRun    bool
	// Deleted counts (would-be deleted in a dry run).
	TagsDeleted, ManifestsDeleted int64
	BytesFreed                    int64
	// Kept counts everything the plan keeps, by reason (tags and manifests),
	// plus "locked" for deletes the registry refused as locked.
	Kept map[policy.Reason]int64
	// DeleteErrors counts deletes that failed and were left in place.
	DeleteErrors int64
	// AlreadyGone counts planned deletions whose item someone else removed
	// first (not in the deleted counts).
	AlreadyGone int64
	// Uncertain counts deletes whose outcome is unknown: the answer was
	// lost (a cancelled call, a network failure, a 404 after a failed
	// attempt), so the registry may have deleted the item without our
	// counting it. The deleted counts are then a lower bound.
	Uncertain int64
	// Cursor is set when Status is partial.
	Cursor   *policy.Cursor
	Duration time.Duration
}

// errStopped ends a listing early at the deadline.
var errStopped = errors.New("deadline reached")

// Purge runs one job to completion, to its deadline, or to the first error
// that stops the repository. It never panics on registry answers and always
// returns a Result (there is no separate error: the Result carries it).
func (e *Executor) Purge(ctx context.Context, job Job) (res Result) {
	start := e.opts.Now()
	res = Result{Repository: job.Repository, DryRun: job.DryRun, Kept: map[policy.Reason]int64{}}
	defer func() { res.Duration = e.opts.Now().Sub(start) }()

	planTime := start
	if job.Cursor != nil && !job.Cursor.PlanTime.IsZero() {
		planTime = job.Cursor.PlanTime
	}
	log := e.log.With("repository", job.Repository)
	pl, err := job.Policy.Planner(job.Repository, planTime,
		policy.WithNotFound(acr.IsNotFound),
		policy.WithFetchConcurrency(e.opts.FetchConcurrency),
		policy.WithLogger(log))
	if err != nil {
		if errors.Is(err, policy.ErrMatchTimeout) {
			res.Status, res.Reason, res.Err = StatusFailed, err.Error(), err
		} else {
			res.Status, res.Reason, res.Err = StatusSkipped, "not in policy: "+err.Error(), err
		}
		return res
	}

	reg := job.Registry
	if reg == nil {
		reg = e.reg
	}
	pages, _ := reg.(PageLister)
	r := &repoRun{e: e, reg: reg, pages: pages, job: job, pl: pl, res: &res, log: log}
	phase := policy.PhaseTags
	if pl.PlanTags() && (job.Cursor == nil || job.Cursor.Phase != policy.PhaseManifests) {
		err = r.tags(ctx)
	}
	if err == nil && pl.PlanManifests() {
		phase = policy.PhaseManifests
		err = r.manifests(ctx)
	}
	switch {
	case errors.Is(err, errStopped) || (err == nil && r.stopped):
		res.Status = StatusPartial
		res.Reason = fmt.Sprintf("deadline reached during the %s phase", phase)
		res.Cursor = &policy.Cursor{Phase: phase, PlanTime: planTime}
	case err != nil:
		classify(&res, err)
	default:
		res.Status = StatusDone
	}
	log.Info("repository purged", "status", res.Status, "dryRun", job.DryRun,
		"tagsDeleted", res.TagsDeleted, "manifestsDeleted", res.ManifestsDeleted,
		"bytesFreed", res.BytesFreed, "deleteErrors", res.DeleteErrors, "reason", res.Reason)
	return res
}

// classify turns the error that stopped a repository into a status.
func classify(res *Result, err error) {
	res.Err = err
	var ae *acr.Error
	switch {
	case acr.IsNotPermitted(err):
		res.Status, res.Reason = StatusForbidden, "not permitted: "+err.Error()
	case acr.IsNotFound(err):
		res.Status, res.Reason = StatusSkipped, "repository not found"
		res.Err = nil
	case errors.Is(err, policy.ErrMatchTimeout):
		res.Status, res.Reason = StatusFailed, err.Error()
	case errors.As(err, &ae) && ae.StatusCode != 0:
		res.Status, res.Reason = StatusFailed, err.Error()
		res.Retryable = ae.StatusCode == 429 || ae.StatusCode >= 500
	default:
		res.Status, res.Reason, res.Retryable = StatusFailed, err.Error(), transient(err)
	}
}

// transient reports whether err may go away on its own: network failures
// that outlived the client's retries, cancellation and timeouts, and
// listings found inconsistent (the registry changed under us). Anything
// else (a malformed answer, an invalid reference) would fail the same way
// again, so retrying it only delays the dead-letter.
func transient(err error) bool {
	var ne net.Error
	var ue *url.Error
	return errors.Is(err, policy.ErrListingInconsistent) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &ne) || errors.As(err, &ue)
}

// repoRun is the state of one repository's purge.
type repoRun struct {
	e     *Executor
	reg   Registry   // the job's, else the executor's
	pages PageLister // reg's page reads; nil: re-read items one by one
	job   Job
	pl    *policy.RepoPlanner
	log   *slog.Logger

	mu      sync.Mutex // guards res, stopped, gone and listed
	res     *Result
	stopped bool
	gone    map[string]bool // manifests deleted (or, dry run, planned) in this phase
	ours    map[string]bool // manifests this run deleted (a 2xx answer)
	listed  int             // manifests the plan listed
	// singleReads: listing pages did not pay in this phase; re-read
	// items one by one. Only the verifier stage uses it.
	singleReads bool
}

func (r *repoRun) pastDeadline() bool {
	return !r.job.Deadline.IsZero() && !r.e.opts.Now().Before(r.job.Deadline)
}

func (r *repoRun) report(d policy.Decision, o Outcome, err error) {
	if o == OutcomeNotStarted && d.Subject != "" {
		r.mu.Lock()
		if r.ours[d.Subject] {
			// The registry removed this referrer with the subject we
			// deleted, but the run stopped before counting it, and a later
			// attempt will not list it: the counts are a lower bound.
			r.res.Uncertain++
		}
		r.mu.Unlock()
	}
	if f := r.e.opts.OnDecision; f != nil {
		f(d, o, err)
	}
}

// keep records a decision that deletes nothing.
func (r *repoRun) keep(d policy.Decision) {
	r.mu.Lock()
	r.res.Kept[d.Reason]++
	r.mu.Unlock()
	r.report(d, OutcomeKept, nil)
}

// tags streams the tag listing through the planner. Deletes of a page start
// only after the next page has been fetched: the registry continues a
// time-ordered listing from the last tag of the previous page, so that tag
// must still exist when the next page is asked for. The page is the first
// read of its deletions (see MaxVerifyAge), as of when it was asked for.
func (r *repoRun) tags(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := r.newDispatcher(ctx, cancel)
	var pending []*item
	anchor := ""     // the last tag listed so far that the plan keeps
	asked := r.now() // when the page being handled was asked for
	err := r.reg.Tags(ctx, r.job.Repository, func(page []acr.Tag) error {
		got := r.now()
		if r.pastDeadline() {
			r.markStopped()
			return errStopped
		}
		var dels []*item
		i := 0
		if err := r.pl.TagPage(page, func(dec policy.Decision) error {
			// One decision per tag, in page order.
			var cur *acr.Tag
			if i < len(page) && page[i].Name == dec.Tag {
				cur = &page[i]
			}
			i++
			if !dec.Delete {
				r.keep(dec)
				anchor = dec.Tag
				return nil
			}
			it := &item{d: dec, anchor: anchor}
			if cur != nil {
				it.set(tagVerdict(dec, cur), asked, got, cur.Attributes)
			}
			dels = append(dels, it)
			return nil
		}); err != nil {
			return err
		}
		if err := d.run(pending); err != nil {
			return err
		}
		pending = dels
		asked = r.now()
		return nil
	})
	if err == nil {
		err = d.run(pending)
	}
	return firstErr(d.wait(), err)
}

// manifests lets the planner list manifests and compute what must survive,
// then deletes what it chose. Deletion decisions arrive only after the
// listing is complete, so deleting cannot disturb the listing. They are
// deleted in chunks of manifestChunk, each in digest order so that one
// listing page re-reads many of them. Deletions that must wait for others
// (Decision.After: a referrer for its subject, a child for its parent
// indexes) are held back and deleted only once those are gone (see
// referrers).
func (r *repoRun) manifests(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := r.newDispatcher(ctx, cancel)
	src := repoSource{reg: r.reg, repo: r.job.Repository, run: r}
	r.gone, r.ours = map[string]bool{}, map[string]bool{}
	r.singleReads = false
	var held, chunk []policy.Decision
	err := r.pl.Manifests(ctx, src, func(dec policy.Decision) error {
		switch {
		case !dec.Delete:
			r.keep(dec)
			return nil
		case len(dec.After) > 0:
			held = append(held, dec)
			return nil
		}
		chunk = append(chunk, dec)
		if len(chunk) < manifestChunk {
			return nil
		}
		err := d.run(r.byDigest(chunk))
		chunk = chunk[:0]
		return err
	})
	if err == nil {
		err = d.run(r.byDigest(chunk))
	}
	if err == nil {
		err = r.referrers(d, held) // starts deletes: wait for them after
		return firstErr(d.wait(), err)
	}
	werr := d.wait()
	// Stopped before the held deletions' turn: a referrer whose subject
	// this run deleted went with it, uncounted, and a later attempt will
	// not list it.
	for _, dec := range held {
		r.report(dec, OutcomeNotStarted, nil)
	}
	return firstErr(werr, err)
}

// manifestChunk is how many manifest deletions are sorted and re-read
// together: more makes the re-read pages denser, and costs memory.
const manifestChunk = 1000

// byDigest wraps manifest deletions as unread items, sorted by digest
// (except in a dry run, which reads nothing and keeps the plan's order).
func (r *repoRun) byDigest(decs []policy.Decision) []*item {
	items := make([]*item, len(decs))
	for i, dec := range decs {
		items[i] = &item{d: dec}
	}
	if !r.job.DryRun {
		slices.SortFunc(items, func(a, b *item) int { return strings.Compare(a.d.Digest, b.d.Digest) })
	}
	return items
}

// referrers deletes held deletions in waves: one goes once every digest in
// its After has been deleted, and stays (kept with its AfterReason: a
// referrer of a kept manifest, a child of a kept index) as soon as one of
// them is neither deleted nor still waiting its turn, i.e. its delete
// failed, was refused as locked, or never started. The registry would have
// removed a referrer with its subject anyway; deleting after the subject is
// confirmed gone keeps the order safe and the counts honest, and a child
// outlives a parent index whose delete failed.
func (r *repoRun) referrers(d *dispatcher, held []policy.Decision) error {
	keep := func(dec policy.Decision) {
		reason := dec.AfterReason
		if reason == "" {
			reason = policy.ReasonReferrer
		}
		dec.Delete, dec.Reason, dec.Rule = false, reason, ""
		r.keep(dec)
	}
	for len(held) > 0 {
		if err := d.wait(); err != nil {
			return err
		}
		pending := make(map[string]bool, len(held))
		for _, dec := range held {
			pending[dec.Digest] = true
		}
		var wave, rest []policy.Decision
		for _, dec := range held {
			ready, blocked := true, false
			r.mu.Lock()
			for _, after := range dec.After {
				switch {
				case r.gone[after]:
				case pending[after]:
					ready = false
				default:
					ready, blocked = false, true
				}
			}
			r.mu.Unlock()
			switch {
			case blocked:
				keep(dec)
			case ready:
				wave = append(wave, dec)
			default:
				rest = append(rest, dec)
			}
		}
		if len(wave) == 0 {
			// What they wait for never resolves (a cycle): keep them all.
			for _, dec := range rest {
				keep(dec)
			}
			return nil
		}
		if err := d.run(r.byDigest(wave)); err != nil {
			return err
		}
		held = rest
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// repoSource is the planner's view of one repository. It ends the listing
// and the body reads with errStopped once the deadline has passed, so a
// large repository cannot plan past it.
type repoSource struct {
	reg  Registry
	repo string
	run  *repoRun
}

func (s repoSource) stop() error {
	if s.run.pastDeadline() {
		s.run.markStopped()
		return errStopped
	}
	return nil
}

func (s repoSource) Manifests(ctx context.Context, fn func([]acr.Manifest) error) error {
	return s.reg.Manifests(ctx, s.repo, func(page []acr.Manifest) error {
		if err := s.stop(); err != nil {
			return err
		}
		s.run.mu.Lock()
		s.run.listed += len(page)
		s.run.mu.Unlock()
		return fn(page)
	})
}

func (s repoSource) ManifestBody(ctx context.Context, digest string) (*acr.ManifestBody, error) {
	if err := s.stop(); err != nil {
		return nil, err
	}
	return s.reg.ManifestBody(ctx, s.repo, digest)
}

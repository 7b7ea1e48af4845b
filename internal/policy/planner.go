package policy

import (
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// Kind says what a Decision is about.
type Kind string

// Kinds of decisions.
const (
	KindTag      Kind = "tag"
	KindManifest Kind = "manifest"
)

// Reason explains a Decision.
type Reason string

// Reasons. Only ReasonOld and ReasonUntagged come with Delete set.
const (
	ReasonOld         Reason = "old"                 // delete: matches, older than ago, beyond keep
	ReasonUntagged    Reason = "untagged"            // delete: untagged manifest, old, beyond keep
	ReasonTooNew      Reason = "too-new"             // not older than the rule's ago (or no timestamp)
	ReasonKeep        Reason = "keep"                // among the keep-N most recent candidates
	ReasonLocked      Reason = "locked"              // deleteEnabled or writeEnabled false, includeLocked not set
	ReasonProtected   Reason = "protected"           // matches a protect pattern
	ReasonNoMatch     Reason = "no-match"            // no rule's tag filter matches
	ReasonTagged      Reason = "tagged"              // manifest still has a surviving tag
	ReasonIndexChild  Reason = "child-of-kept-index" // (recursively) child of a surviving index
	ReasonReferrer    Reason = "referrer-of-kept"    // subject is a surviving (or unknown) manifest
	ReasonSubject     Reason = "subject-of-kept"     // a surviving manifest refers to it (its subject)
	ReasonMissing     Reason = "missing"             // referenced/listed but gone (404): noted, skipped
	ReasonNotInPolicy Reason = "not-in-policy"       // no rule deletes this kind of item here
)

// Decision is the planner's verdict on one tag or manifest.
type Decision struct {
	Kind   Kind
	Repo   string
	Tag    string // tags
	Digest string
	Delete bool
	Reason Reason
	// Rule is the rule responsible: the deleting rule, or the one that kept
	// the item (too-new, locked, keep, a rule's protect pattern). Empty when
	// no single rule is responsible (no-match, global protect, tagged,
	// closure reasons, missing, not-in-policy).
	Rule string
	// Unlock is set on deletions of locked items (includeLocked): unlock
	// before deleting.
	Unlock bool
	// Size is a manifest's imageSize: the bytes freed when it is deleted.
	Size    int64
	Updated time.Time
	// After is set on a manifest deletion that depends on other deletions
	// of the same plan: the digests that must be gone before this deletion
	// may start. It names the subject of a referrer when the plan deletes
	// the subject too (the registry removes referrers together with their
	// subject, so if deleting the subject fails, the referrer has to stay
	// with it), and every parent index the plan deletes of a child (if an
	// index delete fails, the index still needs its children). If any of
	// them ends up not deleted, keep this one, with AfterReason.
	After []string
	// AfterReason is the reason to keep this manifest with when some digest
	// in After survives: ReasonReferrer when After names its subject,
	// otherwise (only parent indexes) ReasonIndexChild. Empty when After is.
	AfterReason Reason
	// Subject is the digest of this referrer's subject when the plan
	// deletes the subject too: the registry removes the referrer with it.
	Subject string
}

// MinUntaggedAge is a safety floor: an untagged manifest whose
// lastUpdateTime is not at least this far before the plan time is never
// deleted (ReasonTooNew), whatever the rule's ago says.
//
// acr purge: --untagged-only without --ago (or with a tiny one) deletes
// every untagged manifest older than now. The per-platform manifests of a
// multi-arch image are pushed before their index, untagged, and a push
// event triggers a purge of the repository: without the floor, a purge
// could delete the children of an image that is being pushed right now.
const MinUntaggedAge = time.Hour

// ErrOrder is wrapped by the error TagPage returns when the tags are not in
// timedesc order (a tag's lastUpdateTime is later than the previous tag's,
// across pages). keep-N depends on that order, so a server that ignored
// orderby fails the repository instead of keeping the wrong tags.
var ErrOrder = errors.New("tags not in timedesc order")

// ErrListingInconsistent is wrapped by the error Manifests returns when a
// manifest the plan must keep (a survivor, or a subject or child a survivor
// needs) is in the listing but its body answers 404 (replica lag, a delete
// racing the plan). Its children and subject cannot be known, so nothing is
// deleted; trying again later is expected to succeed.
var ErrListingInconsistent = errors.New("manifest listing inconsistent with manifest bodies")

// Cursor phases.
const (
	PhaseTags      = "tags"
	PhaseManifests = "manifests"
)

// Cursor records how far a repository got, so a redelivery resumes rather
// than redoes. Plan a resumed repository with PlanTime as "now" so ago cuts
// off at the same instant as in the first attempt.
type Cursor struct {
	Phase    string    `json:"phase"`    // PhaseTags or PhaseManifests
	PlanTime time.Time `json:"planTime"` // the "now" the first attempt planned against
}

// PlannerOption configures a RepoPlanner.
type PlannerOption func(*plannerOptions)

type plannerOptions struct {
	log         *slog.Logger
	concurrency int
	notFound    func(error) bool
}

// WithLogger sets the logger for notes such as missing manifests; nil
// discards.
func WithLogger(l *slog.Logger) PlannerOption {
	return func(o *plannerOptions) { o.log = l }
}

// WithFetchConcurrency sets how many ManifestBody calls Manifests may have in
// flight at once (default 8; values below 1 mean 1). With more than one, the
// ManifestSource must be safe for concurrent use.
func WithFetchConcurrency(n int) PlannerOption {
	return func(o *plannerOptions) { o.concurrency = max(n, 1) }
}

// WithNotFound sets how a ManifestBody error is recognised as "not found"
// (404). The default is IsNotFound.
func WithNotFound(f func(error) bool) PlannerOption {
	return func(o *plannerOptions) {
		if f != nil {
			o.notFound = f
		}
	}
}

// IsNotFound is the default not-found test: a registry 404 (acr.IsNotFound),
// or some error in err's chain with a NotFound() bool method reporting true
// (for sources that are not backed by the acr client).
func IsNotFound(err error) bool {
	if acr.IsNotFound(err) {
		return true
	}
	var nf interface{ NotFound() bool }
	return errors.As(err, &nf) && nf.NotFound()
}

// RepoPlanner plans one repository. Feed it the tag listing page by page
// with TagPage, report failed tag deletions with TagDeleteFailed, then call
// Manifests once. TagDeleteFailed may be called concurrently with TagPage;
// other methods must not be called concurrently with each other.
type RepoPlanner struct {
	repo string
	opts plannerOptions

	tagRules []*repoRule // rules that delete tags here
	manRules []*repoRule // rules that delete untagged manifests here
	protect  []protectPattern

	mu       sync.Mutex
	tagPhase bool // TagPage was called
	tags     map[dkey]tagState
	seed     maphash.Seed

	lastTag    time.Time // lastUpdateTime of the previous tag (order check)
	lastTagSet bool
}

// repoRule is a rule as it applies to one repository.
type repoRule struct {
	*compiledRule
	cutoff    time.Time  // tags: old when strictly before
	manCutoff time.Time  // untagged manifests: the earlier of cutoff and now-MinUntaggedAge
	tagRes    []*matcher // tag expressions of the filters covering the repo
	tagKept   int        // tag candidates kept so far (keep-N)
}

type protectPattern struct {
	m    *matcher
	rule string // "" for a global pattern
}

// tagState is what the tag phase remembers about one digest: whether it
// keeps a tag, and otherwise the count and an order-independent hash sum of
// the names of the tags planned for deletion. That is enough to tell, when the
// manifests are listed, whether a listed tag is one the plan deletes (dry run,
// or a listing that lags) or one the tag phase never saw (pushed since).
type tagState struct {
	surviving bool
	deleted   uint32
	sum       uint64
}

// old reports whether a tag updated at t lies strictly before the rule's
// cut-off. An unknown (zero) time is never old.
func (r *repoRule) old(t time.Time) bool {
	return !t.IsZero() && t.Before(r.cutoff)
}

// oldManifest is old for untagged manifests: also at least MinUntaggedAge
// before the plan time.
func (r *repoRule) oldManifest(t time.Time) bool {
	return !t.IsZero() && t.Before(r.manCutoff)
}

// Planner returns a planner for one repository, planning against now (use
// Cursor.PlanTime when resuming). It fails when no rule applies to the
// repository or a repository pattern times out.
func (p *Policy) Planner(repo string, now time.Time, opts ...PlannerOption) (*RepoPlanner, error) {
	rp := &RepoPlanner{
		repo: repo,
		opts: plannerOptions{concurrency: 8, notFound: IsNotFound},
		tags: make(map[dkey]tagState),
		seed: maphash.MakeSeed(),
	}
	for _, o := range opts {
		o(&rp.opts)
	}
	if rp.opts.log == nil {
		rp.opts.log = slog.New(slog.DiscardHandler)
	}
	rp.opts.log = rp.opts.log.With("repo", repo)
	for _, m := range p.protect {
		rp.protect = append(rp.protect, protectPattern{m: m})
	}
	for _, r := range p.rules {
		cutoff := now.Add(-r.ago)
		rr := &repoRule{compiledRule: r, cutoff: cutoff, manCutoff: cutoff}
		if floor := now.Add(-MinUntaggedAge); floor.Before(cutoff) {
			rr.manCutoff = floor
		}
		covered := r.allRepos
		for _, f := range r.filters {
			ok, err := f.repo.match(repo)
			if err != nil {
				return nil, fmt.Errorf("plan %s: rule %q: repository %w", repo, r.Name, err)
			}
			if ok {
				covered = true
				rr.tagRes = append(rr.tagRes, f.tag)
			}
		}
		if !covered {
			continue
		}
		// acr purge combines the tag expressions of all filters for a
		// repository into one alternation ("a|b"). They are evaluated one
		// by one here: the same for ordinary expressions, and immune to
		// inline options or unbalanced groups leaking from one filter into
		// another.
		if r.deletesTags() {
			rp.tagRules = append(rp.tagRules, rr)
		}
		if r.deletesManifests() {
			rp.manRules = append(rp.manRules, rr)
		}
		// A rule's protect patterns hold in every repository the rule
		// covers, against every rule: "a protected tag is never deleted by
		// any rule".
		for _, m := range r.protect {
			rp.protect = append(rp.protect, protectPattern{m: m, rule: r.Name})
		}
	}
	if len(rp.tagRules) == 0 && len(rp.manRules) == 0 {
		return nil, fmt.Errorf("plan %s: no rule of the policy applies to this repository", repo)
	}
	return rp, nil
}

// PlanTags reports whether some rule deletes tags in this repository.
func (rp *RepoPlanner) PlanTags() bool { return len(rp.tagRules) > 0 }

// PlanManifests reports whether some rule deletes untagged manifests here.
func (rp *RepoPlanner) PlanManifests() bool { return len(rp.manRules) > 0 }

// stage orders the reasons a rule can give for not deleting, from the
// earliest test to the latest: the reason reported is the furthest any rule
// got.
type stage int

const (
	stageNone stage = iota
	stageTooNew
	stageLocked
	stageKeep
)

func (s stage) reason() Reason {
	switch s {
	case stageTooNew:
		return ReasonTooNew
	case stageLocked:
		return ReasonLocked
	case stageKeep:
		return ReasonKeep
	}
	return ReasonNoMatch
}

// TagPage feeds one page of tags in timedesc order (the order ACR lists with
// orderby=timedesc) and emits exactly one Decision per tag, in input order.
// keep-N counts across pages. Memory grows only with the number of distinct
// digests seen (one small entry each), never with the number of tags.
//
// The order is checked, not assumed: a tag whose lastUpdateTime is later
// than the previous tag's (in this page or the one before) ends the page
// with an error wrapping ErrOrder; it and the rest of the page get no
// decision. Equal times are fine; a tag without a time counts as the oldest.
//
// A tag is deleted when some rule deletes it: the rule's tag expression
// matches, the tag is older than the rule's ago, it is unlocked (or the rule
// has includeLocked; then Unlock is set), no protect pattern matches, and the
// rule already kept its first keep candidates. Otherwise the reason is the
// first test that failed, in the order no-match, protected, too-new, locked,
// keep (with several rules: the furthest any matching rule got).
//
// acr purge: keep counts only tags that would otherwise be deleted, so a
// locked tag does not take a keep slot unless includeLocked makes it
// deletable; the same holds here. A protected tag takes no slot either (as
// with a lookahead exclusion in the filter). With several rules, each rule
// sees every tag and counts its own keep, as if each planned against the same
// listing; a tag one rule keeps is still deleted when another rule deletes it.
func (rp *RepoPlanner) TagPage(tags []acr.Tag, emit func(Decision) error) error {
	rp.mu.Lock()
	rp.tagPhase = true
	rp.mu.Unlock()
	for i := range tags {
		t := &tags[i]
		if err := rp.checkOrder(t); err != nil {
			return err
		}
		d, err := rp.decideTag(t)
		if err != nil {
			return err
		}
		rp.recordTag(t, d.Delete)
		if err := emit(d); err != nil {
			return err
		}
	}
	return nil
}

// checkOrder enforces timedesc order across calls of TagPage.
func (rp *RepoPlanner) checkOrder(t *acr.Tag) error {
	if rp.lastTagSet && t.LastUpdateTime.After(rp.lastTag) {
		return fmt.Errorf("plan %s: tag %q (lastUpdateTime %s) listed after a tag updated at %s: %w",
			rp.repo, t.Name, t.LastUpdateTime.Format(time.RFC3339Nano), rp.lastTag.Format(time.RFC3339Nano), ErrOrder)
	}
	rp.lastTag, rp.lastTagSet = t.LastUpdateTime, true
	return nil
}

func (rp *RepoPlanner) decideTag(t *acr.Tag) (Decision, error) {
	d := Decision{Kind: KindTag, Repo: rp.repo, Tag: t.Name, Digest: t.Digest, Updated: t.LastUpdateTime}
	if len(rp.tagRules) == 0 {
		d.Reason = ReasonNotInPolicy
		return d, nil
	}
	var matched []*repoRule
	for _, r := range rp.tagRules {
		for _, m := range r.tagRes {
			ok, err := m.match(t.Name)
			if err != nil {
				return d, fmt.Errorf("plan %s: rule %q: tag filter %w", rp.repo, r.Name, err)
			}
			if ok {
				matched = append(matched, r)
				break
			}
		}
	}
	if len(matched) == 0 {
		d.Reason = ReasonNoMatch
		return d, nil
	}
	for _, p := range rp.protect {
		ok, err := p.m.match(t.Name)
		if err != nil {
			return d, fmt.Errorf("plan %s: protect %w", rp.repo, err)
		}
		if ok {
			d.Reason, d.Rule = ReasonProtected, p.rule
			return d, nil
		}
	}
	locked := t.Attributes.Locked()
	best, bestRule := stageNone, ""
	for _, r := range matched {
		var s stage
		switch {
		case !r.old(t.LastUpdateTime):
			s = stageTooNew
		case locked && !r.IncludeLocked:
			s = stageLocked
		case r.tagKept < r.Keep:
			r.tagKept++
			s = stageKeep
		default:
			if !d.Delete {
				d.Delete, d.Reason, d.Rule, d.Unlock = true, ReasonOld, r.Name, locked
			}
			continue
		}
		if s > best {
			best, bestRule = s, r.Name
		}
	}
	if !d.Delete {
		d.Reason, d.Rule = best.reason(), bestRule
	}
	return d, nil
}

// recordTag remembers the tag's fate for its digest.
func (rp *RepoPlanner) recordTag(t *acr.Tag, deleted bool) {
	k := keyOf(t.Digest)
	var h uint64
	if deleted {
		h = maphash.String(rp.seed, t.Name)
	}
	rp.mu.Lock()
	defer rp.mu.Unlock()
	st := rp.tags[k]
	if deleted {
		st.deleted++
		st.sum += h
	} else {
		st.surviving = true
	}
	rp.tags[k] = st
}

// TagDeleteFailed tells the planner that a tag it chose to delete is still
// there (lock race, error), so its manifest counts as tagged and survives.
func (rp *RepoPlanner) TagDeleteFailed(digest string) {
	k := keyOf(digest)
	rp.mu.Lock()
	defer rp.mu.Unlock()
	st := rp.tags[k]
	st.surviving = true
	rp.tags[k] = st
}

// tagged reports whether a listed manifest still has a tag after the tag
// phase. Without a tag phase (untaggedOnly, or a resumed run whose tags are
// done) a listed tag means tagged. After it, the manifest is tagged when its
// digest keeps a tag, or when the listing shows any tag other than exactly
// the set the plan deletes: in a dry run the planned deletions are still
// listed (acr purge makes the same allowance with a per-digest count), while
// a tag pushed since the tag listing must keep its manifest. Caller holds mu.
func (rp *RepoPlanner) tagged(m *acr.Manifest) bool {
	if !rp.tagPhase {
		return len(m.Tags) > 0
	}
	st, ok := rp.tags[keyOf(m.Digest)]
	if ok && st.surviving {
		return true
	}
	if len(m.Tags) == 0 {
		return false
	}
	if !ok || uint64(len(m.Tags)) != uint64(st.deleted) {
		return true
	}
	var sum uint64
	for _, name := range m.Tags {
		sum += maphash.String(rp.seed, name)
	}
	return sum != st.sum
}

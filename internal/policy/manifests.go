package policy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// ManifestSource is what Manifests needs from the registry.
type ManifestSource interface {
	// Manifests lists every manifest of the repository once, page by page,
	// in any order (the planner sorts by itself).
	Manifests(ctx context.Context, fn func(page []acr.Manifest) error) error
	// ManifestBody fetches one manifest body; a 404 must be recognisable
	// by the planner's not-found test (see WithNotFound).
	ManifestBody(ctx context.Context, digest string) (*acr.ManifestBody, error)
}

// mkind classifies a manifest by media type.
type mkind uint8

const (
	kindUnknown     mkind = iota // no or unrecognised media type: could be anything
	kindDockerImage              // Docker schema2 image: no subject, no children
	kindDockerOld                // Docker schema1: no subject, no children
	kindDockerList               // children, no subject
	kindOCIImage                 // may carry a subject
	kindOCIIndex                 // children, may carry a subject
	kindOCIArtifact              // may carry a subject
)

func kindOf(mediaType string) mkind {
	switch mediaType {
	case acr.MediaTypeDockerManifest:
		return kindDockerImage
	case acr.MediaTypeDockerManifestList:
		return kindDockerList
	case acr.MediaTypeOCIManifest:
		return kindOCIImage
	case acr.MediaTypeOCIIndex:
		return kindOCIIndex
	case acr.MediaTypeOCIArtifact:
		return kindOCIArtifact
	case "application/vnd.docker.distribution.manifest.v1+json",
		"application/vnd.docker.distribution.manifest.v1+prettyjws":
		return kindDockerOld
	}
	return kindUnknown
}

// standardImageConfig reports whether a config media type is that of a
// plain container image.
func standardImageConfig(mediaType string) bool {
	return mediaType == "application/vnd.oci.image.config.v1+json" ||
		mediaType == "application/vnd.docker.container.image.v1+json"
}

// candidateNeedsBody: the body of a candidate still unprotected is fetched
// unless it is a Docker image (no subject, no children). OCI images are
// fetched whatever their config (a referrer of a kept manifest must not be
// deleted), indexes and lists for their children (see Decision.After), and
// unknown media types to find out.
func (k mkind) candidateNeedsBody() bool {
	return k != kindDockerImage && k != kindDockerOld
}

// survivorNeedsBody: the body of a survivor is fetched when it may have
// children (indexes, lists, unknown) or a subject (OCI artifacts, indexes,
// OCI images whose config is not a plain image config). A plain image
// (Docker, or OCI with an image config) is taken to have neither.
func (r *mrec) survivorNeedsBody() bool {
	switch r.kind {
	case kindDockerImage, kindDockerOld:
		return false
	case kindOCIImage:
		return !r.has(fPlainImage)
	}
	return true
}

// Record flags.
const (
	fTagged uint16 = 1 << iota
	fLocked
	fCandidate  // selected by at least one rule (untagged, old, deletable)
	fFetched    // body fetched: children and subject known
	fMissing    // body 404: gone
	fSurvives   // not deleted, for whatever reason
	fVisited    // closure expanded from here
	fDeleted    // planned for deletion
	fPlainImage // OCI image with a plain image config: no subject assumed
)

// Reason codes stored in a record (a byte instead of a string).
var reasonCodes = []Reason{"", ReasonUntagged, ReasonTooNew, ReasonKeep, ReasonLocked, ReasonTagged, ReasonIndexChild, ReasonReferrer, ReasonSubject, ReasonMissing}

func reasonCode(r Reason) uint8 { return uint8(slices.Index(reasonCodes, r)) }

const (
	noRef  int32 = -1 // no subject / end of a referrer list
	noRule int16 = -1
)

// mrec is the compact per-manifest record Manifests keeps (about 160 bytes
// with the digest): 200,000 manifests fit in under 30 MB.
type mrec struct {
	digest   string
	updated  time.Time // zero = unknown: never old
	size     int64
	childOff int32 // children in mstate.children[childOff : childOff+childN]
	childN   int32
	subject  int32 // record index, noRef, or <= -2: -(missing index)-2
	firstRef int32 // first referrer (a record whose subject is this one)
	nextRef  int32 // next referrer of the same subject
	flags    uint16
	rule     int16 // index into manRules of the responsible rule
	kind     mkind
	reason   uint8
}

func (r *mrec) has(f uint16) bool { return r.flags&f != 0 }

// mstate is the working state of one Manifests call.
type mstate struct {
	rp       *RepoPlanner
	src      ManifestSource
	recs     []mrec
	index    map[dkey]int32
	children []int32 // record index, or <= -2 for a missing digest
	missing  []missingRef
	missIdx  map[dkey]int32
	err      error // first inconsistency found by protect
}

// missingRef is a digest referenced by an index or a referrer but absent
// from the listing.
type missingRef struct {
	digest string
	noted  bool // referenced from a surviving manifest: reported
}

func encodeMissing(i int32) int32 { return -i - 2 }
func decodeMissing(v int32) int32 { return -v - 2 }

// Manifests plans the deletion of untagged manifests. It lists all manifests
// once (in any order), decides which are untagged after the tag phase,
// computes what must survive, fetching bodies only where needed, applies each
// rule's ago and keep, and only then emits one Decision per manifest, newest
// first, followed by one ReasonMissing Decision per digest that a surviving
// manifest references (as a child or a subject) but that is not in the
// repository. Planning completes before the first Decision is emitted, so a
// planning error (listing, bodies, inconsistency) emits nothing.
//
// A survivor is a manifest that is tagged, locked (without includeLocked),
// too new, or kept by keep-N, and, to a fixed point, everything a survivor
// needs: the children (recursively) of a surviving index, the referrers of
// a survivor, and the subject of a surviving referrer (ReasonSubject: the
// registry deletes referrers together with their subject, so deleting the
// subject would destroy the survivor). A surviving subject protects its own
// children and other referrers in turn. keep-N counts, newest first, the
// candidates (untagged, old, deletable) that are not already protected when
// reached; a kept manifest protects what it needs at once, which may protect
// older candidates before they are reached and undo the deletion of newer
// ones.
//
// A deletion that depends on others names them in Decision.After: a referrer
// its subject when the plan deletes that too, a child every parent index the
// plan deletes. The executor deletes it only once they are gone.
//
// Cost: ManifestBody is called (up to the fetch concurrency, in sweeps) for
//   - every survivor that may have children or a subject: indexes and
//     Docker lists, OCI artifacts, OCI images whose configMediaType is not a
//     plain image config (application/vnd.oci.image.config.v1+json or
//     application/vnd.docker.container.image.v1+json) or is not given, and
//     manifests of unknown media type;
//   - every candidate not already protected after the survivors' closure,
//     except Docker images: its subject decides whether it is a referrer of
//     a survivor, and an index's children are needed for Decision.After.
//
// Docker images are never fetched, nor are surviving OCI images with a plain
// image config: those are taken to carry no subject. That is the one
// accepted gap (a surviving referrer with an image config could lose its
// subject); closing it would mean fetching every kept image. In a typical
// repository this fetches every index, artifact and old untagged manifest,
// but not the tagged single-platform images nor the platform images of kept
// multi-arch indexes.
//
// A body that answers 404 is fine for a candidate (it is gone:
// ReasonMissing). For a manifest that must survive it is not: the listing
// says it exists, and its children and subject cannot be known. Manifests
// then fails with an error wrapping ErrListingInconsistent and plans nothing;
// a later attempt is expected to see a consistent registry. A ManifestBody
// that returns neither a body nor an error is an error too.
//
// Referrers: acr purge never deletes a manifest that has a subject and relies
// on the registry deleting referrers together with their subject. Here a
// referrer is kept while its subject survives or is not in the listing, and is
// deleted only when the plan also deletes its subject (the registry would
// remove it anyway), after the subject.
//
// Differences from acr purge, all in the direction of keeping more: children
// of locked indexes and of indexes kept by keep-N are protected (acr purge
// looks only at tagged and too-new indexes); the subject of a kept referrer
// is kept (acr purge deletes it, and with it the referrer); a manifest
// without a media type is fetched and classified by its body instead of
// always being kept; and MinUntaggedAge is a floor under every rule's ago.
// A manifest is old when its lastUpdateTime is strictly before the cut-off,
// as for tags (acr purge deletes untagged manifests at exactly the cut-off).
func (rp *RepoPlanner) Manifests(ctx context.Context, src ManifestSource, emit func(Decision) error) error {
	if len(rp.manRules) == 0 {
		err := src.Manifests(ctx, func(page []acr.Manifest) error {
			for i := range page {
				m := &page[i]
				d := Decision{Kind: KindManifest, Repo: rp.repo, Digest: m.Digest, Reason: ReasonNotInPolicy, Size: m.ImageSize, Updated: m.LastUpdateTime}
				if err := emit(d); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("plan %s: list manifests: %w", rp.repo, err)
		}
		return nil
	}
	s := &mstate{rp: rp, src: src, index: make(map[dkey]int32), missIdx: make(map[dkey]int32)}
	if err := s.collect(ctx); err != nil {
		return err
	}
	// 1. Survival spreads from the base survivors along children and
	// subjects (their bodies are fetched on the way).
	if err := s.closure(ctx, s.roots()); err != nil {
		return err
	}
	// 2. Fetch the candidates still unprotected: their subjects link them
	// to the manifests they refer to, and survival spreads along the new
	// edges.
	if err := s.fetchCandidates(ctx); err != nil {
		return err
	}
	if err := s.closure(ctx, s.referrerRoots()); err != nil {
		return err
	}
	// 3. keep-N and deletion, newest first.
	order := s.order()
	if err := s.applyRules(ctx, order); err != nil {
		return err
	}
	return s.emit(order, emit)
}

// collect lists the manifests into compact records.
func (s *mstate) collect(ctx context.Context) error {
	rp := s.rp
	err := s.src.Manifests(ctx, func(page []acr.Manifest) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		rp.mu.Lock()
		defer rp.mu.Unlock()
		for i := range page {
			m := &page[i]
			if m.Digest == "" {
				rp.opts.log.Warn("manifest listed without a digest: skipped")
				continue
			}
			k := keyOf(m.Digest)
			if _, dup := s.index[k]; dup {
				rp.opts.log.Warn("manifest listed twice: decided once", "digest", m.Digest)
				continue
			}
			if len(s.recs) >= 1<<31-2 {
				return fmt.Errorf("plan %s: too many manifests", rp.repo)
			}
			r := mrec{
				digest:   strings.Clone(m.Digest),
				size:     m.ImageSize,
				subject:  noRef,
				firstRef: noRef,
				nextRef:  noRef,
				rule:     noRule,
				kind:     kindOf(m.MediaType),
			}
			r.updated = m.LastUpdateTime
			if rp.tagged(m) {
				r.flags |= fTagged
			}
			if m.Attributes.Locked() {
				r.flags |= fLocked
			}
			if r.kind == kindOCIImage && standardImageConfig(m.ConfigMediaType) {
				r.flags |= fPlainImage
			}
			s.classify(&r, m)
			s.index[k] = int32(len(s.recs))
			s.recs = append(s.recs, r)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("plan %s: list manifests: %w", rp.repo, err)
	}
	return nil
}

// classify marks a record as a candidate when some rule selects it, or else
// as a base survivor with the furthest reason any rule got.
func (s *mstate) classify(r *mrec, m *acr.Manifest) {
	if r.has(fTagged) {
		r.flags |= fSurvives
		r.reason = reasonCode(ReasonTagged)
		return
	}
	best, bestRule := stageNone, noRule
	for i, rule := range s.rp.manRules {
		var st stage
		switch {
		case !rule.oldManifest(m.LastUpdateTime):
			st = stageTooNew
		case r.has(fLocked) && !rule.IncludeLocked:
			st = stageLocked
		default:
			r.flags |= fCandidate
			return
		}
		if st > best {
			best, bestRule = st, int16(i)
		}
	}
	r.flags |= fSurvives
	r.reason = reasonCode(best.reason())
	r.rule = bestRule
}

// selects reports whether rule i selects record r (a candidate).
func (s *mstate) selects(i int, r *mrec) bool {
	rule := s.rp.manRules[i]
	return rule.oldManifest(r.updated) && (!r.has(fLocked) || rule.IncludeLocked)
}

// fetchCandidates fetches, in one concurrent sweep, the bodies of the
// candidates not yet protected (see candidateNeedsBody).
func (s *mstate) fetchCandidates(ctx context.Context) error {
	var need []int32
	for i := range s.recs {
		r := &s.recs[i]
		if r.has(fCandidate) && !r.has(fSurvives|fFetched) && r.kind.candidateNeedsBody() {
			need = append(need, int32(i))
		}
	}
	return s.fetch(ctx, need)
}

// fetched is what Manifests keeps of a manifest body.
type fetched struct {
	missing   bool
	mediaType string
	children  []string
	subject   string
}

const fetchChunk = 512

// fetch fetches the bodies of the given records (chunk by chunk, up to the
// configured concurrency) and records children and subjects.
func (s *mstate) fetch(ctx context.Context, idxs []int32) error {
	rp := s.rp
	for start := 0; start < len(idxs); start += fetchChunk {
		part := idxs[start:min(start+fetchChunk, len(idxs))]
		results := make([]fetched, len(part))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(rp.opts.concurrency)
		for j, i := range part {
			digest := s.recs[i].digest
			g.Go(func() error {
				body, err := s.src.ManifestBody(gctx, digest)
				if err != nil {
					if rp.opts.notFound(err) {
						results[j].missing = true
						return nil
					}
					return fmt.Errorf("plan %s: manifest %s: %w", rp.repo, digest, err)
				}
				if body == nil {
					return fmt.Errorf("plan %s: manifest %s: the registry returned neither a body nor an error", rp.repo, digest)
				}
				f := fetched{mediaType: body.MediaType}
				for _, c := range body.Manifests {
					f.children = append(f.children, c.Digest)
				}
				if body.Subject != nil && body.Subject.Digest != "" {
					f.subject = body.Subject.Digest
				}
				results[j] = f
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		for j, i := range part {
			if err := s.apply(i, &results[j]); err != nil {
				return err
			}
		}
	}
	return nil
}

// apply records a fetched body: children, and the subject, linking the
// record onto its subject's referrer list. A 404 is an inconsistency for a
// survivor and marks a candidate missing.
func (s *mstate) apply(i int32, f *fetched) error {
	r := &s.recs[i]
	if r.has(fFetched) {
		return nil
	}
	r.flags |= fFetched
	if f.missing {
		if r.has(fSurvives) {
			return s.inconsistent(i, reasonCodes[r.reason])
		}
		r.flags |= fMissing
		s.rp.opts.log.Info("manifest listed but gone (404): skipped", "digest", r.digest)
		return nil
	}
	if r.kind == kindUnknown && f.mediaType != "" {
		if k := kindOf(f.mediaType); k != kindUnknown {
			r.kind = k
		}
	}
	if len(f.children) > 0 {
		r.childOff = int32(len(s.children))
		r.childN = int32(len(f.children))
		for _, c := range f.children {
			s.children = append(s.children, s.ref(c))
		}
	}
	if f.subject != "" {
		r.subject = s.ref(f.subject)
		if r.subject >= 0 && r.subject != i {
			subj := &s.recs[r.subject]
			r.nextRef = subj.firstRef
			subj.firstRef = i
		}
	}
	return nil
}

// inconsistent is the error for a listed manifest that must survive (for
// reason) but whose body answered 404.
func (s *mstate) inconsistent(i int32, reason Reason) error {
	return fmt.Errorf("plan %s: manifest %s is listed and must be kept (%s), but its body answers 404 not found, so what it needs is unknown; nothing planned, try again later: %w",
		s.rp.repo, s.recs[i].digest, reason, ErrListingInconsistent)
}

// ref resolves a referenced digest to its record, or to a missing entry.
func (s *mstate) ref(digest string) int32 {
	k := keyOf(digest)
	if i, ok := s.index[k]; ok {
		return i
	}
	if i, ok := s.missIdx[k]; ok {
		return encodeMissing(i)
	}
	i := int32(len(s.missing))
	s.missing = append(s.missing, missingRef{digest: strings.Clone(digest)})
	s.missIdx[k] = i
	return encodeMissing(i)
}

// roots marks the base survivors (tagged, too new, locked: every listed
// manifest no rule selects) as visited and returns them: the closure starts
// there.
func (s *mstate) roots() []int32 {
	var roots []int32
	for i := range s.recs {
		r := &s.recs[i]
		if r.has(fSurvives) && !r.has(fMissing) {
			r.flags |= fVisited
			roots = append(roots, int32(i))
		}
	}
	return roots
}

// referrerRoots protects, once the candidates' subjects are known, every
// referrer of a survivor, the subject of every surviving referrer, and every
// candidate whose subject is not in the listing (its subject may still exist
// or arrive, so it is not a proven orphan). It returns them for expansion.
func (s *mstate) referrerRoots() []int32 {
	var roots []int32
	for i := range s.recs {
		r := &s.recs[i]
		switch {
		case r.has(fMissing) || r.subject == noRef || r.subject == int32(i):
		case r.subject <= -2:
			if r.has(fCandidate) && !r.has(fSurvives) {
				s.note(r.subject)
			}
			if s.protect(int32(i), ReasonReferrer) {
				roots = append(roots, int32(i))
			}
		default:
			subj := &s.recs[r.subject]
			if subj.has(fSurvives) && !subj.has(fMissing) && s.protect(int32(i), ReasonReferrer) {
				roots = append(roots, int32(i))
			}
			if r.has(fSurvives) && s.protect(r.subject, ReasonSubject) {
				roots = append(roots, r.subject)
			}
		}
	}
	return roots
}

func (s *mstate) note(ref int32) {
	m := &s.missing[decodeMissing(ref)]
	if !m.noted {
		m.noted = true
		s.rp.opts.log.Info("manifest referenced but not in the repository", "digest", m.digest)
	}
}

// closure expands survival from the queue breadth first, to a fixed point:
// children of surviving indexes, referrers of survivors and subjects of
// surviving referrers survive too. Bodies of survivors that may have
// children or a subject and are not fetched yet are fetched a level at a
// time.
func (s *mstate) closure(ctx context.Context, queue []int32) error {
	for len(queue) > 0 && s.err == nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		var need []int32
		for _, i := range queue {
			r := &s.recs[i]
			if !r.has(fFetched) && r.survivorNeedsBody() {
				need = append(need, i)
			}
		}
		if err := s.fetch(ctx, need); err != nil {
			return err
		}
		var next []int32
		for _, i := range queue {
			r := &s.recs[i]
			if r.has(fMissing) {
				continue
			}
			for _, c := range s.children[r.childOff : r.childOff+r.childN] {
				if c <= -2 {
					s.note(c)
					continue
				}
				if s.protect(c, ReasonIndexChild) {
					next = append(next, c)
				}
			}
			for ref := r.firstRef; ref != noRef; ref = s.recs[ref].nextRef {
				if s.protect(ref, ReasonReferrer) {
					next = append(next, ref)
				}
			}
			switch {
			case r.subject <= -2:
				s.note(r.subject)
			case r.subject >= 0 && r.subject != i:
				if s.protect(r.subject, ReasonSubject) {
					next = append(next, r.subject)
				}
			}
		}
		queue = next
	}
	return s.err
}

// protect makes record i survive for reason (undoing a planned deletion if
// need be) and reports whether it still has to be expanded. A record whose
// body answered 404 cannot be protected: that records an inconsistency
// (s.err) that fails the plan.
func (s *mstate) protect(i int32, reason Reason) bool {
	r := &s.recs[i]
	if r.has(fMissing) {
		if s.err == nil {
			s.err = s.inconsistent(i, reason)
		}
		return false
	}
	if !r.has(fSurvives) {
		r.flags = r.flags&^fDeleted | fSurvives
		r.reason = reasonCode(reason)
		r.rule = noRule
	}
	if r.has(fVisited) {
		return false
	}
	r.flags |= fVisited
	return true
}

// order returns the record indexes newest first (digest breaks ties), the
// order keep-N counts in and decisions are emitted in. The listing's own
// order is never relied on.
func (s *mstate) order() []int32 {
	order := make([]int32, len(s.recs))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		ra, rb := &s.recs[a], &s.recs[b]
		if c := rb.updated.Compare(ra.updated); c != 0 {
			return c
		}
		return strings.Compare(ra.digest, rb.digest)
	})
	return order
}

// applyRules walks the candidates newest first and lets every rule that
// selects one keep it (within its keep) or delete it. A manifest is deleted
// when any rule deletes it; one that every selecting rule keeps survives and
// its closure is expanded at once, which may protect older candidates before
// they are reached and undo the deletion of newer ones (children, referrers
// and subjects alike). Undoing never changes a keep count: a deleted
// manifest was beyond every deleting rule's keep.
func (s *mstate) applyRules(ctx context.Context, order []int32) error {
	kept := make([]int, len(s.rp.manRules))
	for _, i := range order {
		r := &s.recs[i]
		if !r.has(fCandidate) || r.has(fMissing) || r.has(fSurvives) {
			continue
		}
		deleteBy, keepBy := noRule, noRule
		for j, rule := range s.rp.manRules {
			if !s.selects(j, r) {
				continue
			}
			if kept[j] < rule.Keep {
				kept[j]++
				if keepBy == noRule {
					keepBy = int16(j)
				}
			} else if deleteBy == noRule {
				deleteBy = int16(j)
			}
		}
		if deleteBy != noRule {
			r.flags |= fDeleted
			r.reason = reasonCode(ReasonUntagged)
			r.rule = deleteBy
			continue
		}
		r.flags |= fSurvives | fVisited
		r.reason = reasonCode(ReasonKeep)
		r.rule = keepBy
		if err := s.closure(ctx, []int32{i}); err != nil {
			return err
		}
	}
	return s.err
}

// deletedParents maps every deleted manifest that a deleted index lists as a
// child to those parents (each once, never itself).
func (s *mstate) deletedParents() map[int32][]int32 {
	var parents map[int32][]int32
	for i := range s.recs {
		r := &s.recs[i]
		if !r.has(fDeleted) || r.childN == 0 {
			continue
		}
		for _, c := range s.children[r.childOff : r.childOff+r.childN] {
			if c < 0 || c == int32(i) || !s.recs[c].has(fDeleted) {
				continue
			}
			if parents == nil {
				parents = make(map[int32][]int32)
			}
			if !slices.Contains(parents[c], int32(i)) {
				parents[c] = append(parents[c], int32(i))
			}
		}
	}
	return parents
}

// emit sends the decisions, newest first, then the missing notes.
func (s *mstate) emit(order []int32, emit func(Decision) error) error {
	rp := s.rp
	parents := s.deletedParents()
	for _, i := range order {
		r := &s.recs[i]
		d := Decision{Kind: KindManifest, Repo: rp.repo, Digest: r.digest, Size: r.size, Updated: r.updated}
		switch {
		case r.has(fMissing):
			d.Reason = ReasonMissing
		case r.has(fDeleted):
			d.Delete = true
			d.Reason = ReasonUntagged
			d.Unlock = r.has(fLocked)
			for _, p := range parents[i] {
				d.After = append(d.After, s.recs[p].digest)
				d.AfterReason = ReasonIndexChild
			}
			if r.subject >= 0 && r.subject != i && s.recs[r.subject].has(fDeleted) {
				if !slices.Contains(parents[i], r.subject) {
					d.After = append(d.After, s.recs[r.subject].digest)
				}
				d.AfterReason = ReasonReferrer
				d.Subject = s.recs[r.subject].digest
			}
		default:
			d.Reason = reasonCodes[r.reason]
		}
		if r.rule != noRule && !r.has(fMissing) {
			d.Rule = rp.manRules[r.rule].Name
		}
		if d.Reason == "" { // cannot happen; never delete on a bug
			d.Delete, d.Reason, d.After, d.AfterReason, d.Subject = false, ReasonTagged, nil, "", ""
		}
		if err := emit(d); err != nil {
			return err
		}
	}
	for _, m := range s.missing {
		if m.noted {
			if err := emit(Decision{Kind: KindManifest, Repo: rp.repo, Digest: m.digest, Reason: ReasonMissing}); err != nil {
				return err
			}
		}
	}
	return nil
}

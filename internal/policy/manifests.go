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
	// Manifests lists every manifest of the repository once, page by page.
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

// mayHaveSubject: Docker manifests cannot be referrers; everything else,
// including an unknown media type, is looked at.
func (k mkind) mayHaveSubject() bool {
	return k != kindDockerImage && k != kindDockerList && k != kindDockerOld
}

// mayHaveChildren: indexes, and anything whose type is unknown.
func (k mkind) mayHaveChildren() bool {
	return k == kindDockerList || k == kindOCIIndex || k == kindUnknown
}

// Record flags.
const (
	fTagged uint16 = 1 << iota
	fLocked
	fCandidate // selected by at least one rule (untagged, old, deletable)
	fFetched   // body fetched: children and subject known
	fMissing   // body 404: gone
	fSurvives  // not deleted, for whatever reason
	fVisited   // closure expanded from here
	fDeleted
)

// Reason codes stored in a record (a byte instead of a string).
var reasonCodes = []Reason{"", ReasonUntagged, ReasonTooNew, ReasonKeep, ReasonLocked, ReasonTagged, ReasonIndexChild, ReasonReferrer, ReasonMissing}

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
}

// missingRef is a digest referenced by an index or a referrer but absent
// from the listing.
type missingRef struct {
	digest string
	noted  bool // referenced from a surviving manifest: reported
}

func encodeMissing(i int32) int32 { return -i - 2 }
func decodeMissing(v int32) int32 { return -v - 2 }

// Manifests plans the deletion of untagged manifests. It lists all manifests once, decides which are untagged after the
// tag phase, computes the protected closure (children, recursively, of every
// surviving index; referrers, recursively, of every surviving manifest),
// fetching bodies only where needed, applies each rule's ago and keep, and only
// then emits one Decision per manifest, newest first, followed by one
// ReasonMissing Decision per digest that a surviving index or referrer
// references but that is not in the repository.
//
// A survivor is a manifest that is tagged, locked (without includeLocked),
// too new, kept by keep-N, a child of a surviving index or a referrer of a
// survivor. keep-N counts, newest first, the manifests that are candidates
// (untagged, old, deletable) and not already protected when reached; a kept
// manifest protects its own children and referrers in turn.
//
// Referrers: acr purge never deletes a manifest that has a subject and relies
// on the registry deleting referrers together with their subject. Here a
// referrer is kept while its subject survives or is not in the listing, and is
// deleted only when the plan also deletes its subject (the registry would
// remove it anyway).
//
// Differences from acr purge, all in the direction of keeping more: children
// of locked indexes and of indexes kept by keep-N are protected (acr purge
// looks only at tagged and too-new indexes), and a manifest without a media
// type is fetched and classified by its body instead of always being kept.
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
	// 1. Survival spreads from the base survivors to the children of
	// surviving indexes (their bodies are fetched on the way).
	if err := s.closure(ctx, s.roots()); err != nil {
		return err
	}
	// 2. Only the candidates still unprotected can be referrers that
	// matter: fetch those that may carry a subject, link every referrer to
	// its subject, and spread survival along the new edges.
	if err := s.fetchCandidates(ctx); err != nil {
		return err
	}
	s.linkReferrers()
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
		case !rule.old(m.LastUpdateTime):
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
	return rule.old(r.updated) && (!r.has(fLocked) || rule.IncludeLocked)
}

// fetchCandidates fetches, in one concurrent sweep, the bodies of the
// candidates not yet protected that may be referrers (OCI or unknown media
// types; Docker manifests cannot carry a subject).
func (s *mstate) fetchCandidates(ctx context.Context) error {
	var need []int32
	for i := range s.recs {
		r := &s.recs[i]
		if r.has(fCandidate) && !r.has(fSurvives|fFetched) && r.kind.mayHaveSubject() {
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
					return nil
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
			s.apply(i, &results[j])
		}
	}
	return nil
}

func (s *mstate) apply(i int32, f *fetched) {
	r := &s.recs[i]
	r.flags |= fFetched
	if f.missing {
		r.flags |= fMissing
		s.rp.opts.log.Info("manifest listed but gone (404): skipped", "digest", r.digest)
		return
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
	}
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

// linkReferrers threads each record with a listed subject onto its
// subject's referrer list.
func (s *mstate) linkReferrers() {
	for i := range s.recs {
		r := &s.recs[i]
		if r.subject >= 0 && r.subject != int32(i) {
			subj := &s.recs[r.subject]
			r.nextRef = subj.firstRef
			subj.firstRef = int32(i)
		}
	}
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

// referrerRoots protects, once the referrer links are known, every referrer
// of a survivor, and every candidate whose subject is not in the listing
// (its subject may still exist or arrive, so it is not a proven orphan). It
// returns them for expansion.
func (s *mstate) referrerRoots() []int32 {
	var roots []int32
	for i := range s.recs {
		r := &s.recs[i]
		switch {
		case r.has(fMissing) || r.subject == noRef:
		case r.subject <= -2:
			if r.has(fCandidate) && !r.has(fSurvives) {
				s.note(r.subject)
			}
			if s.protect(int32(i), ReasonReferrer) {
				roots = append(roots, int32(i))
			}
		case s.recs[r.subject].has(fSurvives) && !s.recs[r.subject].has(fMissing):
			if s.protect(int32(i), ReasonReferrer) {
				roots = append(roots, int32(i))
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

// closure expands survival from the queue breadth first: children of
// surviving indexes and referrers of survivors survive too. Bodies of index
// survivors not fetched yet are fetched a level at a time.
func (s *mstate) closure(ctx context.Context, queue []int32) error {
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		var need []int32
		for _, i := range queue {
			r := &s.recs[i]
			if !r.has(fFetched) && r.kind.mayHaveChildren() {
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
		}
		queue = next
	}
	return nil
}

// protect makes record i survive for reason (undoing a planned deletion if
// need be) and reports whether it still has to be expanded.
func (s *mstate) protect(i int32, reason Reason) bool {
	r := &s.recs[i]
	if r.has(fMissing) {
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
// order keep-N counts in and decisions are emitted in.
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
// they are reached and undo the deletion of newer ones. Undoing never changes
// a keep count: a deleted manifest was beyond every deleting rule's keep.
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
	return nil
}

// emit sends the decisions, newest first, then the missing notes.
func (s *mstate) emit(order []int32, emit func(Decision) error) error {
	rp := s.rp
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
			if r.subject >= 0 && r.subject != i && s.recs[r.subject].has(fDeleted) {
				d.Subject = s.recs[r.subject].digest
			}
		default:
			d.Reason = reasonCodes[r.reason]
		}
		if r.rule != noRule && !r.has(fMissing) {
			d.Rule = rp.manRules[r.rule].Name
		}
		if d.Reason == "" { // cannot happen; never delete on a bug
			d.Delete, d.Reason = false, ReasonTagged
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

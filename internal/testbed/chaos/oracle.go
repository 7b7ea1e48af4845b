package chaos

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// MinUntaggedAge mirrors the design's floor: an untagged manifest younger
// than an hour is never deleted, whatever ago says.
const MinUntaggedAge = time.Hour

// Expectation is what a policy leaves of a seeded repository.
type Expectation struct {
	Repo string
	// InPolicy: the policy's repository expression matches the name.
	InPolicy bool
	// Tags and manifests (by digest) that survive or are deleted.
	KeepTags, GoneTags           map[string]bool
	KeepManifests, GoneManifests map[string]bool
}

// Gone counts the deletions the policy implies.
func (e *Expectation) Gone() int { return len(e.GoneTags) + len(e.GoneManifests) }

// Expect computes, without the planner, what spec leaves of r when planned
// at now. It is a direct reading of the design's purge semantics:
//
// Tags: a tag survives when a protect pattern matches it, the tag
// expression does not, it is locked, or it is not strictly older than
// now-ago; of the others (the candidates) the Keep most recently updated
// survive and the rest are deleted.
//
// Untagged manifests (only when spec.Untagged): a manifest survives when it
// keeps a tag, is locked, or is not strictly older than now-max(ago, 1h);
// survival spreads to the children of a surviving index, the referrers of
// a survivor and the subject of a surviving referrer, to a fixed point.
// The remaining manifests are taken newest first (ties by digest): one not
// yet surviving is kept while fewer than Keep were kept (and survival
// spreads from it at once), otherwise it is marked for deletion. Marked
// manifests that survive in the end are kept.
func Expect(spec Spec, r *Repo, now time.Time) (*Expectation, error) {
	e := &Expectation{Repo: r.Name, KeepTags: map[string]bool{}, GoneTags: map[string]bool{},
		KeepManifests: map[string]bool{}, GoneManifests: map[string]bool{}}
	repoRe, err := regexp.Compile(`^(?:` + spec.RepoFilter + `)$`)
	if err != nil {
		return nil, fmt.Errorf("repository expression: %w", err)
	}
	tagRe, err := regexp.Compile(spec.TagFilter)
	if err != nil {
		return nil, fmt.Errorf("tag expression: %w", err)
	}
	var protect []*regexp.Regexp
	for _, p := range spec.Protect {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("protect %q: %w", p, err)
		}
		protect = append(protect, re)
	}
	e.InPolicy = repoRe.MatchString(r.Name)

	// Tags.
	cut := now.Add(-spec.Ago())
	var cands []Tag
	for _, m := range r.Manifests {
		for _, t := range m.Tags {
			protected := slices.ContainsFunc(protect, func(re *regexp.Regexp) bool { return re.MatchString(t.Name) })
			if !e.InPolicy || protected || !tagRe.MatchString(t.Name) || t.Locked || !t.Updated.Before(cut) {
				e.KeepTags[t.Name] = true
				continue
			}
			cands = append(cands, t)
		}
	}
	slices.SortFunc(cands, func(a, b Tag) int {
		if c := b.Updated.Compare(a.Updated); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for i, t := range cands {
		if i < spec.Keep {
			e.KeepTags[t.Name] = true
		} else {
			e.GoneTags[t.Name] = true
		}
	}

	// Manifests.
	if !e.InPolicy || !spec.Untagged {
		for _, m := range r.Manifests {
			e.KeepManifests[m.Digest] = true
		}
		return e, nil
	}
	survives := map[*Manifest]bool{}
	var spread func(m *Manifest)
	spread = func(m *Manifest) {
		if survives[m] {
			return
		}
		survives[m] = true
		for _, c := range m.Children {
			if cm := r.Manifest(c); cm != nil {
				spread(cm)
			}
		}
		for _, o := range r.Manifests {
			if o.Subject == m.Key {
				spread(o)
			}
		}
		if m.Subject != "" {
			if sm := r.Manifest(m.Subject); sm != nil {
				spread(sm)
			}
		}
	}
	mcut := now.Add(-max(spec.Ago(), MinUntaggedAge))
	for _, m := range r.Manifests {
		tagged := slices.ContainsFunc(m.Tags, func(t Tag) bool { return e.KeepTags[t.Name] })
		if tagged || m.Locked || !m.Updated.Before(mcut) {
			spread(m)
		}
	}
	order := slices.Clone(r.Manifests)
	slices.SortFunc(order, func(a, b *Manifest) int {
		if c := b.Updated.Compare(a.Updated); c != 0 {
			return c
		}
		return strings.Compare(a.Digest, b.Digest)
	})
	kept := 0
	marked := map[*Manifest]bool{}
	for _, m := range order {
		switch {
		case survives[m]:
		case kept < spec.Keep:
			kept++
			spread(m)
		default:
			marked[m] = true
		}
	}
	for _, m := range r.Manifests {
		if marked[m] && !survives[m] {
			e.GoneManifests[m.Digest] = true
		} else {
			e.KeepManifests[m.Digest] = true
		}
	}
	return e, nil
}

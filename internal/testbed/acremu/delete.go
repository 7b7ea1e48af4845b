package acremu

import (
	"net/http"
	"slices"
	"time"
)

// handleDeleteTag serves DELETE /acr/v1/{repo}/_tags/{tag}: the tag only.
func (r *Registry) handleDeleteTag(w http.ResponseWriter, _ *http.Request, rt route, identity string) {
	now := r.Now().UTC()
	r.mu.Lock()
	rp := r.repos[rt.repo]
	var t *tag
	if rp != nil {
		t = rp.tags[rt.ref]
	}
	locked := t != nil && t.attrs.Locked()
	switch {
	case t == nil:
		r.stats.DeleteNotFound++
	case locked:
		r.stats.Locked++
	default:
		delete(rp.tags, t.name)
		rp.version++
		if m := rp.manifests[t.digest]; m != nil {
			delete(m.tags, t.name)
		}
		r.deletes = append(r.deletes, DeleteRecord{Repo: rp.name, Ref: t.name, Kind: KindTag, Identity: identity, At: now})
	}
	r.mu.Unlock()
	switch {
	case rp == nil:
		nameUnknown(w, rt.repo)
	case t == nil:
		tagUnknown(w, rt.repo, rt.ref)
	case locked:
		disallowed(w)
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

// handleDeleteManifest serves DELETE /v2/{repo}/manifests/{digest}: the
// manifest, its tags and (recursively) its referrers; an index's children stay.
func (r *Registry) handleDeleteManifest(w http.ResponseWriter, _ *http.Request, rt route, identity string) {
	if !isDigest(rt.ref) {
		writeError(w, http.StatusBadRequest, CodeUnsupported, "manifests are deleted by digest; delete tags with DELETE /acr/v1/{repo}/_tags/{tag}", map[string]string{"reference": rt.ref})
		return
	}
	now := r.Now().UTC()
	r.mu.Lock()
	rp := r.repos[rt.repo]
	var m *manifest
	if rp != nil {
		m = rp.manifests[rt.ref]
	}
	locked := m != nil && rp.manifestLocked(m)
	switch {
	case m == nil:
		r.stats.DeleteNotFound++
	case locked:
		r.stats.Locked++
	default:
		r.removeManifest(rp, m, KindManifest, identity, now)
		if len(rp.manifests) == 0 {
			r.removeRepo(rp.name)
		}
	}
	r.mu.Unlock()
	switch {
	case rp == nil:
		nameUnknown(w, rt.repo)
	case m == nil:
		manifestUnknown(w, rt.repo, rt.ref)
	case locked:
		disallowed(w)
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

// manifestLocked reports whether the manifest or any of its tags is locked.
// Caller holds r.mu.
func (rp *repository) manifestLocked(m *manifest) bool {
	if m.attrs.Locked() {
		return true
	}
	for name := range m.tags {
		if t := rp.tags[name]; t != nil && t.attrs.Locked() {
			return true
		}
	}
	return false
}

// removeManifest deletes m, its tags and recursively its referrers,
// recording each deletion. Caller holds r.mu.
func (r *Registry) removeManifest(rp *repository, m *manifest, kind, identity string, at time.Time) {
	delete(rp.manifests, m.digest)
	rp.version++
	r.deletes = append(r.deletes, DeleteRecord{Repo: rp.name, Ref: m.digest, Kind: kind, Identity: identity, At: at})
	tags := make([]string, 0, len(m.tags))
	for name := range m.tags {
		tags = append(tags, name)
	}
	slices.Sort(tags)
	for _, name := range tags {
		delete(rp.tags, name)
		r.deletes = append(r.deletes, DeleteRecord{Repo: rp.name, Ref: name, Kind: KindCascadeTag, Identity: identity, At: at})
	}
	m.tags = map[string]struct{}{}
	if m.subject != "" {
		if set := rp.referrers[m.subject]; set != nil {
			delete(set, m.digest)
			if len(set) == 0 {
				delete(rp.referrers, m.subject)
			}
		}
	}
	refs := rp.referrers[m.digest]
	delete(rp.referrers, m.digest)
	digests := make([]string, 0, len(refs))
	for d := range refs {
		digests = append(digests, d)
	}
	slices.Sort(digests)
	for _, d := range digests {
		if rm := rp.manifests[d]; rm != nil {
			r.removeManifest(rp, rm, KindCascadeReferrer, identity, at)
		}
	}
}

package acremu

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// ErrNotFound is wrapped by the content-editing methods when the repository,
// tag or manifest does not exist.
var ErrNotFound = errors.New("acremu: not found")

// repository is one repository's content. Guarded by Registry.mu.
type repository struct {
	name      string
	manifests map[string]*manifest
	tags      map[string]*tag
	referrers map[string]map[string]struct{} // subject digest -> referrer digests
	version   uint64                         // bumped when listing order may change
	caches    map[cacheKey]*orderCache       // sorted orders of big repositories
}

// manifest is one stored manifest. Attribute pointers are never mutated in
// place (they are replaced), so copies of the struct may be read unlocked.
type manifest struct {
	digest          string
	mediaType       string
	artifactType    string
	configMediaType string
	arch, os        string
	body            []byte // immutable once stored
	size            int64  // imageSize reported in listings
	created         time.Time
	updated         time.Time
	attrs           acr.Attributes
	subject         string
	children        []string
	tags            map[string]struct{}
}

// tag is one stored tag; copies may be read unlocked (see manifest).
type tag struct {
	name    string
	digest  string
	created time.Time
	updated time.Time
	attrs   acr.Attributes
}

// Artifact describes content to store with Put.
type Artifact struct {
	Tags            []string
	MediaType       string         // default OCI image manifest; OCI index when Children set
	ArtifactType    string         // e.g. application/vnd.cncf.notary.signature (referrers)
	ConfigMediaType string         // default image config for images
	Architecture    string         // default amd64 (images only)
	OS              string         // default linux (images only)
	Size            int64          // imageSize reported in listings; default derived
	Children        []string       // child digests: makes it an index (may name missing digests)
	Subject         string         // subject digest: makes it a referrer
	Created         time.Time      // default Now()
	Updated         time.Time      // default Created; also each tag's lastUpdateTime
	Attributes      acr.Attributes // manifest attributes (locks)
	Seed            string
}

// Put stores a manifest generated from a (and points a's tags at it) in repo,
// creating the repository if needed, and returns its digest. The digest is
// the sha256 of the generated body, which depends on every field of a except
// Updated and Attributes (and, for an index or referrer, on whether
// the children or subject already exist in repo): the same inputs give the
// same digest, and Putting existing content again changes nothing but its
// non-nil attributes. An empty repository name stores nothing and returns "".
func (r *Registry) Put(repo string, a Artifact) (digest string) {
	if repo == "" {
		r.log.Warn("acremu: Put with an empty repository name ignored")
		return ""
	}
	now := r.Now().UTC()
	created := a.Created.UTC()
	if a.Created.IsZero() {
		created = now
	}
	updated := a.Updated.UTC()
	if a.Updated.IsZero() {
		updated = created
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	rp := r.repos[repo]
	var lookup func(string) *manifest
	if rp != nil {
		lookup = func(d string) *manifest { return rp.manifests[d] }
	} else {
		lookup = func(string) *manifest { return nil }
	}
	m := generate(a, lookup)
	if rp == nil {
		rp = &repository{
			name:      repo,
			manifests: make(map[string]*manifest),
			tags:      make(map[string]*tag),
			referrers: make(map[string]map[string]struct{}),
		}
		r.repos[repo] = rp
		r.addName(repo)
	}
	if old := rp.manifests[m.digest]; old != nil {
		old.attrs = mergeAttrs(old.attrs, a.Attributes)
	} else {
		m.created, m.updated = created, updated
		m.attrs = mergeAttrs(acr.Attributes{}, a.Attributes)
		m.tags = make(map[string]struct{})
		rp.manifests[m.digest] = m
		rp.version++
		if m.subject != "" {
			set := rp.referrers[m.subject]
			if set == nil {
				set = make(map[string]struct{})
				rp.referrers[m.subject] = set
			}
			set[m.digest] = struct{}{}
		}
	}
	for _, t := range a.Tags {
		if t == "" {
			continue
		}
		rp.setTag(t, m.digest, updated)
	}
	return m.digest
}

// addName records a new repository name, keeping names sorted cheaply when
// names arrive in ascending order. Caller holds r.mu.
func (r *Registry) addName(name string) {
	if r.namesStale {
		r.compactNames() // the name may still be listed from an earlier life
	}
	if !r.namesDirty && len(r.names) > 0 && r.names[len(r.names)-1] >= name {
		r.namesDirty = true
	}
	r.names = append(r.names, name)
}

// compactNames drops names of removed repositories. Caller holds r.mu.
func (r *Registry) compactNames() {
	kept := r.names[:0]
	for _, n := range r.names {
		if r.repos[n] != nil {
			kept = append(kept, n)
		}
	}
	clear(r.names[len(kept):])
	r.names = kept
	r.namesStale = false
}

// sortedNames returns the sorted names of existing repositories. Caller
// holds r.mu; the result must not be retained after unlocking.
func (r *Registry) sortedNames() []string {
	if r.namesStale {
		r.compactNames()
	}
	if r.namesDirty {
		sort.Strings(r.names)
		r.namesDirty = false
	}
	return r.names
}

// removeRepo drops an empty repository; its name leaves the sorted list
// lazily (many removals cost one compaction). Caller holds r.mu.
func (r *Registry) removeRepo(name string) {
	delete(r.repos, name)
	r.namesStale = true
}

// setTag points tag name at digest (which must exist), keeping the tag's
// creation time and attributes when it already exists.
func (rp *repository) setTag(name, digest string, updated time.Time) {
	t := rp.tags[name]
	if t == nil {
		t = &tag{name: name, created: updated}
		rp.tags[name] = t
	} else if old := rp.manifests[t.digest]; old != nil {
		delete(old.tags, name)
	}
	t.digest = digest
	t.updated = updated
	rp.manifests[digest].tags[name] = struct{}{}
	rp.version++
}

// Tag points tag at digest in repo, creating or moving it; updated is its new
// lastUpdateTime (zero: Now()).
func (r *Registry) Tag(repo, tagName, digest string, updated time.Time) error {
	if tagName == "" {
		return fmt.Errorf("acremu: tag %s: empty tag name", repo)
	}
	if updated.IsZero() {
		updated = r.Now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rp := r.repos[repo]
	if rp == nil {
		return fmt.Errorf("acremu: tag %s:%s: repository %w", repo, tagName, ErrNotFound)
	}
	if rp.manifests[digest] == nil {
		return fmt.Errorf("acremu: tag %s:%s: manifest %s %w", repo, tagName, digest, ErrNotFound)
	}
	rp.setTag(tagName, digest, updated.UTC())
	return nil
}

// SetTagAttributes changes a tag's attributes: non-nil fields of a replace the
// stored ones (as a PATCH does).
func (r *Registry) SetTagAttributes(repo, tagName string, a acr.Attributes) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp := r.repos[repo]
	if rp == nil {
		return fmt.Errorf("acremu: set attributes of %s:%s: repository %w", repo, tagName, ErrNotFound)
	}
	t := rp.tags[tagName]
	if t == nil {
		return fmt.Errorf("acremu: set attributes of %s:%s: tag %w", repo, tagName, ErrNotFound)
	}
	t.attrs = mergeAttrs(t.attrs, a)
	return nil
}

// SetManifestAttributes changes a manifest's attributes: non-nil fields of a
// replace the stored ones (as a PATCH does).
func (r *Registry) SetManifestAttributes(repo, digest string, a acr.Attributes) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp := r.repos[repo]
	if rp == nil {
		return fmt.Errorf("acremu: set attributes of %s@%s: repository %w", repo, digest, ErrNotFound)
	}
	m := rp.manifests[digest]
	if m == nil {
		return fmt.Errorf("acremu: set attributes of %s@%s: manifest %w", repo, digest, ErrNotFound)
	}
	m.attrs = mergeAttrs(m.attrs, a)
	return nil
}

// mergeAttrs returns base with the non-nil fields of upd applied, using fresh
// pointers so stored values are never shared with callers.
func mergeAttrs(base, upd acr.Attributes) acr.Attributes {
	pick := func(old, nw *bool) *bool {
		if nw != nil {
			v := *nw
			return &v
		}
		return old
	}
	return acr.Attributes{
		DeleteEnabled: pick(base.DeleteEnabled, upd.DeleteEnabled),
		WriteEnabled:  pick(base.WriteEnabled, upd.WriteEnabled),
		ReadEnabled:   pick(base.ReadEnabled, upd.ReadEnabled),
		ListEnabled:   pick(base.ListEnabled, upd.ListEnabled),
	}
}

// reportAttrs is how ACR reports attributes: all four, unset meaning true.
func reportAttrs(a acr.Attributes) acr.Attributes {
	val := func(p *bool) *bool {
		v := p == nil || *p
		return &v
	}
	return acr.Attributes{
		DeleteEnabled: val(a.DeleteEnabled),
		WriteEnabled:  val(a.WriteEnabled),
		ReadEnabled:   val(a.ReadEnabled),
		ListEnabled:   val(a.ListEnabled),
	}
}

// wireTag renders a stored tag.
func wireTag(t *tag) acr.Tag {
	return acr.Tag{
		Name:           t.name,
		Digest:         t.digest,
		CreatedTime:    t.created,
		LastUpdateTime: t.updated,
		Attributes:     reportAttrs(t.attrs),
	}
}

// wireManifest renders a stored manifest. Caller holds r.mu (tags set).
func wireManifest(m *manifest) acr.Manifest {
	var tags []string
	if len(m.tags) > 0 {
		tags = make([]string, 0, len(m.tags))
		for t := range m.tags {
			tags = append(tags, t)
		}
		sort.Strings(tags)
	}
	return acr.Manifest{
		Digest:          m.digest,
		ImageSize:       m.size,
		CreatedTime:     m.created,
		LastUpdateTime:  m.updated,
		Architecture:    m.arch,
		OS:              m.os,
		MediaType:       m.mediaType,
		ConfigMediaType: m.configMediaType,
		Tags:            tags,
		Attributes:      reportAttrs(m.attrs),
	}
}

// Repositories returns the names of repositories with content, sorted.
func (r *Registry) Repositories() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.sortedNames()...)
}

// Tags returns repo's tags sorted by name (nil for an unknown repository).
func (r *Registry) Tags(repo string) []acr.Tag {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp := r.repos[repo]
	if rp == nil {
		return nil
	}
	out := make([]acr.Tag, 0, len(rp.tags))
	for _, t := range rp.tags {
		out = append(out, wireTag(t))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Manifests returns repo's manifests sorted by digest (nil for an unknown
// repository).
func (r *Registry) Manifests(repo string) []acr.Manifest {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp := r.repos[repo]
	if rp == nil {
		return nil
	}
	out := make([]acr.Manifest, 0, len(rp.manifests))
	for _, m := range rp.manifests {
		out = append(out, wireManifest(m))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out
}

// ManifestBody returns the stored body of a manifest and its media type.
func (r *Registry) ManifestBody(repo, digest string) (body []byte, mediaType string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp := r.repos[repo]
	if rp == nil {
		return nil, "", false
	}
	m := rp.manifests[digest]
	if m == nil {
		return nil, "", false
	}
	return append([]byte(nil), m.body...), m.mediaType, true
}

// HasTag reports whether repo has tag.
func (r *Registry) HasTag(repo, tagName string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp := r.repos[repo]
	return rp != nil && rp.tags[tagName] != nil
}

// HasManifest reports whether repo has the manifest digest.
func (r *Registry) HasManifest(repo, digest string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp := r.repos[repo]
	return rp != nil && rp.manifests[digest] != nil
}

// isDigest reports whether ref looks like a digest reference.
func isDigest(ref string) bool {
	alg, hex, ok := strings.Cut(ref, ":")
	return ok && alg != "" && hex != ""
}

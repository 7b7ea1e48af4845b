package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// now is the planning instant of every test.
var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func daysAgo(n float64) time.Time { return now.Add(-time.Duration(n * float64(24*time.Hour))) }

// dg returns a deterministic canonical digest for a readable name.
func dg(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func ptr[T any](v T) *T { return &v }

var lockedAttrs = acr.Attributes{DeleteEnabled: ptr(false), WriteEnabled: ptr(true)}
var writeLockedAttrs = acr.Attributes{DeleteEnabled: ptr(true), WriteEnabled: ptr(false)}

func mustParse(t testing.TB, js string) *Policy {
	t.Helper()
	p, err := Parse([]byte(js))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func mustPlanner(t testing.TB, p *Policy, repo string, opts ...PlannerOption) *RepoPlanner {
	t.Helper()
	rp, err := p.Planner(repo, now, opts...)
	if err != nil {
		t.Fatalf("Planner(%q): %v", repo, err)
	}
	return rp
}

// tg builds a tag.
func tg(name, manifest string, updated time.Time, attrs ...acr.Attributes) acr.Tag {
	t := acr.Tag{Name: name, Digest: dg(manifest), CreatedTime: updated, LastUpdateTime: updated}
	if len(attrs) > 0 {
		t.Attributes = attrs[0]
	}
	return t
}

// planTags feeds tags in pages of pageSize and returns the decisions.
func planTags(t testing.TB, rp *RepoPlanner, tags []acr.Tag, pageSize int) []Decision {
	t.Helper()
	var out []Decision
	for start := 0; start < len(tags); start += pageSize {
		page := tags[start:min(start+pageSize, len(tags))]
		n := len(out)
		if err := rp.TagPage(page, func(d Decision) error { out = append(out, d); return nil }); err != nil {
			t.Fatalf("TagPage: %v", err)
		}
		if len(out)-n != len(page) {
			t.Fatalf("TagPage emitted %d decisions for %d tags", len(out)-n, len(page))
		}
		for i, d := range out[n:] {
			if d.Tag != page[i].Name || d.Kind != KindTag {
				t.Fatalf("decision %d is for %q (%s), want tag %q in input order", i, d.Tag, d.Kind, page[i].Name)
			}
		}
	}
	return out
}

// notFoundError is a 404 as the planner's default test recognises it.
type notFoundError struct{ digest string }

func (e notFoundError) Error() string  { return "manifest " + e.digest + ": 404 not found" }
func (e notFoundError) NotFound() bool { return true }

// fakeSource is an in-memory ManifestSource. Manifests are described by
// name; bodies are derived from children/subject.
type fakeSource struct {
	pageSize  int
	manifests []acr.Manifest
	bodies    map[string]*acr.ManifestBody
	gone      map[string]bool  // ManifestBody 404s
	fail      map[string]error // ManifestBody fails otherwise

	mu      sync.Mutex
	fetches []string
}

type man struct {
	name      string
	mediaType string
	updated   time.Time
	tags      []string
	attrs     acr.Attributes
	children  []string // names
	subject   string   // name
	size      int64
	config    string // configMediaType in the listing
}

// Config media types as ACR lists them.
const (
	imageConfig  = "application/vnd.oci.image.config.v1+json"
	dockerConfig = "application/vnd.docker.container.image.v1+json"
	emptyConfig  = "application/vnd.oci.empty.v1+json"
)

func newSource(ms ...man) *fakeSource {
	s := &fakeSource{pageSize: 2, bodies: map[string]*acr.ManifestBody{}, gone: map[string]bool{}, fail: map[string]error{}}
	for _, m := range ms {
		mt := m.mediaType
		if mt == "" {
			mt = acr.MediaTypeDockerManifest
		}
		if mt == "none" {
			mt = ""
		}
		s.manifests = append(s.manifests, acr.Manifest{
			Digest: dg(m.name), ImageSize: m.size, CreatedTime: m.updated, LastUpdateTime: m.updated,
			MediaType: mt, ConfigMediaType: m.config, Tags: m.tags, Attributes: m.attrs,
		})
		body := &acr.ManifestBody{SchemaVersion: 2, MediaType: mt}
		for _, c := range m.children {
			body.Manifests = append(body.Manifests, acr.Descriptor{MediaType: acr.MediaTypeOCIManifest, Digest: dg(c), Size: 100})
		}
		if m.subject != "" {
			body.Subject = &acr.Descriptor{MediaType: acr.MediaTypeOCIManifest, Digest: dg(m.subject), Size: 100}
		}
		s.bodies[dg(m.name)] = body
	}
	return s
}

func (s *fakeSource) Manifests(ctx context.Context, fn func([]acr.Manifest) error) error {
	for start := 0; start < len(s.manifests); start += s.pageSize {
		if err := ctx.Err(); err != nil {
			return err
		}
		page := slices.Clone(s.manifests[start:min(start+s.pageSize, len(s.manifests))])
		if err := fn(page); err != nil {
			return err
		}
	}
	return nil
}

func (s *fakeSource) ManifestBody(ctx context.Context, digest string) (*acr.ManifestBody, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.fetches = append(s.fetches, digest)
	s.mu.Unlock()
	if err := s.fail[digest]; err != nil {
		return nil, err
	}
	if s.gone[digest] {
		return nil, fmt.Errorf("get manifest: %w", notFoundError{digest})
	}
	b, ok := s.bodies[digest]
	if !ok {
		return nil, fmt.Errorf("get manifest: %w", notFoundError{digest})
	}
	return b, nil
}

func (s *fakeSource) fetched(name string) bool { return s.fetchedDigest(dg(name)) }

func (s *fakeSource) fetchedDigest(digest string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.fetches, digest)
}

// planManifests runs Manifests and returns its decisions; it checks that
// every listed manifest got exactly one decision.
func planManifests(t testing.TB, rp *RepoPlanner, src *fakeSource) []Decision {
	t.Helper()
	out, err := tryPlanManifests(t, rp, src)
	if err != nil {
		t.Fatalf("Manifests: %v", err)
	}
	return out
}

// tryPlanManifests is planManifests for plans that may fail: on an error it
// checks that nothing was emitted.
func tryPlanManifests(t testing.TB, rp *RepoPlanner, src *fakeSource) ([]Decision, error) {
	t.Helper()
	var out []Decision
	if err := rp.Manifests(t.Context(), src, func(d Decision) error { out = append(out, d); return nil }); err != nil {
		if len(out) != 0 {
			t.Fatalf("Manifests failed (%v) after emitting %d decisions", err, len(out))
		}
		return nil, err
	}
	seen := map[string]int{}
	for _, d := range out {
		if d.Kind != KindManifest {
			t.Fatalf("manifest decision with kind %q", d.Kind)
		}
		seen[d.Digest]++
	}
	for _, m := range src.manifests {
		if seen[m.Digest] != 1 {
			t.Fatalf("manifest %s got %d decisions, want 1", m.Digest, seen[m.Digest])
		}
	}
	for d, n := range seen {
		if n != 1 {
			t.Fatalf("digest %s got %d decisions", d, n)
		}
	}
	return out, nil
}

// byName maps decisions to readable names: manifest name for manifests
// (resolved through names), tag name for tags.
func byName(ds []Decision, names ...string) map[string]Decision {
	rev := map[string]string{}
	for _, n := range names {
		rev[dg(n)] = n
	}
	out := map[string]Decision{}
	for _, d := range ds {
		key := d.Tag
		if d.Kind == KindManifest {
			key = rev[d.Digest]
			if key == "" {
				key = d.Digest
			}
		}
		out[key] = d
	}
	return out
}

// want is an expected verdict: "delete:<reason>" or "keep:<reason>".
type want map[string]string

func check(t *testing.T, got map[string]Decision, w want) {
	t.Helper()
	for name, exp := range w {
		d, ok := got[name]
		if !ok {
			t.Errorf("%s: no decision", name)
			continue
		}
		verdict := "keep"
		if d.Delete {
			verdict = "delete"
		}
		if s := verdict + ":" + string(d.Reason); s != exp {
			t.Errorf("%s: got %s (rule %q), want %s", name, s, d.Rule, exp)
		}
	}
}

func names(ms []man) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.name)
	}
	return out
}

var errBoom = errors.New("boom")

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}

package acremu

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// maxPatchBytes bounds PATCH bodies.
const maxPatchBytes = 64 << 10

// tagAttributes is the body of GET/PATCH /acr/v1/{repo}/_tags/{tag}.
type tagAttributes struct {
	Registry  string  `json:"registry"`
	ImageName string  `json:"imageName"`
	Tag       acr.Tag `json:"tag"`
}

// manifestAttributes is the body of GET/PATCH /acr/v1/{repo}/_manifests/{ref}.
type manifestAttributes struct {
	Registry  string       `json:"registry"`
	ImageName string       `json:"imageName"`
	Manifest  acr.Manifest `json:"manifest"`
}

// referrersIndex is the body of GET /v2/{repo}/referrers/{digest}.
type referrersIndex struct {
	SchemaVersion int              `json:"schemaVersion"`
	MediaType     string           `json:"mediaType"`
	Manifests     []acr.Descriptor `json:"manifests"`
}

func nameUnknown(w http.ResponseWriter, repo string) {
	writeError(w, http.StatusNotFound, CodeNameUnknown, "repository name not known to registry", map[string]string{"name": repo})
}

func tagUnknown(w http.ResponseWriter, repo, t string) {
	writeError(w, http.StatusNotFound, CodeTagUnknown, "the specified tag does not exist", map[string]string{"name": repo, "tag": t})
}

func manifestUnknown(w http.ResponseWriter, repo, ref string) {
	writeError(w, http.StatusNotFound, CodeManifestUnknown, "manifest unknown", map[string]string{"name": repo, "reference": ref})
}

func disallowed(w http.ResponseWriter) {
	writeError(w, http.StatusMethodNotAllowed, CodeDisallowed,
		"The operation is disallowed on this registry, repository or image.", nil)
}

// resolve finds a manifest by digest or tag. Caller holds r.mu.
func (rp *repository) resolve(ref string) *manifest {
	if isDigest(ref) {
		return rp.manifests[ref]
	}
	if t := rp.tags[ref]; t != nil {
		return rp.manifests[t.digest]
	}
	return nil
}

// readAttributes decodes a PATCH body; it answers 400 and returns false when
// the body is not an attributes object.
func readAttributes(w http.ResponseWriter, req *http.Request) (acr.Attributes, bool) {
	var a acr.Attributes
	b, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxPatchBytes))
	if err == nil {
		err = json.Unmarshal(b, &a)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, "the body must be a JSON object of changeable attributes", nil)
		return a, false
	}
	return a, true
}

// handleGetTag serves GET /acr/v1/{repo}/_tags/{tag}.
func (r *Registry) handleGetTag(w http.ResponseWriter, _ *http.Request, rt route, _ string) {
	r.serveTag(w, rt, nil)
}

// handlePatchTag serves PATCH /acr/v1/{repo}/_tags/{tag}.
func (r *Registry) handlePatchTag(w http.ResponseWriter, req *http.Request, rt route, _ string) {
	if a, ok := readAttributes(w, req); ok {
		r.serveTag(w, rt, &a)
	}
}

// serveTag answers with a tag's attributes, after merging upd into them
// when it is not nil.
func (r *Registry) serveTag(w http.ResponseWriter, rt route, upd *acr.Attributes) {
	r.mu.Lock()
	rp := r.repos[rt.repo]
	var t *tag
	if rp != nil {
		t = rp.tags[rt.ref]
	}
	var out tagAttributes
	if t != nil {
		if upd != nil {
			t.attrs = mergeAttrs(t.attrs, *upd)
		}
		out = tagAttributes{Registry: r.Host(), ImageName: rt.repo, Tag: wireTag(t)}
	}
	r.mu.Unlock()
	switch {
	case rp == nil:
		nameUnknown(w, rt.repo)
	case t == nil:
		tagUnknown(w, rt.repo, rt.ref)
	default:
		writeJSON(w, http.StatusOK, out)
	}
}

// handleGetManifestAttrs serves GET /acr/v1/{repo}/_manifests/{ref}.
func (r *Registry) handleGetManifestAttrs(w http.ResponseWriter, _ *http.Request, rt route, _ string) {
	r.serveManifestAttrs(w, rt, nil)
}

// handlePatchManifest serves PATCH /acr/v1/{repo}/_manifests/{ref}.
func (r *Registry) handlePatchManifest(w http.ResponseWriter, req *http.Request, rt route, _ string) {
	if a, ok := readAttributes(w, req); ok {
		r.serveManifestAttrs(w, rt, &a)
	}
}

// serveManifestAttrs answers with a manifest's attributes, after merging upd
// into them when it is not nil.
func (r *Registry) serveManifestAttrs(w http.ResponseWriter, rt route, upd *acr.Attributes) {
	r.mu.Lock()
	rp := r.repos[rt.repo]
	var m *manifest
	if rp != nil {
		m = rp.resolve(rt.ref)
	}
	var out manifestAttributes
	if m != nil {
		if upd != nil {
			m.attrs = mergeAttrs(m.attrs, *upd)
		}
		out = manifestAttributes{Registry: r.Host(), ImageName: rt.repo, Manifest: wireManifest(m)}
	}
	r.mu.Unlock()
	switch {
	case rp == nil:
		nameUnknown(w, rt.repo)
	case m == nil:
		manifestUnknown(w, rt.repo, rt.ref)
	default:
		writeJSON(w, http.StatusOK, out)
	}
}

// handleGetManifest serves GET and HEAD /v2/{repo}/manifests/{ref}.
func (r *Registry) handleGetManifest(w http.ResponseWriter, _ *http.Request, rt route, _ string) {
	r.mu.Lock()
	rp := r.repos[rt.repo]
	var m *manifest
	if rp != nil {
		m = rp.resolve(rt.ref)
	}
	var body []byte
	var mediaType, digest string
	if m != nil {
		body, mediaType, digest = m.body, m.mediaType, m.digest // body is immutable
	}
	r.mu.Unlock()
	switch {
	case rp == nil:
		nameUnknown(w, rt.repo)
		return
	case m == nil:
		manifestUnknown(w, rt.repo, rt.ref)
		return
	}
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Docker-Content-Digest", digest)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body) // net/http drops the body for HEAD
}

// handleReferrers serves GET /v2/{repo}/referrers/{digest}[?artifactType=].
func (r *Registry) handleReferrers(w http.ResponseWriter, req *http.Request, rt route, _ string) {
	if !isDigest(rt.ref) {
		writeError(w, http.StatusBadRequest, CodeDigestInvalid, "the reference must be a digest", map[string]string{"reference": rt.ref})
		return
	}
	filter := req.URL.Query().Get("artifactType")
	out := referrersIndex{SchemaVersion: 2, MediaType: acr.MediaTypeOCIIndex, Manifests: []acr.Descriptor{}}
	r.mu.Lock()
	rp := r.repos[rt.repo]
	if rp != nil {
		for d := range rp.referrers[rt.ref] {
			m := rp.manifests[d]
			if m == nil || (filter != "" && m.artifactType != filter) {
				continue
			}
			out.Manifests = append(out.Manifests, acr.Descriptor{
				MediaType:    m.mediaType,
				Digest:       m.digest,
				Size:         int64(len(m.body)),
				ArtifactType: m.artifactType,
				Annotations:  map[string]string{annotationCreated: m.created.Format(time.RFC3339Nano)},
			})
		}
	}
	r.mu.Unlock()
	if rp == nil {
		nameUnknown(w, rt.repo)
		return
	}
	slices.SortFunc(out.Manifests, func(a, b acr.Descriptor) int {
		switch {
		case a.Digest < b.Digest:
			return -1
		case a.Digest > b.Digest:
			return 1
		}
		return 0
	})
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	b, _ := json.Marshal(out) // plain structs: cannot fail
	w.Header().Set("Content-Type", acr.MediaTypeOCIIndex)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

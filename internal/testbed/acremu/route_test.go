package acremu

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"testing"

	"github.com/acrpurge/acrpurge/internal/acr"
)

func TestParsePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path string
		want route
		err  bool
	}{
		{"/acr/v1/_catalog", route{kind: routeCatalog}, false},
		{"/oauth2/token", route{kind: routeToken}, false},
		{"/v2/", route{kind: routePing}, false},
		{"/acr/v1/a/b/c/_tags", route{kind: routeTagList, repo: "a/b/c"}, false},
		{"/acr/v1/a/_tags/v1", route{kind: routeTag, repo: "a", ref: "v1"}, false},
		{"/acr/v1/a/_tags/_tags", route{kind: routeTagList, repo: "a/_tags"}, false},
		{"/acr/v1/a/_manifests/_tags/x", route{kind: routeTag, repo: "a/_manifests", ref: "x"}, false},
		{"/acr/v1/a%2Fb/_tags", route{kind: routeTagList, repo: "a/b"}, false},
		{"/acr/v1/we%25ird%3Fx%23y/_manifests/sha256:ab", route{kind: routeManifestAttrs, repo: "we%ird?x#y", ref: "sha256:ab"}, false},
		{"/acr/v1/a/_tags/v%2F1", route{kind: routeTag, repo: "a", ref: "v/1"}, false},
		{"/v2/x/manifests/y/manifests/sha256:1", route{kind: routeManifest, repo: "x/manifests/y", ref: "sha256:1"}, false},
		{"/v2/x/referrers/sha256:1", route{kind: routeReferrers, repo: "x", ref: "sha256:1"}, false},
		{"/v2/manifests/sha256:1", route{}, false},
		{"/acr/v1/_tags", route{}, false},
		{"/acr/v1//_tags", route{}, true},
		{"/acr/v1/a%zz/_tags", route{}, true},
		{"/nope", route{}, false},
	}
	for _, tc := range tests {
		got, err := parsePath(tc.path)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parsePath(%q) = %+v, %v; want %+v, err=%v", tc.path, got, err, tc.want, tc.err)
		}
	}
}

func TestNamesWithSlashesAndEscapes(t *testing.T) {
	t.Parallel()
	r := start(t, Options{})
	hc := httpClient(t, true)
	repos := []string{
		"a/b/c/d",
		"we%ird/na?me#1",
		"x/_tags",
		"y/manifests/z",
		"dots/../up",
		"uni/cöde",
	}
	scopes := []string{"registry:catalog:*"}
	for _, repo := range repos {
		r.Put(repo, Artifact{Tags: []string{"v1"}})
		scopes = append(scopes, purgeScope(repo))
	}
	tok := login(t, hc, r, Identity{Name: "id", CatalogLister: true, Grants: all}, scopes...)
	cat := decode[acr.Catalog](t, do(t, hc, http.MethodGet, r.URL()+"/acr/v1/_catalog", tok, nil))
	if len(cat.Repositories) != len(repos) {
		t.Errorf("catalog %v", cat.Repositories)
	}
	for _, repo := range repos {
		t.Run(repo, func(t *testing.T) {
			tl := decode[acr.TagList](t, do(t, hc, http.MethodGet, repoURL(r, "/acr/v1/", repo, "/_tags"), tok, nil))
			if tl.ImageName != repo || len(tl.Tags) != 1 {
				t.Fatalf("tags of %q: %+v", repo, tl)
			}
			resp := do(t, hc, http.MethodGet, repoURL(r, "/v2/", repo, "/manifests/v1"), tok, nil)
			if resp.status != http.StatusOK || resp.header.Get("Docker-Content-Digest") != tl.Tags[0].Digest {
				t.Fatalf("manifest: %d %s", resp.status, resp.body)
			}
			if resp := do(t, hc, http.MethodDelete, repoURL(r, "/acr/v1/", repo, "/_tags/v1"), tok, nil); resp.status != http.StatusAccepted {
				t.Fatalf("delete tag: %d %s", resp.status, resp.body)
			}
			if r.HasTag(repo, "v1") {
				t.Error("tag still there")
			}
		})
	}
}

func TestGetManifest(t *testing.T) {
	t.Parallel()
	r := start(t, Options{})
	hc := httpClient(t, true)
	const repo = "app"
	amd := r.Put(repo, Artifact{Seed: "amd"})
	arm := r.Put(repo, Artifact{Seed: "arm", Architecture: "arm64"})
	idx := r.Put(repo, Artifact{Tags: []string{"latest"}, Children: []string{amd, arm, "sha256:" + hex.EncodeToString(make([]byte, 32))}})
	sig := r.Put(repo, Artifact{ArtifactType: ArtifactTypeNotarySig, Subject: idx})
	docker := r.Put(repo, Artifact{MediaType: acr.MediaTypeDockerManifest, Tags: []string{"docker"}})
	tok := login(t, hc, r, Identity{Name: "id", Grants: all}, purgeScope(repo))

	tests := []struct {
		ref, digest, mediaType string
		check                  func(t *testing.T, b acr.ManifestBody)
	}{
		{"latest", idx, acr.MediaTypeOCIIndex, func(t *testing.T, b acr.ManifestBody) {
			if len(b.Manifests) != 3 || b.Manifests[0].Digest != amd || b.Manifests[1].Platform == nil || b.Manifests[1].Platform.Architecture != "arm64" {
				t.Errorf("index children %+v", b.Manifests)
			}
		}},
		{sig, sig, acr.MediaTypeOCIManifest, func(t *testing.T, b acr.ManifestBody) {
			if b.Subject == nil || b.Subject.Digest != idx || b.Subject.MediaType != acr.MediaTypeOCIIndex || b.ArtifactType != ArtifactTypeNotarySig {
				t.Errorf("referrer body %+v", b)
			}
		}},
		{amd, amd, acr.MediaTypeOCIManifest, func(t *testing.T, b acr.ManifestBody) {
			if b.Config == nil || b.Config.MediaType != MediaTypeImageConfig || len(b.Layers) != 1 || b.Subject != nil {
				t.Errorf("image body %+v", b)
			}
		}},
		{"docker", docker, acr.MediaTypeDockerManifest, func(t *testing.T, b acr.ManifestBody) {
			if b.Config == nil || b.Config.MediaType != MediaTypeDockerConfig {
				t.Errorf("docker body %+v", b)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			resp := do(t, hc, http.MethodGet, repoURL(r, "/v2/", repo, "/manifests/"+tc.ref), tok, nil)
			if resp.status != http.StatusOK {
				t.Fatalf("%d %s", resp.status, resp.body)
			}
			sum := sha256.Sum256(resp.body)
			if got := "sha256:" + hex.EncodeToString(sum[:]); got != tc.digest || resp.header.Get("Docker-Content-Digest") != tc.digest {
				t.Errorf("body digest %s, header %s, want %s", got, resp.header.Get("Docker-Content-Digest"), tc.digest)
			}
			if ct := resp.header.Get("Content-Type"); ct != tc.mediaType {
				t.Errorf("Content-Type %s, want %s", ct, tc.mediaType)
			}
			b := decode[acr.ManifestBody](t, resp)
			if b.SchemaVersion != 2 || b.MediaType != tc.mediaType {
				t.Errorf("schemaVersion %d mediaType %s", b.SchemaVersion, b.MediaType)
			}
			tc.check(t, b)
		})
	}
	head := do(t, hc, http.MethodHead, repoURL(r, "/v2/", repo, "/manifests/latest"), tok, nil)
	if head.status != http.StatusOK || len(head.body) != 0 || head.header.Get("Docker-Content-Digest") != idx {
		t.Errorf("HEAD: %d %q %v", head.status, head.body, head.header)
	}
	for ref, code := range map[string]string{"nope": CodeManifestUnknown, "sha256:00": CodeManifestUnknown} {
		resp := do(t, hc, http.MethodGet, repoURL(r, "/v2/", repo, "/manifests/"+ref), tok, nil)
		if resp.status != http.StatusNotFound || resp.errorCode(t) != code {
			t.Errorf("%s: %d %s", ref, resp.status, resp.body)
		}
	}
	// Single-item attribute endpoints.
	ta := decode[tagAttributes](t, do(t, hc, http.MethodGet, repoURL(r, "/acr/v1/", repo, "/_tags/latest"), tok, nil))
	if ta.Tag.Name != "latest" || ta.Tag.Digest != idx || ta.ImageName != repo {
		t.Errorf("tag attributes %+v", ta)
	}
	ma := decode[manifestAttributes](t, do(t, hc, http.MethodGet, repoURL(r, "/acr/v1/", repo, "/_manifests/"+idx), tok, nil))
	if ma.Manifest.Digest != idx || ma.Manifest.MediaType != acr.MediaTypeOCIIndex || len(ma.Manifest.Tags) != 1 {
		t.Errorf("manifest attributes %+v", ma)
	}
	if ping := do(t, hc, http.MethodGet, r.URL()+"/v2/", tok, nil); ping.status != http.StatusOK {
		t.Errorf("ping: %d", ping.status)
	}
	if ping := do(t, hc, http.MethodGet, r.URL()+"/v2/", "", nil); ping.status != http.StatusUnauthorized {
		t.Errorf("anonymous ping: %d", ping.status)
	}
	if resp := do(t, hc, http.MethodPut, repoURL(r, "/v2/", repo, "/manifests/latest"), tok, nil); resp.status != http.StatusMethodNotAllowed || resp.header.Get("Allow") == "" {
		t.Errorf("PUT: %d %v", resp.status, resp.header)
	}
	if resp := do(t, hc, http.MethodGet, r.URL()+"/elsewhere", tok, nil); resp.status != http.StatusNotFound {
		t.Errorf("unknown path: %d", resp.status)
	}
}

func TestReferrers(t *testing.T) {
	t.Parallel()
	r := start(t, Options{})
	hc := httpClient(t, true)
	const repo = "signed/app"
	img := r.Put(repo, Artifact{Tags: []string{"v1"}})
	other := r.Put(repo, Artifact{Tags: []string{"v2"}})
	sig1 := r.Put(repo, Artifact{ArtifactType: ArtifactTypeNotarySig, Subject: img, Seed: "1"})
	sig2 := r.Put(repo, Artifact{ArtifactType: ArtifactTypeNotarySig, Subject: img, Seed: "2"})
	sbom := r.Put(repo, Artifact{ArtifactType: "application/spdx+json", Subject: img})
	r.Put(repo, Artifact{ArtifactType: "application/spdx+json", Subject: other})
	tok := login(t, hc, r, Identity{Name: "id", Grants: all}, purgeScope(repo))

	tests := []struct {
		query  string
		want   []string
		filter bool
	}{
		{"", []string{sig1, sig2, sbom}, false},
		{"?artifactType=" + ArtifactTypeNotarySig, []string{sig1, sig2}, true},
		{"?artifactType=none", nil, true},
	}
	for _, tc := range tests {
		resp := do(t, hc, http.MethodGet, repoURL(r, "/v2/", repo, "/referrers/"+img+tc.query), tok, nil)
		if resp.status != http.StatusOK || resp.header.Get("Content-Type") != acr.MediaTypeOCIIndex {
			t.Fatalf("%s: %d %s %v", tc.query, resp.status, resp.body, resp.header)
		}
		if (resp.header.Get("OCI-Filters-Applied") == "artifactType") != tc.filter {
			t.Errorf("%s: OCI-Filters-Applied %q", tc.query, resp.header.Get("OCI-Filters-Applied"))
		}
		raw := decode[map[string]any](t, resp)
		if _, ok := raw["manifests"].([]any); !ok {
			t.Errorf("%s: manifests missing or not a list: %s", tc.query, resp.body)
		}
		b := decode[acr.ManifestBody](t, resp)
		var got []string
		for _, d := range b.Manifests {
			got = append(got, d.Digest)
			if d.ArtifactType == "" || d.Size == 0 || d.MediaType == "" {
				t.Errorf("descriptor %+v incomplete", d)
			}
		}
		want := append([]string(nil), tc.want...)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: referrers %v, want %v", tc.query, got, want)
		}
	}
	// Unknown subject: an empty index; non-digest: 400.
	resp := do(t, hc, http.MethodGet, repoURL(r, "/v2/", repo, "/referrers/sha256:"+hex.EncodeToString(make([]byte, 32))), tok, nil)
	if resp.status != 200 || len(decode[acr.ManifestBody](t, resp).Manifests) != 0 {
		t.Errorf("unknown subject: %d %s", resp.status, resp.body)
	}
	if resp := do(t, hc, http.MethodGet, repoURL(r, "/v2/", repo, "/referrers/v1"), tok, nil); resp.status != 400 || resp.errorCode(t) != CodeDigestInvalid {
		t.Errorf("tag as subject: %d %s", resp.status, resp.body)
	}
}

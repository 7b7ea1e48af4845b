package acremu

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// fixture is a repository with images, referrers and an index.
type fixture struct {
	r                               *Registry
	hc                              *http.Client
	tok                             string
	img, sig, sigOfSig, idx, c1, c2 string
}

const fixRepo = "team/app"

func newFixture(t *testing.T) *fixture {
	t.Helper()
	r := start(t, Options{ABAC: true})
	f := &fixture{r: r, hc: httpClient(t, true)}
	f.img = r.Put(fixRepo, Artifact{Tags: []string{"v1", "stable"}})
	f.sig = r.Put(fixRepo, Artifact{ArtifactType: ArtifactTypeNotarySig, Subject: f.img})
	f.sigOfSig = r.Put(fixRepo, Artifact{ArtifactType: "application/vnd.example.countersign", Subject: f.sig, Tags: []string{"sig-tag"}})
	f.c1 = r.Put(fixRepo, Artifact{Seed: "c1"})
	f.c2 = r.Put(fixRepo, Artifact{Seed: "c2", Architecture: "arm64"})
	f.idx = r.Put(fixRepo, Artifact{Tags: []string{"multi"}, Children: []string{f.c1, f.c2}})
	r.Put("solo", Artifact{Tags: []string{"only"}})
	f.tok = login(t, f.hc, r, Identity{Name: "purger", Grants: all}, purgeScope(fixRepo), purgeScope("solo"), purgeScope("ghost"))
	return f
}

func (f *fixture) tagURL(repo, tag string) string {
	return "/acr/v1/" + escapeRepo(repo) + "/_tags/" + tag
}
func (f *fixture) manURL(repo, d string) string { return "/v2/" + escapeRepo(repo) + "/manifests/" + d }

// deletes renders delete records as "kind ref" strings.
func deletes(r *Registry) []string {
	var out []string
	for _, d := range r.Deletes() {
		out = append(out, d.Kind+" "+d.Repo+" "+d.Ref+" "+d.Identity)
	}
	return out
}

func TestDeleteSemantics(t *testing.T) {
	t.Parallel()
	t.Run("tag only", func(t *testing.T) {
		f := newFixture(t)
		if resp := do(t, f.hc, http.MethodDelete, f.r.URL()+f.tagURL(fixRepo, "v1"), f.tok, nil); resp.status != http.StatusAccepted {
			t.Fatalf("%d %s", resp.status, resp.body)
		}
		if f.r.HasTag(fixRepo, "v1") || !f.r.HasTag(fixRepo, "stable") || !f.r.HasManifest(fixRepo, f.img) {
			t.Error("tag delete touched more than the tag")
		}
		if got, want := deletes(f.r), []string{"tag team/app v1 purger"}; !slices.Equal(got, want) {
			t.Errorf("deletes %v, want %v", got, want)
		}
	})

	t.Run("manifest cascades tags and referrers", func(t *testing.T) {
		f := newFixture(t)
		if resp := do(t, f.hc, http.MethodDelete, f.r.URL()+f.manURL(fixRepo, f.img), f.tok, nil); resp.status != http.StatusAccepted {
			t.Fatalf("%d %s", resp.status, resp.body)
		}
		for _, d := range []string{f.img, f.sig, f.sigOfSig} {
			if f.r.HasManifest(fixRepo, d) {
				t.Errorf("%s survived", d)
			}
		}
		for _, tg := range []string{"v1", "stable", "sig-tag"} {
			if f.r.HasTag(fixRepo, tg) {
				t.Errorf("tag %s survived", tg)
			}
		}
		want := []string{
			"manifest team/app " + f.img + " purger",
			"cascade-tag team/app stable purger",
			"cascade-tag team/app v1 purger",
			"cascade-referrer team/app " + f.sig + " purger",
			"cascade-referrer team/app " + f.sigOfSig + " purger",
			"cascade-tag team/app sig-tag purger",
		}
		if got := deletes(f.r); !slices.Equal(got, want) {
			t.Errorf("deletes\n got %v\nwant %v", got, want)
		}
		resp := do(t, f.hc, http.MethodGet, f.r.URL()+"/v2/team/app/referrers/"+f.img, f.tok, nil)
		if len(decode[acr.ManifestBody](t, resp).Manifests) != 0 {
			t.Errorf("referrers of a deleted subject: %s", resp.body)
		}
	})

	t.Run("index leaves children", func(t *testing.T) {
		f := newFixture(t)
		if resp := do(t, f.hc, http.MethodDelete, f.r.URL()+f.manURL(fixRepo, f.idx), f.tok, nil); resp.status != http.StatusAccepted {
			t.Fatalf("%d %s", resp.status, resp.body)
		}
		if f.r.HasManifest(fixRepo, f.idx) || f.r.HasTag(fixRepo, "multi") {
			t.Error("index or its tag survived")
		}
		if !f.r.HasManifest(fixRepo, f.c1) || !f.r.HasManifest(fixRepo, f.c2) {
			t.Error("children were deleted with their index")
		}
	})

	t.Run("not found", func(t *testing.T) {
		f := newFixture(t)
		tests := []struct{ path, code string }{
			{f.tagURL(fixRepo, "nope"), CodeTagUnknown},
			{f.manURL(fixRepo, "sha256:0000"), CodeManifestUnknown},
			{f.tagURL("ghost", "v1"), CodeNameUnknown},
			{f.manURL("ghost", "sha256:0000"), CodeNameUnknown},
		}
		for _, tc := range tests {
			resp := do(t, f.hc, http.MethodDelete, f.r.URL()+tc.path, f.tok, nil)
			if resp.status != http.StatusNotFound || resp.errorCode(t) != tc.code {
				t.Errorf("%s: %d %s, want 404 %s", tc.path, resp.status, resp.body, tc.code)
			}
		}
		if st := f.r.Stats(); st.DeleteNotFound != len(tests) {
			t.Errorf("DeleteNotFound = %d", st.DeleteNotFound)
		}
		if resp := do(t, f.hc, http.MethodDelete, f.r.URL()+f.manURL(fixRepo, "v1"), f.tok, nil); resp.status != http.StatusBadRequest {
			t.Errorf("delete manifest by tag: %d", resp.status)
		}
		if len(f.r.Deletes()) != 0 {
			t.Errorf("deletes recorded: %v", f.r.Deletes())
		}
	})

	t.Run("locks", func(t *testing.T) {
		type lock struct {
			tag      string // tag to lock ("" = none)
			manifest bool   // lock the manifest
			attrs    acr.Attributes
		}
		tests := []struct {
			name    string
			lock    lock
			path    func(f *fixture) string
			unlock  func(f *fixture) string // PATCH path
			unlockA acr.Attributes
		}{
			{"tag deleteEnabled=false", lock{tag: "v1", attrs: acr.Attributes{DeleteEnabled: boolp(false)}},
				func(f *fixture) string { return f.tagURL(fixRepo, "v1") },
				func(f *fixture) string { return f.tagURL(fixRepo, "v1") }, acr.Attributes{DeleteEnabled: boolp(true)}},
			{"tag writeEnabled=false", lock{tag: "v1", attrs: acr.Attributes{WriteEnabled: boolp(false)}},
				func(f *fixture) string { return f.tagURL(fixRepo, "v1") },
				func(f *fixture) string { return f.tagURL(fixRepo, "v1") }, acr.Attributes{WriteEnabled: boolp(true)}},
			{"manifest with a locked tag", lock{tag: "stable", attrs: acr.Attributes{DeleteEnabled: boolp(false)}},
				func(f *fixture) string { return f.manURL(fixRepo, f.img) },
				func(f *fixture) string { return f.tagURL(fixRepo, "stable") }, acr.Attributes{DeleteEnabled: boolp(true)}},
			{"locked manifest", lock{manifest: true, attrs: acr.Attributes{WriteEnabled: boolp(false)}},
				func(f *fixture) string { return f.manURL(fixRepo, f.img) },
				func(f *fixture) string { return "/acr/v1/team/app/_manifests/" + f.img }, acr.Attributes{WriteEnabled: boolp(true)}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				f := newFixture(t)
				var err error
				if tc.lock.tag != "" {
					err = f.r.SetTagAttributes(fixRepo, tc.lock.tag, tc.lock.attrs)
				} else {
					err = f.r.SetManifestAttributes(fixRepo, f.img, tc.lock.attrs)
				}
				if err != nil {
					t.Fatal(err)
				}
				resp := do(t, f.hc, http.MethodDelete, f.r.URL()+tc.path(f), f.tok, nil)
				if resp.status != http.StatusMethodNotAllowed || resp.errorCode(t) != CodeDisallowed {
					t.Fatalf("locked delete: %d %s", resp.status, resp.body)
				}
				if st := f.r.Stats(); st.Locked != 1 || len(f.r.Deletes()) != 0 {
					t.Errorf("Locked=%d deletes=%v", st.Locked, f.r.Deletes())
				}
				patch := do(t, f.hc, http.MethodPatch, f.r.URL()+tc.unlock(f), f.tok, strings.NewReader(mustJSON(t, tc.unlockA)))
				if patch.status != http.StatusOK {
					t.Fatalf("PATCH: %d %s", patch.status, patch.body)
				}
				if strings.Contains(tc.unlock(f), "/_tags/") {
					if ta := decode[tagAttributes](t, patch); ta.Tag.Attributes.Locked() {
						t.Errorf("PATCH answered a still-locked tag: %+v", ta.Tag.Attributes)
					}
				} else if ma := decode[manifestAttributes](t, patch); ma.Manifest.Attributes.Locked() || ma.Manifest.Digest != f.img {
					t.Errorf("PATCH answered %+v", ma.Manifest)
				}
				if resp := do(t, f.hc, http.MethodDelete, f.r.URL()+tc.path(f), f.tok, nil); resp.status != http.StatusAccepted {
					t.Fatalf("delete after unlock: %d %s", resp.status, resp.body)
				}
			})
		}
	})

	t.Run("patch needs metadata_write and a valid body", func(t *testing.T) {
		f := newFixture(t)
		tok := login(t, f.hc, f.r, Identity{Name: "reader", Grants: []Grant{{Actions: []string{"delete", "metadata_read"}}}}, purgeScope(fixRepo))
		resp := do(t, f.hc, http.MethodPatch, f.r.URL()+f.tagURL(fixRepo, "v1"), tok, strings.NewReader(`{"deleteEnabled":false}`))
		assertChallenge(t, f.r, resp, "repository:team/app:metadata_write", "insufficient_scope")
		resp = do(t, f.hc, http.MethodPatch, f.r.URL()+f.tagURL(fixRepo, "v1"), f.tok, strings.NewReader(`not json`))
		if resp.status != http.StatusBadRequest {
			t.Errorf("bad body: %d", resp.status)
		}
		resp = do(t, f.hc, http.MethodPatch, f.r.URL()+f.tagURL(fixRepo, "nope"), f.tok, strings.NewReader(`{}`))
		if resp.status != http.StatusNotFound || resp.errorCode(t) != CodeTagUnknown {
			t.Errorf("patch missing tag: %d %s", resp.status, resp.body)
		}
		// A partial PATCH keeps the other attributes.
		do(t, f.hc, http.MethodPatch, f.r.URL()+f.tagURL(fixRepo, "v1"), f.tok, strings.NewReader(`{"writeEnabled":false}`))
		resp = do(t, f.hc, http.MethodPatch, f.r.URL()+f.tagURL(fixRepo, "v1"), f.tok, strings.NewReader(`{"readEnabled":false}`))
		a := decode[tagAttributes](t, resp).Tag.Attributes
		if *a.WriteEnabled || *a.ReadEnabled || !*a.DeleteEnabled || !*a.ListEnabled {
			t.Errorf("attributes after two PATCHes: %+v", a)
		}
		if st := f.r.Stats(); st.Requests["patch_tag"] != 5 {
			t.Errorf("patch_tag requests = %d", st.Requests["patch_tag"])
		}
	})

	t.Run("repository without manifests disappears", func(t *testing.T) {
		f := newFixture(t)
		d := f.r.Manifests("solo")[0].Digest
		if resp := do(t, f.hc, http.MethodDelete, f.r.URL()+f.manURL("solo", d), f.tok, nil); resp.status != http.StatusAccepted {
			t.Fatalf("%d %s", resp.status, resp.body)
		}
		if slices.Contains(f.r.Repositories(), "solo") || f.r.Tags("solo") != nil {
			t.Error("empty repository still exists")
		}
		resp := do(t, f.hc, http.MethodGet, f.r.URL()+"/acr/v1/solo/_tags", f.tok, nil)
		if resp.status != http.StatusNotFound || resp.errorCode(t) != CodeNameUnknown {
			t.Errorf("tags of removed repository: %d %s", resp.status, resp.body)
		}
		// Pushing again brings it back exactly once.
		f.r.Put("solo", Artifact{Tags: []string{"again"}})
		if n := countOf(f.r.Repositories(), "solo"); n != 1 {
			t.Errorf("solo listed %d times", n)
		}
	})
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

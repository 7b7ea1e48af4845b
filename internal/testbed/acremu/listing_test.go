package acremu

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
)

var linkRE = regexp.MustCompile(`^<(/[^>]*)>; rel="next"$`)

// nextLink returns the relative next URL of a response, or "".
func nextLink(t testing.TB, resp response) string {
	t.Helper()
	h := resp.header.Get("Link")
	if h == "" {
		return ""
	}
	m := linkRE.FindStringSubmatch(h)
	if m == nil {
		t.Fatalf("malformed Link header %q", h)
	}
	return m[1]
}

// pages follows Link headers from first and returns every page body.
func pages(t testing.TB, hc *http.Client, r *Registry, tok, first string) []response {
	t.Helper()
	var out []response
	seen := map[string]bool{}
	for u := first; u != ""; {
		if seen[u] {
			t.Fatalf("paging loops at %s", u)
		}
		seen[u] = true
		resp := do(t, hc, http.MethodGet, r.URL()+u, tok, nil)
		if resp.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", u, resp.status, resp.body)
		}
		out = append(out, resp)
		u = nextLink(t, resp)
	}
	return out
}

func TestCatalogPaging(t *testing.T) {
	t.Parallel()
	r := start(t, Options{MaxPageSize: 20})
	hc := httpClient(t, true)
	var want []string
	for i := 44; i >= 0; i-- { // descending inserts exercise the lazy sort
		name := fmt.Sprintf("team-%d/app-%02d", i%3, i)
		r.Put(name, Artifact{Tags: []string{"v1"}})
		want = append(want, name)
	}
	sort.Strings(want)
	if got := r.Repositories(); !slices.Equal(got, want) {
		t.Fatalf("Repositories() = %v", got)
	}
	tok := login(t, hc, r, Identity{Name: "lister", CatalogLister: true}, "registry:catalog:*")

	tests := []struct {
		name      string
		first     string
		wantSizes []int
		wantNames []string
	}{
		{"n=10", "/acr/v1/_catalog?n=10", []int{10, 10, 10, 10, 5}, want},
		{"n above max is clamped", "/acr/v1/_catalog?n=500", []int{20, 20, 5}, want},
		{"default n (min of 100 and max)", "/acr/v1/_catalog", []int{20, 20, 5}, want},
		{"last not a repository", "/acr/v1/_catalog?n=10&last=team-1", []int{10, 10, 10}, want[15:]},
		{"last after everything", "/acr/v1/_catalog?last=zzz", []int{0}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			var sizes []int
			for _, p := range pages(t, hc, r, tok, tc.first) {
				c := decode[acr.Catalog](t, p)
				if c.Repositories == nil {
					t.Fatal("repositories is null, want a list")
				}
				sizes = append(sizes, len(c.Repositories))
				got = append(got, c.Repositories...)
			}
			if !slices.Equal(sizes, tc.wantSizes) || !slices.Equal(got, tc.wantNames) {
				t.Errorf("sizes %v names %v\nwant sizes %v names %v", sizes, got, tc.wantSizes, tc.wantNames)
			}
		})
	}

	// The Link carries last and n, query-escaped.
	resp := do(t, hc, http.MethodGet, r.URL()+"/acr/v1/_catalog?n=2", tok, nil)
	if got, wantLink := nextLink(t, resp), "/acr/v1/_catalog?last="+url.QueryEscape(want[1])+"&n=2"; got != wantLink {
		t.Errorf("Link %q, want %q", got, wantLink)
	}
	// A cursor naming a repository deleted in the meantime still works.
	del := login(t, hc, r, Identity{Name: "deleter", Grants: all}, purgeScope(want[10]))
	for _, m := range r.Manifests(want[10]) {
		if resp := do(t, hc, http.MethodDelete, repoURL(r, "/v2/", want[10], "/manifests/"+m.Digest), del, nil); resp.status != http.StatusAccepted {
			t.Fatalf("delete: %d %s", resp.status, resp.body)
		}
	}
	if slices.Contains(r.Repositories(), want[10]) {
		t.Fatal("a repository without manifests is still listed")
	}
	resp = do(t, hc, http.MethodGet, r.URL()+"/acr/v1/_catalog?n=3&last="+url.QueryEscape(want[10]), tok, nil)
	if got := decode[acr.Catalog](t, resp).Repositories; !slices.Equal(got, want[11:14]) {
		t.Errorf("after deleted cursor: %v, want %v", got, want[11:14])
	}
	for _, bad := range []string{"n=0", "n=-1", "n=abc"} {
		resp := do(t, hc, http.MethodGet, r.URL()+"/acr/v1/_catalog?"+bad, tok, nil)
		if resp.status != http.StatusBadRequest || resp.errorCode(t) != CodePaginationInvalid {
			t.Errorf("%s: %d %s", bad, resp.status, resp.body)
		}
	}
}

// item is a tag or manifest as the tests see it.
type item struct {
	name    string
	updated time.Time
}

// expectedOrder sorts tags or manifests as ACR's orderby does.
func expectedOrder(keys []item, orderby string) []string {
	keys = slices.Clone(keys)
	sort.SliceStable(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if orderby != "" && !a.updated.Equal(b.updated) {
			if orderby == OrderTimeDesc {
				return a.updated.After(b.updated)
			}
			return a.updated.Before(b.updated)
		}
		return a.name < b.name
	})
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.name
	}
	return out
}

func TestTagPaging(t *testing.T) {
	t.Parallel()
	r := start(t, Options{})
	hc := httpClient(t, true)
	const repo = "team/app%1#x?y"
	base := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	d1 := r.Put(repo, Artifact{Seed: "one", Created: base})
	d2 := r.Put(repo, Artifact{Seed: "two", Created: base})
	var keys []item
	for i := range 23 {
		name := fmt.Sprintf("v%02d", (i*7)%23)          // not inserted in name order
		upd := base.Add(time.Duration(i%6) * time.Hour) // ties on lastUpdateTime
		d := d1
		if i%4 == 0 {
			d = d2
		}
		if err := r.Tag(repo, name, d, upd); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, item{name: name, updated: upd})
	}
	tok := login(t, hc, r, Identity{Name: "id", Grants: all}, purgeScope(repo))
	listPath := "/acr/v1/" + escapeRepo(repo) + "/_tags"

	for _, orderby := range []string{"", OrderTimeDesc, OrderTimeAsc} {
		t.Run("orderby="+orderby, func(t *testing.T) {
			first := listPath + "?n=5"
			if orderby != "" {
				first += "&orderby=" + orderby
			}
			var got []string
			ps := pages(t, hc, r, tok, first)
			for i, p := range ps {
				tl := decode[acr.TagList](t, p)
				if tl.Registry != r.Host() || tl.ImageName != repo {
					t.Errorf("registry %q imageName %q", tl.Registry, tl.ImageName)
				}
				for _, tg := range tl.Tags {
					if tg.Attributes.DeleteEnabled == nil || !*tg.Attributes.DeleteEnabled || tg.Attributes.ListEnabled == nil {
						t.Errorf("tag %s attributes not reported: %+v", tg.Name, tg.Attributes)
					}
					got = append(got, tg.Name)
				}
				if i < len(ps)-1 {
					link := nextLink(t, p)
					if !strings.HasPrefix(link, listPath+"?last=") || !strings.Contains(link, "&n=5") ||
						strings.Contains(link, "orderby") != (orderby != "") {
						t.Errorf("Link %q", link)
					}
				}
			}
			if want := expectedOrder(keys, orderby); !slices.Equal(got, want) {
				t.Errorf("order\n got %v\nwant %v", got, want)
			}
			if len(ps) != 5 {
				t.Errorf("%d pages, want 5", len(ps))
			}
		})
	}

	t.Run("deleted cursor gives an empty page in time order", func(t *testing.T) {
		for _, orderby := range []string{OrderTimeDesc, ""} {
			resp := do(t, hc, http.MethodGet, r.URL()+listPath+"?n=4&orderby="+orderby, tok, nil)
			page := decode[acr.TagList](t, resp).Tags
			cursor := page[len(page)-1].Name
			next := nextLink(t, resp)
			if d := do(t, hc, http.MethodDelete, r.URL()+listPath+"/"+cursor, tok, nil); d.status != http.StatusAccepted {
				t.Fatalf("delete %s: %d %s", cursor, d.status, d.body)
			}
			resp = do(t, hc, http.MethodGet, r.URL()+next, tok, nil)
			got := decode[acr.TagList](t, resp).Tags
			if orderby == OrderTimeDesc && (len(got) != 0 || resp.header.Get("Link") != "") {
				t.Errorf("timedesc after deleting cursor %s: %d tags, Link %q; want empty page", cursor, len(got), resp.header.Get("Link"))
			}
			if orderby == "" && len(got) != 4 {
				t.Errorf("name order after deleting cursor %s: %d tags, want 4", cursor, len(got))
			}
		}
	})

	t.Run("digest filter", func(t *testing.T) {
		resp := do(t, hc, http.MethodGet, r.URL()+listPath+"?n=2&digest="+url.QueryEscape(d2), tok, nil)
		if link := nextLink(t, resp); !strings.Contains(link, "digest="+url.QueryEscape(d2)) {
			t.Errorf("Link %q lost the digest filter", link)
		}
		var n int
		for _, p := range pages(t, hc, r, tok, listPath+"?digest="+url.QueryEscape(d2)) {
			for _, tg := range decode[acr.TagList](t, p).Tags {
				n++
				if tg.Digest != d2 {
					t.Errorf("tag %s of %s in a %s listing", tg.Name, tg.Digest, d2)
				}
			}
		}
		if n != 6 {
			t.Errorf("%d tags of d2, want 6", n)
		}
	})

	for _, tc := range []struct{ query, code string }{{"orderby=sideways", CodeUnsupported}, {"n=0", CodePaginationInvalid}} {
		resp := do(t, hc, http.MethodGet, r.URL()+listPath+"?"+tc.query, tok, nil)
		if resp.status != http.StatusBadRequest || resp.errorCode(t) != tc.code {
			t.Errorf("%s: %d %s", tc.query, resp.status, resp.body)
		}
	}
	tok2 := login(t, hc, r, Identity{Name: "id2", Grants: all}, purgeScope("missing"))
	resp := do(t, hc, http.MethodGet, repoURL(r, "/acr/v1/", "missing", "/_tags"), tok2, nil)
	if resp.status != http.StatusNotFound || resp.errorCode(t) != CodeNameUnknown {
		t.Errorf("missing repository: %d %s", resp.status, resp.body)
	}
}

func TestManifestPaging(t *testing.T) {
	t.Parallel()
	r := start(t, Options{})
	hc := httpClient(t, true)
	const repo = "svc/api"
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var keys []item
	tagged := map[string]bool{}
	for i := range 12 {
		a := Artifact{Seed: fmt.Sprint(i), Created: base.Add(time.Duration(i%5) * time.Minute)}
		if i%3 == 0 {
			a.Tags = []string{fmt.Sprintf("t%d", i)}
		}
		d := r.Put(repo, a)
		tagged[d] = len(a.Tags) > 0
		keys = append(keys, item{name: d, updated: a.Created})
	}
	tok := login(t, hc, r, Identity{Name: "id", Grants: all}, purgeScope(repo))
	for _, orderby := range []string{"", OrderTimeDesc, OrderTimeAsc} {
		t.Run("orderby="+orderby, func(t *testing.T) {
			var got []string
			ps := pages(t, hc, r, tok, "/acr/v1/"+escapeRepo(repo)+"/_manifests?n=5&orderby="+orderby)
			for _, p := range ps {
				raw := decode[struct {
					Registry  string           `json:"registry"`
					ImageName string           `json:"imageName"`
					Manifests []map[string]any `json:"manifests"`
				}](t, p)
				if raw.ImageName != repo || raw.Registry != r.Host() {
					t.Errorf("imageName %q registry %q", raw.ImageName, raw.Registry)
				}
				for _, m := range raw.Manifests {
					d := m["digest"].(string)
					got = append(got, d)
					if _, has := m["tags"]; has != tagged[d] {
						t.Errorf("%s: tags present=%v, want %v", d, has, tagged[d])
					}
					for _, f := range []string{"imageSize", "createdTime", "lastUpdateTime", "mediaType", "architecture", "os", "configMediaType", "changeableAttributes"} {
						if m[f] == nil {
							t.Errorf("%s lacks %s", d, f)
						}
					}
				}
			}
			if want := expectedOrder(keys, orderby); !slices.Equal(got, want) {
				t.Errorf("order\n got %v\nwant %v", got, want)
			}
			if len(ps) != 3 {
				t.Errorf("%d pages, want 3", len(ps))
			}
		})
	}
}

func TestLargeTagListPaging(t *testing.T) {
	t.Parallel()
	r := start(t, Options{})
	hc := httpClient(t, true)
	const repo = "big"
	d := r.Put(repo, Artifact{})
	base := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	const total = 10000
	for i := range total {
		if err := r.Tag(repo, fmt.Sprintf("build-%05d", i), d, base.Add(time.Duration(i%977)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	tok := login(t, hc, r, Identity{Name: "id", Grants: all}, purgeScope(repo))
	begin := time.Now()
	var got []acr.Tag
	for _, p := range pages(t, hc, r, tok, "/acr/v1/big/_tags?n=1000&orderby=timedesc") {
		got = append(got, decode[acr.TagList](t, p).Tags...)
	}
	t.Logf("paged %d tags in %v", len(got), time.Since(begin))
	if len(got) != total {
		t.Fatalf("%d tags, want %d", len(got), total)
	}
	for i := 1; i < len(got); i++ {
		a, b := got[i-1], got[i]
		if a.LastUpdateTime.Before(b.LastUpdateTime) || (a.LastUpdateTime.Equal(b.LastUpdateTime) && a.Name >= b.Name) {
			t.Fatalf("out of order at %d: %s %v then %s %v", i, a.Name, a.LastUpdateTime, b.Name, b.LastUpdateTime)
		}
	}
}

// TestCachedOrders covers repositories big enough to keep their sorted
// orders between requests: changes must invalidate them.
func TestCachedOrders(t *testing.T) {
	t.Parallel()
	r := start(t, Options{})
	hc := httpClient(t, true)
	const repo = "cached"
	base := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	var items []item
	for i := range cacheMin + 44 {
		created := base.Add(time.Duration(i%50) * time.Minute)
		d := r.Put(repo, Artifact{Seed: fmt.Sprint(i), Created: created, Tags: []string{fmt.Sprintf("t%03d", i)}})
		items = append(items, item{name: d, updated: created})
	}
	tok := login(t, hc, r, Identity{Name: "id", Grants: all}, purgeScope(repo))
	listing := func(path string) []string {
		var got []string
		for _, p := range pages(t, hc, r, tok, path) {
			l := decode[struct {
				Tags      []acr.Tag      `json:"tags"`
				Manifests []acr.Manifest `json:"manifests"`
			}](t, p)
			for _, tg := range l.Tags {
				got = append(got, tg.Name)
			}
			for _, m := range l.Manifests {
				got = append(got, m.Digest)
			}
		}
		return got
	}
	mPath := "/acr/v1/" + repo + "/_manifests?n=64&orderby=timedesc"
	if got, want := listing(mPath), expectedOrder(items, OrderTimeDesc); !slices.Equal(got, want) {
		t.Fatalf("manifests timedesc\n got %v\nwant %v", got, want)
	}
	// Re-tagging moves a tag to the front of timedesc.
	tPath := "/acr/v1/" + repo + "/_tags?n=64&orderby=timedesc"
	if tags := listing(tPath); tags[0] == "t007" {
		t.Fatalf("t007 first before re-tagging")
	}
	if err := r.Tag(repo, "t007", items[0].name, base.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	tags := listing(tPath)
	if len(tags) != cacheMin+44 || tags[0] != "t007" {
		t.Errorf("after re-tag: %d tags, first %v", len(tags), tags[:1])
	}
	// A new manifest shows up; a deleted cursor empties the next page.
	items = append(items, item{name: r.Put(repo, Artifact{Seed: "new", Created: base.Add(time.Hour)}), updated: base.Add(time.Hour)})
	if got, want := listing(mPath), expectedOrder(items, OrderTimeDesc); !slices.Equal(got, want) {
		t.Fatalf("manifests after Put\n got %v\nwant %v", got, want)
	}
	resp := do(t, hc, http.MethodGet, r.URL()+mPath, tok, nil)
	ms := decode[acr.ManifestList](t, resp).Manifests
	if d := do(t, hc, http.MethodDelete, r.URL()+"/v2/"+repo+"/manifests/"+ms[len(ms)-1].Digest, tok, nil); d.status != http.StatusAccepted {
		t.Fatalf("delete: %d", d.status)
	}
	next := do(t, hc, http.MethodGet, r.URL()+nextLink(t, resp), tok, nil)
	if n := len(decode[acr.ManifestList](t, next).Manifests); n != 0 {
		t.Errorf("page after deleted cursor has %d manifests, want 0", n)
	}
}

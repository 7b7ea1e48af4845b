package acremu

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// Not parallel: while stopped, its port must not be taken by another test's
// registry.
func TestStopStartKeepsStateAndPort(t *testing.T) {
	r := New(Options{})
	if r.URL() != "" || r.Host() != "" {
		t.Fatalf("URL before Start: %q", r.URL())
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	if err := r.Start(); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	url, host := r.URL(), r.Host()
	hc := httpClient(t, true)
	r.Put("app", Artifact{Tags: []string{"v1", "v2"}})
	tok := login(t, hc, r, Identity{Name: "id", Grants: all}, purgeScope("app"))
	list := url + "/acr/v1/app/_tags"
	if resp := do(t, hc, http.MethodGet, list, tok, nil); resp.status != 200 {
		t.Fatal(resp.status)
	}

	// An in-flight request is cut off by Stop.
	r.SetFaults(Faults{Latency: 30 * time.Second})
	errc := make(chan error, 1)
	go func() {
		_, err := send(t, httpClient(t, false), http.MethodGet, list, tok, nil)
		errc <- err
	}()
	waitFor(t, func() bool { return r.Stats().Requests["tags"] == 2 })
	begin := time.Now()
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Error("in-flight request got an answer after Stop")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request still open 5s after Stop")
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Stop took %v", d)
	}
	if err := r.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := send(t, httpClient(t, false), http.MethodGet, list, tok, nil); err == nil {
		t.Error("a stopped registry answered")
	}

	r.SetFaults(Faults{})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if r.URL() != url || r.Host() != host {
		t.Fatalf("restarted on %s, was %s", r.URL(), url)
	}
	resp := do(t, httpClient(t, true), http.MethodGet, list, tok, nil)
	if resp.status != 200 || len(decode[acr.TagList](t, resp).Tags) != 2 {
		t.Fatalf("after restart: %d %s", resp.status, resp.body)
	}
	if st := r.Stats(); st.Requests["tags"] != 3 || st.AccessTokens != 1 {
		t.Errorf("stats after restart %+v", st)
	}
	r.Close()
	r.Close()
}

// waitFor polls cond until it holds or the test's patience ends.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStatsAndReset(t *testing.T) {
	t.Parallel()
	r := start(t, Options{})
	hc := httpClient(t, true)
	d := r.Put("app", Artifact{Tags: []string{"a", "b"}})
	r.Put("app", Artifact{Tags: []string{"c"}})
	tok := login(t, hc, r, Identity{Name: "id", CatalogLister: true, Grants: all}, purgeScope("app"), "registry:catalog:*")
	calls := []struct {
		method, path string
	}{
		{http.MethodGet, "/acr/v1/_catalog"},
		{http.MethodGet, "/acr/v1/app/_tags"},
		{http.MethodGet, "/acr/v1/app/_manifests"},
		{http.MethodGet, "/v2/app/manifests/" + d},
		{http.MethodGet, "/v2/app/referrers/" + d},
		{http.MethodPatch, "/acr/v1/app/_tags/a"},
		{http.MethodPatch, "/acr/v1/app/_manifests/" + d},
		{http.MethodDelete, "/acr/v1/app/_tags/a"},
		{http.MethodDelete, "/acr/v1/app/_tags/a"},
		{http.MethodDelete, "/v2/app/manifests/" + d},
	}
	for _, c := range calls {
		do(t, hc, c.method, r.URL()+c.path, tok, stringsReader(`{}`))
	}
	st := r.Stats()
	want := map[string]int{"catalog": 1, "tags": 1, "manifests": 1, "manifest": 1, "referrers": 1,
		"patch_tag": 1, "patch_manifest": 1, "delete_tag": 2, "delete_manifest": 1, "exchange": 1, "token": 1}
	for k, v := range want {
		if st.Requests[k] != v {
			t.Errorf("Requests[%s] = %d, want %d", k, st.Requests[k], v)
		}
	}
	if st.DeleteNotFound != 1 || st.AADTokens != 1 || st.RefreshTokens != 1 || st.AccessTokens != 1 {
		t.Errorf("stats %+v", st)
	}
	st.Requests["catalog"] = 99 // a deep copy
	if r.Stats().Requests["catalog"] != 1 {
		t.Error("Stats shares its map")
	}
	recs := r.Deletes()
	if len(recs) != 3 || recs[0].Kind != KindTag || recs[1].Kind != KindManifest || recs[2].Kind != KindCascadeTag || recs[2].Ref != "b" {
		t.Errorf("deletes %+v", recs)
	}
	if recs[0].At.IsZero() || recs[0].Identity != "id" {
		t.Errorf("record %+v", recs[0])
	}
	r.ResetStats()
	if st := r.Stats(); len(st.Requests) != 0 || st.AccessTokens != 0 || st.DeleteNotFound != 0 {
		t.Errorf("after reset %+v", st)
	}
	if len(r.Deletes()) != 3 {
		t.Error("ResetStats dropped deletion records")
	}
	r.ResetDeletes()
	if len(r.Deletes()) != 0 {
		t.Error("ResetDeletes kept records")
	}
}

func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	r := start(t, Options{ABAC: true})
	r.SetLimits(Limits{Read: 1 << 20, Delete: 1 << 20, Write: 1 << 20})
	const repos, tags = 8, 40
	var scopes []string
	for i := range repos {
		repo := fmt.Sprintf("team/r%d", i)
		for j := range tags {
			r.Put(repo, Artifact{Tags: []string{fmt.Sprint("t", j)}})
		}
		scopes = append(scopes, purgeScope(repo))
	}
	hc := httpClient(t, true)
	cred := r.AddIdentity(Identity{Name: "id", CatalogLister: true, Grants: all})
	refresh := exchange(t, hc, r, cred)

	var wg sync.WaitGroup
	errs := make(chan error, 1024)
	call := func(method, u, tok, body string, ok ...int) {
		resp, err := send(t, hc, method, u, tok, stringsReader(body))
		if err != nil {
			errs <- fmt.Errorf("%s %s: %w", method, u, err)
			return
		}
		if !slices.Contains(ok, resp.status) {
			errs <- fmt.Errorf("%s %s: %d %s", method, u, resp.status, resp.body)
		}
	}
	toks := make([]string, 8)
	for w := range toks {
		toks[w] = mint(t, hc, r, refresh, append(scopes, "registry:catalog:*")...)
	}
	for w := range 8 {
		wg.Go(func() {
			repo := fmt.Sprintf("team/r%d", w)
			tok := toks[w]
			for j := range tags {
				switch j % 4 {
				case 0:
					call(http.MethodGet, r.URL()+"/acr/v1/_catalog?n=3", tok, "", 200)
				case 1:
					call(http.MethodGet, repoURL(r, "/acr/v1/", repo, "/_manifests?orderby=timedesc&n=7"), tok, "", 200, 404)
				case 2:
					call(http.MethodPatch, repoURL(r, "/acr/v1/", repo, fmt.Sprintf("/_tags/t%d", j)), tok, `{"readEnabled":true}`, 200, 404)
				}
				// 404 when the neighbour below already deleted the tag's manifest.
				call(http.MethodDelete, repoURL(r, "/acr/v1/", repo, fmt.Sprintf("/_tags/t%d", j)), tok, "", 202, 404)
				// Another repository's manifests, concurrently with its owner.
				other := fmt.Sprintf("team/r%d", (w+1)%repos)
				if ms := r.Manifests(other); len(ms) > 0 && j%5 == 0 {
					call(http.MethodDelete, repoURL(r, "/v2/", other, "/manifests/"+ms[0].Digest), tok, "", 202, 404)
				}
			}
		})
	}
	wg.Go(func() { // content keeps arriving meanwhile
		for i := range 50 {
			r.Put("team/new", Artifact{Tags: []string{fmt.Sprint("n", i)}})
			_ = r.Repositories()
			_ = r.Stats()
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range repos {
		if n := len(r.Tags(fmt.Sprintf("team/r%d", i))); n != 0 {
			t.Errorf("team/r%d has %d tags left", i, n)
		}
	}
	if n := len(r.Tags("team/new")); n != 50 {
		t.Errorf("team/new has %d tags", n)
	}
}

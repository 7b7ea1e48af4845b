package acr_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/budget"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
)

// env is one started emulator plus the HTTP plumbing to reach it. Every
// secret that crosses the wire is recorded so tests can look for leaks.
type env struct {
	reg *acremu.Registry
	ep  acr.Endpoint
	hc  *http.Client
	rec *secretRecorder
}

func newEnv(t *testing.T, o acremu.Options) *env {
	t.Helper()
	reg := acremu.New(o)
	if err := reg.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	ep, err := acr.ParseEndpoint(reg.URL())
	if err != nil {
		t.Fatal(err)
	}
	if ep.Service != reg.Host() {
		t.Fatalf("service %q != emulator host %q", ep.Service, reg.Host())
	}
	rec := &secretRecorder{next: acr.NewHTTPClient().Transport}
	hc := acr.NewHTTPClient()
	hc.Transport = rec
	return &env{reg: reg, ep: ep, hc: hc, rec: rec}
}

// fullAccess registers an identity with every permission.
func (e *env) fullAccess(name string) *acremu.Credential {
	return e.reg.AddIdentity(acremu.Identity{Name: name, CatalogLister: true, Grants: []acremu.Grant{{}}})
}

func (e *env) broker(t *testing.T, cred *acremu.Credential, mod func(*acr.BrokerOptions)) *acr.Broker {
	t.Helper()
	o := acr.BrokerOptions{Endpoint: e.ep, Credential: cred, HTTPClient: e.hc, Now: e.reg.Now}
	if mod != nil {
		mod(&o)
	}
	b, err := acr.NewBroker(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) client(t *testing.T, ts acr.TokenSource, mod func(*acr.ClientOptions)) *acr.Client {
	t.Helper()
	o := acr.ClientOptions{
		Endpoint: e.ep, Tokens: ts, HTTPClient: e.hc,
		Retry: acr.RetryPolicy{MaxAttempts: 8, BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond, MaxThrottle: 10 * time.Second},
	}
	if mod != nil {
		mod(&o)
	}
	c, err := acr.NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// secretRecorder is an http.RoundTripper that records every token sent or
// received: Authorization headers, token form fields and token responses.
type secretRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen map[string]bool
}

func (r *secretRecorder) add(s string) {
	if s == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	r.seen[s] = true
}

func (r *secretRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if a := req.Header.Get("Authorization"); a != "" {
		r.add(strings.TrimPrefix(a, "Bearer "))
	}
	if req.Body != nil && strings.HasPrefix(req.URL.Path, "/oauth2/") {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(b))
		if form, err := url.ParseQuery(string(b)); err == nil {
			r.add(form.Get("access_token"))
			r.add(form.Get("refresh_token"))
		}
	}
	resp, err := r.next.RoundTrip(req)
	if err != nil || !strings.HasPrefix(req.URL.Path, "/oauth2/") {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	var tok struct{ AccessToken, RefreshToken string }
	var raw map[string]string
	if json.Unmarshal(b, &raw) == nil {
		tok.AccessToken, tok.RefreshToken = raw["access_token"], raw["refresh_token"]
	}
	r.add(tok.AccessToken)
	r.add(tok.RefreshToken)
	return resp, nil
}

func (r *secretRecorder) secrets() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.seen))
	for s := range r.seen {
		out = append(out, s)
	}
	return out
}

var base = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// putTags stores n single-tag images in repo, tag i updated at base+i min.
func putTags(reg *acremu.Registry, repo string, n int) {
	for i := range n {
		ts := base.Add(time.Duration(i) * time.Minute)
		reg.Put(repo, acremu.Artifact{Tags: []string{fmt.Sprintf("v%03d", i)}, Seed: fmt.Sprint(repo, i), Created: ts, Updated: ts})
	}
}

func purgeScopes(repos ...string) []acr.Scope {
	out := make([]acr.Scope, len(repos))
	for i, r := range repos {
		out[i] = acr.RepositoryScope(r, acr.PurgeActions...)
	}
	return out
}

func TestEmulatorPaging(t *testing.T) {
	e := newEnv(t, acremu.Options{})
	cred := e.fullAccess("purger")
	putTags(e.reg, "team/app", 25)
	for i := range 12 {
		putTags(e.reg, fmt.Sprintf("repo-%02d", i), 1)
	}
	b := e.broker(t, cred, nil)
	c := e.client(t, b.Source(append(purgeScopes("team/app"), acr.CatalogScope())...), func(o *acr.ClientOptions) { o.PageSize = 10 })
	ctx := t.Context()

	// Tags: 3 pages, newest first, exactly the registry's tags.
	var pages [][]acr.Tag
	if err := c.Tags(ctx, "team/app", func(p []acr.Tag) error { pages = append(pages, p); return nil }); err != nil {
		t.Fatal(err)
	}
	want := e.reg.Tags("team/app")
	slices.SortFunc(want, func(a, b acr.Tag) int {
		return cmp.Or(b.LastUpdateTime.Compare(a.LastUpdateTime), strings.Compare(a.Name, b.Name))
	})
	if len(pages) != 3 || len(pages[0]) != 10 || len(pages[2]) != 5 {
		t.Fatalf("page sizes: %d pages", len(pages))
	}
	got := slices.Concat(pages...)
	if len(got) != len(want) {
		t.Fatalf("got %d tags, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Name != want[i].Name || got[i].Digest != want[i].Digest || !got[i].LastUpdateTime.Equal(want[i].LastUpdateTime) {
			t.Fatalf("tag %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	// Manifests: same, by digest.
	var mans []acr.Manifest
	if err := c.Manifests(ctx, "team/app", func(p []acr.Manifest) error { mans = append(mans, p...); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(mans) != 25 {
		t.Fatalf("manifests: %d, want 25", len(mans))
	}
	for i := 1; i < len(mans); i++ {
		if mans[i-1].Digest >= mans[i].Digest {
			t.Fatalf("manifests not in digest order at %d: %s >= %s", i, mans[i-1].Digest, mans[i].Digest)
		}
	}

	// Catalog: 13 repositories, 2 pages.
	var repos []string
	catPages := 0
	if err := c.Catalog(ctx, func(p []string) error { catPages++; repos = append(repos, p...); return nil }); err != nil {
		t.Fatal(err)
	}
	if catPages != 2 || !slices.Equal(repos, e.reg.Repositories()) {
		t.Fatalf("catalog: %d pages, %q", catPages, repos)
	}
	st := e.reg.Stats()
	if st.Requests["tags"] != 3 || st.Requests["manifests"] != 3 || st.Requests["catalog"] != 2 || st.AccessTokens != 1 {
		t.Fatalf("emulator stats: %+v", st)
	}
}

func TestEmulatorTokenExpiryMidWork(t *testing.T) {
	e := newEnv(t, acremu.Options{})
	cred := e.fullAccess("purger")
	putTags(e.reg, "a", 3)
	b := e.broker(t, cred, nil)
	c := e.client(t, b.Source(purgeScopes("a")...), func(o *acr.ClientOptions) { o.PageSize = 1 })
	ctx := t.Context()

	// The token expires between two pages of one listing: the broker's clock
	// is the emulator's, so it renews before the registry would refuse.
	pages := 0
	err := c.Tags(ctx, "a", func([]acr.Tag) error {
		pages++
		if pages == 2 {
			e.reg.Advance(80 * time.Minute)
		}
		return nil
	})
	if err != nil || pages != 3 {
		t.Fatalf("pages %d, err %v", pages, err)
	}
	st, bs := e.reg.Stats(), b.Stats()
	if bs.Mints != 2 || st.AccessTokens != 2 || st.Unauthorized != 0 || bs.Exchanges != 1 {
		t.Fatalf("broker %+v, emulator %+v", bs, st)
	}

	// Past the refresh token's 3h: the broker exchanges again (with a new
	// AAD token) instead of presenting an expired refresh token.
	e.reg.Advance(3*time.Hour + time.Minute)
	if err := c.DeleteTag(ctx, "a", "v000"); err != nil {
		t.Fatal(err)
	}
	st, bs = e.reg.Stats(), b.Stats()
	if bs.Exchanges != 2 || st.RefreshTokens != 2 || bs.AADTokens != 2 || st.AADTokens != 2 || bs.Mints != 3 || st.AccessTokens != 3 {
		t.Fatalf("after 3h: broker %+v, emulator %+v", bs, st)
	}
	if st.Unauthorized != 0 || st.Requests["exchange"] != 2 {
		t.Fatalf("emulator %+v", st)
	}
	if e.reg.HasTag("a", "v000") {
		t.Fatal("tag not deleted")
	}
}

func TestEmulatorStaleTokenRemintsOnce(t *testing.T) {
	e := newEnv(t, acremu.Options{})
	cred := e.fullAccess("purger")
	putTags(e.reg, "a", 2)
	// The broker runs on the wall clock, so it cannot know the registry's
	// clock jumped: the registry refuses the cached token with 401.
	b := e.broker(t, cred, func(o *acr.BrokerOptions) { o.Now = time.Now })
	c := e.client(t, b.Source(purgeScopes("a")...), nil)
	ctx := t.Context()
	if err := c.Tags(ctx, "a", func([]acr.Tag) error { return nil }); err != nil {
		t.Fatal(err)
	}
	e.reg.Advance(2 * time.Hour)
	if err := c.DeleteTag(ctx, "a", "v001"); err != nil {
		t.Fatal(err)
	}
	st, bs := e.reg.Stats(), b.Stats()
	if st.Unauthorized != 1 || bs.Mints != 2 || st.AccessTokens != 2 {
		t.Fatalf("broker %+v, emulator %+v", bs, st)
	}
	if e.reg.HasTag("a", "v001") {
		t.Fatal("tag not deleted")
	}
}

func TestEmulatorConcurrentInvalidateOneRemint(t *testing.T) {
	e := newEnv(t, acremu.Options{})
	cred := e.fullAccess("purger")
	putTags(e.reg, "a", 1)
	b := e.broker(t, cred, func(o *acr.BrokerOptions) { o.Now = time.Now })
	src := b.Source(purgeScopes("a")...)
	c := e.client(t, src, nil)
	ctx := t.Context()
	old, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.reg.Advance(2 * time.Hour) // the cached token is now expired at the registry

	var g errgroup.Group
	for range 50 {
		g.Go(func() error { return c.Tags(ctx, "a", func([]acr.Tag) error { return nil }) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	st, bs := e.reg.Stats(), b.Stats()
	if bs.Mints != 2 || st.AccessTokens != 2 {
		t.Fatalf("50 concurrent 401s: broker %+v, emulator %+v", bs, st)
	}
	if st.Unauthorized < 1 || st.Unauthorized > 50 {
		t.Fatalf("unauthorized = %d", st.Unauthorized)
	}
	// And directly: 50 Invalidate(old) calls with the newer token cached are no-ops.
	cur, _ := src.Token(ctx)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { src.Invalidate(old) })
	}
	wg.Wait()
	if again, _ := src.Token(ctx); again != cur || b.Stats().Mints != 2 {
		t.Fatal("stale Invalidate dropped the current token")
	}
	// 50 concurrent Invalidate of the current one, then Token: one mint.
	var toks sync.Map
	for i := range 50 {
		wg.Go(func() {
			src.Invalidate(cur)
			tok, err := src.Token(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			toks.Store(i, tok)
		})
	}
	wg.Wait()
	if m := b.Stats().Mints; m != 3 || e.reg.Stats().AccessTokens != 3 {
		t.Fatalf("mints = %d after 50 concurrent Invalidate of one token, want 3", m)
	}
}

// unknownClaims hides the access claim of its source's tokens, as a token
// whose claim cannot be read would: the client must then let the registry
// decide.
type unknownClaims struct{ acr.TokenSource }

func (u unknownClaims) Token(ctx context.Context) (*acr.Token, error) {
	t, err := u.TokenSource.Token(ctx)
	if err != nil {
		return nil, err
	}
	cp := *t
	cp.Granted = nil
	return &cp, nil
}

func TestEmulatorPersistent401IsNotPermitted(t *testing.T) {
	e := newEnv(t, acremu.Options{ABAC: true})
	cred := e.reg.AddIdentity(acremu.Identity{Name: "team-a", Grants: []acremu.Grant{{RepositoryPrefix: "team-a/"}}})
	putTags(e.reg, "team-a/app", 1)
	putTags(e.reg, "team-b/app", 1)
	b := e.broker(t, cred, nil)
	c := e.client(t, unknownClaims{b.Source(purgeScopes("team-a/app", "team-b/app")...)}, nil)
	ctx := t.Context()

	err := c.DeleteTag(ctx, "team-b/app", "v000")
	if !acr.IsNotPermitted(err) {
		t.Fatalf("err = %v, want ErrNotPermitted", err)
	}
	var ae *acr.Error
	if !errors.As(err, &ae) || ae.StatusCode != 401 || ae.AuthError != "insufficient_scope" || !strings.Contains(ae.Scope, "team-b/app") {
		t.Fatalf("Error = %+v", ae)
	}
	st, bs := e.reg.Stats(), b.Stats()
	if st.Unauthorized != 2 || bs.Mints != 2 || st.Requests["delete_tag"] != 2 {
		t.Fatalf("want exactly one re-mint and two attempts: broker %+v, emulator %+v", bs, st)
	}
	if !e.reg.HasTag("team-b/app", "v000") {
		t.Fatal("forbidden tag deleted")
	}
	if err := c.DeleteTag(ctx, "team-a/app", "v000"); err != nil {
		t.Fatal(err)
	}
}

func TestEmulatorPartialGrant(t *testing.T) {
	e := newEnv(t, acremu.Options{ABAC: true})
	cred := e.reg.AddIdentity(acremu.Identity{Name: "team-a", Grants: []acremu.Grant{{RepositoryPrefix: "team-a/"}}})
	for _, r := range []string{"team-a/api", "team-a/web", "team-b/api"} {
		putTags(e.reg, r, 3)
	}
	b := e.broker(t, cred, nil)
	abac, err := b.ABAC(t.Context())
	if err != nil || !abac {
		t.Fatalf("ABAC = %v, %v", abac, err)
	}
	src := b.Source(purgeScopes("team-a/api", "team-a/web", "team-b/api")...)
	c := e.client(t, src, nil)
	ctx := t.Context()
	tok, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acr.PurgeActions {
		if !tok.Allows("team-a/api", a) || !tok.Allows("team-a/web", a) || tok.Allows("team-b/api", a) {
			t.Fatalf("action %s: granted %v", a, tok.Granted)
		}
	}
	forbidden := []error{
		c.Tags(ctx, "team-b/api", func([]acr.Tag) error { return nil }),
		c.DeleteTag(ctx, "team-b/api", "v000"),
		c.UpdateTagAttributes(ctx, "team-b/api", "v000", acr.Attributes{}),
		c.Catalog(ctx, func([]string) error { return nil }),
	}
	for i, err := range forbidden {
		if !acr.IsNotPermitted(err) {
			t.Errorf("forbidden[%d]: err = %v", i, err)
		}
	}
	for _, r := range []string{"team-a/api", "team-a/web"} {
		if err := c.DeleteTag(ctx, r, "v000"); err != nil {
			t.Fatal(err)
		}
		if e.reg.HasTag(r, "v000") {
			t.Fatalf("%s:v000 not deleted", r)
		}
	}
	st, bs := e.reg.Stats(), b.Stats()
	if bs.Mints != 1 || st.AccessTokens != 1 || st.Unauthorized != 0 {
		t.Fatalf("a refused repository must not cost calls or mints: broker %+v, emulator %+v", bs, st)
	}
	if !e.reg.HasTag("team-b/api", "v000") {
		t.Fatal("forbidden tag deleted")
	}
}

func TestEmulatorThrottling(t *testing.T) {
	e := newEnv(t, acremu.Options{})
	cred := e.fullAccess("purger")
	putTags(e.reg, "a", 8)
	e.reg.SetLimits(acremu.Limits{Window: time.Second, Delete: 3})
	lim := acr.NewLimiter(acr.LimiterOptions{DeletesPerMinute: 60000})
	b := e.broker(t, cred, nil)
	c := e.client(t, b.Source(purgeScopes("a")...), func(o *acr.ClientOptions) { o.Limiter = lim })
	ctx := t.Context()
	start := time.Now()
	var g errgroup.Group
	for i := range 6 {
		g.Go(func() error { return c.DeleteTag(ctx, "a", fmt.Sprintf("v%03d", i)) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if e.reg.HasTag("a", fmt.Sprintf("v%03d", i)) {
			t.Fatalf("v%03d not deleted", i)
		}
	}
	st := e.reg.Stats()
	if st.Throttled < 1 || lim.Throttles(acr.ClassDelete) != st.Throttled {
		t.Fatalf("emulator throttled %d, limiter saw %d", st.Throttled, lim.Throttles(acr.ClassDelete))
	}
	if lim.Factor(acr.ClassDelete) >= 1 {
		t.Fatal("limiter not slowed by 429s")
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("6 deletes at 3/s finished in %v: Retry-After not honoured", d)
	}

	// A throttle budget smaller than Retry-After gives up with IsThrottled.
	e.reg.SetLimits(acremu.Limits{Window: time.Minute, Delete: 1})
	impatient := e.client(t, b.Source(purgeScopes("a")...), func(o *acr.ClientOptions) {
		o.Retry = acr.RetryPolicy{MaxThrottle: time.Second}
	})
	_ = impatient.DeleteTag(ctx, "a", "v006")
	err := impatient.DeleteTag(ctx, "a", "v007")
	if !acr.IsThrottled(err) {
		t.Fatalf("err = %v, want IsThrottled", err)
	}
	var ae *acr.Error
	if !errors.As(err, &ae) || ae.RetryAfter < time.Second || ae.Code != "TOOMANYREQUESTS" {
		t.Fatalf("Error = %+v", ae)
	}
}

// TestEmulatorDeleteGate: with a Gate (the registry-wide budget), deletes
// wait on it and its 429s reach it, not the per-process bucket.
func TestEmulatorDeleteGate(t *testing.T) {
	e := newEnv(t, acremu.Options{})
	cred := e.fullAccess("purger")
	putTags(e.reg, "a", 8)
	e.reg.SetLimits(acremu.Limits{RegistryWrites: 3, RegistryWindow: time.Second})
	gate, err := budget.NewLocal(budget.Options{PerMinute: 60000})
	require.NoError(t, err)
	lim := acr.NewLimiter(acr.LimiterOptions{Deletes: gate, DeletesPerMinute: 1})
	b := e.broker(t, cred, nil)
	c := e.client(t, b.Source(purgeScopes("a")...), func(o *acr.ClientOptions) { o.Limiter = lim })
	ctx := t.Context()
	var g errgroup.Group
	for i := range 6 {
		g.Go(func() error { return c.DeleteTag(ctx, "a", fmt.Sprintf("v%03d", i)) })
	}
	require.NoError(t, g.Wait())
	for i := range 6 {
		assert.False(t, e.reg.HasTag("a", fmt.Sprintf("v%03d", i)), "v%03d not deleted", i)
	}
	st, gs := e.reg.Stats(), gate.Stats()
	require.Positive(t, st.ThrottledRegistry)
	assert.EqualValues(t, st.ThrottledRegistry, gs.Throttled, "every 429 reached the gate")
	assert.Equal(t, st.ThrottledRegistry, lim.Throttles(acr.ClassDelete))
	assert.EqualValues(t, 6+st.ThrottledRegistry, gs.Granted, "one grant per attempt")
	assert.Less(t, gate.Rate(), 60000.0, "the budget was slowed by the 429s")
	assert.Equal(t, 1.0, lim.Factor(acr.ClassDelete), "the per-process bucket stays out of it")
}

func TestEmulatorDeleteNotFoundAndSlashes(t *testing.T) {
	e := newEnv(t, acremu.Options{})
	cred := e.fullAccess("purger")
	repos := []string{"a/b/c", "ns/with.dots_and-dashes/x"}
	digests := map[string]string{}
	for _, r := range repos {
		digests[r] = e.reg.Put(r, acremu.Artifact{Tags: []string{"keep", "drop"}, Seed: r})
		e.reg.Put(r, acremu.Artifact{Tags: []string{"other"}, Seed: r + "2"})
	}
	b := e.broker(t, cred, nil)
	c := e.client(t, b.Source(purgeScopes(repos...)...), nil)
	ctx := t.Context()
	for _, r := range repos {
		var tags []string
		if err := c.Tags(ctx, r, func(p []acr.Tag) error {
			for _, tg := range p {
				tags = append(tags, tg.Name)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		slices.Sort(tags)
		if !slices.Equal(tags, []string{"drop", "keep", "other"}) {
			t.Fatalf("%s tags = %q", r, tags)
		}
		m, err := c.ManifestBody(ctx, r, digests[r])
		if err != nil || m.SchemaVersion != 2 {
			t.Fatalf("manifest body of %s: %+v, %v", r, m, err)
		}
		if err := c.DeleteTag(ctx, r, "drop"); err != nil {
			t.Fatal(err)
		}
		if err := c.DeleteTag(ctx, r, "drop"); err != nil { // already gone
			t.Fatalf("second delete: %v", err)
		}
		if err := c.DeleteTag(ctx, r, "never-existed"); err != nil {
			t.Fatalf("delete of unknown tag: %v", err)
		}
		if err := c.DeleteManifest(ctx, r, digests[r]); err != nil {
			t.Fatal(err)
		}
		if err := c.DeleteManifest(ctx, r, digests[r]); err != nil {
			t.Fatalf("second manifest delete: %v", err)
		}
		if e.reg.HasTag(r, "drop") || e.reg.HasTag(r, "keep") || e.reg.HasManifest(r, digests[r]) || !e.reg.HasTag(r, "other") {
			t.Fatalf("%s: wrong state after deletes: %v", r, e.reg.Tags(r))
		}
		// Reading a gone manifest is a typed 404, not success.
		if _, err := c.ManifestBody(ctx, r, digests[r]); !acr.IsNotFound(err) {
			t.Fatalf("ManifestBody of a deleted manifest: %v", err)
		}
	}
	if st := e.reg.Stats(); st.DeleteNotFound != 6 {
		t.Fatalf("DeleteNotFound = %d, want 6", st.DeleteNotFound)
	}
}

func TestEmulatorLockedAndUnlock(t *testing.T) {
	e := newEnv(t, acremu.Options{})
	cred := e.fullAccess("purger")
	no := false
	d := e.reg.Put("r", acremu.Artifact{Tags: []string{"locked"}, Seed: "x"})
	if err := e.reg.SetTagAttributes("r", "locked", acr.Attributes{DeleteEnabled: &no}); err != nil {
		t.Fatal(err)
	}
	b := e.broker(t, cred, nil)
	c := e.client(t, b.Source(purgeScopes("r")...), nil)
	ctx := t.Context()
	if err := c.DeleteTag(ctx, "r", "locked"); !acr.IsLocked(err) {
		t.Fatalf("err = %v, want IsLocked", err)
	}
	yes := true
	if err := c.UpdateTagAttributes(ctx, "r", "locked", acr.Attributes{DeleteEnabled: &yes, WriteEnabled: &yes}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteManifest(ctx, "r", d); err != nil {
		t.Fatal(err)
	}
	if e.reg.HasManifest("r", d) {
		t.Fatal("manifest not deleted after unlock")
	}
}

func TestEmulatorReferrers(t *testing.T) {
	e := newEnv(t, acremu.Options{})
	cred := e.fullAccess("purger")
	img := e.reg.Put("r", acremu.Artifact{Tags: []string{"v1"}, Seed: "img"})
	sig := e.reg.Put("r", acremu.Artifact{Subject: img, ArtifactType: "application/vnd.cncf.notary.signature", Seed: "sig"})
	idx := e.reg.Put("r", acremu.Artifact{Tags: []string{"multi"}, Children: []string{img}, Seed: "idx"})
	b := e.broker(t, cred, nil)
	c := e.client(t, b.Source(purgeScopes("r")...), nil)
	ctx := t.Context()
	refs, err := c.Referrers(ctx, "r", img)
	if err != nil || len(refs) != 1 || refs[0].Digest != sig || refs[0].ArtifactType != "application/vnd.cncf.notary.signature" {
		t.Fatalf("referrers = %+v, %v", refs, err)
	}
	m, err := c.ManifestBody(ctx, "r", idx)
	if err != nil || !acr.IsIndex(m.MediaType) || len(m.Manifests) != 1 || m.Manifests[0].Digest != img {
		t.Fatalf("index = %+v, %v", m, err)
	}
	s, err := c.ManifestBody(ctx, "r", sig)
	if err != nil || s.Subject == nil || s.Subject.Digest != img {
		t.Fatalf("signature = %+v, %v", s, err)
	}
}

func TestEmulatorFaultsAreRetried(t *testing.T) {
	e := newEnv(t, acremu.Options{})
	cred := e.fullAccess("purger")
	putTags(e.reg, "a", 30)
	e.reg.SetFaults(acremu.Faults{ErrorRate: 0.2, DropRate: 0.1, LostResponseRate: 0.3, Seed: 7})
	b := e.broker(t, cred, nil)
	c := e.client(t, b.Source(purgeScopes("a")...), func(o *acr.ClientOptions) { o.PageSize = 7 })
	ctx := t.Context()
	var names []string
	if err := c.Tags(ctx, "a", func(p []acr.Tag) error {
		for _, tg := range p {
			names = append(names, tg.Name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(names) != 30 {
		t.Fatalf("listed %d tags through faults", len(names))
	}
	var g errgroup.Group
	g.SetLimit(8)
	for _, n := range names {
		g.Go(func() error { return c.DeleteTag(ctx, "a", n) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if left := e.reg.Tags("a"); len(left) != 0 {
		t.Fatalf("%d tags left", len(left))
	}
	if st := e.reg.Stats(); st.Faults == 0 {
		t.Fatal("no faults were injected; the test proves nothing")
	}
}

// TestEmulatorOneTokenPerBatch is the point of the broker: 50 concurrent
// operations (lists and deletes) across one batch of 10 repositories mint
// exactly one access token.
func TestEmulatorOneTokenPerBatch(t *testing.T) {
	e := newEnv(t, acremu.Options{ABAC: true})
	cred := e.reg.AddIdentity(acremu.Identity{Name: "worker", Grants: []acremu.Grant{{RepositoryPrefix: "svc/"}}})
	var repos []string
	for i := range 10 {
		r := fmt.Sprintf("svc/app-%d", i)
		repos = append(repos, r)
		putTags(e.reg, r, 9)
	}
	b := e.broker(t, cred, nil)
	src := b.Source(purgeScopes(repos...)...)
	lim := acr.NewLimiter(acr.LimiterOptions{DeletesPerMinute: 60000})
	// Pages of 5, newest first: the first page's cursor (v004) is never
	// deleted, so a listing racing the deletes of v000..v003 still pages on.
	c := e.client(t, src, func(o *acr.ClientOptions) { o.Limiter = lim; o.PageSize = 5 })
	ctx := t.Context()

	var g errgroup.Group
	for i := range 50 {
		repo := repos[i%10]
		if i < 10 {
			g.Go(func() error {
				n := 0
				err := c.Tags(ctx, repo, func(p []acr.Tag) error { n += len(p); return nil })
				if err == nil && (n < 5 || n > 9) {
					err = fmt.Errorf("%s: listed %d tags", repo, n)
				}
				return err
			})
			continue
		}
		tag := fmt.Sprintf("v%03d", i/10-1) // v000..v003 of each repository
		g.Go(func() error { return c.DeleteTag(ctx, repo, tag) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	st, bs := e.reg.Stats(), b.Stats()
	if st.AccessTokens != 1 || bs.Mints != 1 {
		t.Fatalf("50 operations minted %d tokens (broker says %d), want exactly 1", st.AccessTokens, bs.Mints)
	}
	if st.RefreshTokens != 1 || bs.Exchanges != 1 || st.AADTokens != 1 || bs.AADTokens != 1 {
		t.Fatalf("broker %+v, emulator %+v", bs, st)
	}
	if st.Requests["delete_tag"] != 40 || st.Unauthorized != 0 {
		t.Fatalf("emulator %+v", st)
	}
	for _, r := range repos {
		if tags := e.reg.Tags(r); len(tags) != 5 || tags[0].Name != "v004" {
			t.Fatalf("%s: left %v", r, tags)
		}
	}
}

func TestEmulatorLogsCarryNoTokens(t *testing.T) {
	e := newEnv(t, acremu.Options{ABAC: true})
	cred := e.reg.AddIdentity(acremu.Identity{Name: "w", CatalogLister: true, Grants: []acremu.Grant{{RepositoryPrefix: "ok/"}}})
	putTags(e.reg, "ok/a", 6)
	putTags(e.reg, "no/b", 1)
	var logs syncBuf
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// Wall-clock broker so the clock jump below produces a real 401 + re-mint.
	b := e.broker(t, cred, func(o *acr.BrokerOptions) { o.Logger = logger; o.Now = time.Now })
	src := b.Source(append(purgeScopes("ok/a", "no/b"), acr.CatalogScope())...)
	c := e.client(t, src, func(o *acr.ClientOptions) { o.Logger = logger; o.PageSize = 2 })
	ctx := t.Context()

	var errs []error
	errs = append(errs, c.Catalog(ctx, func([]string) error { return nil }))
	errs = append(errs, c.Tags(ctx, "ok/a", func([]acr.Tag) error { return nil }))
	e.reg.Advance(2 * time.Hour) // stale token → 401 → re-mint
	errs = append(errs, c.DeleteTag(ctx, "ok/a", "v000"))
	errs = append(errs, c.DeleteTag(ctx, "ok/a", "missing"))
	errs = append(errs, c.DeleteTag(ctx, "no/b", "v000")) // not permitted
	e.reg.SetFaults(acremu.Faults{ErrorRate: 0.5, Seed: 3})
	errs = append(errs, c.DeleteTag(ctx, "ok/a", "v001"))
	e.reg.SetFaults(acremu.Faults{})
	unknown := e.client(t, unknownClaims{src}, func(o *acr.ClientOptions) { o.Logger = logger })
	errs = append(errs, unknown.DeleteTag(ctx, "no/b", "v000")) // persistent 401
	lim := acr.NewLimiter(acr.LimiterOptions{})
	e.reg.SetLimits(acremu.Limits{Window: time.Second, Delete: 1})
	throttled := e.client(t, src, func(o *acr.ClientOptions) { o.Logger = logger; o.Limiter = lim })
	errs = append(errs, throttled.DeleteTag(ctx, "ok/a", "v002"), throttled.DeleteTag(ctx, "ok/a", "v003"))

	if e.reg.Stats().Unauthorized < 3 || b.Stats().Mints < 2 {
		t.Fatalf("the run did not exercise the 401 paths: %+v %+v", e.reg.Stats(), b.Stats())
	}
	// Read back the current token too, by minting.
	tok, err := b.AccessToken(ctx, []acr.Scope{acr.CatalogScope()})
	if err != nil {
		t.Fatal(err)
	}
	secrets := append(e.rec.secrets(), tok.Value.Reveal())
	if len(secrets) < 5 {
		t.Fatalf("recorded only %d secrets", len(secrets))
	}
	out := logs.String()
	if !strings.Contains(out, `"status":401`) || !strings.Contains(out, "acr access token minted") {
		t.Fatalf("debug log incomplete:\n%s", out)
	}
	var all strings.Builder
	all.WriteString(out)
	for _, err := range errs {
		if err != nil {
			fmt.Fprintf(&all, "%v %+v %#v\n", err, err, err)
		}
	}
	fmt.Fprintf(&all, "%v %+v %#v %s\n", tok, tok, tok, tok)
	for _, s := range secrets {
		if len(s) >= 8 && strings.Contains(all.String(), s) {
			t.Fatalf("a token (%d chars) appears in logs or errors", len(s))
		}
		// Parts of a JWT (its signature) must not appear either.
		if parts := strings.Split(s, "."); len(parts) == 3 && strings.Contains(all.String(), parts[2]) {
			t.Fatal("a token signature appears in logs or errors")
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestEmulatorRestartIsRetried(t *testing.T) {
	e := newEnv(t, acremu.Options{})
	cred := e.fullAccess("purger")
	putTags(e.reg, "a", 2)
	b := e.broker(t, cred, nil)
	c := e.client(t, b.Source(purgeScopes("a")...), func(o *acr.ClientOptions) {
		o.Retry = acr.RetryPolicy{MaxAttempts: 12, BaseDelay: 50 * time.Millisecond, MaxDelay: 200 * time.Millisecond}
	})
	ctx := t.Context()
	if err := c.DeleteTag(ctx, "a", "v000"); err != nil { // warm: token and a kept-alive connection
		t.Fatal(err)
	}
	if err := e.reg.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := make(chan error, 1)
	time.AfterFunc(150*time.Millisecond, func() { restarted <- e.reg.Start() })
	if err := c.DeleteTag(ctx, "a", "v001"); err != nil {
		t.Fatalf("delete across a registry restart: %v", err)
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	if e.reg.HasTag("a", "v001") || b.Stats().Mints != 1 {
		t.Fatalf("tag left or token re-minted: %+v", b.Stats())
	}
}

func TestEmulatorGetTagAndManifest(t *testing.T) {
	e := newEnv(t, acremu.Options{})
	cred := e.fullAccess("purger")
	at := e.reg.Now().Add(-time.Hour).Truncate(time.Second)
	d := e.reg.Put("team/app", acremu.Artifact{Tags: []string{"v1", "stable"}, Created: at, Seed: "x"})
	b := e.broker(t, cred, nil)
	c := e.client(t, b.Source(purgeScopes("team/app")...), nil)
	ctx := t.Context()

	tag, err := c.GetTag(ctx, "team/app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if tag.Name != "v1" || tag.Digest != d || !tag.LastUpdateTime.Equal(at) {
		t.Fatalf("tag = %+v, want v1 -> %s at %s", tag, d, at)
	}
	m, err := c.GetManifest(ctx, "team/app", d)
	if err != nil {
		t.Fatal(err)
	}
	if m.Digest != d || len(m.Tags) != 2 {
		t.Fatalf("manifest = %+v, want %s with two tags", m, d)
	}
	if _, err := c.GetTag(ctx, "team/app", "nope"); !acr.IsNotFound(err) {
		t.Fatalf("missing tag: err = %v, want IsNotFound", err)
	}
}

// A registry asking for an absurd Retry-After must not pause the shared
// limiter for longer than one call may wait.
func TestHugeRetryAfterDoesNotStallTheInstance(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "86400")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	ep, err := acr.ParseEndpoint(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	lim := acr.NewLimiter(acr.LimiterOptions{})
	c, err := acr.NewClient(acr.ClientOptions{Endpoint: ep, Tokens: staticTokens{}, Limiter: lim,
		Retry: acr.RetryPolicy{MaxThrottle: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTag(t.Context(), "r", "a"); !acr.IsThrottled(err) {
		t.Fatalf("first delete: err = %v, want throttled", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.DeleteTag(ctx, "r", "b"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("second delete waited %s behind a 24 h Retry-After", waited)
	}
}

// staticTokens grants everything, for tests against plain httptest servers.
type staticTokens struct{}

func (staticTokens) Token(context.Context) (*acr.Token, error) {
	return &acr.Token{Value: "t", Expires: time.Now().Add(time.Hour)}, nil
}
func (staticTokens) Invalidate(*acr.Token) {}

func TestEmulatorOnePage(t *testing.T) {
	e := newEnv(t, acremu.Options{})
	cred := e.fullAccess("purger")
	putTags(e.reg, "team/app", 25)
	b := e.broker(t, cred, nil)
	c := e.client(t, b.Source(purgeScopes("team/app", "no/such")...), nil)
	ctx := t.Context()

	// Tags: newest first, n at a time, continuing after last.
	first, more, err := c.TagsPage(ctx, "team/app", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 10 || !more || first[0].Name != "v024" || first[9].Name != "v015" {
		t.Fatalf("first page: %d tags from %s, more=%v", len(first), first[0].Name, more)
	}
	next, more, err := c.TagsPage(ctx, "team/app", "v015", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(next) != 10 || !more || next[0].Name != "v014" {
		t.Fatalf("page after v015: %d tags, more=%v", len(next), more)
	}
	tail, more, err := c.TagsPage(ctx, "team/app", "v005", 0) // n 0: the client's page size (100)
	if err != nil {
		t.Fatal(err)
	}
	if len(tail) != 5 || more || tail[4].Name != "v000" {
		t.Fatalf("last page: %d tags, more=%v", len(tail), more)
	}
	gone, more, err := c.TagsPage(ctx, "team/app", "no-such-tag", 10)
	if err != nil || len(gone) != 0 || more {
		t.Fatalf("after an unknown tag: %d tags, more=%v, err=%v", len(gone), more, err)
	}

	// Manifests: by digest, after last even when last does not exist.
	all := e.reg.Manifests("team/app")
	digests := make([]string, len(all))
	for i, m := range all {
		digests[i] = m.Digest
	}
	slices.Sort(digests)
	mans, more, err := c.ManifestsPage(ctx, "team/app", "", 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(mans) != 4 || !more || mans[0].Digest != digests[0] {
		t.Fatalf("first manifests: %d, more=%v", len(mans), more)
	}
	// A string just below digests[7]: the page starts at digests[7].
	below := digests[7][:len(digests[7])-1]
	mans, more, err = c.ManifestsPage(ctx, "team/app", below, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(mans) != 3 || !more || mans[0].Digest != digests[7] || mans[2].Digest != digests[9] {
		t.Fatalf("manifests after %s: %d, more=%v", below, len(mans), more)
	}
	if _, _, err := c.TagsPage(ctx, "no/such", "", 10); !acr.IsNotFound(err) {
		t.Fatalf("unknown repository: err = %v, want IsNotFound", err)
	}
	if st := e.reg.Stats(); st.Requests["tags"] != 5 || st.Requests["manifests"] != 2 {
		t.Fatalf("one request per page, got %v", st.Requests)
	}
}

// A send guard is checked before every attempt of a data-plane request,
// after the waits, and never for token requests; its error stops the call
// without sending.
func TestSendGuard(t *testing.T) {
	e := newEnv(t, acremu.Options{})
	cred := e.fullAccess("purger")
	putTags(e.reg, "a", 3)
	b := e.broker(t, cred, nil)
	c := e.client(t, b.Source(purgeScopes("a")...), nil)
	stale := errors.New("stale")

	// Refused: nothing is sent, the guard's error comes back.
	var calls atomic.Int32
	refuse := acr.WithSendGuard(t.Context(), func() error { calls.Add(1); return stale })
	err := c.DeleteTag(refuse, "a", "v000")
	if !errors.Is(err, stale) || calls.Load() != 1 {
		t.Fatalf("err = %v after %d guard calls, want the guard's error after 1", err, calls.Load())
	}
	if !e.reg.HasTag("a", "v000") || e.reg.Stats().Requests["delete_tag"] != 0 {
		t.Fatal("a refused delete was sent")
	}
	if e.reg.Stats().AccessTokens != 1 {
		t.Fatal("the token is minted before the guard is asked")
	}

	// Admitted: one check per attempt, including the retry after a 503.
	e.reg.SetFaults(acremu.Faults{ErrorRate: 1})
	calls.Store(0)
	admit := acr.WithSendGuard(t.Context(), func() error {
		if calls.Add(1) == 2 {
			e.reg.SetFaults(acremu.Faults{}) // only the first attempt fails
		}
		return nil
	})
	if err := c.DeleteTag(admit, "a", "v001"); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || e.reg.HasTag("a", "v001") {
		t.Fatalf("guard called %d times (want 2: the 503 and the retry)", calls.Load())
	}

	// A nil guard removes it.
	if err := c.DeleteTag(acr.WithSendGuard(refuse, nil), "a", "v002"); err != nil {
		t.Fatal(err)
	}
}

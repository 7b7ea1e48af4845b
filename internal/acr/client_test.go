package acr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pagedCatalog serves /acr/v1/_catalog from names in pages of n with
// relative Link headers, the way ACR does.
func pagedCatalog(t *testing.T, names []string, gotQueries *[]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/acr/v1/_catalog" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") == "" {
			writeErr(w, 401, "UNAUTHORIZED", "no auth")
			return
		}
		*gotQueries = append(*gotQueries, r.URL.RawQuery)
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		last := r.URL.Query().Get("last")
		start := 0
		for i, name := range names {
			if name > last {
				start = i
				break
			}
			start = len(names)
		}
		end := min(start+n, len(names))
		page := names[start:end]
		if end < len(names) {
			q := url.Values{"last": {page[len(page)-1]}, "n": {strconv.Itoa(n)}}
			w.Header().Set("Link", fmt.Sprintf(`</acr/v1/_catalog?%s>; rel="next"`, q.Encode()))
		}
		_ = json.NewEncoder(w).Encode(Catalog{Repositories: page})
	}
}

func TestCatalogPaging(t *testing.T) {
	names := []string{"a", "b/c", "b/d e", "c?x", "d&e=f", "e"}
	var queries []string
	src := &fakeSource{}
	c, _ := newTestClient(t, pagedCatalog(t, names, &queries), src, func(o *ClientOptions) { o.PageSize = 2 })

	var pages [][]string
	err := c.Catalog(t.Context(), func(repos []string) error {
		pages = append(pages, append([]string(nil), repos...))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"a", "b/c"}, {"b/d e", "c?x"}, {"d&e=f", "e"}}
	if fmt.Sprint(pages) != fmt.Sprint(want) {
		t.Fatalf("pages = %q, want %q", pages, want)
	}
	if len(queries) != 3 || queries[0] != "n=2" {
		t.Fatalf("queries = %q", queries)
	}
	if m, _ := src.counts(); m != 1 {
		t.Fatalf("mints = %d, want 1", m)
	}
}

func TestPagingStopsOnCallbackError(t *testing.T) {
	var queries []string
	c, _ := newTestClient(t, pagedCatalog(t, []string{"a", "b", "c", "d"}, &queries), &fakeSource{}, func(o *ClientOptions) { o.PageSize = 1 })
	stop := errors.New("stop here")
	calls := 0
	err := c.Catalog(t.Context(), func([]string) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("err = %v, want the callback's error", err)
	}
	if calls != 2 || len(queries) != 2 {
		t.Fatalf("calls = %d, requests = %d; want 2, 2 (next page fetched only after fn returns)", calls, len(queries))
	}
}

func TestPagingNextFetchedAfterCallback(t *testing.T) {
	var inCallback atomic.Bool
	var overlap atomic.Bool
	var queries []string
	inner := pagedCatalog(t, []string{"a", "b", "c"}, &queries)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if inCallback.Load() {
			overlap.Store(true)
		}
		inner(w, r)
	})
	c, _ := newTestClient(t, h, &fakeSource{}, func(o *ClientOptions) { o.PageSize = 1 })
	err := c.Catalog(t.Context(), func([]string) error {
		inCallback.Store(true)
		time.Sleep(10 * time.Millisecond)
		inCallback.Store(false)
		return nil
	})
	if err != nil || overlap.Load() {
		t.Fatalf("err = %v, overlap = %v", err, overlap.Load())
	}
}

func TestPagingLoopingAndForeignLinks(t *testing.T) {
	tests := []struct {
		name    string
		link    func(page int) string
		wantErr string
		pages   int
	}{
		{name: "self loop", link: func(int) string { return `</acr/v1/_catalog?n=100>; rel="next"` }, wantErr: "paging loop", pages: 1},
		{name: "two-step loop", link: func(p int) string {
			return fmt.Sprintf(`</acr/v1/_catalog?last=%d&n=1>; rel="next"`, p%2)
		}, wantErr: "paging loop", pages: 3},
		{name: "foreign host", link: func(int) string { return `<https://evil.example/acr/v1/_catalog?last=a>; rel="next"` }, wantErr: "outside the registry", pages: 1},
		{name: "scheme relative", link: func(int) string { return `<//evil.example/x>; rel="next"` }, wantErr: "outside the registry", pages: 1},
		{name: "relative path", link: func(p int) string {
			if p >= 3 {
				return ""
			}
			return fmt.Sprintf(`<_catalog?last=p%d>; rel="next"`, p)
		}, pages: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			page := 0
			var auths []string
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				page++
				p := page
				auths = append(auths, r.Header.Get("Authorization"))
				mu.Unlock()
				if r.URL.Path != "/acr/v1/_catalog" {
					http.NotFound(w, r)
					return
				}
				if l := tt.link(p); l != "" {
					w.Header().Set("Link", l)
				}
				fmt.Fprintf(w, `{"repositories":["r%d"]}`, p)
			})
			c, _ := newTestClient(t, h, &fakeSource{}, nil)
			got := 0
			err := c.Catalog(t.Context(), func([]string) error { got++; return nil })
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if got != tt.pages {
				t.Fatalf("pages = %d, want %d", got, tt.pages)
			}
		})
	}
}

func TestHostileNamesAreEscaped(t *testing.T) {
	type seen struct{ method, uri string }
	var mu sync.Mutex
	var got []seen
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.Method, r.RequestURI})
		mu.Unlock()
		switch r.Method {
		case http.MethodDelete:
			w.WriteHeader(http.StatusAccepted)
		case http.MethodPatch:
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusOK)
		default:
			fmt.Fprint(w, `{}`)
		}
	})
	c, _ := newTestClient(t, h, &fakeSource{}, nil)
	ctx := t.Context()
	digest := "sha256:" + strings.Repeat("ab", 32)

	steps := []struct {
		run  func() error
		want seen
	}{
		{func() error { return c.DeleteTag(ctx, "team a/x%2Fy", "v1?x=#y") },
			seen{"DELETE", "/acr/v1/team%20a/x%252Fy/_tags/v1%3Fx=%23y"}},
		{func() error { return c.DeleteTag(ctx, "../../v2/other", "../../x") },
			seen{"DELETE", "/acr/v1/%2E%2E/%2E%2E/v2/other/_tags/..%2F..%2Fx"}},
		{func() error { return c.DeleteTag(ctx, "a/b", "..") },
			seen{"DELETE", "/acr/v1/a/b/_tags/%2E%2E"}},
		{func() error { return c.DeleteManifest(ctx, "ns/repo", digest) },
			seen{"DELETE", "/v2/ns/repo/manifests/" + digest}},
		{func() error { return c.UpdateTagAttributes(ctx, "a;b", "t/t", Attributes{}) },
			seen{"PATCH", "/acr/v1/a%3Bb/_tags/t%2Ft"}},
		{func() error { return c.Tags(ctx, "a/b c", func([]Tag) error { return nil }) },
			seen{"GET", "/acr/v1/a/b%20c/_tags?n=100&orderby=timedesc"}},
		{func() error { return c.Manifests(ctx, "x/.", func([]Manifest) error { return nil }) },
			seen{"GET", "/acr/v1/x/%2E/_manifests?n=100"}},
		{func() error { _, err := c.Referrers(ctx, "a%b", digest); return err },
			seen{"GET", "/v2/a%25b/referrers/" + digest}},
	}
	for i, s := range steps {
		if err := s.run(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		mu.Lock()
		last := got[len(got)-1]
		mu.Unlock()
		if last != s.want {
			t.Errorf("step %d: sent %s %s, want %s %s", i, last.method, last.uri, s.want.method, s.want.uri)
		}
	}

	// Names and references that cannot be sent safely never reach the server.
	mu.Lock()
	before := len(got)
	mu.Unlock()
	refused := []error{
		c.DeleteTag(ctx, "", "t"),
		c.DeleteTag(ctx, "a//b", "t"),
		c.DeleteTag(ctx, "/a", "t"),
		c.DeleteTag(ctx, "a", ""),
		c.DeleteManifest(ctx, "a", "latest"),
		c.DeleteManifest(ctx, "a", "sha256:../../x"),
		c.UpdateManifestAttributes(ctx, "a", "v1", Attributes{}),
	}
	for i, err := range refused {
		if !errors.Is(err, ErrInvalidReference) {
			t.Errorf("refused[%d]: err = %v, want ErrInvalidReference", i, err)
		}
	}
	if _, err := c.ManifestBody(ctx, "a", "latest"); err == nil {
		t.Error("ManifestBody accepted a tag as digest")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != before {
		t.Fatalf("%d invalid requests reached the server", len(got)-before)
	}
}

func TestTypedErrors(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		code     string
		header   map[string]string
		call     func(c *Client, ctx context.Context) error
		check    func(error) bool
		wantCode string
		attempts int
	}{
		{name: "404 on list", status: 404, code: "NAME_UNKNOWN",
			call: func(c *Client, ctx context.Context) error {
				return c.Tags(ctx, "gone", func([]Tag) error { return nil })
			},
			check: IsNotFound, wantCode: "NAME_UNKNOWN", attempts: 1},
		{name: "405 locked delete", status: 405, code: "DENIED",
			call:  func(c *Client, ctx context.Context) error { return c.DeleteTag(ctx, "r", "t") },
			check: IsLocked, wantCode: "DENIED", attempts: 1},
		{name: "400 permanent", status: 400, code: "TAG_INVALID",
			call:     func(c *Client, ctx context.Context) error { return c.DeleteTag(ctx, "r", "t") },
			check:    func(err error) bool { return statusOf(err) == 400 && !IsNotFound(err) && !IsThrottled(err) },
			wantCode: "TAG_INVALID", attempts: 1},
		{name: "403 is not permitted, not retried", status: 403, code: "DENIED",
			call:     func(c *Client, ctx context.Context) error { return c.UpdateTagAttributes(ctx, "r", "t", Attributes{}) },
			check:    func(err error) bool { return statusOf(err) == 403 && IsNotPermitted(err) },
			wantCode: "DENIED", attempts: 1},
		{name: "500 exhausts attempts", status: 500, code: "INTERNAL",
			call:     func(c *Client, ctx context.Context) error { return c.DeleteTag(ctx, "r", "t") },
			check:    func(err error) bool { return statusOf(err) == 500 },
			wantCode: "INTERNAL", attempts: fastRetry.MaxAttempts},
		{name: "501 not retried", status: 501, code: "UNSUPPORTED",
			call:     func(c *Client, ctx context.Context) error { _, err := c.Referrers(ctx, "r", testDigest); return err },
			check:    func(err error) bool { return statusOf(err) == 501 },
			wantCode: "UNSUPPORTED", attempts: 1},
		{name: "429 past throttle budget", status: 429, code: "TOOMANYREQUESTS", header: map[string]string{"Retry-After": "60"},
			call:     func(c *Client, ctx context.Context) error { return c.DeleteManifest(ctx, "r", testDigest) },
			check:    func(err error) bool { return IsThrottled(err) && errRetryAfter(err) == time.Minute },
			wantCode: "TOOMANYREQUESTS", attempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				writeErr(w, tt.status, tt.code, "something <went> wrong\nbadly")
			})
			c, _ := newTestClient(t, h, &fakeSource{}, nil)
			err := tt.call(c, t.Context())
			if err == nil || !tt.check(err) {
				t.Fatalf("err = %v (status %d)", err, statusOf(err))
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("not an *Error: %v", err)
			}
			if e.Code != tt.wantCode || e.Message != "something <went> wrong badly" || e.StatusCode != tt.status {
				t.Errorf("Error = %+v", e)
			}
			if e.Repository == "" || e.Op == "" {
				t.Errorf("Error lacks context: %+v", e)
			}
			if got := int(n.Load()); got != tt.attempts {
				t.Errorf("attempts = %d, want %d", got, tt.attempts)
			}
		})
	}
}

func errRetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return -1
}

func TestDeleteNotFoundIsSuccess(t *testing.T) {
	var n atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if r.Method != http.MethodDelete {
			t.Errorf("method %s", r.Method)
		}
		if strings.Contains(r.URL.Path, "/_tags/") {
			writeErr(w, 404, "TAG_UNKNOWN", "the specified tag does not exist")
			return
		}
		writeErr(w, 404, "MANIFEST_UNKNOWN", "manifest unknown")
	})
	c, _ := newTestClient(t, h, &fakeSource{}, nil)
	if err := c.DeleteTag(t.Context(), "r", "t"); err != nil {
		t.Fatalf("DeleteTag on 404: %v", err)
	}
	if err := c.DeleteManifest(t.Context(), "r", testDigest); err != nil {
		t.Fatalf("DeleteManifest on 404: %v", err)
	}
	if n.Load() != 2 {
		t.Fatalf("requests = %d, want 2 (404 is not retried)", n.Load())
	}
}

func TestRetriesTransientFailures(t *testing.T) {
	tests := []struct {
		name  string
		fail  func(w http.ResponseWriter, r *http.Request)
		fails int32
	}{
		{"503", func(w http.ResponseWriter, _ *http.Request) { writeErr(w, 503, "UNAVAILABLE", "busy") }, 2},
		{"502 html", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(502)
			fmt.Fprint(w, "<html>bad gateway</html>")
		}, 2},
		{"dropped connection", func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}, 2},
		{"truncated body", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(200)
			fmt.Fprint(w, `{"tags":[`)
			w.(http.Flusher).Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) <= tt.fails {
					tt.fail(w, r)
					return
				}
				fmt.Fprint(w, `{"tags":[{"name":"v1","digest":"sha256:abc"}]}`)
			})
			c, _ := newTestClient(t, h, &fakeSource{}, nil)
			var got []Tag
			err := c.Tags(t.Context(), "r", func(p []Tag) error { got = append(got, p...); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Name != "v1" || n.Load() != tt.fails+1 {
				t.Fatalf("tags = %v after %d requests", got, n.Load())
			}
		})
	}
}

func TestNetworkErrorsExhaustAttempts(t *testing.T) {
	var n atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	c, _ := newTestClient(t, h, &fakeSource{}, nil)
	err := c.DeleteTag(t.Context(), "r", "t")
	if err == nil || !strings.Contains(err.Error(), "giving up after 3 attempts") {
		t.Fatalf("err = %v", err)
	}
	var e *Error
	if errors.As(err, &e) {
		t.Fatalf("a network failure is not a registry answer: %v", e)
	}
	if n.Load() != 3 {
		t.Fatalf("attempts = %d, want 3", n.Load())
	}
}

func TestBackoffIsBounded(t *testing.T) {
	p := RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}.withDefaults()
	for n := 1; n <= 80; n++ {
		for range 20 {
			d := p.backoff(n)
			ceiling := min(time.Second, 100*time.Millisecond<<min(n-1, 20))
			if d < 0 || d > ceiling {
				t.Fatalf("backoff(%d) = %v, outside [0, %v]", n, d, ceiling)
			}
		}
	}
}

func Test429HonoursRetryAfterAndSlowsLimiter(t *testing.T) {
	var n atomic.Int32
	var first, second time.Time
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			first = time.Now()
			w.Header().Set("Retry-After", "1")
			writeErr(w, 429, "TOOMANYREQUESTS", "slow down")
			return
		}
		second = time.Now()
		w.WriteHeader(http.StatusAccepted)
	})
	lim := NewLimiter(LimiterOptions{DeletesPerMinute: 6000})
	c, _ := newTestClient(t, h, &fakeSource{}, func(o *ClientOptions) { o.Limiter = lim })
	if err := c.DeleteTag(t.Context(), "r", "t"); err != nil {
		t.Fatal(err)
	}
	gap := second.Sub(first)
	// The upper bound is loose: a loaded machine stalls.
	if gap < time.Second || gap > 3*time.Second {
		t.Fatalf("retried after %v, want Retry-After (1s) plus bounded jitter", gap)
	}
	if f := lim.Factor(ClassDelete); f >= 1 {
		t.Fatalf("limiter factor = %v after a 429, want < 1", f)
	}
	if lim.Throttles(ClassDelete) != 1 || lim.Throttles(ClassRead) != 0 {
		t.Fatalf("throttles: delete %d read %d", lim.Throttles(ClassDelete), lim.Throttles(ClassRead))
	}
}

func TestCancelDuringWaitReturnsPromptly(t *testing.T) {
	tests := []struct {
		name string
		h    http.HandlerFunc
	}{
		{"429 wait", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "30")
			writeErr(w, 429, "TOOMANYREQUESTS", "")
		}},
		{"5xx backoff", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "30")
			writeErr(w, 503, "UNAVAILABLE", "")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			hit := make(chan struct{}, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				tt.h(w, r)
				select {
				case hit <- struct{}{}:
				default:
				}
			})
			c, _ := newTestClient(t, h, &fakeSource{}, func(o *ClientOptions) {
				o.Retry = RetryPolicy{MaxAttempts: 5, BaseDelay: 30 * time.Second, MaxDelay: 30 * time.Second, MaxThrottle: time.Hour}
			})
			ctx, cancel := context.WithCancel(t.Context())
			go func() {
				<-hit // cancel while the client waits to retry
				time.Sleep(50 * time.Millisecond)
				cancel()
			}()
			start := time.Now()
			err := c.DeleteTag(ctx, "r", "t")
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("returned after %v", d)
			}
			if n.Load() != 1 {
				t.Fatalf("requests = %d", n.Load())
			}
		})
	}
}

func TestUnauthorizedRemintsOnce(t *testing.T) {
	tests := []struct {
		name      string
		okToken   string // the token the server accepts; "" = none
		wantErr   bool
		wantMints int
		wantReqs  int32
	}{
		{name: "stale token then success", okToken: "tok-2", wantMints: 2, wantReqs: 2},
		{name: "persistent 401", okToken: "", wantErr: true, wantMints: 2, wantReqs: 2},
		{name: "first token fine", okToken: "tok-1", wantMints: 1, wantReqs: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				if tt.okToken != "" && r.Header.Get("Authorization") == "Bearer "+tt.okToken {
					w.WriteHeader(http.StatusAccepted)
					return
				}
				w.Header().Set("WWW-Authenticate", `Bearer realm="http://x/oauth2/token",service="x",scope="repository:r:delete",error="insufficient_scope"`)
				writeErr(w, 401, "UNAUTHORIZED", "authentication required, token "+r.Header.Get("Authorization"))
			})
			src := &fakeSource{}
			c, _ := newTestClient(t, h, src, nil)
			err := c.DeleteTag(t.Context(), "r", "t")
			if tt.wantErr {
				if !IsNotPermitted(err) {
					t.Fatalf("err = %v, want ErrNotPermitted", err)
				}
				var e *Error
				if !errors.As(err, &e) || e.StatusCode != 401 || e.Scope != "repository:r:delete" || e.AuthError != "insufficient_scope" {
					t.Fatalf("Error = %+v", e)
				}
				assertNoSecret(t, "error", err.Error(), "tok-1", "tok-2")
			} else if err != nil {
				t.Fatal(err)
			}
			if m, _ := src.counts(); m != tt.wantMints {
				t.Errorf("mints = %d, want %d", m, tt.wantMints)
			}
			if n.Load() != tt.wantReqs {
				t.Errorf("requests = %d, want %d", n.Load(), tt.wantReqs)
			}
		})
	}
}

func TestAccessClaimCheckedBeforeCall(t *testing.T) {
	var n atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusAccepted)
	})
	src := &fakeSource{granted: Access{RepositoryScope("allowed", ActionDelete, ActionPull)}}
	c, _ := newTestClient(t, h, src, nil)
	if err := c.DeleteTag(t.Context(), "allowed", "t"); err != nil {
		t.Fatal(err)
	}
	err := c.DeleteTag(t.Context(), "denied", "t")
	if !IsNotPermitted(err) {
		t.Fatalf("err = %v, want ErrNotPermitted", err)
	}
	var e *Error
	if errors.As(err, &e) {
		t.Fatalf("no call was made, yet got an *Error: %v", e)
	}
	if err := c.UpdateTagAttributes(t.Context(), "allowed", "t", Attributes{}); !IsNotPermitted(err) {
		t.Fatalf("metadata_write not granted, err = %v", err)
	}
	if err := c.Catalog(t.Context(), func([]string) error { return nil }); !IsNotPermitted(err) {
		t.Fatalf("catalog not granted, err = %v", err)
	}
	if n.Load() != 1 {
		t.Fatalf("requests = %d, want 1", n.Load())
	}
	if m, inv := src.counts(); m != 1 || inv != 0 {
		t.Fatalf("mints = %d, invalidations = %d; a refused scope must not re-mint", m, inv)
	}
}

func TestConcurrent401sDoNotStorm(t *testing.T) {
	// Every request with tok-1 gets 401; tok-2 works. 40 concurrent deletes
	// must cause exactly one re-mint.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer tok-1" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="x",error="invalid_token"`)
			writeErr(w, 401, "UNAUTHORIZED", "expired")
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	src := &fakeSource{}
	c, _ := newTestClient(t, h, src, nil)
	first, _ := src.Token(t.Context()) // everyone starts with tok-1
	_ = first
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() { errs <- c.DeleteTag(t.Context(), "r", fmt.Sprint("t", i)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if m, _ := src.counts(); m != 2 {
		t.Fatalf("mints = %d, want 2", m)
	}
}

func TestManifestBodyAndReferrers(t *testing.T) {
	digest := "sha256:" + strings.Repeat("1", 64)
	child := "sha256:" + strings.Repeat("2", 64)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/v2/ns/app/manifests/"):
			if !strings.Contains(r.Header.Get("Accept"), MediaTypeOCIIndex) {
				t.Errorf("Accept = %q", r.Header.Get("Accept"))
			}
			w.Header().Set("Content-Type", MediaTypeDockerManifestList+"; charset=utf-8")
			fmt.Fprintf(w, `{"schemaVersion":2,"manifests":[{"digest":%q,"size":10,"platform":{"architecture":"arm64","os":"linux"}}]}`, child)
		case r.URL.Path == "/v2/ns/app/referrers/"+digest && r.URL.RawQuery == "":
			w.Header().Set("Link", `</v2/ns/app/referrers/`+digest+`?page=2>; rel="next"`)
			fmt.Fprintf(w, `{"schemaVersion":2,"mediaType":%q,"manifests":[{"digest":"sha256:aa","artifactType":"sig"}]}`, MediaTypeOCIIndex)
		case r.URL.Path == "/v2/ns/app/referrers/"+digest:
			fmt.Fprintf(w, `{"schemaVersion":2,"manifests":[{"digest":"sha256:bb","artifactType":"sbom"}]}`)
		default:
			http.NotFound(w, r)
		}
	})
	c, _ := newTestClient(t, h, &fakeSource{}, nil)
	m, err := c.ManifestBody(t.Context(), "ns/app", digest)
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != MediaTypeDockerManifestList || len(m.Manifests) != 1 || m.Manifests[0].Digest != child ||
		m.Manifests[0].Platform == nil || m.Manifests[0].Platform.Architecture != "arm64" {
		t.Fatalf("manifest = %+v", m)
	}
	refs, err := c.Referrers(t.Context(), "ns/app", digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 2 || refs[0].Digest != "sha256:aa" || refs[1].ArtifactType != "sbom" {
		t.Fatalf("referrers = %+v", refs)
	}
}

func TestUpdateAttributesSendsJSON(t *testing.T) {
	var body map[string]any
	var ctype, path string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctype, path = r.Header.Get("Content-Type"), r.URL.Path
		_ = json.NewDecoder(r.Body).Decode(&body)
		fmt.Fprint(w, `{}`)
	})
	c, _ := newTestClient(t, h, &fakeSource{}, nil)
	yes := true
	digest := "sha256:" + strings.Repeat("c", 64)
	if err := c.UpdateManifestAttributes(t.Context(), "r", digest, Attributes{DeleteEnabled: &yes, WriteEnabled: &yes}); err != nil {
		t.Fatal(err)
	}
	if ctype != "application/json" || path != "/acr/v1/r/_manifests/"+digest || body["deleteEnabled"] != true || body["writeEnabled"] != true {
		t.Fatalf("sent %s %s %v", ctype, path, body)
	}
}

func TestClientWithoutTokens(t *testing.T) {
	c, _ := newTestClient(t, http.NotFoundHandler(), nil, nil)
	if err := c.DeleteTag(t.Context(), "r", "t"); err == nil || !strings.Contains(err.Error(), "no token source") {
		t.Fatalf("err = %v", err)
	}
	c2 := c.WithTokens(&fakeSource{})
	if err := c2.DeleteTag(t.Context(), "r", "t"); err != nil { // 404 = already gone
		t.Fatal(err)
	}
	if c.tokens != nil || c2.stack != c.stack {
		t.Fatal("WithTokens must copy, sharing the transport")
	}
}

func TestNewClientValidates(t *testing.T) {
	ep, _ := ParseEndpoint("r.azurecr.io")
	bad := []ClientOptions{
		{},
		{Endpoint: ep, PageSize: -1},
		{Endpoint: ep, Retry: RetryPolicy{MaxAttempts: -1}},
	}
	for i, o := range bad {
		if _, err := NewClient(o); err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
}

func TestRequestLogsCarryNoToken(t *testing.T) {
	var logs syncBuffer
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer tok-1" {
			writeErr(w, 401, "UNAUTHORIZED", "echo "+r.Header.Get("Authorization"))
			return
		}
		writeErr(w, 500, "X", "echo "+r.Header.Get("Authorization"))
	})
	c, _ := newTestClient(t, h, &fakeSource{}, func(o *ClientOptions) { o.Logger = debugLogger(&logs) })
	err := c.DeleteTag(t.Context(), "r", "t")
	if statusOf(err) != 500 {
		t.Fatalf("err = %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, `"path":"/acr/v1/r/_tags/t"`) || !strings.Contains(out, `"status":500`) || !strings.Contains(out, `"attempt":3`) {
		t.Fatalf("debug log lacks request fields:\n%s", out)
	}
	assertNoSecret(t, "log", out, "tok-1", "tok-2")
	assertNoSecret(t, "error", err.Error(), "tok-1", "tok-2")
}

package acr

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// authServer accepts only the bearer token ok and records what it saw.
type authServer struct {
	ok     string
	mu     sync.Mutex
	auths  []string
	bodies []string
	// errCode is the challenge's error for a refused token; default
	// invalid_token (expired).
	errCode string
}

func (s *authServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.auths = append(s.auths, r.Header.Get("Authorization"))
	s.bodies = append(s.bodies, string(b))
	s.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+s.ok {
		code := s.errCode
		if code == "" {
			code = "invalid_token"
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="x",error="`+code+`"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *authServer) seen() (auths, bodies []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auths...), append([]string(nil), s.bodies...)
}

func newAuthServer(t *testing.T, ok string) (*authServer, *url.URL) {
	t.Helper()
	s := &authServer{ok: ok}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return s, u
}

func TestAuthTransportAddsToken(t *testing.T) {
	s, u := newAuthServer(t, "tok-1")
	src := &fakeSource{}
	rt := &authTransport{tokens: src, origin: u}
	ci := &callInfo{}
	req, _ := http.NewRequestWithContext(withCall(t.Context(), ci), http.MethodGet, u.String()+"/v2/", nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	drain(resp.Body)
	auths, _ := s.seen()
	if resp.StatusCode != 204 || len(auths) != 1 || auths[0] != "Bearer tok-1" {
		t.Fatalf("status %d, sent %q", resp.StatusCode, auths)
	}
	if req.Header.Get("Authorization") != "" {
		t.Fatal("the caller's request was modified")
	}
	if len(ci.sent) != 1 || ci.sent[0] != "tok-1" {
		t.Fatalf("sent tokens not recorded: %d", len(ci.sent))
	}
}

func TestAuthTransport401RemintsOnceAndReplaysBody(t *testing.T) {
	s, u := newAuthServer(t, "tok-2")
	src := &fakeSource{}
	ci := &callInfo{}
	req, _ := http.NewRequestWithContext(withCall(t.Context(), ci), http.MethodPatch, u.String()+"/acr/v1/r/_tags/t", strings.NewReader(`{"a":1}`))
	resp, err := (&authTransport{tokens: src, origin: u}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	drain(resp.Body)
	auths, bodies := s.seen()
	if resp.StatusCode != 204 || strings.Join(auths, ",") != "Bearer tok-1,Bearer tok-2" {
		t.Fatalf("status %d, sent %q", resp.StatusCode, auths)
	}
	if bodies[0] != `{"a":1}` || bodies[1] != bodies[0] {
		t.Fatalf("bodies %q: the resend must carry the same body", bodies)
	}
	if m, inv := src.counts(); m != 2 || inv != 1 {
		t.Fatalf("mints %d invalidations %d", m, inv)
	}
	if len(ci.sent) != 2 {
		t.Fatalf("sent tokens recorded: %d, want 2", len(ci.sent))
	}
}

// TestAuthTransportPersistent401GoesUp: a 401 that is not an expiry goes
// up after one re-mint; one saying the token expired (invalid_token) gets
// up to maxMints tokens, since an expired token is never a refusal.
func TestAuthTransportPersistent401GoesUp(t *testing.T) {
	for _, tc := range []struct {
		errCode string
		sends   int
	}{{"insufficient_scope", 2}, {"invalid_token", maxMints}} {
		s, u := newAuthServer(t, "")
		s.errCode = tc.errCode
		src := &fakeSource{}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodDelete, u.String()+"/x", nil)
		resp, err := (&authTransport{tokens: src}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		drain(resp.Body)
		auths, _ := s.seen()
		if resp.StatusCode != 401 || len(auths) != tc.sends {
			t.Fatalf("%s: status %d after %d requests; want the last 401 after %d", tc.errCode, resp.StatusCode, len(auths), tc.sends)
		}
	}
}

func TestAuthTransportUnreplayableBodyIsNotResent(t *testing.T) {
	s, u := newAuthServer(t, "tok-2")
	src := &fakeSource{}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPatch, u.String()+"/x", onceReader{strings.NewReader("x")})
	resp, err := (&authTransport{tokens: src}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	drain(resp.Body)
	auths, _ := s.seen()
	if _, inv := src.counts(); resp.StatusCode != 401 || len(auths) != 1 || inv != 0 {
		t.Fatalf("status %d, requests %d, invalidations %d", resp.StatusCode, len(auths), inv)
	}
}

// grantSequence hands out tokens with the given grants, one per Token call
// after an Invalidate.
type grantSequence struct {
	grants []Access
	n      int
	cur    *Token
}

func (g *grantSequence) Token(context.Context) (*Token, error) {
	if g.cur == nil {
		g.cur = &Token{Value: Secret("seq-" + string(rune('a'+g.n))), Expires: time.Now().Add(time.Hour), Granted: g.grants[g.n]}
		g.n++
	}
	return g.cur, nil
}

func (g *grantSequence) Invalidate(*Token) { g.cur = nil }

func TestAuthTransportScopeChecks(t *testing.T) {
	need := RepositoryScope("r", ActionDelete)
	t.Run("refused before sending", func(t *testing.T) {
		s, u := newAuthServer(t, "seq-a")
		src := &grantSequence{grants: []Access{{RepositoryScope("other", ActionDelete)}}}
		req, _ := http.NewRequestWithContext(withCall(t.Context(), &callInfo{need: need}), http.MethodDelete, u.String()+"/x", nil)
		_, err := (&authTransport{tokens: src}).RoundTrip(req)
		if !errors.Is(err, ErrNotPermitted) {
			t.Fatalf("err = %v", err)
		}
		if auths, _ := s.seen(); len(auths) != 0 {
			t.Fatal("a request went out with a token that cannot grant it")
		}
	})
	t.Run("fresh token lacks the scope: the 401 goes up", func(t *testing.T) {
		s, u := newAuthServer(t, "never")
		src := &grantSequence{grants: []Access{{need}, {}}}
		req, _ := http.NewRequestWithContext(withCall(t.Context(), &callInfo{need: need}), http.MethodDelete, u.String()+"/x", nil)
		resp, err := (&authTransport{tokens: src}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		drain(resp.Body)
		if auths, _ := s.seen(); resp.StatusCode != 401 || len(auths) != 1 {
			t.Fatalf("status %d after %d requests", resp.StatusCode, len(auths))
		}
	})
	t.Run("unknown claim: the registry decides", func(t *testing.T) {
		s, u := newAuthServer(t, "seq-a")
		src := &grantSequence{grants: []Access{nil}}
		req, _ := http.NewRequestWithContext(withCall(t.Context(), &callInfo{need: need}), http.MethodDelete, u.String()+"/x", nil)
		resp, err := (&authTransport{tokens: src}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		drain(resp.Body)
		if auths, _ := s.seen(); resp.StatusCode != 204 || len(auths) != 1 {
			t.Fatalf("status %d after %d requests", resp.StatusCode, len(auths))
		}
	})
}

func TestAuthTransportRefusesOtherOrigins(t *testing.T) {
	s, u := newAuthServer(t, "tok-1")
	origin, _ := url.Parse("http://registry.invalid")
	src := &fakeSource{}
	for _, target := range []string{u.String() + "/x", "https://" + u.Host + "/x"} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
		_, err := (&authTransport{tokens: src, origin: origin}).RoundTrip(req)
		if !errors.Is(err, errForeignOrigin) {
			t.Fatalf("%s: err = %v", target, err)
		}
	}
	userinfo := *u
	userinfo.User = url.User("x")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, userinfo.String(), nil)
	if _, err := (&authTransport{tokens: src, origin: u}).RoundTrip(req); !errors.Is(err, errForeignOrigin) {
		t.Fatalf("user info: err = %v", err)
	}
	if auths, _ := s.seen(); len(auths) != 0 {
		t.Fatal("a token went to another origin")
	}
	if m, _ := src.counts(); m != 0 {
		t.Fatal("a token was minted for a request that cannot carry it")
	}
}

func TestAuthTransportZeroValueFailsClearly(t *testing.T) {
	s, u := newAuthServer(t, "tok-1")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u.String(), nil)
	_, err := (&authTransport{}).RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "no token source") {
		t.Fatalf("err = %v", err)
	}
	if auths, _ := s.seen(); len(auths) != 0 {
		t.Fatal("request sent without a token source")
	}
}

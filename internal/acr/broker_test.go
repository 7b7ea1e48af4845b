package acr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/golang-jwt/jwt/v5"
)

// fakeCred is an AAD credential issuing "aad-N" tokens valid for 1h.
type fakeCred struct {
	clk   *fakeClock
	n     atomic.Int32
	err   error
	scope atomic.Value
}

func (c *fakeCred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if c.err != nil {
		return azcore.AccessToken{}, c.err
	}
	c.scope.Store(strings.Join(o.Scopes, " "))
	n := c.n.Add(1)
	return azcore.AccessToken{Token: fmt.Sprintf("aad-%d", n), ExpiresOn: c.clk.Now().Add(time.Hour)}, nil
}

// fakeAuth is the token half of ACR: /oauth2/exchange and /oauth2/token.
type fakeAuth struct {
	t        *testing.T
	clk      *fakeClock
	service  string
	abac     bool
	deny     map[string]bool // repositories granted nothing
	delay    time.Duration   // before answering /oauth2/token
	mu       sync.Mutex
	refresh  map[string]bool // valid refresh tokens
	exchange int
	mints    int
	issued   []string
	scopes   [][]string
	tenant   string
	echo     bool // 400 with the sent secrets in the body
}

func newFakeAuth(t *testing.T, clk *fakeClock) *fakeAuth {
	return &fakeAuth{t: t, clk: clk, refresh: map[string]bool{}, deny: map[string]bool{}}
}

func (f *fakeAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		writeErr(w, 400, "BAD", "bad form")
		return
	}
	if r.Form.Get("service") != f.service {
		writeErr(w, 401, "UNAUTHORIZED", "wrong service")
		return
	}
	now := f.clk.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.URL.Path {
	case "/oauth2/exchange":
		aad := r.Form.Get("access_token")
		if r.Form.Get("grant_type") != "access_token" || !strings.HasPrefix(aad, "aad-") {
			writeErr(w, 401, "UNAUTHORIZED", "bad aad token")
			return
		}
		if f.echo {
			writeErr(w, 400, "BAD", "rejected "+aad)
			return
		}
		f.tenant = r.Form.Get("tenant")
		f.exchange++
		claims := jwt.MapClaims{"jti": fmt.Sprint("r", f.exchange), "exp": now.Add(3 * time.Hour).Unix(), "grant_type": "refresh_token"}
		if f.abac {
			claims["aad_identity"] = `{"oid":"x","tid":"y"}`
		}
		rt := signJWT(f.t, claims)
		f.refresh[rt] = true
		f.issued = append(f.issued, aad, rt)
		fmt.Fprintf(w, `{"refresh_token":%q}`, rt)
	case "/oauth2/token":
		rt := r.Form.Get("refresh_token")
		if r.Form.Get("grant_type") != "refresh_token" || !f.refresh[rt] {
			writeErr(w, 401, "UNAUTHORIZED", "bad refresh token")
			return
		}
		if f.echo {
			writeErr(w, 400, "BAD", "rejected "+rt)
			return
		}
		if f.delay > 0 {
			f.mu.Unlock()
			time.Sleep(f.delay)
			f.mu.Lock()
		}
		var access []map[string]any
		var got []string
		for _, s := range r.Form["scope"] {
			for _, one := range strings.Fields(s) {
				got = append(got, one)
				parts := strings.Split(one, ":")
				if len(parts) != 3 || f.deny[parts[1]] {
					continue
				}
				access = append(access, map[string]any{"type": parts[0], "name": parts[1], "actions": strings.Split(parts[2], ",")})
			}
		}
		f.mints++
		f.scopes = append(f.scopes, got)
		at := signJWT(f.t, jwt.MapClaims{"jti": fmt.Sprint("a", f.mints), "exp": now.Add(75 * time.Minute).Unix(), "access": access})
		f.issued = append(f.issued, at)
		fmt.Fprintf(w, `{"access_token":%q}`, at)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeAuth) counts() (exchanges, mints int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.exchange, f.mints
}

func (f *fakeAuth) revokeRefreshTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.refresh)
}

func newTestBroker(t *testing.T, mod func(*fakeAuth, *BrokerOptions)) (*Broker, *fakeAuth, *fakeCred, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	fa := newFakeAuth(t, clk)
	srv := httptest.NewServer(fa)
	t.Cleanup(srv.Close)
	ep, err := ParseEndpoint(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	fa.service = ep.Service
	cred := &fakeCred{clk: clk}
	o := BrokerOptions{Endpoint: ep, Credential: cred, HTTPClient: srv.Client(), Now: clk.Now, Retry: fastRetry}
	if mod != nil {
		mod(fa, &o)
	}
	b, err := NewBroker(o)
	if err != nil {
		t.Fatal(err)
	}
	return b, fa, cred, clk
}

func TestBrokerOneMintForConcurrentCallers(t *testing.T) {
	b, fa, cred, _ := newTestBroker(t, func(fa *fakeAuth, _ *BrokerOptions) { fa.delay = 50 * time.Millisecond })
	scopes := []Scope{RepositoryScope("b", "pull", "delete"), RepositoryScope("a", PurgeActions...)}
	var wg sync.WaitGroup
	toks := make([]*Token, 50)
	errs := make([]error, 50)
	for i := range 50 {
		wg.Go(func() {
			s := slices.Clone(scopes)
			if i%2 == 1 { // other order, duplicates, split actions
				s = []Scope{RepositoryScope("a", ActionPull), RepositoryScope("b", "delete"), RepositoryScope("a", PurgeActions...), RepositoryScope("b", "pull", "pull")}
			}
			toks[i], errs[i] = b.AccessToken(t.Context(), s)
		})
	}
	wg.Wait()
	for i := range 50 {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if toks[i] != toks[0] {
			t.Fatalf("caller %d got a different token", i)
		}
	}
	ex, mints := fa.counts()
	st := b.Stats()
	if mints != 1 || ex != 1 || st.Mints != 1 || st.Exchanges != 1 || st.AADTokens != 1 || cred.n.Load() != 1 {
		t.Fatalf("server exchanges %d mints %d; stats %+v", ex, mints, st)
	}
	if got := fa.scopes[0]; !slices.Equal(got, []string{"repository:a:delete,metadata_read,metadata_write,pull", "repository:b:delete,pull"}) {
		t.Fatalf("scopes sent = %q", got)
	}
	if cred.scope.Load() != AADScope {
		t.Fatalf("AAD scope = %v", cred.scope.Load())
	}
	tok := toks[0]
	if !tok.Allows("a", ActionMetadataWrite) || !tok.Allows("b", ActionDelete) || tok.Allows("b", ActionMetadataWrite) || tok.Allows("c", ActionPull) {
		t.Fatalf("granted = %v", tok.Granted)
	}
	if tok.Expires.IsZero() {
		t.Fatal("no expiry read from the JWT")
	}
}

func TestBrokerRenewal(t *testing.T) {
	b, fa, cred, clk := newTestBroker(t, func(_ *fakeAuth, o *BrokerOptions) { o.Tenant = "tenant-1" })
	src := b.Source(RepositoryScope("r", PurgeActions...))
	ctx := t.Context()
	get := func() *Token {
		t.Helper()
		tok, err := src.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	t1 := get()
	clk.Advance(69 * time.Minute) // 6m before the 75m exp: still cached
	if get() != t1 || b.Stats().Mints != 1 {
		t.Fatal("token renewed too early")
	}
	clk.Advance(2 * time.Minute) // inside the 5m margin
	t2 := get()
	if t2 == t1 || b.Stats().Mints != 2 || b.Stats().Exchanges != 1 {
		t.Fatalf("token not renewed inside the margin: %+v", b.Stats())
	}
	// Past the refresh token's 3h life (minus margin): exchange again, with a new AAD token.
	clk.Advance(3 * time.Hour)
	get()
	st := b.Stats()
	ex, mints := fa.counts()
	if st.Exchanges != 2 || ex != 2 || st.Mints != 3 || mints != 3 || st.AADTokens != 2 || cred.n.Load() != 2 {
		t.Fatalf("after 3h: stats %+v, server exchanges %d mints %d", st, ex, mints)
	}
	if fa.tenant != "tenant-1" {
		t.Fatalf("tenant = %q", fa.tenant)
	}
	// Different scope sets get their own tokens but share the refresh token.
	other, err := b.AccessToken(ctx, []Scope{CatalogScope()})
	if err != nil || other == get() || b.Stats().Exchanges != 2 {
		t.Fatalf("catalog token: %v, stats %+v", err, b.Stats())
	}
}

func TestBrokerInvalidate(t *testing.T) {
	b, _, _, _ := newTestBroker(t, nil)
	src := b.Source(RepositoryScope("r", "pull"))
	ctx := t.Context()
	t1, _ := src.Token(ctx)

	// 50 goroutines saw t1 refused at once: one re-mint.
	var wg sync.WaitGroup
	got := make([]*Token, 50)
	for i := range 50 {
		wg.Go(func() {
			src.Invalidate(t1)
			tok, err := src.Token(ctx)
			if err != nil {
				t.Error(err)
			}
			got[i] = tok
		})
	}
	wg.Wait()
	if m := b.Stats().Mints; m != 2 {
		t.Fatalf("mints = %d, want 2", m)
	}
	t2 := got[0]
	for _, tok := range got {
		if tok != t2 || tok == t1 {
			t.Fatal("callers got different tokens")
		}
	}
	// A late Invalidate of the old token keeps the newer one.
	src.Invalidate(t1)
	src.Invalidate(nil)
	if tok, _ := src.Token(ctx); tok != t2 || b.Stats().Mints != 2 {
		t.Fatal("stale Invalidate dropped the newer token")
	}
	// Invalidating another scope set's token does nothing here.
	other := b.Source(RepositoryScope("x", "pull"))
	ot, _ := other.Token(ctx)
	src.Invalidate(ot)
	if tok, _ := src.Token(ctx); tok != t2 {
		t.Fatal("foreign Invalidate dropped the token")
	}
}

func TestBrokerReExchangesWhenRefreshTokenIsRefused(t *testing.T) {
	b, fa, _, _ := newTestBroker(t, nil)
	ctx := t.Context()
	if _, err := b.AccessToken(ctx, []Scope{RepositoryScope("a", "pull")}); err != nil {
		t.Fatal(err)
	}
	fa.revokeRefreshTokens()
	if _, err := b.AccessToken(ctx, []Scope{RepositoryScope("b", "pull")}); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Exchanges != 2 || st.Mints != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBrokerPartialGrant(t *testing.T) {
	b, _, _, _ := newTestBroker(t, func(fa *fakeAuth, _ *BrokerOptions) { fa.deny["secret"] = true })
	tok, err := b.AccessToken(t.Context(), []Scope{RepositoryScope("open", PurgeActions...), RepositoryScope("secret", PurgeActions...)})
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Allows("open", ActionDelete) || tok.Allows("secret", ActionPull) {
		t.Fatalf("granted = %v", tok.Granted)
	}
}

func TestBrokerABAC(t *testing.T) {
	for _, abac := range []bool{false, true} {
		b, _, _, _ := newTestBroker(t, func(fa *fakeAuth, _ *BrokerOptions) { fa.abac = abac })
		got, err := b.ABAC(t.Context())
		if err != nil || got != abac {
			t.Fatalf("ABAC = %v, %v; want %v", got, err, abac)
		}
		// The refresh token is reused for minting.
		if _, err := b.AccessToken(t.Context(), []Scope{CatalogScope()}); err != nil || b.Stats().Exchanges != 1 {
			t.Fatalf("%v %+v", err, b.Stats())
		}
	}
}

func TestBrokerErrorsCarryNoTokens(t *testing.T) {
	var logs syncBuffer
	b, fa, _, _ := newTestBroker(t, func(_ *fakeAuth, o *BrokerOptions) { o.Logger = debugLogger(&logs) })
	ctx := t.Context()
	if _, err := b.AccessToken(ctx, []Scope{RepositoryScope("a", "pull")}); err != nil {
		t.Fatal(err)
	}
	fa.mu.Lock()
	fa.echo = true
	fa.mu.Unlock()
	_, err := b.AccessToken(ctx, []Scope{RepositoryScope("b", "pull")})
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 400 || e.Op != "mint access token" || !strings.Contains(e.Message, redacted) {
		t.Fatalf("err = %v", err)
	}
	fa.mu.Lock()
	issued := slices.Clone(fa.issued)
	fa.mu.Unlock()
	assertNoSecret(t, "error", err.Error(), issued...)
	assertNoSecret(t, "error %+v", fmt.Sprintf("%+v %#v", err, e), issued...)
	assertNoSecret(t, "log", logs.String(), issued...)
	if !strings.Contains(logs.String(), "acr access token minted") {
		t.Fatal("no debug log of the mint")
	}
}

func TestBrokerCredentialError(t *testing.T) {
	b, _, cred, _ := newTestBroker(t, nil)
	cred.err = errors.New("no managed identity")
	_, err := b.AccessToken(t.Context(), []Scope{CatalogScope()})
	if err == nil || !strings.Contains(err.Error(), "no managed identity") {
		t.Fatalf("err = %v", err)
	}
}

func TestBrokerCallerCancelDoesNotFailOthers(t *testing.T) {
	b, _, _, _ := newTestBroker(t, func(fa *fakeAuth, _ *BrokerOptions) { fa.delay = 200 * time.Millisecond })
	scopes := []Scope{RepositoryScope("r", "pull")}
	short, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := b.AccessToken(short, scopes)
		done <- err
	}()
	time.Sleep(5 * time.Millisecond)
	tok, err := b.AccessToken(t.Context(), scopes)
	if err != nil || tok == nil {
		t.Fatalf("patient caller failed: %v", err)
	}
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("impatient caller: %v", err)
	}
	if b.Stats().Mints != 1 {
		t.Fatalf("mints = %d", b.Stats().Mints)
	}
}

func TestBrokerRejectsBadScopes(t *testing.T) {
	b, fa, _, _ := newTestBroker(t, nil)
	bad := [][]Scope{
		nil,
		{{Type: "repository", Name: "", Actions: []string{"pull"}}},
		{{Type: "repository", Name: "a b", Actions: []string{"pull"}}},
		{{Type: "repository", Name: "a:b", Actions: []string{"pull"}}},
		{{Type: "repository", Name: "a", Actions: nil}},
		{{Type: "repository", Name: "a", Actions: []string{"pull,delete"}}},
		{{Type: "repository", Name: "a\nb", Actions: []string{"pull"}}},
	}
	for i, s := range bad {
		if _, err := b.AccessToken(t.Context(), s); err == nil {
			t.Errorf("case %d: no error", i)
		}
		if _, err := b.Source(s...).Token(t.Context()); err == nil {
			t.Errorf("case %d: Source: no error", i)
		}
	}
	if ex, m := fa.counts(); ex != 0 || m != 0 {
		t.Fatalf("bad scopes reached the server: %d %d", ex, m)
	}
}

func TestNewBrokerValidates(t *testing.T) {
	ep, _ := ParseEndpoint("r.azurecr.io")
	cred := &fakeCred{clk: newFakeClock()}
	for i, o := range []BrokerOptions{
		{Credential: cred},
		{Endpoint: ep},
		{Endpoint: ep, Credential: cred, RefreshMargin: -1},
	} {
		if _, err := NewBroker(o); err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
}

func TestRenewAt(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		life, margin, want time.Duration // want is relative to now
	}{
		{75 * time.Minute, 5 * time.Minute, 70 * time.Minute},
		{4 * time.Minute, 5 * time.Minute, 2 * time.Minute},
		{-time.Minute, 5 * time.Minute, -time.Minute},
	}
	for _, tt := range tests {
		if got := renewAt(now, now.Add(tt.life), tt.margin).Sub(now); got != tt.want {
			t.Errorf("renewAt(life %v, margin %v) = %v, want %v", tt.life, tt.margin, got, tt.want)
		}
	}
}

package acremu

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/acrpurge/acrpurge/internal/acr"
)

func TestTokenExchangeAndMint(t *testing.T) {
	t.Parallel()
	for _, abac := range []bool{false, true} {
		t.Run(map[bool]string{false: "rbac", true: "abac"}[abac], func(t *testing.T) {
			r := start(t, Options{ABAC: abac})
			hc := httpClient(t, true)
			cred := r.AddIdentity(Identity{Name: "purger", CatalogLister: true, Grants: all})

			aad, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{AADScope}})
			if err != nil {
				t.Fatal(err)
			}
			if d := aad.ExpiresOn.Sub(r.Now()); d < 59*time.Minute || d > time.Hour {
				t.Errorf("AAD ExpiresOn in %v, want ~1h", d)
			}

			refresh := exchange(t, hc, r, cred)
			rc := mapClaims(t, refresh)
			for _, k := range []string{"jti", "sub", "aud", "iss", "iat", "nbf", "exp"} {
				if rc[k] == nil {
					t.Errorf("refresh token lacks %s", k)
				}
			}
			if rc["sub"] != "purger" || rc["aud"] != r.Host() || rc["grant_type"] != "refresh_token" {
				t.Errorf("refresh claims sub=%v aud=%v grant_type=%v", rc["sub"], rc["aud"], rc["grant_type"])
			}
			exp, _ := rc.GetExpirationTime()
			if d := exp.Sub(r.Now()); d < 3*time.Hour-5*time.Second || d > 3*time.Hour {
				t.Errorf("refresh exp in %v, want 3h", d)
			}
			aadID, hasAAD := rc["aad_identity"].(string)
			if hasAAD != abac {
				t.Errorf("aad_identity present=%v, want %v", hasAAD, abac)
			}
			if abac {
				var v map[string]string
				if err := json.Unmarshal([]byte(aadID), &v); err != nil || v["oid"] == "" || v["tid"] == "" {
					t.Errorf("aad_identity %q is not JSON with oid/tid: %v", aadID, err)
				}
			}

			// Scopes repeated and space-separated in one value.
			access := mint(t, hc, r, refresh,
				repoScope("team-a/api", "pull", "delete")+" "+acr.CatalogScope().String(),
				repoScope("team-b/web", "metadata_read"),
				repoScope("team-a/api", "metadata_write"))
			ac := mapClaims(t, access)
			if ac["sub"] != "purger" || ac["aud"] != r.Host() || ac["grant_type"] != "access_token" || ac["iss"] != Issuer {
				t.Errorf("access claims %v", ac)
			}
			exp, _ = ac.GetExpirationTime()
			if d := exp.Sub(r.Now()); d < 75*time.Minute-5*time.Second || d > 75*time.Minute {
				t.Errorf("access exp in %v, want 75m", d)
			}
			want := acr.Access{
				{Type: "repository", Name: "team-a/api", Actions: []string{"pull", "delete", "metadata_write"}},
				{Type: "registry", Name: "catalog", Actions: []string{"*"}},
				{Type: "repository", Name: "team-b/web", Actions: []string{"metadata_read"}},
			}
			if got := accessOf(t, access); !equalAccess(got, want) {
				t.Errorf("access = %+v, want %+v", got, want)
			}

			st := r.Stats()
			if st.AADTokens != 2 || st.RefreshTokens != 1 || st.AccessTokens != 1 {
				t.Errorf("stats AAD=%d refresh=%d access=%d, want 2/1/1", st.AADTokens, st.RefreshTokens, st.AccessTokens)
			}
			if st.Requests["exchange"] != 1 || st.Requests["token"] != 1 {
				t.Errorf("requests %v", st.Requests)
			}
		})
	}
}

func equalAccess(a, b acr.Access) bool {
	return slices.EqualFunc(a, b, func(x, y acr.Scope) bool {
		return x.Type == y.Type && x.Name == y.Name && slices.Equal(x.Actions, y.Actions)
	})
}

func TestOAuthRefusals(t *testing.T) {
	t.Parallel()
	r := start(t, Options{})
	hc := httpClient(t, true)
	cred := r.AddIdentity(Identity{Name: "id", Grants: all})
	aad := aadTokenOf(t, cred)
	refresh := exchange(t, hc, r, cred)

	tests := []struct {
		name   string
		path   string
		form   url.Values
		status int
	}{
		{"unknown AAD token", "/oauth2/exchange", url.Values{"grant_type": {"access_token"}, "service": {r.Host()}, "access_token": {"aad.bogus"}}, 401},
		{"wrong service on exchange", "/oauth2/exchange", url.Values{"grant_type": {"access_token"}, "service": {"contoso.azurecr.io"}, "access_token": {aad}}, 401},
		{"wrong grant type on exchange", "/oauth2/exchange", url.Values{"grant_type": {"password"}, "service": {r.Host()}, "access_token": {aad}}, 400},
		{"missing access token", "/oauth2/exchange", url.Values{"grant_type": {"access_token"}, "service": {r.Host()}}, 400},
		{"garbage refresh token", "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "service": {r.Host()}, "refresh_token": {"x.y.z"}, "scope": {"repository:a:pull"}}, 401},
		{"tampered refresh token", "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "service": {r.Host()}, "refresh_token": {tamper(refresh)}, "scope": {"repository:a:pull"}}, 401},
		{"wrong service on token", "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "service": {"contoso.azurecr.io"}, "refresh_token": {refresh}}, 401},
		{"access token as refresh token", "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "service": {r.Host()}, "refresh_token": {mint(t, hc, r, refresh, "repository:a:pull")}}, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := postForm(t, hc, r.URL()+tc.path, tc.form)
			if resp.status != tc.status {
				t.Fatalf("status %d %s, want %d", resp.status, resp.body, tc.status)
			}
			resp.errorCode(t)
			if strings.Contains(string(resp.body), aad) || strings.Contains(string(resp.body), refresh) {
				t.Error("error body echoes a token")
			}
		})
	}
	if resp := do(t, hc, http.MethodGet, r.URL()+"/oauth2/token", "", nil); resp.status != http.StatusMethodNotAllowed {
		t.Errorf("GET /oauth2/token: %d", resp.status)
	}
}

// tamper flips a character of the signature.
func tamper(tok string) string {
	b := []byte(tok)
	i := len(b) - 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestCredentialRefusals(t *testing.T) {
	t.Parallel()
	r := New(Options{})
	cred := r.AddIdentity(Identity{Name: "id"})
	if _, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}}); err == nil {
		t.Error("GetToken accepted a foreign scope")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{AADScope}}); err == nil {
		t.Error("GetToken ignored a cancelled context")
	}
	if cred.Identity() != "id" {
		t.Errorf("Identity() = %q", cred.Identity())
	}
}

func TestPartialGrantABAC(t *testing.T) {
	t.Parallel()
	r := start(t, Options{ABAC: true})
	hc := httpClient(t, true)
	for _, repo := range []string{"team-a/api", "team-b/web", "TEAM-A/upper"} {
		r.Put(repo, Artifact{Tags: []string{"v1"}})
	}
	cred := r.AddIdentity(Identity{Name: "a-purger", Grants: []Grant{
		{RepositoryPrefix: "Team-A/"},
		{RepositoryPrefix: "team-b/", Actions: []string{"pull"}},
	}})
	refresh := exchange(t, hc, r, cred)
	tok := mint(t, hc, r, refresh, purgeScope("team-a/api"), purgeScope("team-b/web"), purgeScope("TEAM-A/upper"), purgeScope("team-c/none"))
	want := acr.Access{
		{Type: "repository", Name: "team-a/api", Actions: acr.PurgeActions},
		{Type: "repository", Name: "team-b/web", Actions: []string{"pull"}},
		{Type: "repository", Name: "TEAM-A/upper", Actions: acr.PurgeActions},
	}
	if got := accessOf(t, tok); !equalAccess(got, want) {
		t.Fatalf("access = %+v, want %+v", got, want)
	}

	// Granted: listing works.
	if resp := do(t, hc, http.MethodGet, repoURL(r, "/acr/v1/", "team-a/api", "/_tags"), tok, nil); resp.status != 200 {
		t.Fatalf("granted repo: %d %s", resp.status, resp.body)
	}
	// Partially granted: pull works, metadata_read does not.
	if resp := do(t, hc, http.MethodGet, repoURL(r, "/v2/", "team-b/web", "/manifests/v1"), tok, nil); resp.status != 200 {
		t.Fatalf("pull on team-b/web: %d %s", resp.status, resp.body)
	}
	resp := do(t, hc, http.MethodGet, repoURL(r, "/acr/v1/", "team-b/web", "/_tags"), tok, nil)
	assertChallenge(t, r, resp, `repository:team-b/web:metadata_read`, "insufficient_scope")
	// A repository the token does not name at all.
	resp = do(t, hc, http.MethodDelete, repoURL(r, "/acr/v1/", "team-c/none", "/_tags/v1"), tok, nil)
	assertChallenge(t, r, resp, `repository:team-c/none:delete`, "insufficient_scope")
	// Grants changed mid-run affect new tokens only.
	r.SetGrants("a-purger", nil)
	if got := accessOf(t, mint(t, hc, r, refresh, purgeScope("team-a/api"))); len(got) != 0 {
		t.Errorf("after SetGrants(nil): access %+v", got)
	}
	if resp := do(t, hc, http.MethodGet, repoURL(r, "/acr/v1/", "team-a/api", "/_tags"), tok, nil); resp.status != 200 {
		t.Errorf("old token stopped working: %d", resp.status)
	}
	if st := r.Stats(); st.Unauthorized != 2 {
		t.Errorf("Unauthorized = %d, want 2", st.Unauthorized)
	}
}

// assertChallenge checks a 401 with a Bearer challenge.
func assertChallenge(t *testing.T, r *Registry, resp response, scope, authErr string) {
	t.Helper()
	if resp.status != http.StatusUnauthorized {
		t.Fatalf("status %d %s, want 401", resp.status, resp.body)
	}
	h := resp.header.Get("WWW-Authenticate")
	want := `Bearer realm="` + r.URL() + `/oauth2/token",service="` + r.Host() + `"`
	if scope != "" {
		want += `,scope="` + scope + `"`
	}
	if authErr != "" {
		want += `,error="` + authErr + `"`
	}
	if h != want {
		t.Errorf("WWW-Authenticate\n got %s\nwant %s", h, want)
	}
	if code := resp.errorCode(t); code != CodeUnauthorized {
		t.Errorf("code %s", code)
	}
}

func TestWildcardScopes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		abac       bool
		grants     []Grant
		wantAccess bool
	}{
		{abac: true, grants: all, wantAccess: false},
		{abac: false, grants: all, wantAccess: true},
		{abac: false, grants: []Grant{{RepositoryPrefix: "team-a/"}}, wantAccess: false},
	}
	for _, tc := range tests {
		t.Run("", func(t *testing.T) {
			r := start(t, Options{ABAC: tc.abac})
			hc := httpClient(t, true)
			r.Put("team-a/api", Artifact{Tags: []string{"v1"}})
			tok := login(t, hc, r, Identity{Name: "id", Grants: tc.grants}, "repository:*:metadata_read", "repository:team-a/*:pull")
			got := accessOf(t, tok)
			if (len(got) > 0) != tc.wantAccess {
				t.Fatalf("abac=%v access %+v, want granted=%v", tc.abac, got, tc.wantAccess)
			}
			resp := do(t, hc, http.MethodGet, repoURL(r, "/acr/v1/", "team-a/api", "/_tags"), tok, nil)
			if (resp.status == 200) != tc.wantAccess {
				t.Errorf("listing with wildcard token: %d", resp.status)
			}
		})
	}
}

func TestCatalogScope(t *testing.T) {
	t.Parallel()
	r := start(t, Options{ABAC: true})
	hc := httpClient(t, true)
	r.Put("a", Artifact{})
	for _, lister := range []bool{false, true} {
		tok := login(t, hc, r, Identity{Name: "id", CatalogLister: lister, Grants: all}, "registry:catalog:*")
		resp := do(t, hc, http.MethodGet, r.URL()+"/acr/v1/_catalog", tok, nil)
		if lister && resp.status != 200 {
			t.Errorf("lister: %d %s", resp.status, resp.body)
		}
		if !lister {
			assertChallenge(t, r, resp, "registry:catalog:*", "insufficient_scope")
		}
	}
}

func TestDataPlaneTokenChecks(t *testing.T) {
	t.Parallel()
	r := start(t, Options{})
	hc := httpClient(t, true)
	r.Put("app", Artifact{Tags: []string{"v1"}})
	cred := r.AddIdentity(Identity{Name: "id", Grants: all})
	refresh := exchange(t, hc, r, cred)
	tok := mint(t, hc, r, refresh, purgeScope("app"))
	u := repoURL(r, "/acr/v1/", "app", "/_tags")

	if resp := do(t, hc, http.MethodGet, u, tok, nil); resp.status != 200 {
		t.Fatalf("valid token: %d %s", resp.status, resp.body)
	}
	assertChallenge(t, r, do(t, hc, http.MethodGet, u, "", nil), "repository:app:metadata_read", "")
	assertChallenge(t, r, do(t, hc, http.MethodGet, u, tamper(tok), nil), "", "invalid_token")
	assertChallenge(t, r, do(t, hc, http.MethodGet, u, refresh, nil), "", "invalid_token")
	other := New(Options{}) // a different key signs a token the emulator must refuse
	foreign, err := other.issueAccess("id", acr.Access{acr.RepositoryScope("app", "metadata_read")})
	if err != nil {
		t.Fatal(err)
	}
	assertChallenge(t, r, do(t, hc, http.MethodGet, u, foreign, nil), "", "invalid_token")

	// Expiry on the emulator clock: exp <= Now() is expired.
	r.Advance(75*time.Minute - 10*time.Second)
	if resp := do(t, hc, http.MethodGet, u, tok, nil); resp.status != 200 {
		t.Fatalf("just before expiry: %d", resp.status)
	}
	r.Advance(10 * time.Second)
	resp := do(t, hc, http.MethodGet, u, tok, nil)
	assertChallenge(t, r, resp, "", "invalid_token")
	if !strings.Contains(string(resp.body), "expired") {
		t.Errorf("expired body %s", resp.body)
	}
	// The refresh token is still good for 1h45m: mint again.
	tok = mint(t, hc, r, refresh, purgeScope("app"))
	if resp := do(t, hc, http.MethodGet, u, tok, nil); resp.status != 200 {
		t.Fatalf("re-minted token: %d", resp.status)
	}
}

func TestRefreshAndAADExpiry(t *testing.T) {
	t.Parallel()
	r := start(t, Options{})
	hc := httpClient(t, true)
	cred := r.AddIdentity(Identity{Name: "id", Grants: all})
	aad := aadTokenOf(t, cred)
	refresh := exchange(t, hc, r, cred)

	r.Advance(time.Hour)
	resp := postForm(t, hc, r.URL()+"/oauth2/exchange", url.Values{"grant_type": {"access_token"}, "service": {r.Host()}, "access_token": {aad}})
	if resp.status != http.StatusUnauthorized {
		t.Errorf("expired AAD token: %d", resp.status)
	}
	r.Advance(2*time.Hour - 10*time.Second)
	if resp := mintResp(t, hc, r, refresh, "repository:a:pull"); resp.status != 200 {
		t.Fatalf("refresh token before 3h: %d %s", resp.status, resp.body)
	}
	r.Advance(10 * time.Second)
	resp = mintResp(t, hc, r, refresh, "repository:a:pull")
	if resp.status != http.StatusUnauthorized || !strings.Contains(string(resp.body), "expired") {
		t.Fatalf("refresh token after 3h: %d %s", resp.status, resp.body)
	}
	// A fresh AAD token restores access.
	mint(t, hc, r, exchange(t, hc, r, cred), "repository:a:pull")

	// SetNow moves the clock both ways.
	past := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	r.SetNow(past)
	if d := r.Now().Sub(past); d < 0 || d > time.Second {
		t.Errorf("SetNow: Now()-t = %v", d)
	}
}

func TestGrantAndScopeParsing(t *testing.T) {
	t.Parallel()
	got := parseScopes([]string{
		"repository:team/a:pull,delete  registry:catalog:*",
		"repository:b:",
		"junk",
		"repository::pull",
		"repository:c:metadata_read",
	})
	want := []acr.Scope{
		acr.RepositoryScope("team/a", "pull", "delete"),
		acr.CatalogScope(),
		acr.RepositoryScope("c", "metadata_read"),
	}
	if !equalAccess(got, want) {
		t.Errorf("parseScopes = %+v, want %+v", got, want)
	}

	r := New(Options{ABAC: true})
	id := &identity{name: "x", grants: []Grant{{RepositoryPrefix: "p/", Actions: []string{"pull", "delete"}}}}
	access := r.grant(id, []acr.Scope{
		acr.RepositoryScope("p/one", "*"),
		acr.RepositoryScope("q/two", "pull"),
		acr.RepositoryScope("P/three", "pull", "pull", "metadata_write"),
		acr.CatalogScope(),
	})
	wantAccess := acr.Access{
		acr.RepositoryScope("p/one", "pull", "delete"),
		acr.RepositoryScope("P/three", "pull"),
	}
	if !equalAccess(access, wantAccess) {
		t.Errorf("grant = %+v, want %+v", access, wantAccess)
	}
}

func TestGlobMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "a/b", true},
		{"team-a/*", "team-a/api", true},
		{"team-a/*", "team-b/api", false},
		{"a*c", "abbc", true},
		{"a*c", "abcd", false},
		{"*x*y", "1x2y", true},
		{"*x*y", "1y2x", false},
	}
	for _, tc := range tests {
		if got := globMatch(tc.pattern, tc.name); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.pattern, tc.name, got)
		}
	}
}

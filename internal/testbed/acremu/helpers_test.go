package acremu

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/golang-jwt/jwt/v5"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// start returns a running registry closed at the end of the test.
func start(t testing.TB, opts Options) *Registry {
	t.Helper()
	r := New(opts)
	if err := r.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// httpClient is a client with a deadline; keepAlive false gives every
// request its own connection (fault tests).
func httpClient(t testing.TB, keepAlive bool) *http.Client {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: !keepAlive}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

// response is a fully read answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errorBody decodes an ACR error body.
func (r response) errorCode(t testing.TB) string {
	t.Helper()
	var e struct {
		Errors []struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Detail  json.RawMessage `json:"detail"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("status %d: body is not an ACR error: %q (%v)", r.status, r.body, err)
	}
	if e.Errors[0].Detail == nil {
		t.Fatalf("error body without detail: %s", r.body)
	}
	return e.Errors[0].Code
}

// send performs a request and reads the answer; transport errors are returned.
func send(t testing.TB, hc *http.Client, method, u, token string, body io.Reader) (response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, body)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// do is send that fails the test on transport errors.
func do(t testing.TB, hc *http.Client, method, u, token string, body io.Reader) response {
	t.Helper()
	r, err := send(t, hc, method, u, token, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	return r
}

// postForm posts a form to an oauth2 endpoint.
func postForm(t testing.TB, hc *http.Client, u string, form url.Values) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// aadToken gets an AAD token from cred.
func aadTokenOf(t testing.TB, cred *Credential) string {
	t.Helper()
	tok, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{AADScope}})
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	return tok.Token
}

// exchange trades an AAD token of cred for a refresh token.
func exchange(t testing.TB, hc *http.Client, r *Registry, cred *Credential) string {
	t.Helper()
	resp := postForm(t, hc, r.URL()+"/oauth2/exchange", url.Values{
		"grant_type": {"access_token"}, "service": {r.Host()}, "access_token": {aadTokenOf(t, cred)},
	})
	if resp.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", resp.status, resp.body)
	}
	var out struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(resp.body, &out); err != nil || out.RefreshToken == "" {
		t.Fatalf("exchange body %q: %v", resp.body, err)
	}
	return out.RefreshToken
}

// mintResp requests an access token, each scope as its own scope= value.
func mintResp(t testing.TB, hc *http.Client, r *Registry, refresh string, scopes ...string) response {
	t.Helper()
	return postForm(t, hc, r.URL()+"/oauth2/token", url.Values{
		"grant_type": {"refresh_token"}, "service": {r.Host()}, "refresh_token": {refresh}, "scope": scopes,
	})
}

// mint requests an access token and fails the test unless it is issued.
func mint(t testing.TB, hc *http.Client, r *Registry, refresh string, scopes ...string) string {
	t.Helper()
	resp := mintResp(t, hc, r, refresh, scopes...)
	if resp.status != http.StatusOK {
		t.Fatalf("token: %d %s", resp.status, resp.body)
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(resp.body, &out); err != nil || out.AccessToken == "" {
		t.Fatalf("token body %q: %v", resp.body, err)
	}
	return out.AccessToken
}

// login registers an identity and returns an access token for the scopes.
func login(t testing.TB, hc *http.Client, r *Registry, id Identity, scopes ...string) string {
	t.Helper()
	cred := r.AddIdentity(id)
	return mint(t, hc, r, exchange(t, hc, r, cred), scopes...)
}

// mapClaims decodes a JWT's claims without verification.
func mapClaims(t testing.TB, tok string) jwt.MapClaims {
	t.Helper()
	c := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, c); err != nil {
		t.Fatalf("parse token: %v", err)
	}
	return c
}

// accessOf decodes the access claim of an access token.
func accessOf(t testing.TB, tok string) acr.Access {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT")
	}
	raw, err := jwt.NewParser().DecodeSegment(parts[1])
	if err != nil {
		t.Fatalf("decode claims: %v", err)
	}
	var c struct {
		Access acr.Access `json:"access"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("decode access: %v", err)
	}
	return c.Access
}

// repoScope renders repository:name:actions.
func repoScope(name string, actions ...string) string {
	return acr.RepositoryScope(name, actions...).String()
}

// purgeScope is the scope one purge message asks for.
func purgeScope(name string) string { return repoScope(name, acr.PurgeActions...) }

// all is a grant on every repository with every action.
var all = []Grant{{}}

// repoURL builds a data-plane URL with the repository escaped per segment.
func repoURL(r *Registry, prefix, repo, suffix string) string {
	return r.URL() + prefix + escapeRepo(repo) + suffix
}

// decode unmarshals a response body, failing the test on error.
func decode[T any](t testing.TB, resp response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(resp.body, &v); err != nil {
		t.Fatalf("decode %T from %d %q: %v", v, resp.status, resp.body, err)
	}
	return v
}

func boolp(b bool) *bool { return &b }

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

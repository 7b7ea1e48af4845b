package acremu

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIdentityEndpoint: azidentity's managed-identity credential, pointed at
// the endpoint through the App Service environment variables, gets a token
// the registry accepts.
func TestIdentityEndpoint(t *testing.T) {
	r := start(t, Options{})
	cred := r.AddIdentity(Identity{Name: "mi", Grants: all})
	const clientID = "00000000-0000-4000-8000-0000000000aa"
	e, err := r.StartIdentityEndpoint(map[string]*Credential{clientID: cred})
	require.NoError(t, err)
	t.Cleanup(e.Close)
	for _, kv := range e.Env(clientID) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	mi, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(clientID)})
	require.NoError(t, err)
	tok, err := mi.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{AADScope}})
	require.NoError(t, err)
	assert.Equal(t, 1, e.Issued())

	// The registry takes it at /oauth2/exchange.
	hc := httpClient(t, true)
	resp := postForm(t, hc, r.URL()+"/oauth2/exchange", url.Values{
		"grant_type": {"access_token"}, "service": {r.Host()}, "access_token": {tok.Token},
	})
	require.Equal(t, http.StatusOK, resp.status, string(resp.body))
	assert.Contains(t, string(resp.body), "refresh_token")

	// Another client ID, or no secret header, is refused.
	other, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID("00000000-0000-4000-8000-0000000000bb")})
	require.NoError(t, err)
	_, err = other.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{AADScope}})
	assert.Error(t, err, "an unknown client ID got a token")
	raw, err := hc.Get(e.URL() + "?api-version=2019-08-01&resource=https://containerregistry.azure.net&client_id=" + clientID)
	require.NoError(t, err)
	_ = raw.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, raw.StatusCode, "without X-IDENTITY-HEADER")
}

package acremu

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// TestIdentityEndpoint: azidentity's managed-identity credential, pointed at
// the endpoint through the App Service environment variables, gets a token
// the registry accepts.
func TestIdentityEndpoint(t *testing.T) {
	r := start(t, Options{})
	cred := r.AddIdentity(Identity{Name: "mi", Grants: all})
	const clientID = "00000000-0000-4000-8000-0000000000aa"
	e, err := r.StartIdentityEndpoint(map[string]*Credential{clientID: cred})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	for _, kv := range e.Env(clientID) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	mi, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(clientID)})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := mi.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{AADScope}})
	if err != nil {
		t.Fatal(err)
	}
	if e.Issued() != 1 {
		t.Errorf("issued %d", e.Issued())
	}
	// The registry takes it at /oauth2/exchange.
	hc := httpClient(t, true)
	resp0 := postForm(t, hc, r.URL()+"/oauth2/exchange", url.Values{
		"grant_type": {"access_token"}, "service": {r.Host()}, "access_token": {tok.Token},
	})
	if resp0.status != http.StatusOK || !strings.Contains(string(resp0.body), "refresh_token") {
		t.Fatalf("exchange: %d %s", resp0.status, resp0.body)
	}

	// Another client ID, or no secret header, is refused.
	other, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID("00000000-0000-4000-8000-0000000000bb")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{AADScope}}); err == nil {
		t.Error("an unknown client ID got a token")
	}
	resp, err := hc.Get(e.URL() + "?api-version=2019-08-01&resource=https://containerregistry.azure.net&client_id=" + clientID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without X-IDENTITY-HEADER: %d", resp.StatusCode)
	}
}

package acremu

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Environment variables of the App Service managed-identity protocol, which
// azidentity's ManagedIdentityCredential (and so DefaultAzureCredential)
// reads on App Service and Azure Functions.
const (
	EnvIdentityEndpoint = "IDENTITY_ENDPOINT"
	EnvIdentityHeader   = "IDENTITY_HEADER"
)

// msiAPIVersion is the App Service managed-identity API version MSAL speaks.
const msiAPIVersion = "2019-08-01"

// IdentityEndpoint serves the App Service managed-identity protocol on
// loopback for identities of a Registry: GET with the X-IDENTITY-HEADER
// secret, api-version, resource and client_id answers an AAD token the
// registry accepts, exactly as the platform's endpoint does on Azure. A
// separate process — `handler serve` with AZURE_CLIENT_ID set — then signs
// in with its production credential (a user-assigned managed identity) and
// no test hook. Start it with Registry.StartIdentityEndpoint.
type IdentityEndpoint struct {
	url    string
	header string
	srv    *http.Server
	done   chan struct{}

	mu      sync.Mutex
	clients map[string]*Credential
	issued  int
}

// StartIdentityEndpoint serves the managed-identity protocol for the given
// identities of r, keyed by the client ID each is known by (AZURE_CLIENT_ID).
func (r *Registry) StartIdentityEndpoint(clients map[string]*Credential) (*IdentityEndpoint, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("acremu: identity endpoint: %w", err)
	}
	e := &IdentityEndpoint{
		url:     "http://" + ln.Addr().String() + "/msi/token",
		header:  rand.Text(),
		clients: map[string]*Credential{},
		done:    make(chan struct{}),
	}
	for id, c := range clients {
		e.clients[strings.ToLower(id)] = c
	}
	e.srv = &http.Server{Handler: http.HandlerFunc(e.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(e.done)
		_ = e.srv.Serve(ln) // ErrServerClosed at Close
	}()
	return e, nil
}

// Env is the environment of a process signing in as clientID:
// IDENTITY_ENDPOINT, IDENTITY_HEADER and AZURE_CLIENT_ID, as "K=V".
func (e *IdentityEndpoint) Env(clientID string) []string {
	return []string{EnvIdentityEndpoint + "=" + e.url, EnvIdentityHeader + "=" + e.header, "AZURE_CLIENT_ID=" + clientID}
}

// URL is the endpoint (IDENTITY_ENDPOINT).
func (e *IdentityEndpoint) URL() string { return e.url }

// Issued is the number of tokens the endpoint handed out.
func (e *IdentityEndpoint) Issued() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.issued
}

// Close stops the endpoint.
func (e *IdentityEndpoint) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		_ = e.srv.Close()
	}
	<-e.done
}

// msiError answers the way the platform's endpoint does: a status and a
// JSON body with the reason.
func msiError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"statusCode": status, "message": msg})
}

func (e *IdentityEndpoint) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet {
		msiError(w, http.StatusMethodNotAllowed, "GET only")
		return
	}
	if req.Header.Get("X-IDENTITY-HEADER") != e.header {
		msiError(w, http.StatusUnauthorized, "missing or wrong X-IDENTITY-HEADER")
		return
	}
	q := req.URL.Query()
	if v := q.Get("api-version"); v != msiAPIVersion {
		msiError(w, http.StatusBadRequest, "unsupported api-version "+strconv.Quote(v))
		return
	}
	resource := strings.TrimSuffix(q.Get("resource"), "/")
	if resource+"/.default" != AADScope {
		msiError(w, http.StatusBadRequest, "unsupported resource "+strconv.Quote(resource))
		return
	}
	e.mu.Lock()
	cred := e.clients[strings.ToLower(q.Get("client_id"))]
	e.mu.Unlock()
	if cred == nil {
		msiError(w, http.StatusBadRequest, "no user-assigned identity with client_id "+strconv.Quote(q.Get("client_id")))
		return
	}
	tok, err := cred.GetToken(req.Context(), policy.TokenRequestOptions{Scopes: []string{AADScope}})
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, context.Canceled) {
			status = http.StatusServiceUnavailable
		}
		msiError(w, status, "token: "+err.Error())
		return
	}
	e.mu.Lock()
	e.issued++
	e.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"access_token": tok.Token,
		"expires_on":   strconv.FormatInt(tok.ExpiresOn.Unix(), 10),
		"resource":     resource,
		"token_type":   "Bearer",
		"client_id":    q.Get("client_id"),
	})
}

package acremu

import (
	"errors"
	"net/http"
)

// maxFormBytes bounds oauth2 form bodies.
const maxFormBytes = 1 << 20

// unauthorizedOAuth answers a refused token request.
func (r *Registry) unauthorizedOAuth(w http.ResponseWriter, msg string) {
	r.mu.Lock()
	r.stats.Unauthorized++
	r.mu.Unlock()
	writeError(w, http.StatusUnauthorized, CodeUnauthorized, msg, nil)
}

// parseForm reads a bounded urlencoded form; it answers 400 and returns
// false when the form is unreadable.
func parseForm(w http.ResponseWriter, req *http.Request) bool {
	req.Body = http.MaxBytesReader(w, req.Body, maxFormBytes)
	if err := req.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, "the request form could not be parsed", nil)
		return false
	}
	return true
}

// oauthForm reads the form of an /oauth2 request whose grant_type must be
// grant, whose credential is the field of the same name, and whose service
// must be this registry. It answers the request itself when the form is
// wrong.
func (r *Registry) oauthForm(w http.ResponseWriter, req *http.Request, grant string) (credential string, ok bool) {
	if !parseForm(w, req) {
		return "", false
	}
	service := req.PostForm.Get("service")
	credential = req.PostForm.Get(grant)
	switch {
	case req.PostForm.Get("grant_type") != grant:
		writeError(w, http.StatusBadRequest, CodeUnsupported, "grant_type must be "+grant, nil)
	case service == "" || credential == "":
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, "service and "+grant+" are required", nil)
	case service != r.Host():
		r.unauthorizedOAuth(w, "the service does not match this registry")
	default:
		return credential, true
	}
	return "", false
}

// handleExchange serves POST /oauth2/exchange: AAD token → refresh token.
// It returns the identity served, for the request log.
func (r *Registry) handleExchange(w http.ResponseWriter, req *http.Request) string {
	aadTok, ok := r.oauthForm(w, req, "access_token")
	if !ok {
		return ""
	}
	now := r.Now()
	r.mu.Lock()
	t, ok := r.aad[aadTok]
	var id *identity
	if ok {
		id = r.identities[t.identity]
	}
	if !ok || id == nil || !t.expires.After(now) {
		r.stats.Unauthorized++
		r.mu.Unlock()
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "the AAD access token is unknown or expired", nil)
		return ""
	}
	refresh, err := r.issueRefresh(id)
	if err == nil {
		r.stats.RefreshTokens++
	}
	r.mu.Unlock()
	if err != nil {
		writeError(w, http.StatusInternalServerError, CodeInternalError, "issuing the refresh token failed", nil)
		return t.identity
	}
	writeJSON(w, http.StatusOK, map[string]string{"refresh_token": refresh})
	return t.identity
}

// handleToken serves POST /oauth2/token: refresh token + scopes → access
// token whose access claim lists what the identity's grants allow.
func (r *Registry) handleToken(w http.ResponseWriter, req *http.Request) string {
	refresh, ok := r.oauthForm(w, req, "refresh_token")
	if !ok {
		return ""
	}
	c, err := r.verify(refresh, grantRefresh)
	if err != nil {
		msg := "the refresh token is invalid"
		if errors.Is(err, errTokenExpired) {
			msg = "the refresh token has expired"
		}
		r.unauthorizedOAuth(w, msg)
		return ""
	}
	scopes := parseScopes(req.PostForm["scope"])
	r.mu.Lock()
	id := r.identities[c.Subject]
	if id == nil {
		r.stats.Unauthorized++
		r.mu.Unlock()
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "the identity no longer exists", nil)
		return c.Subject
	}
	access := r.grant(id, scopes)
	r.mu.Unlock()
	tok, err := r.issueAccess(c.Subject, access)
	if err != nil {
		writeError(w, http.StatusInternalServerError, CodeInternalError, "issuing the access token failed", nil)
		return c.Subject
	}
	r.mu.Lock()
	r.stats.AccessTokens++
	r.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"access_token": tok})
	return c.Subject
}

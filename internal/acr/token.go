package acr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token is a minted ACR access token.
type Token struct {
	Value   Secret    // the bearer token
	Expires time.Time // the JWT's exp
	// Granted is the token's access claim: what the registry granted.
	// Tokens from the Broker always have a non-nil Granted (empty when the
	// claim is absent: nothing granted), and the Client refuses calls it
	// lacks without sending them. A nil Granted (a TokenSource that cannot
	// read claims) means unknown: Allows reports false, and the Client lets
	// the registry decide.
	Granted Access
}

// Format implements fmt.Formatter for Token and *Token, so that the value
// stays redacted even on fmt's error paths (a bad verb on a nested pointer
// prints the pointee without consulting its fields' formatters).
func (t Token) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "{Value:%s Expires:%s Granted:%v}", redacted, t.Expires.Format(time.RFC3339), []Scope(t.Granted))
}

// LogValue implements slog.LogValuer.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.Time("expires", t.Expires), slog.Int("granted", len(t.Granted)))
}

// Allows reports whether the token's access claim grants action on the
// repository. The claim is advisory: the data plane has the last word.
func (t *Token) Allows(repo, action string) bool {
	return t != nil && t.Granted.Allows("repository", repo, action)
}

// AllowsScope reports whether the access claim grants every action of s.
func (t *Token) AllowsScope(s Scope) bool {
	if t == nil || len(s.Actions) == 0 {
		return false
	}
	for _, a := range s.Actions {
		if !t.Granted.Allows(s.Type, s.Name, a) {
			return false
		}
	}
	return true
}

// TokenSource yields bearer tokens for one fixed scope set.
type TokenSource interface {
	// Token returns a valid token, minting one when needed.
	Token(ctx context.Context) (*Token, error)
	// Invalidate reports that the registry refused t. It drops t from the
	// cache; it is a no-op when a newer token is already cached.
	Invalidate(t *Token)
}

// accessClaims are the claims of an ACR access token that matter here.
type accessClaims struct {
	jwt.RegisteredClaims
	Access *Access `json:"access"`
}

// refreshClaims are the claims of an ACR refresh token that matter here.
type refreshClaims struct {
	jwt.RegisteredClaims
	AADIdentity any `json:"aad_identity"`
}

var errNotJWT = errors.New("token is not a readable JWT")

// parseAccessToken reads exp and the access claim without verifying the
// signature (the client cannot, and need not). Errors never contain the
// token or parts of it.
func parseAccessToken(raw string) (*Token, error) {
	var c accessClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &c); err != nil {
		return nil, errNotJWT
	}
	if c.ExpiresAt == nil {
		return nil, errors.New("token has no exp claim")
	}
	// An absent or null access claim grants nothing; Granted is never nil
	// for a parsed token, so the Client checks it before every call.
	t := &Token{Value: Secret(raw), Expires: c.ExpiresAt.Time, Granted: Access{}}
	if c.Access != nil {
		t.Granted = append(t.Granted, (*c.Access)...)
	}
	return t, nil
}

// parseRefreshToken reads exp and whether the aad_identity claim (ABAC
// registries) is present.
func parseRefreshToken(raw string) (exp time.Time, abac bool, err error) {
	var c refreshClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &c); err != nil {
		return time.Time{}, false, errNotJWT
	}
	if c.ExpiresAt == nil {
		return time.Time{}, false, errors.New("token has no exp claim")
	}
	switch v := c.AADIdentity.(type) {
	case nil:
	case string:
		abac = v != ""
	default:
		abac = true
	}
	return c.ExpiresAt.Time, abac, nil
}

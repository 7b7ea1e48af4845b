package acremu

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// Issuer is the iss claim of every token the emulator signs.
const Issuer = "Azure Container Registry"

// Grant types carried in the grant_type claim.
const (
	grantRefresh = "refresh_token"
	grantAccess  = "access_token"
)

// claims are the JWT claims of refresh and access tokens. aud is a single
// string, as ACR writes it.
type claims struct {
	ID          string           `json:"jti"`
	Subject     string           `json:"sub"`
	Audience    string           `json:"aud"`
	Issuer      string           `json:"iss"`
	IssuedAt    *jwt.NumericDate `json:"iat"`
	NotBefore   *jwt.NumericDate `json:"nbf"`
	ExpiresAt   *jwt.NumericDate `json:"exp"`
	GrantType   string           `json:"grant_type"`
	AADIdentity string           `json:"aad_identity,omitempty"`
	Access      *acr.Access      `json:"access,omitempty"`
}

func (c *claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c *claims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c *claims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore, nil }
func (c *claims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *claims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *claims) GetAudience() (jwt.ClaimStrings, error)       { return jwt.ClaimStrings{c.Audience}, nil }

// errTokenExpired distinguishes an expired token from an invalid one.
var errTokenExpired = errors.New("token expired")

// sign issues a token with the standard claims filled in.
func (r *Registry) sign(c *claims, ttl time.Duration) (string, error) {
	now := r.Now()
	c.ID = rand.Text()
	c.Audience = r.Host()
	c.Issuer = Issuer
	c.IssuedAt = jwt.NewNumericDate(now)
	c.NotBefore = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(r.key)
	if err != nil {
		return "", fmt.Errorf("acremu: sign %s: %w", c.GrantType, err)
	}
	return s, nil
}

// issueRefresh signs a refresh token for id. Caller holds r.mu (reads id).
func (r *Registry) issueRefresh(id *identity) (string, error) {
	c := &claims{Subject: id.name, GrantType: grantRefresh}
	if r.opts.ABAC {
		b, _ := json.Marshal(map[string]string{"oid": id.oid, "tid": TenantID, "name": id.name})
		c.AADIdentity = string(b)
	}
	return r.sign(c, r.opts.RefreshTokenTTL)
}

// issueAccess signs an access token for identity name with the access claim.
func (r *Registry) issueAccess(name string, access acr.Access) (string, error) {
	c := &claims{Subject: name, GrantType: grantAccess, Access: &access}
	return r.sign(c, r.opts.AccessTokenTTL)
}

// verify checks signature, algorithm, lifetime (exp <= Now() is expired),
// audience and grant type. An expired token yields errTokenExpired.
func (r *Registry) verify(tok, grantType string) (*claims, error) {
	c := &claims{}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithTimeFunc(r.Now),
		jwt.WithExpirationRequired(),
	)
	_, err := p.ParseWithClaims(tok, c, func(*jwt.Token) (any, error) { return r.key, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, errTokenExpired
	case err != nil:
		return nil, fmt.Errorf("invalid token: %w", err)
	}
	if c.Audience != r.Host() {
		return nil, errors.New("invalid token: wrong audience")
	}
	if c.GrantType != grantType {
		return nil, fmt.Errorf("invalid token: %s token where %s expected", c.GrantType, grantType)
	}
	if c.Subject == "" {
		return nil, errors.New("invalid token: no subject")
	}
	return c, nil
}

package acr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"golang.org/x/sync/singleflight"
)

// AADScope is the AAD scope whose token ACR exchanges for a refresh token.
const AADScope = "https://containerregistry.azure.net/.default"

// DefaultRefreshMargin is how long before expiry cached tokens are renewed.
const DefaultRefreshMargin = 5 * time.Minute

// flightTimeout bounds one shared mint or exchange. A flight runs detached
// from the context of the caller that started it, so one caller giving up
// does not fail the others waiting on the same flight.
const flightTimeout = 3 * time.Minute

// BrokerOptions configures a Broker.
type BrokerOptions struct {
	Endpoint      Endpoint
	Credential    azcore.TokenCredential // AAD; asked for AADScope
	Tenant        string                 // optional, sent on exchange
	HTTPClient    *http.Client           // default NewHTTPClient()
	Now           func() time.Time       // default time.Now (tests pass the emulator clock)
	RefreshMargin time.Duration          // default 5m: renew that long before exp
	Retry         RetryPolicy            // for the token endpoints; zero fields default
	Logger        *slog.Logger           // nil: discard
}

// BrokerStats counts what a Broker obtained.
type BrokerStats struct {
	AADTokens int // AAD tokens obtained from the credential
	Exchanges int // refresh tokens obtained from /oauth2/exchange
	Mints     int // access tokens obtained from /oauth2/token
}

// Broker turns an AAD credential into ACR access tokens. It caches the AAD
// token, the refresh token (renewed before its ~3 h life ends) and one
// access token per scope set (renewed RefreshMargin before exp), and runs
// at most one mint per scope set and one exchange at a time, however many
// goroutines ask. It is safe for concurrent use.
type Broker struct {
	ep     Endpoint
	cred   azcore.TokenCredential
	tenant string
	hc     *http.Client // retry → log → body → base: no auth layer, no limiter
	now    func() time.Time
	margin time.Duration
	log    *slog.Logger
	flight singleflight.Group

	mu      sync.Mutex
	aad     cachedSecret
	refresh cachedRefresh
	access  map[string]cachedToken
	stats   BrokerStats
}

type cachedSecret struct {
	value   Secret
	renewAt time.Time
}

type cachedRefresh struct {
	value   Secret
	renewAt time.Time
	abac    bool
}

type cachedToken struct {
	tok     *Token
	renewAt time.Time
}

// NewBroker validates o and returns a Broker.
func NewBroker(o BrokerOptions) (*Broker, error) {
	if err := o.Endpoint.valid(); err != nil {
		return nil, err
	}
	if o.Credential == nil {
		return nil, errors.New("acr: broker needs a credential")
	}
	if o.RefreshMargin < 0 {
		return nil, errors.New("acr: negative refresh margin")
	}
	if err := o.Retry.validate(); err != nil {
		return nil, err
	}
	b := &Broker{
		ep:     o.Endpoint,
		cred:   o.Credential,
		tenant: o.Tenant,
		now:    o.Now,
		margin: o.RefreshMargin,
		log:    loggerOrDiscard(o.Logger),
		access: map[string]cachedToken{},
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.margin == 0 {
		b.margin = DefaultRefreshMargin
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = NewHTTPClient()
	}
	b.hc = httpClient(newStack(stackOptions{base: hc, retry: o.Retry, log: b.log}))
	return b, nil
}

// AccessToken returns a token for exactly this scope set (order and
// duplicates do not matter), from the cache when it is not due for renewal.
// Errors never contain tokens.
func (b *Broker) AccessToken(ctx context.Context, scopes []Scope) (*Token, error) {
	key, norm, err := normalizeScopes(scopes)
	if err != nil {
		return nil, err
	}
	return b.accessToken(ctx, key, norm)
}

// Source returns a TokenSource bound to one scope set. Invalid scopes make
// its Token method fail.
func (b *Broker) Source(scopes ...Scope) TokenSource {
	key, norm, err := normalizeScopes(scopes)
	return &source{b: b, key: key, scopes: norm, err: err}
}

// ABAC reports whether the registry manages permissions with ABAC (its
// refresh token carries an aad_identity claim). It may exchange a token.
func (b *Broker) ABAC(ctx context.Context) (bool, error) {
	rt, err := b.refreshToken(ctx)
	if err != nil {
		return false, err
	}
	return rt.abac, nil
}

// Stats returns what the Broker obtained so far.
func (b *Broker) Stats() BrokerStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// source is a TokenSource for one scope set of a Broker.
type source struct {
	b      *Broker
	key    string
	scopes []Scope
	err    error
}

func (s *source) Token(ctx context.Context) (*Token, error) {
	if s.err != nil {
		return nil, s.err
	}
	return s.b.accessToken(ctx, s.key, s.scopes)
}

func (s *source) Invalidate(t *Token) {
	if s.err == nil {
		s.b.invalidate(s.key, t)
	}
}

// invalidate drops the cached token of key if it is t (and not a newer one).
func (b *Broker) invalidate(key string, t *Token) {
	if t == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.access[key]; ok && (c.tok == t || c.tok.Value == t.Value) {
		delete(b.access, key)
		b.log.Debug("acr access token invalidated", slog.Int("scopes", strings.Count(key, " ")+1))
	}
}

func (b *Broker) cachedAccess(key string) *Token {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.access[key]; ok && b.now().Before(c.renewAt) {
		return c.tok
	}
	return nil
}

func (b *Broker) accessToken(ctx context.Context, key string, scopes []Scope) (*Token, error) {
	if t := b.cachedAccess(key); t != nil {
		return t, nil
	}
	v, err := b.shared(ctx, "access\x00"+key, func(fctx context.Context) (any, error) {
		if t := b.cachedAccess(key); t != nil {
			return t, nil
		}
		return b.mint(fctx, key, scopes)
	})
	if err != nil {
		return nil, err
	}
	return v.(*Token), nil
}

// shared runs fn once for all concurrent callers of the same key, detached
// from any one caller's cancellation; each caller still returns as soon as
// its own ctx ends.
func (b *Broker) shared(ctx context.Context, key string, fn func(context.Context) (any, error)) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch := b.flight.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flightTimeout)
		defer cancel()
		return fn(fctx)
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		return r.Val, r.Err
	}
}

// mint asks /oauth2/token for an access token. A 401 with a cached refresh
// token drops it and tries once more with a fresh exchange.
func (b *Broker) mint(ctx context.Context, key string, scopes []Scope) (*Token, error) {
	const op = "mint access token"
	for try := 0; ; try++ {
		rt, err := b.refreshToken(ctx)
		if err != nil {
			return nil, err
		}
		form := url.Values{
			"grant_type":    {"refresh_token"},
			"service":       {b.ep.Service},
			"refresh_token": {rt.value.Reveal()},
		}
		for _, s := range scopes {
			form.Add("scope", s.String())
		}
		resp, err := b.post(ctx, op, "/oauth2/token", form)
		if err != nil {
			return nil, err
		}
		if resp.status == http.StatusUnauthorized && try == 0 {
			b.dropRefresh(rt.value)
			continue
		}
		if resp.status != http.StatusOK {
			return nil, newError(op, "", "", resp, rt.value)
		}
		var body struct {
			AccessToken string `json:"access_token"`
			Token       string `json:"token"`
		}
		if err := json.Unmarshal(resp.body, &body); err != nil {
			return nil, fmt.Errorf("acr: %s: response is not valid JSON", op)
		}
		raw := body.AccessToken
		if raw == "" {
			raw = body.Token
		}
		if raw == "" {
			return nil, fmt.Errorf("acr: %s: response has no access_token", op)
		}
		tok, err := parseAccessToken(raw)
		if err != nil {
			return nil, fmt.Errorf("acr: %s: %w", op, err)
		}
		now := b.now()
		b.mu.Lock()
		for k, c := range b.access { // prune tokens of finished scope sets
			if !now.Before(c.tok.Expires) {
				delete(b.access, k)
			}
		}
		b.access[key] = cachedToken{tok: tok, renewAt: renewAt(now, tok.Expires, b.margin)}
		b.stats.Mints++
		b.mu.Unlock()
		b.log.Debug("acr access token minted",
			slog.Int("scopes", len(scopes)), slog.Int("granted", len(tok.Granted)),
			slog.Time("expires", tok.Expires))
		return tok, nil
	}
}

func (b *Broker) dropRefresh(v Secret) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refresh.value == v {
		b.refresh = cachedRefresh{}
	}
}

// refreshToken returns the cached refresh token or exchanges a new one.
func (b *Broker) refreshToken(ctx context.Context) (cachedRefresh, error) {
	get := func() (cachedRefresh, bool) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.refresh.value != "" && b.now().Before(b.refresh.renewAt) {
			return b.refresh, true
		}
		return cachedRefresh{}, false
	}
	if rt, ok := get(); ok {
		return rt, nil
	}
	v, err := b.shared(ctx, "exchange", func(fctx context.Context) (any, error) {
		if rt, ok := get(); ok {
			return rt, nil
		}
		return b.exchange(fctx)
	})
	if err != nil {
		return cachedRefresh{}, err
	}
	return v.(cachedRefresh), nil
}

// exchange trades the AAD token for a refresh token. A 401 with a cached
// AAD token drops it and tries once more with a fresh one.
func (b *Broker) exchange(ctx context.Context) (cachedRefresh, error) {
	const op = "exchange AAD token"
	for try := 0; ; try++ {
		aad, fromCache, err := b.aadToken(ctx)
		if err != nil {
			return cachedRefresh{}, err
		}
		form := url.Values{
			"grant_type":   {"access_token"},
			"service":      {b.ep.Service},
			"access_token": {aad.Reveal()},
		}
		if b.tenant != "" {
			form.Set("tenant", b.tenant)
		}
		resp, err := b.post(ctx, op, "/oauth2/exchange", form)
		if err != nil {
			return cachedRefresh{}, err
		}
		if resp.status == http.StatusUnauthorized && try == 0 && fromCache {
			b.mu.Lock()
			b.aad = cachedSecret{}
			b.mu.Unlock()
			continue
		}
		if resp.status != http.StatusOK {
			return cachedRefresh{}, newError(op, "", "", resp, aad)
		}
		var body struct {
			RefreshToken string `json:"refresh_token"`
		}
		if err := json.Unmarshal(resp.body, &body); err != nil {
			return cachedRefresh{}, fmt.Errorf("acr: %s: response is not valid JSON", op)
		}
		if body.RefreshToken == "" {
			return cachedRefresh{}, fmt.Errorf("acr: %s: response has no refresh_token", op)
		}
		exp, abac, err := parseRefreshToken(body.RefreshToken)
		if err != nil {
			return cachedRefresh{}, fmt.Errorf("acr: %s: refresh %w", op, err)
		}
		now := b.now()
		rt := cachedRefresh{value: Secret(body.RefreshToken), renewAt: renewAt(now, exp, b.margin), abac: abac}
		b.mu.Lock()
		b.refresh = rt
		b.stats.Exchanges++
		b.mu.Unlock()
		b.log.Debug("acr refresh token exchanged", slog.Time("expires", exp), slog.Bool("abac", abac))
		return rt, nil
	}
}

// aadToken returns the cached AAD token or asks the credential.
func (b *Broker) aadToken(ctx context.Context) (Secret, bool, error) {
	b.mu.Lock()
	if b.aad.value != "" && b.now().Before(b.aad.renewAt) {
		v := b.aad.value
		b.mu.Unlock()
		return v, true, nil
	}
	b.mu.Unlock()
	at, err := b.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{AADScope}, TenantID: b.tenant})
	if err != nil {
		return "", false, fmt.Errorf("acr: get AAD token: %w", err)
	}
	if at.Token == "" {
		return "", false, errors.New("acr: get AAD token: credential returned an empty token")
	}
	now := b.now()
	ra := renewAt(now, at.ExpiresOn, b.margin)
	if !at.RefreshOn.IsZero() && at.RefreshOn.Before(ra) {
		ra = at.RefreshOn
	}
	v := Secret(at.Token)
	b.mu.Lock()
	b.aad = cachedSecret{value: v, renewAt: ra}
	b.stats.AADTokens++
	b.mu.Unlock()
	return v, false, nil
}

// post sends a form to a token endpoint with the retry policy. The form
// holds secrets; it is never logged.
func (b *Broker) post(ctx context.Context, op, path string, form url.Values) (*response, error) {
	u := *b.ep.Base
	u.Path = path
	return send(ctx, b.hc, &request{
		op:       op,
		method:   http.MethodPost,
		url:      &u,
		accept:   "application/json",
		body:     []byte(form.Encode()),
		bodyType: "application/x-www-form-urlencoded",
		maxBody:  tokenMaxBody,
	}, &callInfo{})
}

// renewAt is when a token valid until exp should be renewed: margin before
// exp, but never earlier than half-way through its remaining life.
func renewAt(now, exp time.Time, margin time.Duration) time.Time {
	m := margin
	if half := exp.Sub(now) / 2; half < m {
		m = max(half, 0)
	}
	return exp.Add(-m)
}

func loggerOrDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

package acr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// authTransport adds "Authorization: Bearer <token>" from a TokenSource to
// each request and handles a 401 the way ACR needs:
//
//  1. It takes a token. When the call's callInfo names a scope and the
//     token's access claim is known and lacks it, nothing is sent: the
//     error wraps ErrNotPermitted (a request would only earn a 401 and a
//     pointless re-mint of the whole scope set).
//  2. It sends the request with the token.
//  3. On a 401 it invalidates that token, takes a fresh one and sends the
//     request once more (when its body can be replayed). If the fresh token
//     lacks the scope, or the second answer is a 401 too, that 401 goes up
//     for the caller to report as not permitted — unless the registry says
//     the token expired (error="invalid_token"): an expired token is never
//     a refusal, so it re-mints again, up to maxMints tokens in all.
//
// It refuses to put a token on a request for any origin but its own
// (scheme and host), and records every token it sent in the callInfo so
// that the caller can scrub echoes of them from error messages. It never
// logs a token. Its zero value fails every request with a clear error:
// without a TokenSource there is nothing to add.
type authTransport struct {
	next   http.RoundTripper // nil: http.DefaultTransport
	tokens TokenSource
	origin *url.URL     // scheme://host the tokens are for; nil: any
	log    *slog.Logger // nil: discard
}

var errForeignOrigin = errors.New("refusing to send a registry token to another host")

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	ci := callOf(ctx)
	tok, err := t.first(req, ci)
	if err != nil {
		closeBody(req.Body) // a RoundTripper closes the body, sent or not
		return nil, err
	}
	resp, err := t.send(req, req.Body, tok, ci)
	for mints := 1; ; mints++ {
		if err != nil || resp.StatusCode != http.StatusUnauthorized {
			return resp, err
		}
		// One re-mint for any 401; more only while the registry says the
		// token expired (invalid_token), which is never a refusal: a long
		// wait for the delete budget can outlast a fresh token's life.
		if mints > 1 && (mints >= maxMints || challengeError(resp.Header) != "invalid_token") {
			return resp, nil
		}
		body, replayable := replayBody(req)
		if !replayable {
			return resp, nil
		}
		if t.log != nil {
			t.log.LogAttrs(ctx, slog.LevelDebug, "acr 401: re-minting",
				slog.String("op", ci.op), slog.String("repository", ci.repo), slog.Int("mint", mints+1),
				slog.String("auth_error", challengeError(resp.Header)))
		}
		t.tokens.Invalidate(tok)
		fresh, terr := t.token(ctx, ci.need)
		if errors.Is(terr, ErrNotPermitted) {
			closeBody(body)
			return resp, nil // the 401 is the better answer: it says what was refused
		}
		drain(resp.Body)
		if terr != nil {
			closeBody(body)
			return nil, terr
		}
		tok = fresh
		resp, err = t.send(req, body, fresh, ci)
	}
}

// maxMints bounds the tokens one call may take when the registry keeps
// answering that they expired.
const maxMints = 3

// first checks that req may carry a token and takes one.
func (t *authTransport) first(req *http.Request, ci *callInfo) (*Token, error) {
	if t.tokens == nil {
		return nil, errors.New("no token source")
	}
	if t.origin != nil && !sameOrigin(req.URL, t.origin) {
		return nil, errForeignOrigin
	}
	return t.token(req.Context(), ci.need)
}

// token takes a token from the source and checks it against need.
func (t *authTransport) token(ctx context.Context, need Scope) (*Token, error) {
	tok, err := t.tokens.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("get token: %w", err)
	}
	if tok == nil || tok.Value == "" {
		return nil, errors.New("token source returned no token")
	}
	if len(need.Actions) > 0 && tok.Granted != nil && !tok.AllowsScope(need) {
		return nil, fmt.Errorf("token does not grant %s: %w", strconv.Quote(need.String()), ErrNotPermitted)
	}
	return tok, nil
}

// send sends a copy of req with body and the token.
func (t *authTransport) send(req *http.Request, body io.ReadCloser, tok *Token, ci *callInfo) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Body = body
	r.Header.Set("Authorization", "Bearer "+tok.Value.Reveal())
	ci.sent = append(ci.sent, tok.Value)
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	return next.RoundTrip(r)
}

// replayBody returns a fresh copy of req's body for a second send.
func replayBody(req *http.Request) (io.ReadCloser, bool) {
	if req.Body == nil || req.Body == http.NoBody {
		return req.Body, true
	}
	if req.GetBody == nil {
		return nil, false
	}
	body, err := req.GetBody()
	return body, err == nil
}

func closeBody(b io.ReadCloser) {
	if b != nil {
		_ = b.Close()
	}
}

// challengeError is the error parameter of a Bearer challenge, for logs.
func challengeError(h http.Header) string {
	if ch, ok := bearerChallenge(h.Values("WWW-Authenticate")); ok {
		return sanitize(ch["error"], 64, nil)
	}
	return ""
}

// sameOrigin reports whether u has the scheme and host of origin (and no
// user info).
func sameOrigin(u, origin *url.URL) bool {
	return u.User == nil && strings.EqualFold(u.Scheme, origin.Scheme) && strings.EqualFold(u.Host, origin.Host)
}

package acremu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// ACR error codes the emulator answers with.
const (
	CodeUnauthorized       = "UNAUTHORIZED"
	CodeNameUnknown        = "NAME_UNKNOWN"
	CodeNameInvalid        = "NAME_INVALID"
	CodeTagUnknown         = "TAG_UNKNOWN"
	CodeManifestUnknown    = "MANIFEST_UNKNOWN"
	CodeDigestInvalid      = "DIGEST_INVALID"
	CodeDisallowed         = "REGISTRY_DISALLOWED_OPERATION"
	CodeTooManyRequests    = "TOOMANYREQUESTS"
	CodeUnsupported        = "UNSUPPORTED"
	CodePaginationInvalid  = "PAGINATION_NUMBER_INVALID"
	CodeInvalidRequest     = "INVALID_REQUEST"
	CodeInternalError      = "INTERNAL_SERVER_ERROR"
	CodeServiceUnavailable = "SERVICE_UNAVAILABLE"
)

// apiError is one entry of an error body.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail"`
}

// writeError answers with the ACR error body. It takes no lock.
func writeError(w http.ResponseWriter, status int, code, msg string, detail any) {
	if detail == nil {
		detail = map[string]any{}
	}
	writeJSON(w, status, map[string][]apiError{"errors": {{Code: code, Message: msg, Detail: detail}}})
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"errors":[{"code":"INTERNAL_SERVER_ERROR","message":"encoding the response failed","detail":{}}]}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// statusWriter records the status for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// discardWriter swallows a response that is going to be lost.
type discardWriter struct {
	h      http.Header
	status int
}

func (d *discardWriter) Header() http.Header { return d.h }
func (d *discardWriter) WriteHeader(code int) {
	if d.status == 0 {
		d.status = code
	}
}
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// ServeHTTP serves the registry's HTTP API.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.inflight.Add(1)
	defer r.inflight.Add(-1)
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	path := req.URL.EscapedPath()
	var epName, identity string
	defer func() {
		r.log.Debug("acremu: request", "method", req.Method, "path", path, "endpoint", epName,
			"status", sw.status, "identity", identity, "duration", time.Since(start))
	}()

	rt, err := parsePath(path)
	if err != nil {
		writeError(sw, http.StatusBadRequest, CodeNameInvalid, "invalid repository name or reference", nil)
		return
	}
	switch rt.kind {
	case routeNone:
		writeError(sw, http.StatusNotFound, CodeUnsupported, "no such endpoint", nil)
		return
	case routeExchange, routeToken:
		epName = "token"
		if rt.kind == routeExchange {
			epName = "exchange"
		}
		r.count(epName)
		if req.Method != http.MethodPost {
			sw.Header().Set("Allow", http.MethodPost)
			writeError(sw, http.StatusMethodNotAllowed, CodeUnsupported, "method not allowed", nil)
			return
		}
		if rt.kind == routeExchange {
			identity = r.handleExchange(sw, req)
		} else {
			identity = r.handleToken(sw, req)
		}
		return
	}

	ep, allow, ok := lookupEndpoint(rt.kind, req.Method)
	if !ok {
		sw.Header().Set("Allow", allow)
		writeError(sw, http.StatusMethodNotAllowed, CodeUnsupported, "method not allowed", nil)
		return
	}
	epName = ep.name
	r.count(ep.name)

	f, lost, latency := r.decide(req.Method == http.MethodDelete)
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-req.Context().Done():
			// Stopped registry or departed client: never answer.
			t.Stop()
			dropConnection(w)
			return
		}
	}
	switch f {
	case faultError500:
		writeError(sw, http.StatusInternalServerError, CodeInternalError, "injected fault", nil)
		return
	case faultError503:
		writeError(sw, http.StatusServiceUnavailable, CodeServiceUnavailable, "injected fault", nil)
		return
	case faultDrop:
		dropConnection(w)
		return
	}

	identity, ok = r.authorize(sw, req, requiredScope(rt, ep))
	if !ok {
		return
	}
	if secs, scope, ok := r.admit(identity, ep.class); !ok {
		what := ep.class.String() + " requests of this identity"
		if scope == "registry" {
			what = "write operations on this registry"
		}
		sw.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(sw, http.StatusTooManyRequests, CodeTooManyRequests,
			"too many "+what+"; retry after "+strconv.Itoa(secs)+"s", nil)
		return
	}
	if lost {
		ep.handle(r, &discardWriter{h: http.Header{}}, req, rt, identity)
		dropConnection(w)
		return
	}
	ep.handle(r, sw, req, rt, identity)
}

// dropConnection closes the client connection without an answer.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	// Not hijackable (e.g. HTTP/2): abort the response; net/http closes the
	// stream without logging a stack trace for this sentinel.
	panic(http.ErrAbortHandler)
}

// authorize checks the bearer token and the required scope, answering 401
// with a Bearer challenge when they do not suffice.
func (r *Registry) authorize(w http.ResponseWriter, req *http.Request, need acr.Scope) (identity string, ok bool) {
	scheme, tok, found := strings.Cut(req.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		r.challenge(w, need, "", "authentication required")
		return "", false
	}
	c, err := r.verify(strings.TrimSpace(tok), grantAccess)
	if err != nil {
		msg := "the access token is invalid"
		if errors.Is(err, errTokenExpired) {
			msg = "the access token has expired"
		}
		r.challenge(w, acr.Scope{}, "invalid_token", msg)
		return "", false
	}
	if need.Type != "" && (c.Access == nil || !r.allows(*c.Access, need)) {
		r.challenge(w, need, "insufficient_scope", "authentication required")
		return c.Subject, false
	}
	return c.Subject, true
}

// allows reports whether the access claim grants the single action of need.
// Outside ABAC mode a '*' in a granted repository name matches anything.
func (r *Registry) allows(access acr.Access, need acr.Scope) bool {
	action := need.Actions[0]
	if access.Allows(need.Type, need.Name, action) {
		return true
	}
	if r.opts.ABAC || need.Type != "repository" {
		return false
	}
	for _, s := range access {
		if s.Type == "repository" && strings.Contains(s.Name, "*") && globMatch(s.Name, need.Name) &&
			(containsAction(s.Actions, action) || containsAction(s.Actions, "*")) {
			return true
		}
	}
	return false
}

func containsAction(actions []string, a string) bool {
	for _, x := range actions {
		if x == a {
			return true
		}
	}
	return false
}

// globMatch matches name against pattern where '*' matches any run of
// characters (including '/').
func globMatch(pattern, name string) bool {
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(name, parts[0]) {
		return false
	}
	name = name[len(parts[0]):]
	for i, p := range parts[1:] {
		if i == len(parts)-2 {
			return strings.HasSuffix(name, p)
		}
		j := strings.Index(name, p)
		if j < 0 {
			return false
		}
		name = name[j+len(p):]
	}
	return true
}

// challenge answers 401 with a Bearer challenge. need (if set) becomes the
// scope parameter; authErr the error parameter.
func (r *Registry) challenge(w http.ResponseWriter, need acr.Scope, authErr, msg string) {
	r.mu.Lock()
	r.stats.Unauthorized++
	r.mu.Unlock()
	h := `Bearer realm="` + r.URL() + `/oauth2/token",service="` + r.Host() + `"`
	var detail any
	if need.Type != "" {
		h += `,scope="` + quoteEscape(need.String()) + `"`
		detail = []map[string]string{{"Type": need.Type, "Name": need.Name, "Action": strings.Join(need.Actions, ",")}}
	}
	if authErr != "" {
		h += `,error="` + authErr + `"`
	}
	w.Header().Set("WWW-Authenticate", h)
	writeError(w, http.StatusUnauthorized, CodeUnauthorized, msg, detail)
}

// quoteEscape escapes a value for a quoted-string.
func quoteEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// WaitIdle waits until no request has been in progress for quiet, or ctx
// ends. A client that abandons its requests (a killed worker, a cancelled
// invocation) can leave some of them still being served, and they may change
// the registry after the client has returned; tests that redeliver wait for
// those to settle first, as real redelivery (after a lock expiry) would.
func (r *Registry) WaitIdle(ctx context.Context, quiet time.Duration) error {
	const poll = 2 * time.Millisecond
	var idleSince time.Time
	for {
		if r.inflight.Load() == 0 {
			if idleSince.IsZero() {
				idleSince = time.Now()
			}
			if time.Since(idleSince) >= quiet {
				return nil
			}
		} else {
			idleSince = time.Time{}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("acremu: still serving %d requests: %w", r.inflight.Load(), ctx.Err())
		case <-time.After(poll):
		}
	}
}

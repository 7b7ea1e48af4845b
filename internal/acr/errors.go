package acr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// ErrNotPermitted means the repository or action is not permitted: either
// the token's access claim lacks it (checked by the caller with
// Token.Allows, or by the Client before a call) or the registry answered 401
// again after one re-mint. When a call was made it is wrapped together with
// an *Error.
var ErrNotPermitted = errors.New("not permitted")

// ErrInvalidReference means a repository name, tag or digest cannot be sent
// safely (empty, an empty path segment, a digest that is not a digest). No
// request was made; retrying cannot help.
var ErrInvalidReference = errors.New("invalid repository name, tag or digest")

// Error is every non-success answer from the registry (data plane and token
// endpoints). Use errors.As to get it.
type Error struct {
	Op         string        // e.g. "delete tag"
	Repository string        // repository, when relevant
	Ref        string        // tag or digest, when relevant
	StatusCode int           // HTTP status
	Code       string        // first ACR error code, e.g. UNAUTHORIZED, TAG_UNKNOWN
	Message    string        // first ACR error message (sanitised, bounded)
	Scope      string        // from WWW-Authenticate scope="..."
	AuthError  string        // from WWW-Authenticate error="..."
	RetryAfter time.Duration // from Retry-After, when the registry sent one
	// Err is what the error also wraps, e.g. ErrNotPermitted after a
	// persistent 401. It may be nil.
	Err error
}

// Error implements error. It never contains a token.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("acr: ")
	b.WriteString(e.Op)
	if t := target(e.Repository, e.Ref); t != "" {
		b.WriteString(" ")
		b.WriteString(strconv.Quote(t))
	}
	fmt.Fprintf(&b, ": status %d", e.StatusCode)
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.AuthError != "" || e.Scope != "" {
		b.WriteString(" (")
		b.WriteString(e.AuthError)
		if e.Scope != "" {
			if e.AuthError != "" {
				b.WriteString(", ")
			}
			b.WriteString("scope ")
			b.WriteString(e.Scope)
		}
		b.WriteString(")")
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " retry after %s", e.RetryAfter)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// target renders repo:tag or repo@digest for messages.
func target(repo, ref string) string {
	switch {
	case ref == "":
		return repo
	case repo == "":
		return ref
	case strings.Contains(ref, ":"):
		return repo + "@" + ref
	default:
		return repo + ":" + ref
	}
}

func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// IsNotFound reports whether err is a registry 404.
func IsNotFound(err error) bool { return statusOf(err) == http.StatusNotFound }

// IsLocked reports whether err is a registry 405 (the item is locked).
func IsLocked(err error) bool { return statusOf(err) == http.StatusMethodNotAllowed }

// IsThrottled reports whether err is a registry 429 that outlasted the
// retry policy's throttle budget.
func IsThrottled(err error) bool { return statusOf(err) == http.StatusTooManyRequests }

// IsNotPermitted reports whether err is, or wraps, ErrNotPermitted.
func IsNotPermitted(err error) bool { return errors.Is(err, ErrNotPermitted) }

// maxMessage bounds how much of a registry's error message is kept.
const maxMessage = 300

// errorBody is the ACR error document {"errors":[{"code","message","detail"}]}.
type errorBody struct {
	Errors []struct {
		Code    string          `json:"code"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	} `json:"errors"`
}

// newError builds an *Error from a response. secrets are scrubbed from any
// text taken from the body, in case a server echoes what it was sent.
func newError(op, repo, ref string, r *response, secrets ...Secret) *Error {
	e := &Error{Op: op, Repository: repo, Ref: ref, StatusCode: r.status}
	var eb errorBody
	if json.Unmarshal(r.body, &eb) == nil && len(eb.Errors) > 0 {
		e.Code = sanitize(eb.Errors[0].Code, 64, secrets)
		e.Message = sanitize(eb.Errors[0].Message, maxMessage, secrets)
	} else if len(r.body) > 0 && !looksLikeHTML(r.body) {
		e.Message = sanitize(string(r.body), maxMessage, secrets)
	}
	if ch, ok := bearerChallenge(r.header.Values("WWW-Authenticate")); ok {
		e.Scope = sanitize(ch["scope"], maxMessage, secrets)
		e.AuthError = sanitize(ch["error"], 64, secrets)
	}
	if d, ok := parseRetryAfter(r.header.Get("Retry-After"), time.Now()); ok {
		e.RetryAfter = d
	}
	return e
}

func looksLikeHTML(b []byte) bool {
	s := strings.TrimSpace(string(b[:min(len(b), 64)]))
	return strings.HasPrefix(s, "<")
}

// sanitize removes secrets and control characters and bounds the length.
func sanitize(s string, limit int, secrets []Secret) string {
	for _, sec := range secrets {
		if v := sec.Reveal(); v != "" {
			s = strings.ReplaceAll(s, v, redacted)
		}
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > limit {
		cut := limit
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// parseRetryAfter reads Retry-After as delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		const maxSeconds = int64(24 * time.Hour / time.Second)
		return time.Duration(min(n, maxSeconds)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return min(d, 24*time.Hour), true
	}
	return 0, false
}

package acr

import (
	"net/http"
	"time"
)

// limitTransport spends the Limiter's budget: every attempt first waits
// for its class (classOf), and every 429 answer is reported to the limiter
// so that the whole class pauses for the Retry-After (1s without one) and
// slows down (with a Gate for deletes, the Gate decides how); every other
// answer is reported as admitted. The pause is capped at maxPause (the retry policy's
// MaxThrottle; zero: DefaultMaxThrottle), so one absurd Retry-After cannot
// stall every call of the instance for longer than one call may wait. A nil
// limiter admits everything.
//
// It sits below the retry layer, so that each retried attempt spends budget
// and each 429 of a call is counted; for the same reason it checks the
// call's send guard (WithSendGuard) once the wait is over.
type limitTransport struct {
	next     http.RoundTripper // nil: http.DefaultTransport
	limiter  *Limiter
	maxPause time.Duration
	guarded  bool // check the send guard (WithSendGuard) after the wait
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	class := classOf(req.Method)
	if err := t.limiter.Wait(req.Context(), class); err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // a RoundTripper closes the body, sent or not
		}
		if req.Context().Err() != nil {
			return nil, err
		}
		return nil, permanentError{err}
	}
	if g := sendGuard(req.Context()); t.guarded && g != nil {
		// Last check before the wire: nothing waits after this.
		if err := g(); err != nil {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, permanentError{err}
		}
	}
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(req)
	switch {
	case err != nil:
	case resp.StatusCode == http.StatusTooManyRequests:
		pause := t.maxPause
		if pause <= 0 {
			pause = DefaultMaxThrottle
		}
		t.limiter.Throttled(class, min(retryAfter(resp.Header, defaultRetryAfter), pause))
	default:
		t.limiter.Admitted(class)
	}
	return resp, err
}

// classOf is the budget class of a request method: GET and HEAD read,
// DELETE deletes, everything else (PATCH, PUT, POST) writes.
func classOf(method string) Class {
	switch method {
	case http.MethodGet, http.MethodHead, "":
		return ClassRead
	case http.MethodDelete:
		return ClassDelete
	}
	return ClassWrite
}

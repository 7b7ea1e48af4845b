package acr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"
)

// RetryPolicy bounds the retries done inside every call. Zero fields take
// their defaults.
type RetryPolicy struct {
	MaxAttempts int           // attempts for 5xx/network errors; default 5
	BaseDelay   time.Duration // default 200ms, exponential with full jitter
	MaxDelay    time.Duration // default 10s
	MaxThrottle time.Duration // total time one call may wait on 429s; default 2m
}

// Retry defaults.
const (
	DefaultMaxAttempts = 5
	DefaultBaseDelay   = 200 * time.Millisecond
	DefaultMaxDelay    = 10 * time.Second
	DefaultMaxThrottle = 2 * time.Minute

	// defaultRetryAfter is the wait for a 429 without a usable Retry-After.
	defaultRetryAfter = time.Second
)

func (p RetryPolicy) validate() error {
	if p.MaxAttempts < 0 || p.BaseDelay < 0 || p.MaxDelay < 0 || p.MaxThrottle < 0 {
		return errors.New("acr: retry policy values must not be negative")
	}
	return nil
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.BaseDelay == 0 {
		p.BaseDelay = DefaultBaseDelay
	}
	if p.MaxDelay == 0 {
		p.MaxDelay = DefaultMaxDelay
	}
	if p.MaxThrottle == 0 {
		p.MaxThrottle = DefaultMaxThrottle
	}
	return p
}

// backoff is the full-jitter delay before retry number n (1-based).
func (p RetryPolicy) backoff(n int) time.Duration {
	ceiling := p.MaxDelay
	if shift := n - 1; shift < 30 {
		if d := p.BaseDelay << shift; d > 0 && d < ceiling {
			ceiling = d
		}
	}
	return randDuration(ceiling)
}

// randDuration returns a uniformly random duration in [0, d].
func randDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

// throttleJitter spreads the callers that got the same Retry-After.
func throttleJitter(retryAfter time.Duration) time.Duration {
	return randDuration(retryAfter/4 + 100*time.Millisecond)
}

// retryableStatus: every 5xx except 501 Not Implemented and 505.
func retryableStatus(code int) bool {
	return code >= 500 && code <= 599 && code != http.StatusNotImplemented &&
		code != http.StatusHTTPVersionNotSupported
}

// retryAfter reads a response's Retry-After, or def when it has none.
func retryAfter(h http.Header, def time.Duration) time.Duration {
	if d, ok := parseRetryAfter(h.Get("Retry-After"), time.Now()); ok && d > 0 {
		return d
	}
	return def
}

// permanentError marks a failure that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// attemptKey carries the 1-based attempt number to the layers below retry
// (the log layer reports it).
type attemptKey struct{}

func attemptOf(ctx context.Context) int {
	n, _ := ctx.Value(attemptKey{}).(int)
	return max(n, 1)
}

// retryTransport repeats failed attempts under a RetryPolicy (nil: the
// defaults; zero fields: their defaults):
//
//   - a network error or a retryable 5xx backs off exponentially with full
//     jitter, at most MaxAttempts attempts in all; a 5xx's Retry-After can
//     lengthen the wait up to MaxDelay;
//   - a 429 waits for its Retry-After (1s without one) plus jitter, and does
//     not count as an attempt, as long as the waits of the call stay within
//     MaxThrottle.
//
// When it gives up it returns the last response for the caller to report,
// or for network errors an error saying how many attempts were made. It
// retries a request with a body only when GetBody can replay it, and
// stops as soon as the request's context ends.
type retryTransport struct {
	next   http.RoundTripper // nil: http.DefaultTransport
	policy *RetryPolicy
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := RetryPolicy{}
	if t.policy != nil {
		p = *t.policy
	}
	st := retryState{policy: p.withDefaults()}
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	ctx := req.Context()
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	for attempt := 1; ; attempt++ {
		r, err := forAttempt(req, attempt)
		if err != nil {
			return nil, err
		}
		resp, err := next.RoundTrip(r)
		if !replayable {
			return resp, err
		}
		wait, retry, err := st.decide(ctx, attempt, resp, err)
		if !retry {
			return resp, err
		}
		if resp != nil {
			drain(resp.Body)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// forAttempt returns the request for attempt n: req itself (with the
// attempt number) for the first, a copy with a fresh body after that.
func forAttempt(req *http.Request, n int) (*http.Request, error) {
	ctx := context.WithValue(req.Context(), attemptKey{}, n)
	if n == 1 {
		return req.WithContext(ctx), nil
	}
	r := req.Clone(ctx)
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, permanentError{fmt.Errorf("replay request body: %w", err)}
		}
		r.Body = body
	}
	return r, nil
}

// retryState counts what one call has spent.
type retryState struct {
	policy    RetryPolicy
	failures  int           // network errors and 5xx
	throttled time.Duration // waited on 429s
}

// decide says whether to retry after an attempt and how long to wait
// first; when not, it returns what RoundTrip returns.
func (s *retryState) decide(ctx context.Context, attempt int, resp *http.Response, err error) (time.Duration, bool, error) {
	var perm permanentError
	switch {
	case err != nil && ctx.Err() != nil:
		return 0, false, ctx.Err()
	case errors.As(err, &perm):
		return 0, false, perm.err
	case err != nil:
		s.failures++
		if s.failures >= s.policy.MaxAttempts {
			return 0, false, fmt.Errorf("giving up after %d attempts: %w", attempt, err)
		}
		return s.policy.backoff(s.failures), true, nil
	case resp.StatusCode == http.StatusTooManyRequests:
		ra := retryAfter(resp.Header, defaultRetryAfter)
		wait := ra + throttleJitter(ra)
		if s.throttled+wait > s.policy.MaxThrottle {
			return 0, false, nil
		}
		s.throttled += wait
		return wait, true, nil
	case retryableStatus(resp.StatusCode):
		s.failures++
		if s.failures >= s.policy.MaxAttempts {
			return 0, false, nil
		}
		d := s.policy.backoff(s.failures)
		if ra := retryAfter(resp.Header, 0); ra > d {
			d = min(ra, s.policy.MaxDelay)
		}
		return d, true, nil
	}
	return 0, false, nil
}

// drain reads a little of a body that will not be used, so that its
// connection can be reused, and closes it.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}

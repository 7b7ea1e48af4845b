package acr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
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

// NewHTTPClient returns the default HTTP client: keep-alives, HTTP/2, and
// dial/TLS/response-header timeouts. Redirects are not followed (the
// registry API answers directly; a redirect is reported as an error), so
// credentials are never sent anywhere else. Share one between Broker and
// Client to share connections.
func NewHTTPClient() *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// request is one logical registry request.
type request struct {
	op        string // for logs and errors, e.g. "delete tag"
	repo, ref string
	method    string
	url       *url.URL
	class     Class
	accept    string
	body      []byte
	bodyType  string
	bearer    Secret // "" for none
	maxBody   int64
}

// response is a fully read answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// sender sends requests with the retry policy: 429 waits for Retry-After
// (plus jitter) and tells the limiter, until MaxThrottle is spent; 5xx and
// network errors back off exponentially with full jitter, up to
// MaxAttempts. It returns the last response when retries are exhausted or
// the status is not retryable; the caller turns it into an *Error.
type sender struct {
	hc    *http.Client
	retry RetryPolicy
	lim   *Limiter
	log   *slog.Logger
}

var errTooLarge = errors.New("response body too large")

// permanentError marks a failure that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func (s *sender) do(ctx context.Context, rq *request) (*response, error) {
	var failures int
	var throttled time.Duration
	for attempt := 1; ; attempt++ {
		if err := s.lim.Wait(ctx, rq.class); err != nil {
			return nil, s.fail(rq, err)
		}
		start := time.Now()
		resp, err := s.once(ctx, rq)
		dur := time.Since(start)
		if err != nil {
			if ctx.Err() != nil {
				return nil, s.fail(rq, ctx.Err())
			}
			s.log.LogAttrs(ctx, slog.LevelDebug, "acr request failed",
				slog.String("op", rq.op), slog.String("method", rq.method),
				slog.String("path", rq.url.EscapedPath()), slog.Int("attempt", attempt),
				slog.Duration("duration", dur), slog.String("error", transportErrorText(err)))
			var perm permanentError
			if errors.As(err, &perm) {
				return nil, s.fail(rq, perm.err)
			}
			failures++
			if failures >= s.retry.MaxAttempts {
				return nil, s.fail(rq, fmt.Errorf("giving up after %d attempts: %w", attempt, err))
			}
			if err := sleep(ctx, s.retry.backoff(failures)); err != nil {
				return nil, s.fail(rq, err)
			}
			continue
		}
		s.log.LogAttrs(ctx, slog.LevelDebug, "acr request",
			slog.String("op", rq.op), slog.String("method", rq.method),
			slog.String("path", rq.url.EscapedPath()), slog.Int("status", resp.status),
			slog.Int("attempt", attempt), slog.Duration("duration", dur))
		if resp.status != http.StatusTooManyRequests {
			s.lim.Admitted(rq.class)
		}
		switch {
		case resp.status == http.StatusTooManyRequests:
			ra, ok := parseRetryAfter(resp.header.Get("Retry-After"), time.Now())
			if !ok || ra <= 0 {
				ra = defaultRetryAfter
			}
			// The shared limiter pauses every call of this class: never for
			// longer than one call may wait, so one absurd Retry-After cannot
			// stall the whole instance.
			s.lim.Throttled(rq.class, min(ra, s.retry.MaxThrottle))
			wait := ra + throttleJitter(ra)
			if throttled+wait > s.retry.MaxThrottle {
				return resp, nil
			}
			throttled += wait
			if err := sleep(ctx, wait); err != nil {
				return nil, s.fail(rq, err)
			}
		case retryableStatus(resp.status):
			failures++
			if failures >= s.retry.MaxAttempts {
				return resp, nil
			}
			d := s.retry.backoff(failures)
			if ra, ok := parseRetryAfter(resp.header.Get("Retry-After"), time.Now()); ok && ra > d {
				d = min(ra, s.retry.MaxDelay)
			}
			if err := sleep(ctx, d); err != nil {
				return nil, s.fail(rq, err)
			}
		default:
			return resp, nil
		}
	}
}

// transportErrorText is err without the request URL (and so without its
// query), for logs.
func transportErrorText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err.Error()
	}
	return err.Error()
}

// retryableStatus: every 5xx except 501 Not Implemented and 505.
func retryableStatus(code int) bool {
	return code >= 500 && code <= 599 && code != http.StatusNotImplemented &&
		code != http.StatusHTTPVersionNotSupported
}

func (s *sender) fail(rq *request, err error) error {
	return opError(rq.op, rq.repo, rq.ref, err)
}

// opError wraps err with the operation and its target.
func opError(op, repo, ref string, err error) error {
	if t := target(repo, ref); t != "" {
		return fmt.Errorf("acr: %s %s: %w", op, strconv.Quote(t), err)
	}
	return fmt.Errorf("acr: %s: %w", op, err)
}

// once sends one attempt and reads the whole body. Errors are transport
// errors (retryable) or errTooLarge.
func (s *sender) once(ctx context.Context, rq *request) (*response, error) {
	var body io.Reader
	if rq.body != nil {
		body = bytes.NewReader(rq.body)
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, rq.url.String(), body)
	if err != nil {
		return nil, permanentError{fmt.Errorf("build request: %w", err)}
	}
	if rq.accept != "" {
		req.Header.Set("Accept", rq.accept)
	}
	if rq.bodyType != "" {
		req.Header.Set("Content-Type", rq.bodyType)
	}
	if rq.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+rq.bearer.Reveal())
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	limit := rq.maxBody
	if limit <= 0 {
		limit = defaultMaxBody
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, permanentError{fmt.Errorf("%w (over %d bytes)", errTooLarge, limit)}
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// Response size bounds.
const (
	defaultMaxBody  = 32 << 20 // listings
	manifestMaxBody = 4 << 20  // registries cap manifests at 4 MiB
	tokenMaxBody    = 1 << 20
)

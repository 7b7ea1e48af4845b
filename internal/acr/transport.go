package acr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// NewHTTPClient returns the default HTTP client: keep-alives, HTTP/2, and
// dial/TLS/response-header timeouts. Its Transport becomes the base of the
// stack that Broker and Client build (see the package doc); share one
// between them to share connections. Redirects are never followed: the
// registry API answers directly, and a redirect is reported as an error, so
// credentials are never sent anywhere else.
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
	return &http.Client{Transport: tr, CheckRedirect: noRedirect}
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// stackOptions configures the layers below auth.
type stackOptions struct {
	base    *http.Client // its Transport (nil: http.DefaultTransport) and Timeout
	retry   RetryPolicy  // already validated
	limiter *Limiter     // nil: unlimited
	log     *slog.Logger // nil: discard
	// guarded: attempts check the call's send guard (WithSendGuard) once
	// the limiter has admitted them; the data plane's stack, not the
	// broker's (token requests are never guarded).
	guarded bool
}

// newStack composes retry → limiter → logging → body → base. The Client
// puts its auth layer on top; the Broker uses the stack as it is.
func newStack(o stackOptions) http.RoundTripper {
	var base http.RoundTripper
	var timeout time.Duration
	if o.base != nil {
		base, timeout = o.base.Transport, o.base.Timeout
	}
	policy := o.retry
	return &retryTransport{
		policy: &policy,
		next: &limitTransport{
			limiter:  o.limiter,
			guarded:  o.guarded,
			maxPause: policy.withDefaults().MaxThrottle,
			next: &logTransport{
				log:  o.log,
				next: &bodyTransport{next: base, timeout: timeout},
			},
		},
	}
}

// httpClient wraps a composed transport in an *http.Client that never
// follows redirects.
func httpClient(rt http.RoundTripper) *http.Client {
	return &http.Client{Transport: rt, CheckRedirect: noRedirect}
}

// callInfo describes one logical call to the layers, through the request's
// context: what to log, which scope the token must grant, how large the
// answer may be. The auth layer records the tokens it sent, so that the
// caller can scrub them from error messages; a callInfo belongs to one call
// and its layers run one after another, never at once.
type callInfo struct {
	op        string // for logs and errors, e.g. "delete tag"
	repo, ref string
	need      Scope // what the token must grant; no actions: not checked
	maxBody   int64 // 0: defaultMaxBody
	sent      []Secret
}

type callInfoKey struct{}

func withCall(ctx context.Context, ci *callInfo) context.Context {
	return context.WithValue(ctx, callInfoKey{}, ci)
}

// callOf returns the request's callInfo, or an empty one.
func callOf(ctx context.Context) *callInfo {
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok && ci != nil {
		return ci
	}
	return &callInfo{}
}

// bodyTransport reads every response body whole (bounded by the call's
// maxBody) before handing the response up, so that a body cut off by the
// network is a failed attempt the retry layer can repeat, not a decode
// error later. timeout, when set, bounds each attempt.
type bodyTransport struct {
	next    http.RoundTripper // nil: http.DefaultTransport
	timeout time.Duration
}

// bufferedBody is a response body already in memory.
type bufferedBody struct {
	*bytes.Reader
	data []byte
}

func (bufferedBody) Close() error { return nil }

var errTooLarge = errors.New("response body too large")

func (t *bodyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.timeout > 0 {
		ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
		defer cancel()
		req = req.WithContext(ctx)
	}
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	limit := callOf(req.Context()).maxBody
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
	resp.Body = bufferedBody{Reader: bytes.NewReader(data), data: data}
	resp.ContentLength = int64(len(data))
	return resp, nil
}

// request is one logical registry request, as the Client and the Broker
// build it.
type request struct {
	op        string // for logs and errors, e.g. "delete tag"
	repo, ref string
	method    string
	url       *url.URL
	accept    string
	body      []byte
	bodyType  string
	maxBody   int64
	sent      []Secret // tokens the auth layer sent, to scrub from errors
}

// response is a fully read answer.
type response struct {
	status int
	header http.Header
	body   []byte
	// attempts is the number of the attempt that got this answer (1: the
	// first; more: earlier attempts failed, possibly after the registry
	// acted on them).
	attempts int
}

// send builds rq, sends it through hc and reads the answer. Transport
// failures come back wrapped with the operation and its target, without
// the request URL. ci may carry more for the layers (the scope to check);
// its op and target are filled from rq.
func send(ctx context.Context, hc *http.Client, rq *request, ci *callInfo) (*response, error) {
	ci.op, ci.repo, ci.ref, ci.maxBody = rq.op, rq.repo, rq.ref, rq.maxBody
	var body io.Reader
	if rq.body != nil {
		body = bytes.NewReader(rq.body) // sets GetBody: the layers can resend it
	}
	req, err := http.NewRequestWithContext(withCall(ctx, ci), rq.method, rq.url.String(), body)
	if err != nil {
		return nil, opError(rq.op, rq.repo, rq.ref, fmt.Errorf("build request: %w", err))
	}
	if rq.accept != "" {
		req.Header.Set("Accept", rq.accept)
	}
	if rq.bodyType != "" {
		req.Header.Set("Content-Type", rq.bodyType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, opError(rq.op, rq.repo, rq.ref, withoutURL(err))
	}
	defer resp.Body.Close()
	data, err := bodyBytes(resp.Body, rq.maxBody)
	if err != nil {
		return nil, opError(rq.op, rq.repo, rq.ref, err)
	}
	attempts := 1
	if resp.Request != nil {
		attempts = attemptOf(resp.Request.Context())
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data, attempts: attempts}, nil
}

// bodyBytes returns what the body layer read, or reads a body that some
// other transport handed up, with the same bound.
func bodyBytes(body io.Reader, limit int64) ([]byte, error) {
	if b, ok := body.(bufferedBody); ok {
		return b.data, nil
	}
	if limit <= 0 {
		limit = defaultMaxBody
	}
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w (over %d bytes)", errTooLarge, limit)
	}
	return data, nil
}

// withoutURL strips the *url.Error that http.Client adds, so that messages
// name the operation rather than the URL and its query.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

// opError wraps err with the operation and its target.
func opError(op, repo, ref string, err error) error {
	if t := target(repo, ref); t != "" {
		return fmt.Errorf("acr: %s %s: %w", op, strconv.Quote(t), err)
	}
	return fmt.Errorf("acr: %s: %w", op, err)
}

// Response size bounds.
const (
	defaultMaxBody  = 32 << 20 // listings
	manifestMaxBody = 4 << 20  // registries cap manifests at 4 MiB
	tokenMaxBody    = 1 << 20
)

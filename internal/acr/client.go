package acr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// DefaultPageSize is the n asked for per listing page.
const DefaultPageSize = 100

// manifestAccept lists the manifest media types ManifestBody accepts.
var manifestAccept = strings.Join([]string{
	MediaTypeOCIManifest, MediaTypeOCIIndex, MediaTypeDockerManifest,
	MediaTypeDockerManifestList, MediaTypeOCIArtifact,
}, ", ")

// ClientOptions configures a Client.
type ClientOptions struct {
	Endpoint   Endpoint
	Tokens     TokenSource  // may be nil and set later via WithTokens
	HTTPClient *http.Client // its Transport is the stack's base; default NewHTTPClient()
	Retry      RetryPolicy  // zero fields take defaults
	Limiter    *Limiter     // nil: unlimited
	PageSize   int          // n per page; default 100
	Logger     *slog.Logger // nil: discard
}

// Client calls the ACR data plane. It only builds requests and decodes
// answers: retries (429, 5xx, network errors), the limiter and the one
// re-mint after a 401 are layers of its HTTP transport (see the package
// doc). Non-success answers come back as *Error. It is safe for concurrent
// use.
type Client struct {
	ep       Endpoint
	tokens   TokenSource
	stack    http.RoundTripper // retry → limiter → log → body → base; shared by WithTokens copies
	hc       *http.Client      // auth(tokens) → stack
	pageSize int
	log      *slog.Logger
}

// NewClient validates o and returns a Client.
func NewClient(o ClientOptions) (*Client, error) {
	if err := o.Endpoint.valid(); err != nil {
		return nil, err
	}
	if err := o.Retry.validate(); err != nil {
		return nil, err
	}
	if o.PageSize < 0 {
		return nil, errors.New("acr: negative page size")
	}
	c := &Client{ep: o.Endpoint, tokens: o.Tokens, pageSize: o.PageSize, log: loggerOrDiscard(o.Logger)}
	if c.pageSize == 0 {
		c.pageSize = DefaultPageSize
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = NewHTTPClient()
	}
	c.stack = newStack(stackOptions{base: hc, retry: o.Retry, limiter: o.Limiter, log: c.log, guarded: true})
	c.hc = c.authClient(o.Tokens)
	return c, nil
}

// authClient puts an auth layer for ts on top of the shared stack.
func (c *Client) authClient(ts TokenSource) *http.Client {
	return httpClient(&authTransport{next: c.stack, tokens: ts, origin: c.ep.Base, log: c.log})
}

// WithTokens returns a copy of c that uses ts; the copy shares the HTTP
// transport and the limiter. It is cheap: one per message is fine.
func (c *Client) WithTokens(ts TokenSource) *Client {
	cp := *c
	cp.tokens = ts
	cp.hc = c.authClient(ts)
	return &cp
}

// Endpoint returns the registry endpoint of c.
func (c *Client) Endpoint() Endpoint { return c.ep }

// Catalog lists repository names, one page per fn call (needs
// registry:catalog:*).
func (c *Client) Catalog(ctx context.Context, fn func(repos []string) error) error {
	const op = "list repositories"
	u := c.url("/acr/v1/_catalog", url.Values{"n": {strconv.Itoa(c.pageSize)}})
	return c.pages(ctx, op, "", u, CatalogScope(), "", func(body []byte) error {
		var page Catalog
		if err := decodePage(body, &page); err != nil {
			return opError(op, "", "", err)
		}
		if len(page.Repositories) == 0 {
			return nil
		}
		return fn(page.Repositories)
	})
}

// Tags lists a repository's tags, most recently updated first
// (orderby=timedesc), one page per fn call. The next page is fetched only
// after fn returns, with the page's last tag as cursor: ACR answers an
// empty page when the cursor tag no longer exists, so callers must not
// delete the tags of a page before paging is done.
func (c *Client) Tags(ctx context.Context, repo string, fn func(page []Tag) error) error {
	const op = "list tags"
	p, err := escapeRepository(repo)
	if err != nil {
		return opError(op, repo, "", err)
	}
	u := c.url("/acr/v1/"+p+"/_tags", url.Values{"n": {strconv.Itoa(c.pageSize)}, "orderby": {"timedesc"}})
	return c.pages(ctx, op, repo, u, RepositoryScope(repo, ActionMetadataRead), "", func(body []byte) error {
		var page TagList
		if err := decodePage(body, &page); err != nil {
			return opError(op, repo, "", err)
		}
		if len(page.Tags) == 0 {
			return nil
		}
		return fn(page.Tags)
	})
}

// Manifests lists a repository's manifests in the registry's default
// (digest) order, one page per fn call. It deliberately does not ask for
// time order: a time-ordered listing ends silently when its cursor item is
// deleted meanwhile (by anyone), while a digest-ordered one continues after
// it. Callers that need time order sort for themselves.
func (c *Client) Manifests(ctx context.Context, repo string, fn func(page []Manifest) error) error {
	const op = "list manifests"
	p, err := escapeRepository(repo)
	if err != nil {
		return opError(op, repo, "", err)
	}
	u := c.url("/acr/v1/"+p+"/_manifests", url.Values{"n": {strconv.Itoa(c.pageSize)}})
	return c.pages(ctx, op, repo, u, RepositoryScope(repo, ActionMetadataRead), "", func(body []byte) error {
		var page ManifestList
		if err := decodePage(body, &page); err != nil {
			return opError(op, repo, "", err)
		}
		if len(page.Manifests) == 0 {
			return nil
		}
		return fn(page.Manifests)
	})
}

// GetTag reads one tag's current attributes
// (GET /acr/v1/{repo}/_tags/{tag}): what it points at now, when it last
// changed, and its locks.
func (c *Client) GetTag(ctx context.Context, repo, tag string) (*Tag, error) {
	const op = "get tag"
	u, err := c.refURL(op, "/acr/v1/", repo, "/_tags/", tag, false)
	if err != nil {
		return nil, err
	}
	var out struct {
		Tag *Tag `json:"tag"`
	}
	if err := c.getJSON(ctx, &request{op: op, repo: repo, ref: tag, method: http.MethodGet, url: u},
		RepositoryScope(repo, ActionMetadataRead), &out); err != nil {
		return nil, err
	}
	if out.Tag == nil {
		return nil, opError(op, repo, tag, errors.New("response has no tag"))
	}
	return out.Tag, nil
}

// GetManifest reads one manifest's current attributes
// (GET /acr/v1/{repo}/_manifests/{digest}): its tags now, when it last
// changed, and its locks.
func (c *Client) GetManifest(ctx context.Context, repo, digest string) (*Manifest, error) {
	const op = "get manifest attributes"
	u, err := c.refURL(op, "/acr/v1/", repo, "/_manifests/", digest, true)
	if err != nil {
		return nil, err
	}
	var out struct {
		Manifest *Manifest `json:"manifest"`
	}
	if err := c.getJSON(ctx, &request{op: op, repo: repo, ref: digest, method: http.MethodGet, url: u},
		RepositoryScope(repo, ActionMetadataRead), &out); err != nil {
		return nil, err
	}
	if out.Manifest == nil {
		return nil, opError(op, repo, digest, errors.New("response has no manifest"))
	}
	return out.Manifest, nil
}

func (c *Client) getJSON(ctx context.Context, rq *request, need Scope, v any) error {
	resp, err := c.call(ctx, rq, need)
	if err != nil {
		return err
	}
	if !success(resp.status) {
		return c.fail(rq, resp)
	}
	if err := json.Unmarshal(resp.body, v); err != nil {
		return opError(rq.op, rq.repo, rq.ref, fmt.Errorf("decode: %w", err))
	}
	return nil
}

// ManifestBody fetches a manifest's body (index children, subject).
func (c *Client) ManifestBody(ctx context.Context, repo, digest string) (*ManifestBody, error) {
	const op = "get manifest"
	u, err := c.refURL(op, "/v2/", repo, "/manifests/", digest, true)
	if err != nil {
		return nil, err
	}
	rq := &request{op: op, repo: repo, ref: digest, method: http.MethodGet, url: u,
		accept: manifestAccept, maxBody: manifestMaxBody}
	resp, err := c.call(ctx, rq, RepositoryScope(repo, ActionPull))
	if err != nil {
		return nil, err
	}
	if !success(resp.status) {
		return nil, c.fail(rq, resp)
	}
	var m ManifestBody
	if err := json.Unmarshal(resp.body, &m); err != nil {
		return nil, opError(op, repo, digest, fmt.Errorf("decode manifest: %w", err))
	}
	if m.MediaType == "" {
		if mt, _, err := mime.ParseMediaType(resp.header.Get("Content-Type")); err == nil {
			m.MediaType = mt
		}
	}
	return &m, nil
}

// Referrers lists the manifests whose subject is digest
// (GET /v2/{repo}/referrers/{digest}, following Link paging).
func (c *Client) Referrers(ctx context.Context, repo, digest string) ([]Descriptor, error) {
	const op = "list referrers"
	u, err := c.refURL(op, "/v2/", repo, "/referrers/", digest, true)
	if err != nil {
		return nil, err
	}
	var out []Descriptor
	err = c.pages(ctx, op, repo, u, RepositoryScope(repo, ActionPull), MediaTypeOCIIndex, func(body []byte) error {
		var idx ManifestBody
		if err := decodePage(body, &idx); err != nil {
			return opError(op, repo, digest, err)
		}
		out = append(out, idx.Manifests...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteTag deletes one tag (202). A 404 means already gone and is success;
// a locked tag fails with IsLocked.
func (c *Client) DeleteTag(ctx context.Context, repo, tag string) error {
	u, err := c.refURL("delete tag", "/acr/v1/", repo, "/_tags/", tag, false)
	if err != nil {
		return err
	}
	return c.delete(ctx, &request{op: "delete tag", repo: repo, ref: tag, method: http.MethodDelete, url: u})
}

// DeleteManifest deletes a manifest by digest (202), which also deletes its
// tags and referrers. A 404 means already gone and is success. digest must
// be a digest, never a tag.
func (c *Client) DeleteManifest(ctx context.Context, repo, digest string) error {
	u, err := c.refURL("delete manifest", "/v2/", repo, "/manifests/", digest, true)
	if err != nil {
		return err
	}
	return c.delete(ctx, &request{op: "delete manifest", repo: repo, ref: digest, method: http.MethodDelete, url: u})
}

func (c *Client) delete(ctx context.Context, rq *request) error {
	resp, err := c.call(ctx, rq, RepositoryScope(rq.repo, ActionDelete))
	switch {
	case err != nil:
		return err
	case success(resp.status):
		return nil
	case resp.status == http.StatusNotFound:
		c.log.LogAttrs(ctx, slog.LevelDebug, "acr delete: already gone",
			slog.String("op", rq.op), slog.String("repository", rq.repo), slog.String("ref", rq.ref))
		if notice, ok := ctx.Value(goneKey{}).(func(bool)); ok && notice != nil {
			notice(resp.attempts > 1)
		}
		return nil
	}
	return c.fail(rq, resp)
}

// UpdateTagAttributes sets a tag's changeable attributes (e.g. to unlock).
func (c *Client) UpdateTagAttributes(ctx context.Context, repo, tag string, a Attributes) error {
	const op = "update tag attributes"
	u, err := c.refURL(op, "/acr/v1/", repo, "/_tags/", tag, false)
	if err != nil {
		return err
	}
	return c.patch(ctx, &request{op: op, repo: repo, ref: tag, url: u}, a)
}

// UpdateManifestAttributes sets a manifest's changeable attributes.
func (c *Client) UpdateManifestAttributes(ctx context.Context, repo, digest string, a Attributes) error {
	const op = "update manifest attributes"
	u, err := c.refURL(op, "/acr/v1/", repo, "/_manifests/", digest, true)
	if err != nil {
		return err
	}
	return c.patch(ctx, &request{op: op, repo: repo, ref: digest, url: u}, a)
}

func (c *Client) patch(ctx context.Context, rq *request, a Attributes) error {
	body, err := json.Marshal(a)
	if err != nil {
		return opError(rq.op, rq.repo, rq.ref, err)
	}
	rq.method, rq.body, rq.bodyType = http.MethodPatch, body, "application/json"
	resp, err := c.call(ctx, rq, RepositoryScope(rq.repo, ActionMetadataWrite))
	if err != nil {
		return err
	}
	if !success(resp.status) {
		return c.fail(rq, resp)
	}
	return nil
}

// call sends rq through the transport stack, whose auth layer adds a
// token that must grant need (see authTransport). A 401 that comes back
// up has survived the one re-mint, and a 403 is a refusal for this
// identity (an ABAC condition, a network rule) that a fresh token would
// not change: both are ErrNotPermitted, wrapped in the *Error.
func (c *Client) call(ctx context.Context, rq *request, need Scope) (*response, error) {
	if c.tokens == nil {
		return nil, opError(rq.op, rq.repo, rq.ref, errors.New("client has no token source"))
	}
	ci := &callInfo{need: need}
	resp, err := send(ctx, c.hc, rq, ci)
	if err != nil {
		return nil, err
	}
	if resp.status == http.StatusUnauthorized || resp.status == http.StatusForbidden {
		e := newError(rq.op, rq.repo, rq.ref, resp, ci.sent...)
		e.Err = ErrNotPermitted
		return nil, e
	}
	rq.sent = ci.sent
	return resp, nil
}

// pages fetches first and follows rel="next" links, calling handle once
// per page, in order, before fetching the next one. A repeated link is an
// error, not an endless loop.
func (c *Client) pages(ctx context.Context, op, repo string, first *url.URL, need Scope, accept string, handle func([]byte) error) error {
	seen := map[string]bool{first.String(): true}
	u := first
	for {
		rq := &request{op: op, repo: repo, method: http.MethodGet, url: u, accept: accept}
		resp, err := c.call(ctx, rq, need)
		if err != nil {
			return err
		}
		if !success(resp.status) {
			return c.fail(rq, resp)
		}
		if err := handle(resp.body); err != nil {
			return err
		}
		target, ok := nextLink(resp.header)
		if !ok {
			return nil
		}
		next, err := resolveNext(c.ep, u, target)
		if err != nil {
			return opError(op, repo, "", err)
		}
		k := next.String()
		if seen[k] {
			return opError(op, repo, "", fmt.Errorf("paging loop: next link %s was already fetched", strconv.Quote(next.RequestURI())))
		}
		seen[k] = true
		u = next
	}
}

// TagsPage reads one page of a repository's tags in the order Tags lists
// them (most recently updated first): at most n tags (n <= 0: the client's
// page size) listed after the tag named last, from the start when last is
// empty. more reports whether the registry has a next page. As with Tags,
// ACR answers an empty page when last no longer exists (or was re-pushed
// and moved). It is one request, for re-reading a few tags at once.
func (c *Client) TagsPage(ctx context.Context, repo, last string, n int) (tags []Tag, more bool, err error) {
	const op = "list tags"
	p, err := escapeRepository(repo)
	if err != nil {
		return nil, false, opError(op, repo, "", err)
	}
	q := url.Values{"n": {strconv.Itoa(c.n(n))}, "orderby": {"timedesc"}}
	if last != "" {
		q.Set("last", last)
	}
	var page TagList
	more, err = c.onePage(ctx, op, repo, c.url("/acr/v1/"+p+"/_tags", q), RepositoryScope(repo, ActionMetadataRead), &page)
	return page.Tags, more, err
}

// ManifestsPage reads one page of a repository's manifests in the order
// Manifests lists them (by digest): at most n manifests (n <= 0: the
// client's page size) whose digests sort after last, from the start when
// last is empty. last need not exist. more reports whether the registry
// has a next page. It is one request, for re-reading a few manifests at
// once.
func (c *Client) ManifestsPage(ctx context.Context, repo, last string, n int) (manifests []Manifest, more bool, err error) {
	const op = "list manifests"
	p, err := escapeRepository(repo)
	if err != nil {
		return nil, false, opError(op, repo, "", err)
	}
	q := url.Values{"n": {strconv.Itoa(c.n(n))}}
	if last != "" {
		q.Set("last", last)
	}
	var page ManifestList
	more, err = c.onePage(ctx, op, repo, c.url("/acr/v1/"+p+"/_manifests", q), RepositoryScope(repo, ActionMetadataRead), &page)
	return page.Manifests, more, err
}

// n is the page size to ask for: n, or the client's when n <= 0.
func (c *Client) n(n int) int {
	if n <= 0 {
		return c.pageSize
	}
	return n
}

// onePage fetches one listing page into v and reports whether the answer
// links a next page.
func (c *Client) onePage(ctx context.Context, op, repo string, u *url.URL, need Scope, v any) (bool, error) {
	rq := &request{op: op, repo: repo, method: http.MethodGet, url: u}
	resp, err := c.call(ctx, rq, need)
	if err != nil {
		return false, err
	}
	if !success(resp.status) {
		return false, c.fail(rq, resp)
	}
	if err := decodePage(resp.body, v); err != nil {
		return false, opError(op, repo, "", err)
	}
	_, more := nextLink(resp.header)
	return more, nil
}

// fail turns a non-success response into an *Error, scrubbing the tokens
// that were sent from any text taken from it.
func (c *Client) fail(rq *request, resp *response) *Error {
	return newError(rq.op, rq.repo, rq.ref, resp, rq.sent...)
}

// url builds an endpoint URL from an already escaped path.
func (c *Client) url(escapedPath string, q url.Values) *url.URL {
	u := *c.ep.Base
	u.RawPath = escapedPath
	if p, err := url.PathUnescape(escapedPath); err == nil {
		u.Path = p
	} else {
		u.Path, u.RawPath = escapedPath, ""
	}
	if q != nil {
		u.RawQuery = q.Encode()
	}
	return &u
}

// refURL builds prefix + repo + middle + ref with every part escaped.
func (c *Client) refURL(op, prefix, repo, middle, ref string, isDigest bool) (*url.URL, error) {
	p, err := escapeRepository(repo)
	if err != nil {
		return nil, opError(op, repo, ref, err)
	}
	kind := "tag"
	if isDigest {
		kind = "digest"
		if err := ValidateDigest(ref); err != nil {
			return nil, opError(op, repo, ref, fmt.Errorf("digest %s: %v: %w", strconv.Quote(ref), err, ErrInvalidReference))
		}
	}
	r, err := escapeRef(kind, ref)
	if err != nil {
		return nil, opError(op, repo, ref, err)
	}
	return c.url(prefix+p+middle+r, nil), nil
}

func success(code int) bool { return code >= 200 && code <= 299 }

// decodePage decodes a listing page; an empty body is an empty page.
func decodePage(body []byte, v any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode page: %w", err)
	}
	return nil
}

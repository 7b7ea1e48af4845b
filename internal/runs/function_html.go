package runs

import (
	"bytes"
	"context"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/acrpurge/acrpurge/internal/funchost"
)

// Response formats of the Runs function.
const (
	formatJSON = "json"
	formatText = "text"
	formatHTML = "html"
)

// negotiate picks the response format: ?format= when given, else HTML when
// the Accept header prefers text/html over JSON (as browsers send it),
// else JSON.
func negotiate(h funchost.HTTPRequest) (string, error) {
	switch f := strings.ToLower(strings.TrimSpace(h.Query["format"])); f {
	case formatJSON, formatText, formatHTML:
		return f, nil
	case "":
	default:
		return "", fmt.Errorf("format %q is not one of json, text, html", shorten(f, 40))
	}
	if acceptsHTML(h.Header("Accept")) {
		return formatHTML, nil
	}
	return formatJSON, nil
}

// acceptsHTML reports whether an Accept header names text/html (or
// XHTML) with a quality above 0 and at least that of application/json.
// Wildcards do not count: curl's */* keeps JSON.
func acceptsHTML(accept string) bool {
	var html, json float64
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(s, 64); err == nil && v >= 0 && v <= 1 {
				q = v
			}
		}
		switch mt {
		case "text/html", "application/xhtml+xml":
			html = max(html, q)
		case "application/json":
			json = max(json, q)
		}
	}
	return html > 0 && html >= json
}

// defaultRunsPath is where the Runs function is served (host.json's
// routePrefix "api", the function's route "runs/{runId?}"), for links when
// the request's URL does not say.
const defaultRunsPath = "/api/runs"

// runsPath derives the path of the list of runs from the request's URL:
// the path itself without a run id, its parent with one. It falls back to
// defaultRunsPath when the URL is not of that form.
func runsPath(rawURL, runID string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return defaultRunsPath
	}
	p := strings.TrimRight(u.Path, "/")
	if runID != "" {
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return defaultRunsPath
		}
		p = p[:i]
	}
	if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/runs") {
		return defaultRunsPath
	}
	return p
}

// page answers the HTML page: the list of recent runs without a run id,
// else the run's report ("latest": the latest run's).
func (f *Function) page(ctx context.Context, h funchost.HTTPRequest, runID string) *funchost.Response {
	base := runsPath(h.URL, runID)
	o := PageOptions{
		ListHref:    base + "?format=html",
		RunHref:     func(id string) string { return base + "/" + url.PathEscape(id) + "?format=html" },
		FormatLinks: true,
	}
	var buf bytes.Buffer
	if runID == "" {
		l, err := BuildList(ctx, f.Store, 0)
		if status, msg := f.failure(err, ""); status != 0 {
			return htmlError(status, msg, o)
		}
		o.FormatLinks = false
		if err := l.WriteHTML(&buf, o); err != nil {
			return htmlError(http.StatusInternalServerError, "the page could not be written", o)
		}
		return htmlResponse(http.StatusOK, buf.String())
	}
	id := runID
	if id == "latest" {
		id = ""
	}
	rep, err := BuildWith(ctx, f.Store, id, f.Report)
	if status, msg := f.failure(err, id); status != 0 {
		return htmlError(status, msg, o)
	}
	if err := rep.WriteHTML(&buf, o); err != nil {
		return htmlError(http.StatusInternalServerError, "the page could not be written", o)
	}
	return htmlResponse(http.StatusOK, buf.String())
}

// htmlError answers a short HTML page saying what went wrong.
func htmlError(status int, msg string, o PageOptions) *funchost.Response {
	o.FormatLinks = false
	v := struct {
		pageBase
		Message string
	}{newBase(http.StatusText(status), o), msg}
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, "error", v); err != nil {
		return httpResponse(status, "text/plain; charset=utf-8", msg)
	}
	return htmlResponse(status, buf.String())
}

// htmlResponse answers an HTML page with headers that keep it
// self-contained: the Content-Security-Policy forbids every load, and the
// page is neither sniffed, nor cached, nor sent as a referrer (its URL may
// hold a function key).
func htmlResponse(status int, body string) *funchost.Response {
	r := httpResponse(status, "text/html; charset=utf-8", body)
	res := r.Outputs[BindingResponse].(funchost.HTTPResponse)
	res.Headers["Content-Security-Policy"] = ContentSecurityPolicy()
	res.Headers["X-Content-Type-Options"] = "nosniff"
	res.Headers["Referrer-Policy"] = "no-referrer"
	res.Headers["Cache-Control"] = "no-store"
	res.Headers["Vary"] = "Accept"
	return r
}

package runs_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/runs"
)

// invoke calls the Runs function with a request as the host sends it
// (through its JSON form) and returns its HTTP output.
func invoke(t *testing.T, f *runs.Function, hr funchost.HTTPRequest) funchost.HTTPResponse {
	t.Helper()
	b, err := json.Marshal(funchost.NewHTTPTriggerRequest(runs.BindingRequest, hr))
	require.NoError(t, err)
	var req funchost.Request
	require.NoError(t, json.Unmarshal(b, &req))
	resp, err := f.Invoke(t.Context(), &req)
	require.NoError(t, err)
	raw, err := json.Marshal(resp.Outputs[runs.BindingResponse])
	require.NoError(t, err)
	var out funchost.HTTPResponse
	require.NoError(t, json.Unmarshal(raw, &out))
	return out
}

func get(url, runID, format, accept string) funchost.HTTPRequest {
	hr := funchost.HTTPRequest{Method: "GET", URL: url, Query: map[string]string{}, Params: map[string]string{}}
	if runID != "" {
		hr.Params["runId"] = runID
	}
	if format != "" {
		hr.Query["format"] = format
	}
	if accept != "" {
		hr.Headers = map[string][]string{"accept": {accept}}
	}
	return hr
}

const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"

func TestFunctionNegotiatesTheFormat(t *testing.T) {
	store := checkpoint.NewMemory()
	seed(t, store)
	f := &runs.Function{Store: store}
	const u = "https://func.example/api/runs/s-1"
	for _, c := range []struct {
		format, accept, want string
	}{
		{"", "", "application/json"},
		{"", "*/*", "application/json"},
		{"", "application/json", "application/json"},
		{"", "application/json, text/html;q=0.5", "application/json"},
		{"", browserAccept, "text/html"},
		{"", "TEXT/HTML", "text/html"},
		{"", "text/html;q=0", "application/json"},
		{"json", browserAccept, "application/json"},
		{"text", browserAccept, "text/plain"},
		{"HTML", "application/json", "text/html"},
	} {
		res := invoke(t, f, get(u, "s-1", c.format, c.accept))
		require.Equal(t, http.StatusOK, res.StatusCode, "%+v", c)
		assert.Contains(t, res.Headers["Content-Type"], c.want, "format %q, Accept %q", c.format, c.accept)
	}
	res := invoke(t, f, get(u, "s-1", "xml", ""))
	assert.Equal(t, http.StatusBadRequest, res.StatusCode)
	assert.JSONEq(t, `{"error":"format \"xml\" is not one of json, text, html"}`, res.Body)
}

func TestFunctionServesPages(t *testing.T) {
	store := checkpoint.NewMemory()
	seed(t, store)
	f := &runs.Function{Store: store}

	res := invoke(t, f, get("https://func.example/api/runs/s-1?format=html&code=k", "s-1", "html", ""))
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "text/html; charset=utf-8", res.Headers["Content-Type"])
	assert.Equal(t, runs.ContentSecurityPolicy(), res.Headers["Content-Security-Policy"])
	assert.Equal(t, "nosniff", res.Headers["X-Content-Type-Options"])
	assert.Equal(t, "no-referrer", res.Headers["Referrer-Policy"])
	doc := assertNoInjection(t, res.Body)
	assert.NotContains(t, res.Body, "code=k", "the function key is not written into the page")
	assert.Len(t, findAll(byID(doc, "repos"), elem("tr")), 10)
	nav := findAll(doc, elem("nav"))[0]
	assert.Equal(t, "/api/runs?format=html", attr(findAll(nav, elem("a"))[0], "href"), "the list is the run's parent path")

	// The list, under another route prefix: links follow the request's path.
	res = invoke(t, f, get("http://127.0.0.1:7071/acr/api/runs/", "", "", browserAccept))
	require.Equal(t, http.StatusOK, res.StatusCode)
	doc = assertNoInjectionUnder(t, res.Body, "/acr/api/runs")
	assert.Equal(t, "Recent runs", text(findAll(doc, elem("h1"))[0]))
	links := findAll(byID(doc, "runs"), elem("a"))
	require.Len(t, links, 1)
	assert.Equal(t, "/acr/api/runs/s-1?format=html", attr(links[0], "href"))

	// "latest" is the latest run's page, not the list.
	res = invoke(t, f, get("https://func.example/api/runs/latest", "latest", "html", ""))
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, text(findAll(parse(t, res.Body), elem("h1"))[0]), "s-1")

	// A URL of another form falls back to the default path.
	res = invoke(t, f, get("not a url at all", "s-1", "html", ""))
	require.Equal(t, http.StatusOK, res.StatusCode)
	assertNoInjection(t, res.Body)

	res = invoke(t, f, get("https://func.example/api/runs/s-nope", "s-nope", "html", ""))
	assert.Equal(t, http.StatusNotFound, res.StatusCode)
	assert.Equal(t, "text/html; charset=utf-8", res.Headers["Content-Type"])
	assert.Contains(t, text(parse(t, res.Body)), `run "s-nope" not found`)

	res = invoke(t, &runs.Function{Store: checkpoint.NewMemory()}, get("https://func.example/api/runs", "", "html", ""))
	assert.Equal(t, http.StatusOK, res.StatusCode, "an empty list is a page")
	assert.Contains(t, text(parse(t, res.Body)), "No run recorded yet.")
	res = invoke(t, &runs.Function{Store: checkpoint.NewMemory()}, get("https://func.example/api/runs/latest", "latest", "html", ""))
	assert.Equal(t, http.StatusNotFound, res.StatusCode)
}

// assertNoInjectionUnder is assertNoInjection for pages whose links start
// with prefix instead of /api/runs.
func assertNoInjectionUnder(t *testing.T, page, prefix string) *html.Node {
	t.Helper()
	doc := parse(t, page)
	for n := range doc.Descendants() {
		if href := attr(n, "href"); n.Data == "a" && href != "" && href[0] == '/' {
			assert.Regexp(t, "^"+prefix+"[/?]", href)
		}
	}
	return doc
}

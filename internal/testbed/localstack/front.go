package localstack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/testbed/hostdriver"
)

// RunsPath is where the Functions host serves the Runs function (host.json
// routePrefix "api", route "runs/{runId?}").
const RunsPath = "/api/runs"

// frontTimeout bounds one Runs invocation made for a browser.
const frontTimeout = 30 * time.Second

// HostFront plays the Functions host's HTTP front for the Runs function:
// a GET of RunsPath or RunsPath/{runId} becomes an invocation of Runs over
// the custom-handler protocol, carrying the request's URL, query, headers
// and route parameter, and the function's "res" output becomes the answer
// (status, headers, body). Keys are not checked (authLevel "function" is
// the host's business).
type HostFront struct {
	// Base is the custom handler's URL (required).
	Base string
	// Client defaults to a plain client.
	Client *http.Client
}

func (f *HostFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The run id is one path segment, which may hold an escaped "/".
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), RunsPath)
	seg := strings.TrimPrefix(rest, "/")
	id, err := url.PathUnescape(seg)
	if !ok || err != nil || (rest != "" && rest[0] != '/') || strings.Contains(seg, "/") {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	params := map[string]string{}
	if id != "" {
		params["runId"] = id
	}
	query := map[string]string{}
	for k, v := range r.URL.Query() {
		query[k] = v[0]
	}
	ctx, cancel := context.WithTimeout(r.Context(), frontTimeout)
	defer cancel()
	req := funchost.NewHTTPTriggerRequest(runs.BindingRequest, funchost.HTTPRequest{
		URL: "http://" + r.Host + r.URL.RequestURI(), Method: r.Method, Query: query, Headers: r.Header.Clone(), Params: params,
	})
	resp, status, err := funchost.Invoke(ctx, f.Client, f.Base, runs.Name, req)
	if err == nil && (status < 200 || status > 299 || resp == nil) {
		err = fmt.Errorf("the handler answered status %d", status)
	}
	var out funchost.HTTPResponse
	if err == nil {
		err = decodeOutput(resp, &out)
	}
	if err != nil {
		http.Error(w, "Runs function: "+err.Error(), http.StatusBadGateway)
		return
	}
	for k, v := range out.Headers {
		w.Header().Set(k, v)
	}
	if out.StatusCode == 0 {
		out.StatusCode = http.StatusOK
	}
	w.WriteHeader(out.StatusCode)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(out.Body))
	}
}

// decodeOutput reads the function's "res" output binding.
func decodeOutput(resp *funchost.Response, out *funchost.HTTPResponse) error {
	raw, err := json.Marshal(resp.Outputs[runs.BindingResponse])
	if err != nil {
		return fmt.Errorf("output %q: %w", runs.BindingResponse, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("output %q: %w", runs.BindingResponse, err)
	}
	return nil
}

// writePages asks the Runs function for the HTML page of each run and
// writes it to dir (created if need be) as run-{id}.html; it returns the
// files' paths, in the order of reps.
func writePages(ctx context.Context, h *hostdriver.Driver, dir string, reps []*runs.Report) ([]string, error) {
	if len(reps) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("html pages: %w", err)
	}
	paths := make([]string, 0, len(reps))
	for _, rep := range reps {
		res, err := h.Run(ctx, rep.Run.ID, map[string]string{"format": "html"})
		if err != nil {
			return nil, fmt.Errorf("html page of run %s: %w", rep.Run.ID, err)
		}
		if res.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("html page of run %s: status %d: %s", rep.Run.ID, res.StatusCode, oneLine(res.Body, 200))
		}
		p := filepath.Join(dir, "run-"+fileSafe(rep.Run.ID)+".html")
		if err := os.WriteFile(p, []byte(res.Body), 0o644); err != nil {
			return nil, fmt.Errorf("html pages: %w", err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// fileSafe keeps letters, digits, '.', '_' and '-' of a run id and
// replaces anything else, so that an id cannot leave the directory.
func fileSafe(id string) string {
	s := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		case r == '.':
			return r
		}
		return '_'
	}, id)
	if strings.Trim(s, ".") == "" {
		return "_" + s
	}
	return s
}

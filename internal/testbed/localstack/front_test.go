package localstack_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/testbed/localstack"
)

// get fetches path from the front with an Accept header and returns the
// status, the headers and the body.
func get(t *testing.T, base, method, path, accept string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, base+path, nil)
	require.NoError(t, err)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, res.Header, string(b)
}

// TestHostFrontAndPages: the stack writes each run's page, and its host
// front serves the Runs function at /api/runs/… as the Functions host
// does, passing the request's headers on.
func TestHostFrontAndPages(t *testing.T) {
	dir := t.TempDir()
	visited := false
	res, err := localstack.RunStack(t.Context(), localstack.Options{
		HTMLDir: dir,
		Triggers: []localstack.Trigger{{Kind: localstack.TriggerTimer},
			{Kind: localstack.TriggerSend, Body: `{"repositories":["team-a/api"],"dryRun":true}`}},
		Browse: func(ctx context.Context, front http.Handler, res *localstack.Result) error {
			visited = true
			srv := httptest.NewServer(front)
			defer srv.Close()
			require.Len(t, res.Runs, 2)
			id := res.Runs[0].Run.ID

			status, h, body := get(t, srv.URL, "GET", localstack.RunsPath, "text/html,*/*;q=0.8")
			require.Equal(t, http.StatusOK, status, body)
			assert.Equal(t, "text/html; charset=utf-8", h.Get("Content-Type"))
			assert.Equal(t, runs.ContentSecurityPolicy(), h.Get("Content-Security-Policy"))
			assert.Contains(t, body, `href="/api/runs/`+id+`?format=html"`, "the list links to each run")

			status, h, body = get(t, srv.URL, "GET", localstack.RunsPath+"/"+id, "")
			require.Equal(t, http.StatusOK, status)
			assert.Contains(t, h.Get("Content-Type"), "application/json", "no Accept: JSON as before")
			assert.Contains(t, body, `"id":"`+id+`"`)

			status, _, body = get(t, srv.URL, "GET", localstack.RunsPath+"/"+id+"?format=text", "text/html")
			require.Equal(t, http.StatusOK, status)
			assert.True(t, strings.HasPrefix(body, "Run "+id+":"))

			status, _, _ = get(t, srv.URL, "GET", localstack.RunsPath+"/nope?format=html", "")
			assert.Equal(t, http.StatusNotFound, status, "the function's status")
			status, _, _ = get(t, srv.URL, "GET", localstack.RunsPath+"/a/b", "")
			assert.Equal(t, http.StatusNotFound, status, "not a route of the function")
			status, _, _ = get(t, srv.URL, "GET", "/api/runsx", "")
			assert.Equal(t, http.StatusNotFound, status)
			status, h, _ = get(t, srv.URL, "POST", localstack.RunsPath, "")
			assert.Equal(t, http.StatusMethodNotAllowed, status)
			assert.Equal(t, "GET, HEAD", h.Get("Allow"))
			return nil
		},
	})
	require.NoError(t, err)
	assert.True(t, visited)
	require.Len(t, res.Pages, 2, "a page per run")
	for i, p := range res.Pages {
		assert.Equal(t, dir, p[:len(dir)])
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Contains(t, string(b), "<title>acrpurge run "+res.Runs[i].Run.ID+"</title>")
	}
	assert.Contains(t, mustRead(t, res.Pages[1]), "Dry run:")
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

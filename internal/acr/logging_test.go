package acr

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLogTransportOneRecordPerAttemptWithoutSecrets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo", r.Header.Get("Authorization"))
		writeErr(w, 500, "X", "echo "+r.Header.Get("Authorization")+" "+r.URL.RawQuery)
	}))
	t.Cleanup(srv.Close)
	var logs syncBuffer
	rt := &logTransport{log: debugLogger(&logs)}
	ctx := context.WithValue(withCall(t.Context(), &callInfo{op: "delete tag"}), attemptKey{}, 2)
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, srv.URL+"/acr/v1/r/_tags/t?secret=query-secret", strings.NewReader("form-secret"))
	req.Header.Set("Authorization", "Bearer header-secret")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	drain(resp.Body)

	out := logs.String()
	var rec map[string]any
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("want exactly one JSON record, got %q: %v", out, err)
	}
	want := map[string]any{"msg": "acr request", "op": "delete tag", "method": "DELETE",
		"path": "/acr/v1/r/_tags/t", "status": float64(500), "attempt": float64(2)}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %v, want %v", k, rec[k], v)
		}
	}
	assertNoSecret(t, "log", out, "header-secret", "query-secret", "form-secret", "Authorization")
}

func TestLogTransportFailedAttempt(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens any more
	var logs syncBuffer
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/v2/?last=query-secret", nil)
	req.Header.Set("Authorization", "Bearer header-secret")
	if _, err := (&logTransport{log: debugLogger(&logs)}).RoundTrip(req); err == nil {
		t.Fatal("want a connection error")
	}
	out := logs.String()
	if !strings.Contains(out, `"msg":"acr request failed"`) || !strings.Contains(out, `"error":`) || !strings.Contains(out, `"attempt":1`) {
		t.Fatalf("log = %s", out)
	}
	assertNoSecret(t, "log", out, "header-secret", "query-secret")
}

func TestLogTransportZeroValueIsSilent(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	resp, err := (&logTransport{}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	drain(resp.Body)
	if resp.StatusCode != 404 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

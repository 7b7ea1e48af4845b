package acr

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestBodyTransportReadsWholeBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cut":
			w.Header().Set("Content-Length", "1000")
			_, _ = io.WriteString(w, `{"tags":[`)
			w.(http.Flusher).Flush()
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
		default:
			_, _ = io.WriteString(w, strings.Repeat("x", 64))
		}
	}))
	t.Cleanup(srv.Close)

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/cut", nil)
	if _, err := (&bodyTransport{}).RoundTrip(req); err == nil || !strings.Contains(err.Error(), "read response") {
		t.Fatalf("cut body: err = %v, want a read error (retryable)", err)
	}

	req, _ = http.NewRequestWithContext(withCall(t.Context(), &callInfo{maxBody: 64}), http.MethodGet, srv.URL+"/ok", nil)
	resp, err := (&bodyTransport{}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	data, err := bodyBytes(resp.Body, 64)
	if err != nil || len(data) != 64 || resp.ContentLength != 64 {
		t.Fatalf("body %d bytes, %v", len(data), err)
	}

	req, _ = http.NewRequestWithContext(withCall(t.Context(), &callInfo{maxBody: 63}), http.MethodGet, srv.URL+"/ok", nil)
	_, err = (&bodyTransport{}).RoundTrip(req)
	var perm permanentError
	if !errors.Is(err, errTooLarge) || !errors.As(err, &perm) {
		t.Fatalf("over the bound: err = %v, want a permanent errTooLarge", err)
	}
}

// The base client's Timeout bounds each attempt, not the whole call.
func TestStackTimeoutIsPerAttempt(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	base := srv.Client()
	base.Timeout = 200 * time.Millisecond
	hc := httpClient(newStack(stackOptions{base: base, retry: fastRetry}))
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodDelete, srv.URL, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	drain(resp.Body)
	if resp.StatusCode != 202 || n.Load() != 2 {
		t.Fatalf("status %d after %d attempts", resp.StatusCode, n.Load())
	}
}

// The composed stack: each retried attempt passes the limiter (429s are
// counted once each) and is logged with its number; redirects come back
// as answers, not followed.
func TestStackComposition(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 3:
			http.Redirect(w, r, "https://elsewhere.invalid/x", http.StatusTemporaryRedirect)
		}
	}))
	t.Cleanup(srv.Close)
	var logs syncBuffer
	lim := NewLimiter(LimiterOptions{})
	hc := httpClient(newStack(stackOptions{base: srv.Client(), retry: fastRetry, limiter: lim, log: debugLogger(&logs)}))
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodDelete, srv.URL+"/v2/r/manifests/x", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	drain(resp.Body)
	if resp.StatusCode != http.StatusTemporaryRedirect || n.Load() != 3 {
		t.Fatalf("status %d after %d attempts", resp.StatusCode, n.Load())
	}
	if lim.Throttles(ClassDelete) != 1 {
		t.Fatalf("throttles = %d", lim.Throttles(ClassDelete))
	}
	out := logs.String()
	for i, status := range []int{429, 503, 307} {
		if !strings.Contains(out, fmt.Sprintf(`"attempt":%d,"duration"`, i+1)) || !strings.Contains(out, fmt.Sprintf(`"status":%d`, status)) {
			t.Fatalf("attempt %d (%d) not logged:\n%s", i+1, status, out)
		}
	}
}

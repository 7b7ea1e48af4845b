package acr

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// statusSequence answers the i-th request with statuses[i] (the last one
// repeats) and records each request body.
type statusSequence struct {
	statuses []int
	header   http.Header // sent with every answer
	mu       sync.Mutex
	bodies   []string
}

func (s *statusSequence) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.bodies = append(s.bodies, string(b))
	n := len(s.bodies)
	s.mu.Unlock()
	for k, v := range s.header {
		w.Header()[k] = v
	}
	w.WriteHeader(s.statuses[min(n, len(s.statuses))-1])
}

func (s *statusSequence) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

func TestRetryTransportZeroValue(t *testing.T) {
	seq := &statusSequence{statuses: []int{503, 200}}
	srv := httptest.NewServer(seq)
	t.Cleanup(srv.Close)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	resp, err := (&retryTransport{}).RoundTrip(req) // default transport, default policy
	if err != nil {
		t.Fatal(err)
	}
	drain(resp.Body)
	if resp.StatusCode != 200 || len(seq.seen()) != 2 {
		t.Fatalf("status %d after %d requests, want 200 after 2", resp.StatusCode, len(seq.seen()))
	}
}

func TestRetryTransportReplaysBody(t *testing.T) {
	seq := &statusSequence{statuses: []int{503, 502, 204}}
	srv := httptest.NewServer(seq)
	t.Cleanup(srv.Close)
	rt := &retryTransport{policy: &fastRetry}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPatch, srv.URL, strings.NewReader(`{"deleteEnabled":true}`))
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	drain(resp.Body)
	got := seq.seen()
	if resp.StatusCode != 204 || len(got) != 3 {
		t.Fatalf("status %d after %d requests", resp.StatusCode, len(got))
	}
	for i, b := range got {
		if b != `{"deleteEnabled":true}` {
			t.Errorf("attempt %d sent body %q", i+1, b)
		}
	}
}

// onceReader is a body that http.NewRequest cannot rewind (no GetBody).
type onceReader struct{ io.Reader }

func TestRetryTransportDoesNotRetryUnreplayableBody(t *testing.T) {
	seq := &statusSequence{statuses: []int{503, 204}}
	srv := httptest.NewServer(seq)
	t.Cleanup(srv.Close)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPatch, srv.URL, onceReader{strings.NewReader("x")})
	if req.GetBody != nil {
		t.Fatal("test body must not be replayable")
	}
	resp, err := (&retryTransport{policy: &fastRetry}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	drain(resp.Body)
	if resp.StatusCode != 503 || len(seq.seen()) != 1 {
		t.Fatalf("status %d after %d requests; a body that cannot be replayed must be sent once", resp.StatusCode, len(seq.seen()))
	}
}

func TestRetryTransport429DoesNotCountAsAttempt(t *testing.T) {
	// One attempt for 5xx, yet the 429 before it is waited out.
	seq := &statusSequence{statuses: []int{429, 200}, header: http.Header{"Retry-After": {"1"}}}
	srv := httptest.NewServer(seq)
	t.Cleanup(srv.Close)
	p := RetryPolicy{MaxAttempts: 1, MaxThrottle: 10 * time.Second}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodDelete, srv.URL, nil)
	resp, err := (&retryTransport{policy: &p}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	drain(resp.Body)
	if resp.StatusCode != 200 || len(seq.seen()) != 2 {
		t.Fatalf("status %d after %d requests, want 200 after 2", resp.StatusCode, len(seq.seen()))
	}
}

func TestRetryTransport429BeyondBudgetReturnsTheAnswer(t *testing.T) {
	seq := &statusSequence{statuses: []int{429}, header: http.Header{"Retry-After": {"30"}}}
	srv := httptest.NewServer(seq)
	t.Cleanup(srv.Close)
	p := RetryPolicy{MaxThrottle: time.Second}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodDelete, srv.URL, nil)
	resp, err := (&retryTransport{policy: &p}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	drain(resp.Body)
	if resp.StatusCode != 429 || len(seq.seen()) != 1 {
		t.Fatalf("status %d after %d requests, want the 429 after 1", resp.StatusCode, len(seq.seen()))
	}
}

func TestRetryTransportGivesUpOnNetworkErrors(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	_, err := (&retryTransport{policy: &fastRetry}).RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "giving up after 3 attempts") {
		t.Fatalf("err = %v", err)
	}
	if n.Load() != 3 {
		t.Fatalf("attempts = %d, want 3", n.Load())
	}
}

func TestRetryTransportPermanentErrorIsNotRetried(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		_, _ = io.WriteString(w, strings.Repeat("x", 100))
	}))
	t.Cleanup(srv.Close)
	ctx := withCall(t.Context(), &callInfo{maxBody: 10})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	_, err := (&retryTransport{policy: &fastRetry, next: &bodyTransport{}}).RoundTrip(req)
	if !errors.Is(err, errTooLarge) {
		t.Fatalf("err = %v, want errTooLarge", err)
	}
	var perm permanentError
	if errors.As(err, &perm) {
		t.Fatal("the permanent marker must not leak past the retry layer")
	}
	if n.Load() != 1 {
		t.Fatalf("attempts = %d, want 1", n.Load())
	}
}

func TestRetryTransportStopsWhenContextEnds(t *testing.T) {
	seq := &statusSequence{statuses: []int{503}, header: http.Header{"Retry-After": {"30"}}}
	srv := httptest.NewServer(seq)
	t.Cleanup(srv.Close)
	p := RetryPolicy{BaseDelay: 30 * time.Second, MaxDelay: 30 * time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	_, err := (&retryTransport{policy: &p}).RoundTrip(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's error", err)
	}
	if len(seq.seen()) != 1 {
		t.Fatalf("requests = %d", len(seq.seen()))
	}
}

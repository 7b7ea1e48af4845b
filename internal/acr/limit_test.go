package acr

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestLimitTransportReportsThrottlesCapped(t *testing.T) {
	seq := &statusSequence{statuses: []int{429, 202}, header: http.Header{"Retry-After": {"3600"}}}
	srv := httptest.NewServer(seq)
	t.Cleanup(srv.Close)
	lim := NewLimiter(LimiterOptions{})
	rt := &limitTransport{limiter: lim, maxPause: 50 * time.Millisecond}

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodDelete, srv.URL, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	drain(resp.Body)
	if resp.StatusCode != 429 {
		t.Fatalf("status %d: the limit layer does not retry", resp.StatusCode)
	}
	if lim.Throttles(ClassDelete) != 1 || lim.Throttles(ClassRead) != 0 || lim.Factor(ClassDelete) >= 1 {
		t.Fatalf("throttles delete %d read %d, factor %v", lim.Throttles(ClassDelete), lim.Throttles(ClassRead), lim.Factor(ClassDelete))
	}
	// The pause is capped at maxPause, not the hour the registry asked for.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodDelete, srv.URL, nil)
	resp, err = rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("second delete behind a capped pause: %v", err)
	}
	drain(resp.Body)
	if resp.StatusCode != 202 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestLimitTransportZeroValueAdmitsAll(t *testing.T) {
	seq := &statusSequence{statuses: []int{429, 200}}
	srv := httptest.NewServer(seq)
	t.Cleanup(srv.Close)
	for range 2 {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
		resp, err := (&limitTransport{}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		drain(resp.Body)
	}
	if len(seq.seen()) != 2 {
		t.Fatalf("requests = %d", len(seq.seen()))
	}
}

func TestLimitTransportEndedContextSendsNothing(t *testing.T) {
	seq := &statusSequence{statuses: []int{200}}
	srv := httptest.NewServer(seq)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	_, err := (&limitTransport{limiter: NewLimiter(LimiterOptions{ReadsPerMinute: 60})}).RoundTrip(req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if len(seq.seen()) != 0 {
		t.Fatal("a request went out after its context ended")
	}
}

func TestClassOf(t *testing.T) {
	want := map[string]Class{
		http.MethodGet: ClassRead, http.MethodHead: ClassRead, "": ClassRead,
		http.MethodDelete: ClassDelete,
		http.MethodPatch:  ClassWrite, http.MethodPost: ClassWrite, http.MethodPut: ClassWrite,
	}
	for m, c := range want {
		if got := classOf(m); got != c {
			t.Errorf("classOf(%q) = %s, want %s", m, got, c)
		}
	}
}

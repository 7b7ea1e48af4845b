package acr

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// fakeClock is a settable clock for the broker and limiter.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeSource is a TokenSource that hands out opaque tokens "tok-N" and
// counts mints and invalidations.
type fakeSource struct {
	mu            sync.Mutex
	cur           *Token
	mints         int
	invalidations int
	granted       Access // nil: unknown
}

func (s *fakeSource) Token(context.Context) (*Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		s.mints++
		s.cur = &Token{Value: Secret(fmt.Sprintf("tok-%d", s.mints)), Expires: time.Now().Add(time.Hour), Granted: s.granted}
	}
	return s.cur, nil
}

func (s *fakeSource) Invalidate(t *Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalidations++
	if s.cur == t {
		s.cur = nil
	}
}

func (s *fakeSource) counts() (mints, invalidations int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mints, s.invalidations
}

// fastRetry keeps unit tests quick.
var fastRetry = RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, MaxThrottle: 5 * time.Second}

// newTestClient starts srv and returns a client for it.
func newTestClient(t *testing.T, h http.Handler, ts TokenSource, mod func(*ClientOptions)) (*Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ep, err := ParseEndpoint(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	o := ClientOptions{Endpoint: ep, Tokens: ts, Retry: fastRetry, HTTPClient: srv.Client()}
	if mod != nil {
		mod(&o)
	}
	c, err := NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

// writeErr writes an ACR error document.
func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q,"detail":[{"Type":"x"}]}]}`, code, msg)
}

// signJWT makes an HS256 JWT with the given claims.
func signJWT(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("test-key-not-secret"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func debugLogger(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func assertNoSecret(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s contains a secret (%d chars)", where, len(s))
		}
	}
}

// testDigest is a well-formed sha256 digest for requests whose target does
// not matter.
var testDigest = "sha256:" + strings.Repeat("ab", 32)

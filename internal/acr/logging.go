package acr

import (
	"log/slog"
	"net/http"
	"time"
)

// logTransport writes one debug record per attempt: the operation, method,
// path (no query, no host), attempt number, duration, and the status or
// the transport error without its URL. It never logs a header, a body or a
// query, so neither the Authorization header nor a token form can reach a
// log. A nil logger discards.
type logTransport struct {
	next http.RoundTripper // nil: http.DefaultTransport
	log  *slog.Logger
}

func (t *logTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	ctx := req.Context()
	if t.log == nil || !t.log.Enabled(ctx, slog.LevelDebug) {
		return next.RoundTrip(req)
	}
	start := time.Now()
	resp, err := next.RoundTrip(req)
	attrs := []slog.Attr{
		slog.String("op", callOf(ctx).op),
		slog.String("method", req.Method),
		slog.String("path", req.URL.EscapedPath()),
		slog.Int("attempt", attemptOf(ctx)),
		slog.Duration("duration", time.Since(start)),
	}
	if err != nil {
		t.log.LogAttrs(ctx, slog.LevelDebug, "acr request failed",
			append(attrs, slog.String("error", withoutURL(err).Error()))...)
		return nil, err
	}
	t.log.LogAttrs(ctx, slog.LevelDebug, "acr request", append(attrs, slog.Int("status", resp.StatusCode))...)
	return resp, nil
}

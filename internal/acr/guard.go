package acr

import "context"

// guardKey is the context key of WithSendGuard.
type guardKey struct{}

// WithSendGuard returns a copy of ctx under which every Client call checks
// guard just before each attempt goes on the wire: after the Limiter has
// admitted it and after any Retry-After or backoff wait, so no wait inside
// the client can come between the check and the request. If guard returns
// an error, that attempt is not sent and the call fails with the error
// wrapped (errors.Is and errors.As see it). Token requests are not
// guarded. guard runs on the calling goroutine; a nil guard removes one.
//
// The executor uses it to refuse to send a delete whose premise, the last
// read of the item, may have gone stale while the request waited.
func WithSendGuard(ctx context.Context, guard func() error) context.Context {
	return context.WithValue(ctx, guardKey{}, guard)
}

// sendGuard returns the guard of ctx, or nil.
func sendGuard(ctx context.Context) func() error {
	g, _ := ctx.Value(guardKey{}).(func() error)
	return g
}

// goneKey is the context key of WithGoneNotice.
type goneKey struct{}

// WithGoneNotice returns a copy of ctx under which DeleteTag and
// DeleteManifest call notice when the registry answers 404: the item was
// already gone, which they report as success. afterRetry is set when an
// earlier attempt of the same call failed (a lost answer, a 5xx): the
// registry may have acted on it, so the 404 may be the call's own doing.
// The executor uses it to count only the deletes that were its own.
func WithGoneNotice(ctx context.Context, notice func(afterRetry bool)) context.Context {
	return context.WithValue(ctx, goneKey{}, notice)
}

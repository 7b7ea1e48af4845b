package purgecli

import (
	"context"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/purge"
)

// graceful is a batch's purge.Registry whose deletes and attribute updates,
// once started, are detached from cancellation for up to grace: an
// interrupt stops new deletes (the executor sees the cancelled context) but
// lets the ones in flight finish, so the report can say what really
// happened to them. Reads, page reads included, pass through.
type graceful struct {
	*acr.Client
	grace time.Duration
}

var (
	_ purge.Registry   = graceful{}
	_ purge.PageLister = graceful{}
)

// DeleteTag implements purge.Registry.
func (g graceful) DeleteTag(ctx context.Context, repo, tag string) error {
	ctx, done := detach(ctx, g.grace)
	defer done()
	return g.Client.DeleteTag(ctx, repo, tag)
}

// DeleteManifest implements purge.Registry.
func (g graceful) DeleteManifest(ctx context.Context, repo, digest string) error {
	ctx, done := detach(ctx, g.grace)
	defer done()
	return g.Client.DeleteManifest(ctx, repo, digest)
}

// UpdateTagAttributes implements purge.Registry.
func (g graceful) UpdateTagAttributes(ctx context.Context, repo, tag string, a acr.Attributes) error {
	ctx, done := detach(ctx, g.grace)
	defer done()
	return g.Client.UpdateTagAttributes(ctx, repo, tag, a)
}

// UpdateManifestAttributes implements purge.Registry.
func (g graceful) UpdateManifestAttributes(ctx context.Context, repo, digest string, a acr.Attributes) error {
	ctx, done := detach(ctx, g.grace)
	defer done()
	return g.Client.UpdateManifestAttributes(ctx, repo, digest, a)
}

// detach returns a context that keeps ctx's values but ends only grace
// after ctx ends (or when done is called). A call already started when ctx
// was cancelled — an interrupt, or another delete's failure stopping the
// repository — gets to finish instead of leaving an unknown outcome.
func detach(ctx context.Context, grace time.Duration) (context.Context, func()) {
	if ctx.Err() != nil {
		// Not started yet: do not start it.
		return ctx, func() {}
	}
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-dctx.Done():
		}
	})
	return dctx, func() { stop(); cancel() }
}

package purgecli

import (
	"context"
	"fmt"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/purge"
)

// router is the purge.Registry of a whole run: it sends each repository's
// calls through the client of the repository's batch (one token per batch),
// so that one executor can serve every batch and its Concurrency bounds the
// run.
//
// Deletes and attribute updates that have started are detached from
// cancellation for up to grace: an interrupt stops new deletes (the
// executor sees the cancelled context) but lets the ones in flight finish,
// so the report can say what really happened to them.
type router struct {
	clients map[string]*acr.Client
	grace   time.Duration
}

var _ purge.Registry = (*router)(nil)

func (r *router) client(repo string) (*acr.Client, error) {
	if c, ok := r.clients[repo]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("repository %q is not part of this run: %w", repo, acr.ErrNotPermitted)
}

// Tags implements purge.Registry.
func (r *router) Tags(ctx context.Context, repo string, fn func([]acr.Tag) error) error {
	c, err := r.client(repo)
	if err != nil {
		return err
	}
	return c.Tags(ctx, repo, fn)
}

// Manifests implements purge.Registry.
func (r *router) Manifests(ctx context.Context, repo string, fn func([]acr.Manifest) error) error {
	c, err := r.client(repo)
	if err != nil {
		return err
	}
	return c.Manifests(ctx, repo, fn)
}

// ManifestBody implements purge.Registry.
func (r *router) ManifestBody(ctx context.Context, repo, digest string) (*acr.ManifestBody, error) {
	c, err := r.client(repo)
	if err != nil {
		return nil, err
	}
	return c.ManifestBody(ctx, repo, digest)
}

// GetTag reads one tag's current state (the executor's check before a
// delete).
func (r *router) GetTag(ctx context.Context, repo, tag string) (*acr.Tag, error) {
	c, err := r.client(repo)
	if err != nil {
		return nil, err
	}
	return c.GetTag(ctx, repo, tag)
}

// GetManifest reads one manifest's current state (the executor's check
// before a delete).
func (r *router) GetManifest(ctx context.Context, repo, digest string) (*acr.Manifest, error) {
	c, err := r.client(repo)
	if err != nil {
		return nil, err
	}
	return c.GetManifest(ctx, repo, digest)
}

// DeleteTag implements purge.Registry.
func (r *router) DeleteTag(ctx context.Context, repo, tag string) error {
	c, err := r.client(repo)
	if err != nil {
		return err
	}
	ctx, done := detach(ctx, r.grace)
	defer done()
	return c.DeleteTag(ctx, repo, tag)
}

// DeleteManifest implements purge.Registry.
func (r *router) DeleteManifest(ctx context.Context, repo, digest string) error {
	c, err := r.client(repo)
	if err != nil {
		return err
	}
	ctx, done := detach(ctx, r.grace)
	defer done()
	return c.DeleteManifest(ctx, repo, digest)
}

// UpdateTagAttributes implements purge.Registry.
func (r *router) UpdateTagAttributes(ctx context.Context, repo, tag string, a acr.Attributes) error {
	c, err := r.client(repo)
	if err != nil {
		return err
	}
	ctx, done := detach(ctx, r.grace)
	defer done()
	return c.UpdateTagAttributes(ctx, repo, tag, a)
}

// UpdateManifestAttributes implements purge.Registry.
func (r *router) UpdateManifestAttributes(ctx context.Context, repo, digest string, a acr.Attributes) error {
	c, err := r.client(repo)
	if err != nil {
		return err
	}
	ctx, done := detach(ctx, r.grace)
	defer done()
	return c.UpdateManifestAttributes(ctx, repo, digest, a)
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

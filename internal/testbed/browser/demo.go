package browser

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/acrpurge/acrpurge/internal/testbed/localstack"
)

// DemoRepositories is the size of the demo registry of Demo: enough
// repositories that the freed-space chart names ten and sums the rest.
const DemoRepositories = 24

// DemoOptions are the local stack's options for Demo: a push (which purges
// its repository), a dry run sent from the portal, then the nightly purge,
// so that the list of runs has three runs of three kinds.
func DemoOptions() localstack.Options {
	return localstack.Options{
		Repositories: DemoRepositories,
		Triggers: []localstack.Trigger{
			{Kind: localstack.TriggerPush, Ref: "team-b/worker:ci-1501"},
			{Kind: localstack.TriggerSend, Body: `{"repositories":["team-a/api","team-b/jobs","team-a/web-2"],"dryRun":true}`},
			{Kind: localstack.TriggerTimer},
		},
	}
}

// Demo runs the local stack with o, serves the host's HTTP front for the
// Runs function on a loopback port, and calls visit with its URL (e.g.
// http://127.0.0.1:PORT; the pages are under localstack.RunsPath) and the
// stack's result, before the stack stops.
func Demo(ctx context.Context, o localstack.Options, visit func(base string, res *localstack.Result) error) (*localstack.Result, error) {
	o.Browse = func(_ context.Context, front http.Handler, res *localstack.Result) error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("listen for the browser: %w", err)
		}
		srv := &http.Server{Handler: front, ReadHeaderTimeout: 10 * time.Second}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		verr := visit("http://"+ln.Addr().String(), res)
		// Close, not Shutdown: the visit is over, and Chromium keeps
		// preconnected sockets open that Shutdown would wait on.
		serr := srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			serr = errors.Join(serr, err)
		}
		return errors.Join(verr, serr)
	}
	return localstack.RunStack(ctx, o)
}

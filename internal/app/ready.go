package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/acrpurge/acrpurge/internal/funchost"
)

// Start-up check bounds: each attempt at the storage check gets
// readyAttemptTimeout; failed attempts are retried after a backoff that
// doubles from readyBackoff up to readyMaxBackoff, until the check passes
// or the handler stops.
var (
	readyAttemptTimeout = 30 * time.Second
	readyBackoff        = time.Second
	readyMaxBackoff     = time.Minute
)

// readiness gates invocations until the start-up check has passed. The
// custom-handler server answers GET / at once regardless (the host's
// start-up probe); an invocation that comes before the check passed fails
// with a retryable error (a non-2xx answer: Service Bus redelivers the
// message, the timer retries, the HTTP caller sees 500).
type readiness struct {
	mu   sync.Mutex
	ok   bool
	last error
	done chan struct{}
}

func newReadiness() *readiness {
	return &readiness{last: errors.New("the start-up check has not finished yet"), done: make(chan struct{})}
}

// run repeats check, each attempt bounded by readyAttemptTimeout, until it
// passes or ctx ends.
func (r *readiness) run(ctx context.Context, log *slog.Logger, check func(context.Context) error) {
	backoff := readyBackoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, readyAttemptTimeout)
		err := check(actx)
		cancel()
		r.mu.Lock()
		r.ok, r.last = err == nil, err
		r.mu.Unlock()
		if err == nil {
			close(r.done)
			log.Info("start-up check passed: invocations are served", "attempts", attempt)
			return
		}
		log.Warn("start-up check failed; invocations fail (and are retried) until it passes",
			"attempt", attempt, "retryIn", backoff, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, readyMaxBackoff)
	}
}

// err is nil once the check has passed, else why invocations are refused.
func (r *readiness) err() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ok {
		return nil
	}
	return fmt.Errorf("the handler is starting and cannot serve yet (retry later): %w", r.last)
}

// gate wraps h so that it refuses invocations until r is ready.
func (r *readiness) gate(h funchost.Handler) funchost.Handler {
	return func(ctx context.Context, req *funchost.Request) (*funchost.Response, error) {
		if err := r.err(); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

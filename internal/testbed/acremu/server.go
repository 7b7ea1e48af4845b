package acremu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// server is the listener side of a Registry: one http.Server per Start.
type server struct {
	mu     sync.Mutex
	port   int // fixed by the first Start
	hs     *http.Server
	cancel context.CancelFunc
	done   chan struct{}
}

// Start listens on 127.0.0.1: on a free port the first time, on the same port
// after Stop. Starting a running registry is a no-op.
func (r *Registry) Start() error {
	s := &r.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hs != nil {
		return nil
	}
	ln, err := listen(s.port)
	if err != nil {
		return err
	}
	if s.port == 0 {
		s.port = ln.Addr().(*net.TCPAddr).Port
		r.host.Store("127.0.0.1:" + strconv.Itoa(s.port))
	}
	ctx, cancel := context.WithCancel(context.Background())
	hs := &http.Server{
		Handler:           r,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Warn("acremu: serve stopped", "err", err)
		}
	}()
	s.hs, s.cancel, s.done = hs, cancel, done
	r.log.Debug("acremu: listening", "addr", ln.Addr().String())
	return nil
}

// listen binds 127.0.0.1:port (0 = any), retrying briefly when a fixed port
// is momentarily unavailable after a Stop.
func listen(port int) (net.Listener, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		var ln net.Listener
		ln, err = net.Listen("tcp", addr)
		if err == nil {
			return ln, nil
		}
		if port == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("acremu: listen on %s: %w", addr, err)
}

// Stop closes the listener and every open connection, in-flight requests
// included. Registry state (content, identities, stats) is kept; Start
// listens again on the same port. Stopping a stopped registry is a no-op.
func (r *Registry) Stop() error {
	s := &r.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hs == nil {
		return nil
	}
	err := s.hs.Close() // connections first, so no handler answers after Stop
	s.cancel()
	<-s.done
	s.hs, s.cancel, s.done = nil, nil, nil
	if err != nil {
		return fmt.Errorf("acremu: stop: %w", err)
	}
	return nil
}

// Close stops the registry; it is safe to call more than once (t.Cleanup).
func (r *Registry) Close() {
	if err := r.Stop(); err != nil {
		r.log.Warn("acremu: close", "err", err)
	}
}

// URL is "http://127.0.0.1:PORT"; empty before the first Start.
func (r *Registry) URL() string {
	h := r.Host()
	if h == "" {
		return ""
	}
	return "http://" + h
}

// Host is "127.0.0.1:PORT", the service name used in token forms and claims;
// empty before the first Start.
func (r *Registry) Host() string {
	h, _ := r.host.Load().(string)
	return h
}

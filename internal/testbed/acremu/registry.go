package acremu

import (
	"crypto/rand"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultAccessTokenTTL  = 75 * time.Minute
	DefaultRefreshTokenTTL = 3 * time.Hour
	DefaultAADTokenTTL     = time.Hour
	DefaultMaxPageSize     = 1000
	// DefaultPageSize is the n used by listings when the request has none.
	DefaultPageSize = 100
)

// Options configure a Registry.
type Options struct {
	ABAC            bool          // registry roleAssignmentMode AbacRepositoryPermissions
	AccessTokenTTL  time.Duration // default 75m
	RefreshTokenTTL time.Duration // default 3h
	AADTokenTTL     time.Duration // default 1h
	MaxPageSize     int           // largest n honoured; default 1000; default n when absent: 100
	Logger          *slog.Logger  // nil: discard. Never logs tokens.
}

// Registry is one emulated registry. Create it with New, then Start it. All
// methods are safe for concurrent use.
type Registry struct {
	opts   Options
	log    *slog.Logger
	key    []byte       // HS256 signing key, random per emulator
	offset atomic.Int64 // clock offset in nanoseconds

	srv  server       // listener state, guarded by its own mutex
	host atomic.Value // string "127.0.0.1:PORT", set by the first Start

	inflight atomic.Int64 // requests being served, for WaitIdle

	mu         sync.Mutex // guards everything below
	repos      map[string]*repository
	names      []string // repository names; sorted when namesDirty is false
	namesDirty bool
	namesStale bool // names may list removed repositories
	identities map[string]*identity
	aad        map[string]aadToken
	deletes    []DeleteRecord
	stats      Stats
	limits     Limits
	windows    map[throttleKey]*window
	faults     Faults
	faultSeq   uint64
}

// New returns a registry that is not yet listening; call Start.
func New(opts Options) *Registry {
	if opts.AccessTokenTTL <= 0 {
		opts.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if opts.RefreshTokenTTL <= 0 {
		opts.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if opts.AADTokenTTL <= 0 {
		opts.AADTokenTTL = DefaultAADTokenTTL
	}
	if opts.MaxPageSize <= 0 {
		opts.MaxPageSize = DefaultMaxPageSize
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key) // never fails (crypto/rand panics internally on a broken system)
	r := &Registry{
		opts:       opts,
		log:        log,
		key:        key,
		repos:      make(map[string]*repository),
		identities: make(map[string]*identity),
		aad:        make(map[string]aadToken),
		windows:    make(map[throttleKey]*window),
	}
	r.stats.Requests = make(map[string]int)
	r.host.Store("")
	return r
}

// ABAC reports whether the registry runs in ABAC repository-permissions mode.
func (r *Registry) ABAC() bool { return r.opts.ABAC }

// Now is the emulator clock: the wall clock plus an adjustable offset, so time
// still moves by itself. Token lifetimes and default timestamps use it.
func (r *Registry) Now() time.Time {
	return time.Now().Add(time.Duration(r.offset.Load()))
}

// Advance moves the emulator clock forward by d (backward if d < 0).
func (r *Registry) Advance(d time.Duration) { r.offset.Add(int64(d)) }

// SetNow sets the emulator clock so that Now() returns t at this instant.
func (r *Registry) SetNow(t time.Time) { r.offset.Store(int64(time.Until(t))) }

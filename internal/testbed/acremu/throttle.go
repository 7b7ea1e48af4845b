package acremu

import (
	"time"
)

// Limits configure throttling: per identity, per operation class, per fixed
// window (ACR counts per minute). Windows run on the wall clock (time.Now),
// not the emulator clock, so Advance does not reset or open them.
type Limits struct {
	Window              time.Duration // default 1m (wall time, not the offset clock)
	Read, Write, Delete int           // requests per window per identity; 0 = unlimited
}

// opClass is a throttling class.
type opClass int

const (
	classRead opClass = iota
	classWrite
	classDelete
)

func (c opClass) String() string {
	switch c {
	case classWrite:
		return "write"
	case classDelete:
		return "delete"
	default:
		return "read"
	}
}

type throttleKey struct {
	identity string
	class    opClass
}

type window struct {
	start time.Time
	count int
}

// SetLimits replaces the throttling limits and resets all windows. Over a
// limit the data plane answers 429 with Retry-After = whole seconds until the
// identity's window resets (at least 1) and a TOOMANYREQUESTS body.
func (r *Registry) SetLimits(l Limits) {
	if l.Window <= 0 {
		l.Window = time.Minute
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.limits = l
	clear(r.windows)
}

// admit counts one request of identity in class, or returns the whole
// seconds to wait when it is over the limit.
func (r *Registry) admit(identity string, class opClass) (retryAfter int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var limit int
	switch class {
	case classRead:
		limit = r.limits.Read
	case classWrite:
		limit = r.limits.Write
	case classDelete:
		limit = r.limits.Delete
	}
	if limit <= 0 {
		return 0, true
	}
	now := time.Now()
	k := throttleKey{identity, class}
	w := r.windows[k]
	if w == nil || now.Sub(w.start) >= r.limits.Window {
		w = &window{start: now}
		r.windows[k] = w
	}
	if w.count >= limit {
		r.stats.Throttled++
		left := w.start.Add(r.limits.Window).Sub(now)
		secs := int((left + time.Second - 1) / time.Second)
		return max(secs, 1), false
	}
	w.count++
	return 0, true
}

package acremu

import (
	"time"
)

// Limits configure throttling, per fixed window (ACR counts per minute):
// per identity and operation class, and for the registry as a whole, the
// way a real SKU limits write operations for every identity and client
// together. Windows run on the wall clock (time.Now), not the emulator
// clock, so Advance does not reset or open them.
type Limits struct {
	Window              time.Duration // default 1m (wall time, not the offset clock)
	Read, Write, Delete int           // requests per Window per identity; 0 = unlimited
	// RegistryWrites limits the write operations of the whole registry —
	// deletes and attribute updates (PATCH) of every identity together — per
	// RegistryWindow (default 1m; a second for short benchmarks); 0 =
	// unlimited.
	RegistryWrites int
	RegistryWindow time.Duration
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

// registryKey is the window of the registry-wide write limit.
var registryKey = throttleKey{identity: "\x00registry", class: classWrite}

// SetLimits replaces the throttling limits and resets all windows. Over a
// limit the data plane answers 429 with Retry-After = whole seconds until the
// window resets (at least 1) and a TOOMANYREQUESTS body. A request refused
// by one limit is not counted by the other.
func (r *Registry) SetLimits(l Limits) {
	if l.Window <= 0 {
		l.Window = time.Minute
	}
	if l.RegistryWindow <= 0 {
		l.RegistryWindow = time.Minute
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.limits = l
	clear(r.windows)
}

// admit counts one request of identity in class, or returns the whole
// seconds to wait and the limit's scope ("identity" or "registry") when it
// is over a limit.
func (r *Registry) admit(identity string, class opClass) (retryAfter int, scope string, ok bool) {
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
	now := time.Now()
	var own, reg *window
	if limit > 0 {
		own = r.window(throttleKey{identity, class}, r.limits.Window, now)
		if own.count >= limit {
			r.stats.Throttled++
			return secondsLeft(own, r.limits.Window, now), "identity", false
		}
	}
	if class != classRead && r.limits.RegistryWrites > 0 {
		reg = r.window(registryKey, r.limits.RegistryWindow, now)
		if reg.count >= r.limits.RegistryWrites {
			r.stats.Throttled++
			r.stats.ThrottledRegistry++
			return secondsLeft(reg, r.limits.RegistryWindow, now), "registry", false
		}
	}
	for _, w := range []*window{own, reg} {
		if w != nil {
			w.count++
		}
	}
	return 0, "", true
}

// window is the current fixed window of k, a new one once length has
// passed since it started. Called with r.mu held.
func (r *Registry) window(k throttleKey, length time.Duration, now time.Time) *window {
	w := r.windows[k]
	if w == nil || now.Sub(w.start) >= length {
		w = &window{start: now}
		r.windows[k] = w
	}
	return w
}

// secondsLeft is Retry-After for window w: whole seconds until it ends, at
// least 1.
func secondsLeft(w *window, length time.Duration, now time.Time) int {
	left := w.start.Add(length).Sub(now)
	return max(int((left+time.Second-1)/time.Second), 1)
}

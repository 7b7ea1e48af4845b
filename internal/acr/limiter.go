package acr

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Class is a request class with its own budget, matching how ACR counts
// its limits (per registry, by SKU).
type Class int

// Request classes.
const (
	ClassRead   Class = iota // GET
	ClassWrite               // PATCH
	ClassDelete              // DELETE
	numClasses
)

// String implements fmt.Stringer.
func (c Class) String() string {
	switch c {
	case ClassRead:
		return "read"
	case ClassWrite:
		return "write"
	case ClassDelete:
		return "delete"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Adaptive factor tuning: a 429 halves the class's rate (not below 5 % of
// the configured rate, and at most once per Retry-After window, so a burst
// of 429s from one window counts once); each quiet recoverEvery adds
// recoverStep back, up to the configured rate.
const (
	cutFactor    = 0.5
	minFactor    = 0.05
	recoverStep  = 0.1
	recoverEvery = 10 * time.Second
	maxBurst     = 10
)

// Gate is a budget that decides on its own when a request may start and
// how to react to a 429: the registry-wide delete budget (internal/budget),
// shared by every instance. *budget.Budget implements it.
type Gate interface {
	// Wait blocks until one request may start, or ctx ends.
	Wait(ctx context.Context) error
	// Throttled reports a 429 with its Retry-After.
	Throttled(retryAfter time.Duration)
	// Admitted reports a request the registry did not refuse (any answer
	// but 429): what it admits is what a 429 cuts the rate to.
	Admitted()
}

// LimiterOptions configures a Limiter. A zero rate means unlimited (a 429
// still pauses the class for its Retry-After).
type LimiterOptions struct {
	// Deletes, when set, governs the delete class instead of
	// DeletesPerMinute: its Wait admits every delete, and 429s are reported
	// to it (it pauses and slows down as it sees fit).
	Deletes          Gate
	DeletesPerMinute int              // per-process bucket when Deletes is nil
	ReadsPerMinute   int              // 0 = unlimited
	WritesPerMinute  int              // 0 = unlimited (attribute updates)
	Now              func() time.Time // default time.Now
}

// Limiter is the request budget shared by every Client of a process: the
// delete class goes through a Gate (the registry-wide budget) when one is
// given; otherwise, and for the other classes, a token bucket per class with
// a small burst, slowed down by 429s (multiplicative decrease) and
// recovering while none arrive (additive increase). A nil *Limiter is
// unlimited. It is safe for concurrent use.
type Limiter struct {
	now     func() time.Time
	deletes Gate
	mu      sync.Mutex
	classes [numClasses]classState
}

type classState struct {
	base        float64 // requests per second; 0 = unlimited
	lim         *rate.Limiter
	factor      float64
	lastCut     time.Time // when factor was last reduced
	lastStep    time.Time // reference point of the additive increase
	pausedUntil time.Time // no request of this class starts before this
	throttles   int
}

// NewLimiter returns a Limiter; negative rates count as unlimited.
func NewLimiter(o LimiterOptions) *Limiter {
	l := &Limiter{now: o.Now, deletes: o.Deletes}
	if l.now == nil {
		l.now = time.Now
	}
	perMinute := [numClasses]int{ClassRead: o.ReadsPerMinute, ClassWrite: o.WritesPerMinute, ClassDelete: o.DeletesPerMinute}
	for c, pm := range perMinute {
		cs := &l.classes[c]
		cs.factor = 1
		if pm <= 0 {
			continue
		}
		cs.base = float64(pm) / 60
		burst := min(max(pm/60, 1), maxBurst)
		cs.lim = rate.NewLimiter(rate.Limit(cs.base), burst)
	}
	return l
}

// Wait blocks until a request of class may start, or ctx ends.
func (l *Limiter) Wait(ctx context.Context, class Class) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if l == nil || class < 0 || class >= numClasses {
		return nil
	}
	if class == ClassDelete && l.deletes != nil {
		return l.deletes.Wait(ctx)
	}
	for {
		l.mu.Lock()
		cs := &l.classes[class]
		now := l.now()
		l.recover(cs, now)
		if pause := cs.pausedUntil.Sub(now); pause > 0 {
			l.mu.Unlock()
			// Jitter, so the waiters of one pause do not all fire at once.
			if err := sleep(ctx, pause+randDuration(pause/4+10*time.Millisecond)); err != nil {
				return err
			}
			continue
		}
		if cs.lim == nil {
			l.mu.Unlock()
			return nil
		}
		r := cs.lim.ReserveN(now, 1)
		l.mu.Unlock()
		if !r.OK() {
			return fmt.Errorf("acr: limiter: %s budget cannot admit a request", class)
		}
		d := r.DelayFrom(now)
		if d <= 0 {
			return nil
		}
		if err := sleep(ctx, d); err != nil {
			r.CancelAt(l.now())
			return err
		}
		return nil
	}
}

// Throttled tells the limiter that the registry answered 429 for class:
// requests of the class pause for retryAfter and its rate is cut.
func (l *Limiter) Throttled(class Class, retryAfter time.Duration) {
	if l == nil || class < 0 || class >= numClasses {
		return
	}
	if class == ClassDelete && l.deletes != nil {
		l.mu.Lock()
		l.classes[class].throttles++
		l.mu.Unlock()
		l.deletes.Throttled(retryAfter)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := &l.classes[class]
	now := l.now()
	cs.throttles++
	if until := now.Add(retryAfter); until.After(cs.pausedUntil) {
		cs.pausedUntil = until
	}
	window := max(retryAfter, time.Second)
	if cs.lastCut.IsZero() || now.Sub(cs.lastCut) >= window {
		cs.factor = max(minFactor, cs.factor*cutFactor)
		cs.lastCut = now
		l.apply(cs, now)
	}
	cs.lastStep = now
}

// Admitted tells the limiter that the registry answered a request of class
// with anything but 429.
func (l *Limiter) Admitted(class Class) {
	if l != nil && class == ClassDelete && l.deletes != nil {
		l.deletes.Admitted()
	}
}

// Factor returns the class's current adaptive factor (1 = full configured
// rate), for observability and tests.
func (l *Limiter) Factor(class Class) float64 {
	if l == nil || class < 0 || class >= numClasses {
		return 1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := &l.classes[class]
	l.recover(cs, l.now())
	return cs.factor
}

// Throttles returns how many 429s were reported for class.
func (l *Limiter) Throttles(class Class) int {
	if l == nil || class < 0 || class >= numClasses {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.classes[class].throttles
}

// recover applies the additive increase for the quiet time since the last
// 429 or step. Called with l.mu held.
func (l *Limiter) recover(cs *classState, now time.Time) {
	if cs.factor >= 1 {
		return
	}
	steps := int(now.Sub(cs.lastStep) / recoverEvery)
	if steps <= 0 {
		return
	}
	cs.factor = min(1, cs.factor+float64(steps)*recoverStep)
	cs.lastStep = cs.lastStep.Add(time.Duration(steps) * recoverEvery)
	l.apply(cs, now)
}

func (l *Limiter) apply(cs *classState, now time.Time) {
	if cs.lim != nil {
		cs.lim.SetLimitAt(now, rate.Limit(cs.base*cs.factor))
	}
}

// sleep waits for d or until ctx ends, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

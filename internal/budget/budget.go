package budget

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
)

// Gate is what a rate-limited caller needs from a budget: acr.Limiter
// consumes one for its delete class. *Budget implements it.
type Gate interface {
	// Wait blocks until one request may start, or ctx ends.
	Wait(ctx context.Context) error
	// Throttled reports a 429 with its Retry-After.
	Throttled(retryAfter time.Duration)
	// Admitted reports a request the registry did not refuse.
	Admitted()
}

var _ Gate = (*Budget)(nil)

// Bounds and defaults of Options.
const (
	MaxPerMinute     = 1_000_000
	MaxInstances     = 1000
	DefaultWindow    = time.Second
	MinWindow        = 100 * time.Millisecond
	MaxWindow        = 10 * time.Second
	DefaultSlices    = 4
	DefaultOpTimeout = 2 * time.Second
	DefaultRetry     = 5 * time.Second
	DefaultProbe     = 2 * time.Second
)

// Tuning of the adaptive rate (see the package documentation).
const (
	slots         = 32   // window rows, reused round robin
	belowAdmitted = 0.97 // a cut sets the rate to this fraction of the admitted rate
	minCutFactor  = 0.95 // every cut lowers the rate by at least 5 %
	maxCutDivisor = 8    // and by at most ÷8
	floorFraction = 0.01 // never below 1 % of the budget (nor 1/min)
	probeStep     = 0.02 // × (1 + probeStep·q) after the q-th quiet step
	kneeBelow     = 0.99 // fast probing stops here, below the last admitted rate
	kneeStep      = 0.005
	kneeMemory    = 30 * time.Second // after this without a cut, probe fast again
	histLen       = 64
	maxAttempts   = 8 // table writes per claim before giving the turn away
)

// Options configure a Budget.
type Options struct {
	// PerMinute is the budget of the whole registry
	// (PURGE_DELETES_PER_MINUTE), 1 to MaxPerMinute.
	PerMinute int
	// MaxInstances (PURGE_MAX_INSTANCES) divides the rate into the local
	// share an instance keeps to while the shared store is unreachable;
	// default 1. 1 to MaxInstances.
	MaxInstances int
	// Scope names what the budget governs, the registry's host; instances
	// with the same scope and table share one budget. Required for
	// NewShared.
	Scope string
	// Window is the length of a window (default 1 s, 100 ms to 10 s).
	Window time.Duration
	// Slices is how many slices a window is cut into (default 4).
	Slices int
	// OpTimeout bounds each table call (default 2 s).
	OpTimeout time.Duration
	// RetryStoreEvery is how often an instance on its local share tries
	// the store again (default 5 s).
	RetryStoreEvery time.Duration
	// ProbeEvery is the quiet time after which the rate is raised a step
	// (default 2 s).
	ProbeEvery time.Duration
	// Logger receives the fallback warning and recovery notice; nil
	// discards.
	Logger *slog.Logger
	// Now and Sleep are the clock; default the wall clock. Sleep waits d
	// or until ctx ends.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

func (o *Options) check(shared bool) error {
	var errs []error
	if o.PerMinute < 1 || o.PerMinute > MaxPerMinute {
		errs = append(errs, fmt.Errorf("deletes per minute must be from 1 to %d, got %d", MaxPerMinute, o.PerMinute))
	}
	if o.MaxInstances == 0 {
		o.MaxInstances = 1
	}
	if o.MaxInstances < 1 || o.MaxInstances > MaxInstances {
		errs = append(errs, fmt.Errorf("maximum instance count must be from 1 to %d, got %d", MaxInstances, o.MaxInstances))
	}
	if shared && o.Scope == "" {
		errs = append(errs, errors.New("a shared budget needs a scope (the registry host)"))
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.Window < MinWindow || o.Window > MaxWindow {
		errs = append(errs, fmt.Errorf("window must be from %s to %s, got %s", MinWindow, MaxWindow, o.Window))
	}
	if o.Slices == 0 {
		o.Slices = DefaultSlices
	}
	if o.Slices < 1 || o.Slices > 100 {
		errs = append(errs, fmt.Errorf("slices per window must be from 1 to 100, got %d", o.Slices))
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	if o.RetryStoreEvery <= 0 {
		o.RetryStoreEvery = DefaultRetry
	}
	if o.ProbeEvery <= 0 {
		o.ProbeEvery = DefaultProbe
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("budget: %w", err)
	}
	return nil
}

// Budget is a delete budget shared by every instance using the same store
// and scope. It is safe for concurrent use.
type Budget struct {
	o      Options
	st     store
	shared bool
	budget float64 // per minute
	floor  float64 // lowest rate, per minute

	mu sync.Mutex
	// The rate as this instance knows it.
	rate        float64 // per minute
	gen         int64
	rateRow     fields // cached rate row and its ETag ("" = unknown)
	rateETag    string
	rateReadAt  time.Time
	needRate    bool
	cutAt       time.Time
	pausedUntil time.Time
	// The current window.
	win    int64
	tokens []time.Time // release times of leased, not yet handed out, tokens of win
	full   int64       // window known to be exhausted
	isFull bool
	slot   map[int64]cachedRow // slot → the row as this instance last saw it
	// One claim at a time; the others wait for it.
	claiming  bool
	claimDone chan struct{}
	waiting   int // goroutines in Wait without a token
	hist      [histLen]winStats
	bit       uint      // this instance's bit in window rows' Members
	heldUntil time.Time // release time of the last token this instance leased
	recut     bool      // after a cut: lease the rest of window recutWin at the new rate
	recutWin  int64
	// Fallback to the local share.
	fallback  bool
	retryAt   time.Time // next attempt at the store
	localNext time.Time // local pacing
	stats     Stats
	admitted  slider // requests the registry did not refuse
}

type cachedRow struct {
	f    fields
	etag string
}

// winStats is what this instance did in one window.
type winStats struct {
	win           int64
	own, observed int64 // tokens it leased; the row's Claimed it last saw
	members       int64 // the row's Members it last saw
}

// Stats are counters for observability and benchmarks.
type Stats struct {
	// Granted is the tokens handed out (requests let through).
	Granted int64
	// Throttled is the 429s reported; Cuts the rate cuts this instance made.
	Throttled, Cuts int64
	// TableOps is the store calls made; Claims the slices leased.
	TableOps, Claims int64
	// LocalGrants were handed out on the local share (store unreachable);
	// Outages counts the times the instance fell back.
	LocalGrants, Outages int64
}

// NewLocal returns a budget for this process alone (the CLI): the same
// algorithm on an in-memory store, which never fails.
func NewLocal(o Options) (*Budget, error) {
	if err := o.check(false); err != nil {
		return nil, err
	}
	return newBudget(o, newMemStore(), false), nil
}

// NewShared returns a budget shared through the table tbl names (the
// checkpoint table), in partition "budget|<Scope>". It makes no request:
// an unreachable store shows at the first Wait, which falls back to the
// local share. tbl's ClientOptions are replaced: no SDK retries, per-try
// timeout OpTimeout (the caller's Transport is kept).
func NewShared(tbl checkpoint.TableOptions, o Options) (*Budget, error) {
	if err := o.check(true); err != nil {
		return nil, err
	}
	co := &aztables.ClientOptions{}
	if tbl.ClientOptions != nil {
		co.Transport = tbl.ClientOptions.Transport
	}
	co.Retry = policy.RetryOptions{MaxRetries: -1, TryTimeout: o.OpTimeout}
	tbl.ClientOptions = co
	c, err := checkpoint.NewTableClient(tbl)
	if err != nil {
		return nil, fmt.Errorf("budget: %w", err)
	}
	return newBudget(o, &tableStore{c: c, pk: partitionKey(o.Scope)}, true), nil
}

func newBudget(o Options, st store, shared bool) *Budget {
	b := &Budget{o: o, st: st, shared: shared, budget: float64(o.PerMinute), slot: map[int64]cachedRow{}}
	b.floor = max(1, floorFraction*b.budget)
	b.rate = b.budget
	b.needRate = true
	b.win = math.MinInt64
	b.bit = uint(rand.IntN(63))
	return b
}

// PerMinute is the configured budget.
func (b *Budget) PerMinute() int { return b.o.PerMinute }

// Rate is the rate this instance currently applies, per minute: the shared
// rate (the budget, or lower after 429s), or its local share while the store
// is unreachable.
func (b *Budget) Rate() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fallback {
		return b.rate / float64(b.o.MaxInstances)
	}
	return b.rate
}

// Fallback reports whether the instance is on its local share.
func (b *Budget) Fallback() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fallback
}

// Stats returns the counters.
func (b *Budget) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// Admitted reports a request the registry did not refuse: the cut after a
// 429 is to just below the rate of these.
func (b *Budget) Admitted() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.admitted.add(b.o.Now())
}

// slider counts events in 50 ms buckets over the last 3.2 s.
type slider struct {
	at [sliderBuckets]int64
	n  [sliderBuckets]int64
}

const (
	sliderBucket  = 50 * time.Millisecond
	sliderBuckets = 64
)

func (s *slider) add(t time.Time) {
	i := t.UnixNano() / int64(sliderBucket)
	j := uint64(i) % sliderBuckets
	if s.at[j] != i {
		s.at[j], s.n[j] = i, 0
	}
	s.n[j]++
}

// count is the events in the buckets that cover the span up to to (at
// most 3 s), and the time those buckets cover.
func (s *slider) count(to time.Time, span time.Duration) (int64, time.Duration) {
	hi := to.UnixNano() / int64(sliderBucket)
	lo := hi - int64(span/sliderBucket)
	var n int64
	for j := range s.at {
		if s.at[j] >= lo && s.at[j] <= hi {
			n += s.n[j]
		}
	}
	return n, to.Sub(time.Unix(0, lo*int64(sliderBucket)))
}

// windowOf is the window holding t.
func (b *Budget) windowOf(t time.Time) int64 {
	return floorDiv(t.UnixNano(), int64(b.o.Window))
}

func (b *Budget) start(k int64) time.Time { return time.Unix(0, k*int64(b.o.Window)) }

func floorDiv(a, n int64) int64 {
	q := a / n
	if a%n != 0 && (a < 0) != (n < 0) {
		q--
	}
	return q
}

// capacity is window k's share of rate (per minute): ⌊r(k+1)⌋ − ⌊rk⌋.
func (b *Budget) capacity(rate float64, k int64) int64 {
	r := rate / 60 * b.o.Window.Seconds()
	return int64(math.Floor(r*float64(k+1)) - math.Floor(r*float64(k)))
}

// slice is the most one lease takes of a window of capacity c.
func (b *Budget) slice(c int64) int64 {
	return max(1, (c+int64(b.o.Slices)-1)/int64(b.o.Slices))
}

// seen is the members this instance saw lease in windows from..to.
func (b *Budget) seen(from, to int64) int64 {
	var m int64
	for j := from; j <= to; j++ {
		if h := b.hist[uint64(j)%histLen]; h.win == j {
			m |= h.members
		}
	}
	return m
}

func (b *Budget) histAt(k int64) *winStats {
	h := &b.hist[uint64(k)%histLen]
	if h.win != k {
		*h = winStats{win: k}
	}
	return h
}

// Wait blocks until one delete may start, or ctx ends.
func (b *Budget) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	b.waiting++
	for {
		now := b.o.Now()
		if p := b.pausedUntil.Sub(now); p > 0 {
			if err := b.sleepUnlocked(ctx, p); err != nil {
				return err
			}
			continue
		}
		k := b.windowOf(now)
		if k != b.win {
			b.win, b.tokens = k, b.tokens[:0]
		}
		if len(b.tokens) > 0 {
			t := b.tokens[0]
			b.tokens = b.tokens[1:]
			if d := t.Sub(now); d > 0 {
				// Wait for the token's place in the window.
				if err := b.sleepUnlocked(ctx, d); err != nil {
					return err
				}
			}
			b.waiting--
			b.stats.Granted++
			b.mu.Unlock()
			return nil
		}
		if b.fallback && (b.claiming || now.Before(b.retryAt)) {
			d := b.localDelay(now)
			b.waiting--
			b.stats.Granted++
			b.stats.LocalGrants++
			b.mu.Unlock()
			return b.o.Sleep(ctx, d)
		}
		if b.isFull && b.full == k {
			// Wake after the next window opens; when other instances share
			// the budget, spread over its first half so that they do not
			// all hit its row at once (the tokens are released by their
			// place in the window, not by when they were leased).
			spread := b.o.Window / 50
			if bits.OnesCount64(uint64(b.seen(k-1, k))) > 1 {
				spread = b.o.Window / 2
			}
			d := b.start(k+1).Sub(now) + randDuration(spread)
			if err := b.sleepUnlocked(ctx, d); err != nil {
				return err
			}
			continue
		}
		// The next lease waits until the last one is used up: the others
		// get their turn in between (its tokens would come after that one's
		// anyway, by their place in the window).
		if d := b.heldUntil.Sub(now); d > 0 {
			if err := b.sleepUnlocked(ctx, d); err != nil {
				return err
			}
			continue
		}
		if b.claiming {
			done := b.claimDone
			b.mu.Unlock()
			select {
			case <-done:
			case <-ctx.Done():
				b.mu.Lock()
				b.waiting--
				b.mu.Unlock()
				return ctx.Err()
			}
			b.mu.Lock()
			continue
		}
		b.claim(now, k)
	}
}

// sleepUnlocked sleeps d with b.mu released; on error the waiter leaves.
// b.mu is held again when it returns nil.
func (b *Budget) sleepUnlocked(ctx context.Context, d time.Duration) error {
	b.mu.Unlock()
	if err := b.o.Sleep(ctx, d); err != nil {
		b.mu.Lock()
		b.waiting--
		b.mu.Unlock()
		return err
	}
	b.mu.Lock()
	return nil
}

// localDelay reserves the next token of the local share.
func (b *Budget) localDelay(now time.Time) time.Duration {
	share := max(b.rate/float64(b.o.MaxInstances), 1e-3)
	interval := time.Duration(float64(time.Minute) / share)
	next := b.localNext
	if next.Before(now) {
		next = now
	}
	b.localNext = next.Add(interval)
	return next.Sub(now)
}

// claim leases a slice of window k for the waiters. Called with b.mu held;
// the store calls run without it, and it is held again on return.
func (b *Budget) claim(now time.Time, k int64) {
	b.claiming = true
	b.claimDone = make(chan struct{})
	in := claimInput{
		k: k, now: now, want: int64(max(b.waiting-len(b.tokens), 1)),
		bit:  b.bit,
		rate: b.rate, gen: b.gen, refresh: b.needRate || now.Sub(b.rateReadAt) >= 2*b.o.Window,
		rateRow: b.rateRow, rateETag: b.rateETag,
		recut: b.recut && b.recutWin == k,
	}
	in.prev = b.seen(k-2, k-1)
	// The row as this instance last wrote it saves a read only while no
	// other instance writes: with others around, it is stale.
	if c, ok := b.slot[k%slots]; ok && bits.OnesCount64(uint64(b.seen(k-2, k))) <= 1 {
		in.cached = &c
	}
	b.mu.Unlock()
	out := b.lease(in)
	b.mu.Lock()
	defer func() {
		b.claiming = false
		close(b.claimDone)
	}()
	b.stats.TableOps += int64(out.ops)
	if out.err != nil {
		b.storeFailed(now, out.err)
		return
	}
	if b.fallback {
		b.fallback = false
		b.o.Logger.Info("shared delete budget reachable again: back on the registry-wide budget",
			slog.String("scope", b.o.Scope), slog.Float64("ratePerMinute", b.rate))
	}
	if out.rateRow != nil {
		b.applyRateRow(out.rateRow, out.rateETag, now)
	}
	if out.newerGen {
		b.needRate = true
	}
	if out.slot != nil {
		b.slot[k%slots] = *out.slot
	} else {
		delete(b.slot, k%slots)
	}
	h := b.histAt(k)
	h.observed = max(h.observed, out.observed)
	h.members |= out.members
	if out.n > 0 {
		b.stats.Claims++
		h.own += out.n
		if b.win == k {
			// Each token at its place in the window, but not before its
			// place counted from now, one step after this instance's last
			// token: a late lease is paced, not burst.
			end := b.start(k + 1)
			step := float64(b.o.Window) / float64(out.cap)
			if out.paced > 0 {
				step = float64(b.o.Window) / float64(out.paced)
			}
			base := b.o.Now()
			if next := b.heldUntil.Add(time.Duration(step)); next.After(base) {
				base = next
			}
			for j := out.from; j < out.from+out.n; j++ {
				t := b.start(k).Add(time.Duration(step * float64(j)))
				if out.paced > 0 {
					t = base // a recut window is paced from now only
				}
				if paced := base.Add(time.Duration(step * float64(j-out.from))); paced.After(t) {
					t = paced
				}
				if !t.Before(end) {
					break // the store call took too long: these are lost
				}
				b.tokens = append(b.tokens, t)
				b.heldUntil = t
			}
		}
	}
	if out.exhausted {
		b.full, b.isFull = k, true
	}
	if in.recut && (out.n > 0 || out.exhausted) {
		b.recut = false
	}
}

// storeFailed switches to the local share, warning once per outage.
func (b *Budget) storeFailed(now time.Time, err error) {
	b.retryAt = now.Add(b.o.RetryStoreEvery)
	if b.fallback {
		b.o.Logger.Debug("shared delete budget still unreachable", slog.String("error", err.Error()))
		return
	}
	b.fallback = true
	b.stats.Outages++
	b.localNext = now
	b.o.Logger.Warn("shared delete budget unreachable: this instance keeps to its local share until the store answers again",
		slog.String("scope", b.o.Scope), slog.Int("budgetPerMinute", b.o.PerMinute),
		slog.Int("maxInstances", b.o.MaxInstances), slog.Float64("localSharePerMinute", b.rate/float64(b.o.MaxInstances)),
		slog.Duration("retryEvery", b.o.RetryStoreEvery), slog.String("error", err.Error()))
}

// applyRateRow adopts the shared rate row. Called with b.mu held.
func (b *Budget) applyRateRow(f fields, etag string, now time.Time) {
	b.rateRow, b.rateETag, b.rateReadAt, b.needRate = f, etag, now, false
	b.gen = f["Gen"]
	b.rate = b.effective(f)
	if cut := time.UnixMilli(f["CutAt"]); f["CutAt"] > 0 && cut.After(b.cutAt) {
		b.cutAt = cut
	}
	if p := time.UnixMilli(f["PausedUntil"]); f["PausedUntil"] > 0 && p.After(b.pausedUntil) {
		b.pausedUntil = p
	}
}

// effective is the rate a rate row gives this instance: the shared rate,
// capped by this instance's budget; a row that is fully recovered at
// another budget (the setting was changed) counts as this budget.
func (b *Budget) effective(f fields) float64 {
	r := float64(f["Rate"]) / 1000
	if c := float64(f["Ceiling"]); c > 0 && r >= c {
		return b.budget
	}
	return max(min(r, b.budget), b.floor)
}

// Throttled reports a 429: the shared rate is cut to just below what the
// registry admitted (at most once per window or Retry-After, across all
// instances), and a Retry-After beyond one second pauses every instance for
// the rest of it.
func (b *Budget) Throttled(retryAfter time.Duration) {
	b.mu.Lock()
	now := b.o.Now()
	b.stats.Throttled++
	interval := max(b.o.Window, retryAfter)
	if !b.cutAt.IsZero() && now.Sub(b.cutAt) < interval {
		b.mu.Unlock()
		return
	}
	newRate, knee := b.cutRate(now)
	pause := retryAfter - time.Second
	b.cutAt = now
	b.rate = newRate
	b.stats.Cuts++
	if pause > 0 && now.Add(pause).After(b.pausedUntil) {
		b.pausedUntil = now.Add(pause)
	}
	// The tokens leased at the old rate and not handed out yet go; the
	// rest of this window is leased again at the new rate (recut), rather
	// than lost because the old rate's leases already filled its row.
	b.tokens = b.tokens[:0]
	b.recut, b.recutWin = true, b.windowOf(now)
	if b.isFull && b.full == b.recutWin {
		b.isFull = false
	}
	if b.fallback {
		b.mu.Unlock()
		return
	}
	row, etag := b.rateRow, b.rateETag
	b.mu.Unlock()

	f, tag, wrote, ops, err := b.writeCut(row, etag, now, interval, newRate, knee, pause)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats.TableOps += int64(ops)
	if err != nil {
		b.storeFailed(now, err)
		return
	}
	if f != nil {
		b.applyRateRow(f, tag, now)
		if wrote {
			b.rate = min(b.rate, newRate)
		}
	}
}

// cutRate is the rate after a 429 at now: just below what the registry
// admitted over the last second (or window, if longer): this instance's
// admitted requests, scaled up by its share of the leases in that time (the
// others were admitted in the same proportion), and that admitted rate, 0
// if unknown. Called with b.mu held.
func (b *Budget) cutRate(now time.Time) (next, admitted float64) {
	span := min(max(time.Second, b.o.Window), 3*time.Second)
	next = b.rate * 0.5
	if adm, covered := b.admitted.count(now, span); adm > 0 {
		est := float64(adm) / covered.Minutes()
		var own, obs int64
		for j := b.windowOf(now.Add(-span)); j <= b.windowOf(now); j++ {
			if h := b.hist[uint64(j)%histLen]; h.win == j {
				own += h.own
				obs += max(h.observed, h.own)
			}
		}
		if own > 0 && obs > own {
			est *= float64(obs) / float64(own)
		}
		next, admitted = est*belowAdmitted, est
	}
	next = min(next, b.rate*minCutFactor)
	next = max(next, b.rate/maxCutDivisor, b.floor)
	return next, admitted
}

// ctxOp is the context of one store call.
func (b *Budget) ctxOp() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), b.o.OpTimeout)
}

func randDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

// sleep waits for d or until ctx ends.
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

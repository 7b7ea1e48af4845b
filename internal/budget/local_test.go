package budget

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
)

func TestOptionsAreChecked(t *testing.T) {
	cases := []struct {
		o    Options
		want string
	}{
		{Options{PerMinute: 0}, "deletes per minute must be from 1 to 1000000, got 0"},
		{Options{PerMinute: -5}, "got -5"},
		{Options{PerMinute: 1_000_001}, "got 1000001"},
		{Options{PerMinute: 100, MaxInstances: -1}, "maximum instance count must be from 1 to 1000, got -1"},
		{Options{PerMinute: 100, MaxInstances: 1001}, "got 1001"},
		{Options{PerMinute: 100, Window: 10 * time.Millisecond}, "window must be from 100ms to 10s"},
		{Options{PerMinute: 100, Slices: 101}, "slices per window"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			_, err := NewLocal(c.o)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	_, err := NewShared(checkpoint.TableOptions{ConnectionString: "UseDevelopmentStorage=true"}, Options{PerMinute: 100})
	require.ErrorContains(t, err, "needs a scope")
	_, err = NewShared(checkpoint.TableOptions{}, Options{PerMinute: 100, Scope: "contoso.azurecr.io"})
	require.ErrorContains(t, err, "no table storage configured")
	b, err := NewLocal(Options{PerMinute: 250})
	require.NoError(t, err)
	assert.Equal(t, 250, b.PerMinute())
	assert.InDelta(t, 250, b.Rate(), 0)
}

func TestCapacityAddsUpFractionalRates(t *testing.T) {
	for _, tc := range []struct {
		perMinute int
		window    time.Duration
	}{{50, time.Second}, {100, time.Second}, {1200, time.Second}, {7, 100 * time.Millisecond}, {2000, 1500 * time.Millisecond}} {
		t.Run(fmt.Sprintf("%d per min, %s", tc.perMinute, tc.window), func(t *testing.T) {
			b, err := NewLocal(Options{PerMinute: tc.perMinute, Window: tc.window})
			require.NoError(t, err)
			k0 := b.windowOf(time.Now())
			windows := int64(10 * time.Minute / tc.window)
			var sum int64
			for k := k0; k < k0+windows; k++ {
				c := b.capacity(b.budget, k)
				require.GreaterOrEqual(t, c, int64(0))
				sum += c
			}
			// Ten minutes hold ten budgets, give or take the rounding of
			// the two ends.
			assert.InDelta(t, 10*tc.perMinute, sum, 1)
		})
	}
}

// waitN calls Wait n times from one goroutine and returns when each call
// returned, on the budget's clock.
func waitN(t *testing.T, b *Budget, c *fakeClock, n int) []time.Time {
	t.Helper()
	out := make([]time.Time, 0, n)
	for range n {
		require.NoError(t, b.Wait(t.Context()))
		out = append(out, c.Now())
	}
	return out
}

func TestLocalHoldsTheBudgetInEveryWindow(t *testing.T) {
	c := newFakeClock()
	b, err := NewLocal(c.options(Options{PerMinute: 600})) // 10 per 1 s window
	require.NoError(t, err)
	times := waitN(t, b, c, 100)
	counts := perWindow(times, time.Second)
	first, last := b.windowOf(times[0]), b.windowOf(times[len(times)-1])
	for k, n := range counts {
		assert.LessOrEqual(t, n, 10, "window %d", k)
		if k != first && k != last {
			assert.Equal(t, 10, n, "window %d: a whole window is used", k)
		}
	}
	// The clock starts 100 ms into the first window: 9 of its 10 still fit
	// at the window's pace; no catching up with a burst.
	assert.Equal(t, 9, counts[first])
	// Spread over each window, never fired at once: one every 100 ms (a
	// new window is entered up to 20 ms late, then paced from there).
	for i := 1; i < len(times); i++ {
		assert.GreaterOrEqual(t, times[i].Sub(times[i-1]), 80*time.Millisecond, "delete %d", i)
	}
	assert.EqualValues(t, 100, b.Stats().Granted)
}

func TestWaitEndsWithItsContext(t *testing.T) {
	c := newFakeClock()
	b, err := NewLocal(c.options(Options{PerMinute: 60}))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, b.Wait(ctx), context.Canceled)
	// A cancelled waiter leaves no trace: the next one still gets through.
	require.NoError(t, b.Wait(t.Context()))
}

// registry plays the registry's answers to the budget: each delete the
// budget lets through is admitted unless refuse says otherwise.
type registry struct {
	b        *Budget
	c        *fakeClock
	admitted []time.Time
	// atCut is the rate admitted over the second before the last cut.
	atCut float64
}

func (r *registry) send(t *testing.T, n int, refuse func(i int) bool) {
	t.Helper()
	for i := range n {
		require.NoError(t, r.b.Wait(t.Context()))
		if refuse != nil && refuse(i) {
			cuts := r.b.Stats().Cuts
			r.b.Throttled(time.Second)
			if r.b.Stats().Cuts > cuts {
				r.atCut = r.admittedPerMinute()
			}
			continue
		}
		r.b.Admitted()
		r.admitted = append(r.admitted, r.c.Now())
	}
}

// admittedPerMinute is the rate admitted over the second before now.
func (r *registry) admittedPerMinute() float64 {
	now := r.c.Now()
	n := 0
	for _, at := range r.admitted {
		if now.Sub(at) < time.Second {
			n++
		}
	}
	return 60 * float64(n)
}

func TestThrottledCutsBelowWhatWasAdmittedThenProbesBackUp(t *testing.T) {
	c := newFakeClock()
	const budget = 3600 // 60 per 1 s window
	b, err := NewLocal(c.options(Options{PerMinute: budget}))
	require.NoError(t, err)
	reg := &registry{b: b, c: c}
	reg.send(t, 150, nil)

	// The registry starts refusing: the first 429 cuts at once, to just
	// below what was admitted over the last second (all of it, here).
	reg.send(t, 1, func(int) bool { return true })
	assert.InDelta(t, 0.95*budget, b.Rate(), 0.06*budget, "just below what was admitted: everything, here")
	// More 429s within the same second do not cut again.
	for range 18 {
		b.Throttled(time.Second)
	}
	assert.EqualValues(t, 1, b.Stats().Cuts, "one cut per window/Retry-After, however many 429s")

	// The registry admits one in three: the next cut (a second after the
	// first) is to just below that.
	for b.Stats().Cuts < 2 {
		reg.send(t, 3, func(i int) bool { return i > 0 })
	}
	admitted := reg.atCut
	cut := b.Rate()
	assert.InDelta(t, 0.95*admitted, cut, 0.1*admitted, "just below what was admitted (%.0f/min)", admitted)

	// The next windows' deletes keep to the cut rate.
	times := make([]time.Time, 0, 60)
	for range 60 {
		reg.send(t, 1, nil)
		times = append(times, c.Now())
	}
	for k, n := range perWindow(times, time.Second) {
		assert.LessOrEqual(t, float64(n), cut/60+1, "window %d", k)
	}

	// Quiet: the rate probes back up to the budget, step by step.
	prev := b.Rate()
	rose := 0
	for range 200 {
		reg.send(t, 20, nil)
		r := b.Rate()
		require.GreaterOrEqual(t, r, prev, "the rate never falls without a 429")
		if r > prev {
			rose++
		}
		prev = r
	}
	assert.InDelta(t, float64(budget), b.Rate(), 0)
	assert.Greater(t, rose, 3, "back up in several steps, not at once")
}

func TestLongRetryAfterPausesTheRestOfIt(t *testing.T) {
	c := newFakeClock()
	b, err := NewLocal(c.options(Options{PerMinute: 6000}))
	require.NoError(t, err)
	waitN(t, b, c, 5)
	at := c.Now()
	b.Throttled(5 * time.Second)
	require.NoError(t, b.Wait(t.Context()))
	assert.GreaterOrEqual(t, c.Now().Sub(at), 4*time.Second, "Retry-After 5 s: the rest of it (beyond one second) is waited by every delete")

	// A one-second Retry-After is left to the cut: no pause.
	c2 := newFakeClock()
	b2, err := NewLocal(c2.options(Options{PerMinute: 6000}))
	require.NoError(t, err)
	waitN(t, b2, c2, 5)
	at = c2.Now()
	b2.Throttled(time.Second)
	require.NoError(t, b2.Wait(t.Context()))
	assert.Less(t, c2.Now().Sub(at), time.Second)
}

// TestCutMidWindowKeepsGoingAtTheNewRate: a cut does not idle the rest of
// the window (the old rate's leases fill its row): the rest is leased again
// at the new rate.
func TestCutMidWindowKeepsGoingAtTheNewRate(t *testing.T) {
	c := newFakeClock()
	c.t = c.t.Truncate(time.Second)
	b, err := NewLocal(c.options(Options{PerMinute: 3600, Slices: 1})) // one lease takes the whole window
	require.NoError(t, err)
	reg := &registry{b: b, c: c}
	reg.send(t, 30, nil)
	k := b.windowOf(c.Now())
	b.Throttled(time.Second)
	cut := b.Rate()
	require.Less(t, cut, 3600.0)
	times := waitN(t, b, c, 5)
	assert.Equal(t, k, b.windowOf(times[0]), "the window goes on after the cut")
	for i := 1; i < len(times); i++ {
		assert.GreaterOrEqual(t, times[i].Sub(times[i-1]), time.Duration(float64(time.Minute)/cut)-time.Millisecond,
			"paced at the new rate")
	}
}

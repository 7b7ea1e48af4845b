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
	assert.Len(t, counts, 10, "100 deletes at 600/min take ten windows")
	for k, n := range counts {
		assert.Equal(t, 10, n, "window %d", k)
	}
	// Spread over each window, not fired at its start (the clock starts
	// 100 ms into the first window, whose first two go at once; a new
	// window is entered up to 20 ms late, so that instances do not all hit
	// its row together).
	for i := 2; i < len(times); i++ {
		assert.GreaterOrEqual(t, times[i].Sub(times[i-1]), 75*time.Millisecond, "delete %d", i)
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

func TestThrottledCutsBelowWhatWasAdmittedThenProbesBackUp(t *testing.T) {
	c := newFakeClock()
	const budget = 3600 // 60 per 1 s window
	b, err := NewLocal(c.options(Options{PerMinute: budget}))
	require.NoError(t, err)
	sent := waitN(t, b, c, 150)
	var refused []time.Time
	throttle := func() {
		refused = append(refused, c.Now())
		b.Throttled(time.Second)
	}
	// The registry starts refusing: the first 429 cuts at once.
	throttle()
	first := c.Now()
	assert.Less(t, b.Rate(), float64(budget))
	// More 429s within the same second do not cut again, but they count.
	for range 18 {
		throttle()
	}
	sent = append(sent, waitN(t, b, c, 10)...)
	assert.EqualValues(t, 1, b.Stats().Cuts, "one cut per window/Retry-After, however many 429s")
	for c.Now().Sub(first) < time.Second {
		sent = append(sent, waitN(t, b, c, 1)...)
	}
	before := b.Rate()
	throttle()
	require.EqualValues(t, 2, b.Stats().Cuts)

	// The second cut is just below the rate the registry admitted over the
	// last second or so: what was sent minus what was refused (the 429 that
	// triggers the cut included).
	now := c.Now()
	from := time.Unix(0, (b.windowOf(now)-1)*int64(time.Second))
	count := func(ts []time.Time) int {
		n := 0
		for _, tm := range ts {
			if !tm.Before(from) {
				n++
			}
		}
		return n
	}
	admitted := float64(count(sent)-count(refused)) / now.Sub(from).Minutes()
	cut := b.Rate()
	assert.Less(t, cut, before)
	assert.LessOrEqual(t, cut, 0.95*admitted+0.01, "just below what was admitted")
	assert.Greater(t, cut, 0.9*admitted)
	assert.GreaterOrEqual(t, cut, before/maxCutDivisor)

	// The next windows' deletes keep to the cut rate.
	counts := perWindow(waitN(t, b, c, 60), time.Second)
	for k, n := range counts {
		assert.LessOrEqual(t, float64(n), cut/60+1, "window %d", k)
	}

	// Quiet: the rate probes back up to the budget, step by step.
	prev := b.Rate()
	rose := 0
	for range 200 {
		waitN(t, b, c, 20)
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

package budget

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
)

const scope = "contoso.azurecr.io"

// TestSharedBudgetHoldsAcrossInstances runs four instances, each with its
// own table client, on one table and counts when their waits return: in no
// window do they start more than the window's capacity and one slice.
func TestSharedBudgetHoldsAcrossInstances(t *testing.T) {
	tbl := sharedTable(t)
	const (
		perMinute = 6000 // 100/s: 20 per 200 ms window
		window    = 200 * time.Millisecond
		instances = 4
		workers   = 6
	)
	var mu sync.Mutex
	var all []time.Time
	got := make([]int, instances)
	ctx, cancel := context.WithTimeout(t.Context(), 2500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	budgets := make([]*Budget, instances)
	for i := range instances {
		b, err := NewShared(tbl, Options{PerMinute: perMinute, Scope: scope, Window: window, MaxInstances: instances})
		require.NoError(t, err)
		budgets[i] = b
		for range workers {
			wg.Go(func() {
				for b.Wait(ctx) == nil {
					now := time.Now()
					mu.Lock()
					all = append(all, now)
					got[i]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	ref := budgets[0]
	c := ref.capacity(perMinute, 0)
	require.EqualValues(t, 20, c)
	for k, n := range perWindow(all, window) {
		assert.LessOrEqual(t, int64(n), c+ref.slice(c), "window %d: %d deletes started", k, n)
	}
	for i, b := range budgets {
		assert.Positive(t, got[i], "instance %d got a share", i)
		assert.False(t, b.Fallback(), "instance %d stayed on the shared budget", i)
	}
}

// TestDeadInstanceSliceExpiresWithItsWindow: an instance leases the whole of
// a window and dies; another gets nothing more in that window and the full
// capacity in the next.
func TestDeadInstanceSliceExpiresWithItsWindow(t *testing.T) {
	tbl := sharedTable(t)
	c := newFakeClock()
	c.t = c.t.Truncate(time.Second)                                  // at a window's start: all of it still fits
	o := c.options(Options{PerMinute: 600, Scope: scope, Slices: 1}) // 10 per 1 s window, one slice
	dead, err := NewShared(tbl, o)
	require.NoError(t, err)
	now := c.Now()
	k := dead.windowOf(now)
	out := dead.lease(claimInput{k: k, now: now, want: 10, rate: 600, refresh: true})
	require.NoError(t, out.err)
	require.EqualValues(t, 10, out.n, "the dead instance leased the whole window")
	// It never uses them.

	alive, err := NewShared(tbl, o)
	require.NoError(t, err)
	times := waitN(t, alive, c, 21)
	counts := perWindow(times, time.Second)
	assert.Zero(t, counts[k], "nothing left in the dead instance's window")
	assert.Equal(t, 10, counts[k+1], "its slice expired: the next window is whole")
	for w, n := range counts {
		assert.LessOrEqual(t, n, 10, "window %d", w)
	}
}

// TestThrottledSlowsEveryInstance: a 429 reported by one instance lowers the
// rate the other applies.
func TestThrottledSlowsEveryInstance(t *testing.T) {
	tbl := sharedTable(t)
	c := newFakeClock()
	const budget = 1200 // 20 per window
	o := c.options(Options{PerMinute: budget, Scope: scope, ProbeEvery: time.Hour})
	a, err := NewShared(tbl, o)
	require.NoError(t, err)
	b, err := NewShared(tbl, o)
	require.NoError(t, err)
	var times []time.Time
	for range 30 {
		times = append(times, waitN(t, a, c, 1)...)
		times = append(times, waitN(t, b, c, 1)...)
	}
	a.Throttled(time.Second)
	cut := a.Rate()
	require.Less(t, cut, float64(budget))
	assert.InDelta(t, float64(budget), b.Rate(), 0, "b has not looked yet")

	times = times[:0]
	for range 40 {
		times = append(times, waitN(t, b, c, 1)...)
		times = append(times, waitN(t, a, c, 1)...)
	}
	assert.InDelta(t, cut, b.Rate(), 0.001, "b applies the cut rate too")
	counts := perWindow(times, time.Second)
	last := a.windowOf(c.Now())
	for k, n := range counts {
		if k == last {
			continue // still filling
		}
		assert.LessOrEqual(t, float64(n), cut/60+1, "window %d: both instances together keep to the cut rate", k)
	}
	assert.Zero(t, a.Stats().Outages+b.Stats().Outages)
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestFallsBackToTheLocalShareWhenTheStoreIsDown(t *testing.T) {
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	}))
	t.Cleanup(hanging.Close)
	for name, endpoint := range map[string]string{
		"closed port":    "http://" + closedPort(t) + "/devstoreaccount1",
		"hanging server": hanging.URL + "/devstoreaccount1",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var logs logBuffer
			c := newFakeClock()
			b, err := NewShared(checkpoint.TableOptions{ConnectionString: azurite.ConnString(endpoint), Table: "budgetdown"},
				c.options(Options{PerMinute: 600, MaxInstances: 10, Scope: scope, OpTimeout: 300 * time.Millisecond, Logger: logs.logger()}))
			require.NoError(t, err)
			times := waitN(t, b, c, 12)
			assert.True(t, b.Fallback())
			assert.InDelta(t, 60, b.Rate(), 0, "the local share: 600/min ÷ 10 instances")
			for i := 1; i < len(times); i++ {
				assert.GreaterOrEqual(t, times[i].Sub(times[i-1]), time.Second, "one per second, never unbounded (delete %d)", i)
			}
			assert.Equal(t, 1, logs.count("WARN", "shared delete budget unreachable"), "one warning per outage, not one per call")
			st := b.Stats()
			assert.EqualValues(t, 1, st.Outages)
			assert.Greater(t, st.TableOps, int64(1), "the store was tried again during the outage")
			assert.EqualValues(t, 12, st.LocalGrants)
		})
	}
}

// flaky fails every request while down, as a network outage would.
type flaky struct {
	down atomic.Bool
	rt   http.RoundTripper
}

func (f *flaky) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.down.Load() {
		return nil, errors.New("simulated network outage")
	}
	return f.rt.RoundTrip(r)
}

func TestReturnsToTheSharedBudgetWhenTheStoreRecovers(t *testing.T) {
	tbl := sharedTable(t)
	net := &flaky{rt: http.DefaultTransport}
	tbl.ClientOptions = &aztables.ClientOptions{}
	tbl.ClientOptions.Transport = &http.Client{Transport: net}
	var logs logBuffer
	c := newFakeClock()
	b, err := NewShared(tbl, c.options(Options{PerMinute: 1200, MaxInstances: 4, Scope: scope, Logger: logs.logger()}))
	require.NoError(t, err)
	waitN(t, b, c, 5)
	require.False(t, b.Fallback())

	for outage := 1; outage <= 2; outage++ {
		net.down.Store(true)
		waitN(t, b, c, 40) // 40 at 300/min: 8 s, retrying every 5 s
		require.True(t, b.Fallback())
		net.down.Store(false)
		waitN(t, b, c, 40)
		require.False(t, b.Fallback(), "back on the shared budget")
		assert.InDelta(t, 1200, b.Rate(), 0)
		assert.Equal(t, outage, logs.count("WARN", "shared delete budget unreachable"), "one warning per outage")
		assert.Equal(t, outage, logs.count("INFO", "shared delete budget reachable again"))
	}
	assert.False(t, strings.Contains(logs.b.String(), azurite.AccountKey), "no key in the logs")
}

package acr

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"
)

func TestLimiterAdaptiveFactor(t *testing.T) {
	clk := newFakeClock()
	l := NewLimiter(LimiterOptions{DeletesPerMinute: 600, Now: clk.Now})
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }

	steps := []struct {
		do   func()
		want float64
	}{
		{func() {}, 1},
		{func() { l.Throttled(ClassDelete, time.Second) }, 0.5},
		// More 429s from the same Retry-After window count once.
		{func() { clk.Advance(300 * time.Millisecond); l.Throttled(ClassDelete, time.Second) }, 0.5},
		{func() { clk.Advance(2 * time.Second); l.Throttled(ClassDelete, time.Second) }, 0.25},
		{func() { clk.Advance(9 * time.Second) }, 0.25},
		{func() { clk.Advance(time.Second) }, 0.35},      // one quiet step
		{func() { clk.Advance(20 * time.Second) }, 0.55}, // two more
		{func() { clk.Advance(time.Hour) }, 1},
	}
	for i, s := range steps {
		s.do()
		if got := l.Factor(ClassDelete); !near(got, s.want) {
			t.Fatalf("step %d: factor = %v, want %v", i, got, s.want)
		}
	}
	// Floor.
	for range 20 {
		clk.Advance(2 * time.Second)
		l.Throttled(ClassDelete, time.Second)
	}
	if got := l.Factor(ClassDelete); !near(got, minFactor) {
		t.Fatalf("factor = %v, want floor %v", got, minFactor)
	}
	if got := l.Factor(ClassRead); got != 1 {
		t.Fatalf("read factor = %v, classes must be independent", got)
	}
	if l.Throttles(ClassDelete) != 23 {
		t.Fatalf("throttles = %d", l.Throttles(ClassDelete))
	}
}

func TestLimiterRate(t *testing.T) {
	// 1200/min = 20/s with a burst of 10: 10 immediate, then one per 50ms.
	l := NewLimiter(LimiterOptions{DeletesPerMinute: 1200})
	ctx := t.Context()
	start := time.Now()
	for range 10 {
		if err := l.Wait(ctx, ClassDelete); err != nil {
			t.Fatal(err)
		}
	}
	// Upper bounds are loose (a loaded machine stalls); each still tells the
	// expected rate from the next slower one.
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Fatalf("burst took %v, want immediate (450ms would be paced at 20/s)", d)
	}
	start = time.Now()
	for range 4 {
		if err := l.Wait(ctx, ClassDelete); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > time.Second {
		t.Fatalf("4 requests at 20/s took %v, want ~200ms", d)
	}
	// Halved by a 429 with no pause: 10/s → 4 requests ~400ms.
	l.Throttled(ClassDelete, 0)
	start = time.Now()
	for range 4 {
		if err := l.Wait(ctx, ClassDelete); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 1500*time.Millisecond {
		t.Fatalf("4 requests at 10/s took %v, want ~400ms", d)
	}
	// Reads are unlimited.
	start = time.Now()
	for range 1000 {
		_ = l.Wait(ctx, ClassRead)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("unlimited reads took %v (50s if paced at 20/s)", d)
	}
}

func TestLimiterPauseAndCancel(t *testing.T) {
	l := NewLimiter(LimiterOptions{}) // everything unlimited
	l.Throttled(ClassRead, 300*time.Millisecond)
	start := time.Now()
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if err := l.Wait(t.Context(), ClassRead); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("Wait returned after %v during a 300ms pause", d)
	}
	if err := l.Wait(t.Context(), ClassDelete); err != nil {
		t.Fatal(err)
	}

	l.Throttled(ClassWrite, time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := l.Wait(ctx, ClassWrite); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("cancel took %v", d)
	}
}

func TestLimiterCancelReleasesReservation(t *testing.T) {
	l := NewLimiter(LimiterOptions{DeletesPerMinute: 60}) // 1/s, burst 1
	if err := l.Wait(t.Context(), ClassDelete); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx, ClassDelete); err == nil {
		t.Fatal("Wait did not honour the deadline")
	}
}

func TestNilLimiter(t *testing.T) {
	var l *Limiter
	if err := l.Wait(t.Context(), ClassDelete); err != nil {
		t.Fatal(err)
	}
	l.Throttled(ClassDelete, time.Second)
	if l.Factor(ClassDelete) != 1 || l.Throttles(ClassDelete) != 0 {
		t.Fatal("nil limiter must be a no-op")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := l.Wait(ctx, ClassRead); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

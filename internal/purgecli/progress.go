package purgecli

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// defaultProgressEvery is how often progress is printed on stderr; a run
// that ends sooner prints none.
const defaultProgressEvery = 2 * time.Second

// progress prints "repositories done/total, deletes, rate" to w every
// interval until stop is called.
type progress struct {
	stop func()
}

func startProgress(ctx context.Context, w io.Writer, c *collector, total int, dryRun bool, every time.Duration, now func() time.Time) *progress {
	ctx, cancel := context.WithCancel(ctx)
	start := now()
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			elapsed := now().Sub(start)
			n := c.deletes.Load()
			rate := 0.0
			if s := elapsed.Seconds(); s > 0 {
				rate = float64(n) / s
			}
			what := "deleted"
			if dryRun {
				what = "would delete (dry run)"
			}
			fmt.Fprintf(w, "progress: %d/%d repositories, %d %s, %.1f/s, %s elapsed\n",
				c.reposEnd.Load(), total, n, what, rate, elapsed.Round(time.Second))
		}
	})
	return &progress{stop: func() { cancel(); wg.Wait() }}
}

// syncWriter serialises writes from the logger and the progress printer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

package budget

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
)

// fakeClock is a clock that only moves when someone sleeps on it: tests
// driven from one goroutine see exactly the times the budget asks for.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// newFakeClock starts 100 ms into a window-aligned second, so that
// windows of 1 s and 100 ms align with the test's arithmetic.
func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Now().Truncate(time.Second).Add(100 * time.Millisecond)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.t = c.t.Add(d)
	}
	return nil
}

func (c *fakeClock) options(o Options) Options {
	o.Now, o.Sleep = c.Now, c.Sleep
	return o
}

// logBuffer collects JSON log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// count is the lines at level holding substr.
func (l *logBuffer) count(level, substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for line := range strings.SplitSeq(l.b.String(), "\n") {
		if strings.Contains(line, `"level":"`+level+`"`) && strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// sharedTable creates a fresh Azurite table and returns its options.
func sharedTable(t *testing.T) checkpoint.TableOptions {
	t.Helper()
	opts := azurite.Options(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := checkpoint.NewTable(ctx, opts)
	require.NoError(t, err)
	return opts
}

// perWindow counts times by window of w.
func perWindow(times []time.Time, w time.Duration) map[int64]int {
	out := map[int64]int{}
	for _, t := range times {
		out[floorDiv(t.UnixNano(), int64(w))]++
	}
	return out
}

package benchmarks_test

import (
	"os"
	"strings"
	"testing"

	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
	"github.com/acrpurge/acrpurge/internal/testbed/benchmarks"
)

// BenchmarkFanOut100k fans out an emulated registry of 100,000 repositories
// in batches of 10 into the in-memory store and (when Azurite is running) a
// Table store, and reports the seconds one fan-out takes and its memory
// (goal: < 10 s, < 200 MB). The scenario, and how its heap is measured, is
// benchmarks.FanOut: fanout-heap-MB is the peak HeapAlloc above the heap
// before (an upper bound), fanout-live-MB the largest live heap a GC
// measured above it, peak-heap-MB the whole process's, emulator included.
func BenchmarkFanOut100k(b *testing.B) {
	report := func(b *testing.B, r benchmarks.FanOutRun) {
		b.ReportMetric(r.Elapsed.Seconds(), "s/fanout")
		b.ReportMetric(float64(r.ProcessAlloc)/(1<<20), "peak-heap-MB")
		b.ReportMetric(float64(r.Heap.Alloc)/(1<<20), "fanout-heap-MB")
		b.ReportMetric(float64(r.Heap.Live)/(1<<20), "fanout-live-MB")
		b.ReportMetric(float64(r.SendCalls), "send-calls")
	}
	b.Run("memory", func(b *testing.B) {
		var f benchmarks.FanOutFigures
		for b.Loop() {
			var err error
			if f, err = benchmarks.FanOut(b.Context(), benchmarks.DefaultFanOut()); err != nil {
				b.Fatal(err)
			}
		}
		report(b, f.Memory)
	})
	b.Run("table", func(b *testing.B) {
		ep := strings.TrimSpace(os.Getenv(azurite.EnvEndpoint))
		if ep == "" {
			b.Skip(azurite.SkipMessage)
		}
		o := benchmarks.DefaultFanOut()
		o.TableConnString = azurite.ConnString(ep)
		var f benchmarks.FanOutFigures
		for b.Loop() {
			var err error
			if f, err = benchmarks.FanOut(b.Context(), o); err != nil {
				b.Fatal(err)
			}
		}
		report(b, *f.Table)
	})
}

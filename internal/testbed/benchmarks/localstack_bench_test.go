package benchmarks_test

import (
	"fmt"
	"testing"

	"github.com/acrpurge/acrpurge/internal/testbed/benchmarks"
)

// BenchmarkRunStack runs the nightly purge of the demo registry through the
// whole local stack (timer, queue, custom-handler protocol, Worker, emulator)
// in batches of 10, then the sequential baseline over an identical registry
// (benchmarks.LocalStack), and reports deletions per second of purging, the
// time to seed and wire the stack and the access tokens per message.
func BenchmarkRunStack(b *testing.B) {
	for _, n := range []int{70, 2000} {
		b.Run(fmt.Sprintf("repositories=%d", n), func(b *testing.B) {
			o := benchmarks.DefaultLocalStack()
			o.Repositories = n
			var f benchmarks.LocalStackFigures
			for b.Loop() {
				var err error
				if f, err = benchmarks.LocalStack(b.Context(), o); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(f.DeletesPerSecond, "deletes/s")
			b.ReportMetric(f.Setup.Seconds(), "setup-s")
			b.ReportMetric(f.Purge.Seconds(), "purge-s")
			b.ReportMetric(f.TokensPerMessage, "tokens/message")
			b.ReportMetric(f.Baseline.DeletesPerSecond, "baseline-deletes/s")
		})
	}
}

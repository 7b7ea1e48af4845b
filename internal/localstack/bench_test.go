package localstack_test

import (
	"fmt"
	"testing"

	"github.com/acrpurge/acrpurge/internal/localstack"
)

// BenchmarkRunStack runs the nightly purge of the demo registry through the
// whole local stack (timer, queue, custom-handler protocol, Worker, emulator)
// in batches of 10, and reports deletions per second of purging and the
// time to seed and wire the stack.
func BenchmarkRunStack(b *testing.B) {
	for _, n := range []int{70, 2000} {
		b.Run(fmt.Sprintf("repositories=%d", n), func(b *testing.B) {
			var res *localstack.Result
			for b.Loop() {
				var err error
				res, err = localstack.RunStack(b.Context(), localstack.Options{Repositories: n, BatchSize: 10})
				if err != nil {
					b.Fatal(err)
				}
				if bad := res.Incomplete(); len(bad) > 0 {
					b.Fatal(bad)
				}
			}
			t := res.Runs[0].Totals
			deletes := float64(t.TagsDeleted + t.ManifestsDeleted)
			b.ReportMetric(deletes/res.Timings.Triggers.Seconds(), "deletes/s")
			b.ReportMetric(res.Timings.Setup.Seconds(), "setup-s")
			b.ReportMetric(res.Timings.Triggers.Seconds(), "purge-s")
		})
	}
}

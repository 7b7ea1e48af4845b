package benchmarks_test

import (
	"runtime"
	"testing"

	"github.com/acrpurge/acrpurge/internal/testbed/benchmarks"
)

// BenchmarkPlanHugeRepository plans a repository of 1,000,000 tags and
// 200,000 manifests, streamed page by page, and reports the peak heap (goal:
// under 300 MB). The scenario lives in internal/testbed/benchmarks (PlanHuge);
// `make bench` runs it in a fresh process, this wrapper after a GC.
func BenchmarkPlanHugeRepository(b *testing.B) {
	var f benchmarks.PlanFigures
	for b.Loop() {
		runtime.GC()
		var err error
		if f, err = benchmarks.PlanHuge(b.Context(), benchmarks.DefaultPlan()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(f.Heap.Inuse)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(f.Heap.Live)/(1<<20), "peak-live-MB")
	b.ReportMetric(f.TagsPerSecond, "tags/s")
	b.ReportMetric(f.Elapsed.Seconds(), "plan-s")
	b.ReportMetric(float64(f.DeletedTags), "deleted-tags")
	b.ReportMetric(float64(f.DeletedManifests), "deleted-manifests")
	b.ReportMetric(float64(f.BodiesFetched), "bodies-fetched")
	b.Logf("decisions by reason: %v", f.Reasons)
}

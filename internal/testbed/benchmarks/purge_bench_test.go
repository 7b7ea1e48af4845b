package benchmarks_test

// Issue 4 benchmarks of the executor. The scenarios live in
// internal/testbed/benchmarks (shared with `make bench`, which prints them all in
// one table); these wrappers report their figures through b.ReportMetric.
// Each iteration is one whole run on a freshly seeded registry.

import (
	"os"
	"testing"

	"github.com/acrpurge/acrpurge/internal/testbed/benchmarks"
)

// BenchmarkThroughput: deletes/s over 200 repositories × 10 old tags with
// 50 ms emulator latency, acrpurge's batched, concurrent path against the
// strictly sequential baseline (see benchmarks.Throughput), and the access
// tokens minted per batch (goal 1). ACRPURGE_BENCH_FULL_BASELINE=1 runs the
// baseline over all 200 repositories instead of the first 20.
func BenchmarkThroughput(b *testing.B) {
	o := benchmarks.DefaultThroughput()
	if os.Getenv("ACRPURGE_BENCH_FULL_BASELINE") == "1" {
		o.BaselineRepositories = 0
	}
	var f benchmarks.ThroughputFigures
	for b.Loop() {
		var err error
		if f, err = benchmarks.Throughput(b.Context(), o); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(f.DeletesPerSecond, "deletes/s")
	b.ReportMetric(f.Elapsed.Seconds(), "acrpurge-s")
	b.ReportMetric(f.Baseline.DeletesPerSecond, "baseline-deletes/s")
	b.ReportMetric(float64(f.Baseline.Repositories), "baseline-repos")
	b.ReportMetric(f.Speedup, "x-faster")
	b.ReportMetric(f.TokensPerBatch, "tokens/batch")
	b.ReportMetric(float64(f.Baseline.Tokens)/float64(f.Baseline.Repositories), "baseline-tokens/repo")
}

// BenchmarkDeleteBudget: deletes per minute held under
// PURGE_DELETES_PER_MINUTE = 1200 (this process's budget) while the
// registry admits more writes (see benchmarks.DeleteBudget; goal 95–105 %
// of the budget, no 429).
func BenchmarkDeleteBudget(b *testing.B) {
	o := benchmarks.DefaultBudget()
	var f benchmarks.BudgetFigures
	for b.Loop() {
		var err error
		if f, err = benchmarks.DeleteBudget(b.Context(), o); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(f.PerMinute, "deletes/min")
	b.ReportMetric(f.DeviationPercent, "budget-deviation-%")
	b.ReportMetric(float64(f.Throttled), "429s")
	b.ReportMetric(float64(o.PerMinute), "budget/min")
	b.ReportMetric(o.Warmup.Seconds(), "warmup-excluded-s")
	b.ReportMetric(f.PerMinuteWithBurst, "deletes/min-incl-burst")
	b.ReportMetric(float64(f.Total), "deletes-total")
}

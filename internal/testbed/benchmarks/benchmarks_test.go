package benchmarks

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
)

// The scenarios at a tiny size, to keep them from rotting: they must run,
// do the work they claim and give sane figures. Timing is not asserted. The
// tests run in parallel: most of their time is spent waiting (deadlines,
// Retry-After), and each scenario has its own emulator.

// tinyThroughput is a throughput scenario small enough for a unit test.
func tinyThroughput() ThroughputOptions {
	return ThroughputOptions{
		Repositories: 4, OldTags: 3, KeptTags: 1, Latency: time.Millisecond,
		BatchSize: 2, InFlight: 2, Concurrency: 4, BaselineRepositories: 2,
	}
}

func TestThroughput(t *testing.T) {
	t.Parallel()
	errs := tinyThroughput()
	errs.ErrorRate, errs.FaultSeed = 0.2, 7
	storm := tinyThroughput()
	storm.Repositories, storm.OldTags, storm.BaselineRepositories = 2, 4, 0
	storm.Limits = acremu.Limits{Window: time.Second, Delete: 5}
	storm.DeletesPerMinute = 4 * 5 * 60
	for _, tc := range []struct {
		name string
		o    ThroughputOptions
	}{{"plain", tinyThroughput()}, {"5xx", errs}, {"storm", storm}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := Throughput(t.Context(), tc.o)
			require.NoError(t, err)
			o := tc.o
			assert.Equal(t, int64(o.Repositories*o.OldTags), f.Deleted+f.DeleteErrors)
			assert.Equal(t, (o.Repositories+o.BatchSize-1)/o.BatchSize, f.Batches)
			assert.Equal(t, 1.0, f.TokensPerBatch, "one access token per message")
			assert.Positive(t, f.DeletesPerSecond)
			baseRepos := o.BaselineRepositories
			if baseRepos == 0 {
				baseRepos = o.Repositories
			}
			b := f.Baseline
			assert.Equal(t, baseRepos, b.Repositories)
			assert.Equal(t, baseRepos < o.Repositories, b.Sample)
			assert.Equal(t, int64(baseRepos*o.OldTags), b.Deleted()+b.Failed)
			assert.Equal(t, baseRepos, b.Tokens, "the baseline mints one token per repository")
			assert.Positive(t, b.DeletesPerSecond)
			assert.InDelta(t, f.DeletesPerSecond/b.DeletesPerSecond, f.Speedup, 1e-9)
			switch tc.name {
			case "5xx":
				assert.Positive(t, f.Faults, "acrpurge met injected faults")
				assert.Positive(t, b.Faults, "the baseline met injected faults")
			case "storm":
				assert.Positive(t, f.Throttled, "acrpurge was throttled")
				assert.Positive(t, b.Throttled, "the baseline was throttled")
			default:
				assert.Zero(t, f.Faults+f.Throttled+b.Faults+b.Throttled)
			}
		})
	}
}

func TestDeleteBudget(t *testing.T) {
	t.Parallel()
	o := BudgetOptions{PerMinute: 600, Run: 2 * time.Second, Warmup: 500 * time.Millisecond,
		Repositories: 10, OldTags: 5, Latency: time.Millisecond, RegistryLimit: 6000}
	f, err := DeleteBudget(t.Context(), o)
	require.NoError(t, err)
	assert.False(t, f.Shared)
	assert.Positive(t, f.PerMinute)
	assert.Positive(t, f.PerMinuteWithBurst)
	assert.Zero(t, f.Throttled, "the registry's limit is above the budget")
	assert.LessOrEqual(t, f.Total, o.Repositories*o.OldTags)
	assert.Less(t, f.Total, o.Repositories*o.OldTags, "the run stopped at its deadline, before the work ran out")

	_, err = DeleteBudget(t.Context(), BudgetOptions{PerMinute: 6000, Run: 10 * time.Second, Repositories: 1, OldTags: 1})
	assert.ErrorContains(t, err, "not enough", "too little work to keep the budget busy")
}

func TestPlanHuge(t *testing.T) {
	t.Parallel()
	o := PlanOptions{Tags: 20_000, Manifests: 4_000}
	f, err := PlanHuge(t.Context(), o)
	require.NoError(t, err, "a degenerate plan is an error")
	assert.Equal(t, o.Tags, f.Tags)
	assert.Equal(t, o.Manifests, f.Manifests)
	assert.Positive(t, f.Heap.Inuse)
	assert.Positive(t, f.Heap.Live)
	assert.Positive(t, f.TagsPerSecond)
	total := 0
	for _, n := range f.Reasons {
		total += n
	}
	assert.Equal(t, o.Tags+o.Manifests, total, "one decision per tag and per manifest")
	assert.Positive(t, f.BodiesFetched)

	l, err := PlanListing(t.Context(), o)
	require.NoError(t, err)
	assert.Greater(t, l.Heap.Live, uint64(o.Tags*64), "the listing is held in memory")
}

func TestFanOut(t *testing.T) {
	t.Parallel()
	o := FanOutOptions{Repositories: 500, BatchSize: 10}
	t.Run("memory", func(t *testing.T) {
		f, err := FanOut(t.Context(), o)
		require.NoError(t, err)
		assert.Nil(t, f.Table)
		checkFanOutRun(t, o, f.Memory)
	})
	t.Run("table", func(t *testing.T) {
		o := o
		o.TableConnString = azurite.Azurite(t)
		f, err := FanOut(t.Context(), o)
		require.NoError(t, err)
		checkFanOutRun(t, o, f.Memory)
		require.NotNil(t, f.Table)
		checkFanOutRun(t, o, *f.Table)
	})
}

func checkFanOutRun(t *testing.T, o FanOutOptions, r FanOutRun) {
	t.Helper()
	assert.Equal(t, o.Repositories, r.Repositories)
	assert.Equal(t, int64(o.Repositories/o.BatchSize), r.Messages)
	assert.Positive(t, r.SendCalls)
	assert.Positive(t, r.Elapsed)
	assert.Positive(t, r.ProcessAlloc)
}

func TestLocalStack(t *testing.T) {
	t.Parallel()
	for _, sample := range []int{0, 4} {
		f, err := LocalStack(t.Context(), LocalStackOptions{Repositories: 14, BatchSize: 3, BaselineRepositories: sample})
		require.NoError(t, err, "both sides delete exactly what the seed expects")
		assert.Positive(t, f.Messages)
		assert.Equal(t, f.Messages, f.Deliveries, "nothing was delivered twice")
		assert.Equal(t, 1.0, f.TokensPerMessage, "one access token per message")
		assert.Positive(t, f.Deleted())
		assert.Positive(t, f.DeletesPerSecond)
		assert.Positive(t, f.Forbidden)
		b := f.Baseline
		assert.Equal(t, sample > 0, b.Sample)
		if sample == 0 {
			assert.Equal(t, f.Deleted(), b.Deleted(), "the same deletions on both sides")
			assert.Equal(t, f.Purged+f.Forbidden, b.Repositories)
			assert.Equal(t, f.Forbidden, b.Skipped, "the baseline skips the forbidden repositories")
		} else {
			assert.Equal(t, sample, b.Repositories)
			assert.Greater(t, f.BaselinePurge, b.Elapsed, "a sample's time is extrapolated")
		}
		assert.Positive(t, f.Speedup)
	}
}

func TestReport(t *testing.T) {
	ok := ThroughputFigures{Options: DefaultThroughput(), Deleted: 2000, Batches: 20, Tokens: 20, TokensPerBatch: 1,
		DeletesPerSecond: 200, Speedup: 10, Baseline: SequentialFigures{Repositories: 20, Sample: true, Tokens: 20, DeletesPerSecond: 20}}
	slow := ok
	slow.Speedup, slow.TokensPerBatch = 9.9, 1.5
	failed := ok
	failed.Options, failed.DeleteErrors = ErrorsScenario(), 1
	r := &Results{
		Machine:    Machine{CPUs: 2, GOMAXPROCS: 2, LoadBefore: "1.00 1.00 1.00"},
		Throughput: &slow, Errors: &failed,
		Governance: &Governance{
			Figures: GovernanceFigures{BudgetHeldPct: 105.8, InstancesTotalPct: 97, InstancesMinSharePct: 14,
				StormEfficiencyPct: 91, Storm429Pct: 2, RequestsPerDelete: 2.05, UnthrottledUtilisationPct: 45},
			Budget:      BudgetFigures{Options: DefaultBudget(), PerMinute: 1270},
			Instances:   InstancesFigures{Options: DefaultInstances(), PerInstance: []int{120, 90, 100, 110}},
			Storm:       ThroughputFigures{Options: StormScenario()},
			Unthrottled: ThroughputFigures{Options: DefaultThroughput()},
		},
		FanOut:       &FanOutFigures{Memory: FanOutRun{Repositories: 100_000, Messages: 10_000, Elapsed: 11 * time.Second, Heap: HeapPeaks{Alloc: 100 << 20}}},
		TableSkipped: "no Azurite",
		Failed:       map[string]string{ScenarioLocalStack: "boom"},
	}
	rows := r.Rows()
	byFigure := func(prefix string) Row {
		t.Helper()
		for _, row := range rows {
			if strings.HasPrefix(row.Figure, prefix) {
				return row
			}
		}
		t.Fatalf("no row %q in %v", prefix, rows)
		return Row{}
	}
	assert.Equal(t, "no (9.9×)", byFigure("deletes/s, 200 repos").Met)
	assert.Contains(t, byFigure("deletes/s, 200 repos").Baseline, "first 20 of 200 repos", "a sample says so")
	assert.Equal(t, "no", byFigure("access tokens per message").Met)
	assert.True(t, strings.HasPrefix(byFigure("deletes/s with 5 %").Met, "no"), "a failed delete misses the goal")
	assert.Equal(t, "no", byFigure("budget held").Met, "105.8 %")
	assert.Equal(t, "yes", byFigure("4 handler processes").Met)
	assert.Equal(t, "no", byFigure("  the smallest instance's share").Met, "14 %")
	assert.Contains(t, byFigure("  the smallest instance's share").Acrpurge, "120/90/100/110")
	assert.Equal(t, "yes", byFigure("429 storm: registry admits 15 writes/s").Met)
	assert.Equal(t, "yes", byFigure("  429s ÷ registry requests").Met)
	assert.Equal(t, "no", byFigure("budget lifted, 200 repos").Met)
	assert.Equal(t, "no", byFigure("  budget lifted: utilisation").Met)
	assert.Equal(t, "no", byFigure("fan-out 100,000 repos").Met, "11 s")
	assert.Equal(t, "yes", byFigure("fan-out, Memory store: heap").Met, "100 MB")
	assert.Contains(t, byFigure("fan-out, Table store").Acrpurge, "skipped: no Azurite")
	assert.Equal(t, "FAILED: boom", byFigure("local stack").Acrpurge)

	var buf bytes.Buffer
	require.NoError(t, WriteTable(&buf, rows))
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	require.Len(t, lines, len(rows)+2, "header, separator, one line per row")
	for _, l := range lines {
		assert.Equal(t, len([]rune(lines[0])), len([]rune(l)), "columns are aligned: %q", l)
		assert.Equal(t, 6, strings.Count(l, "|"), l)
	}
	notes := strings.Join(r.Notes(), "\n")
	assert.Contains(t, notes, "1.00 1.00 1.00")
	assert.Contains(t, notes, "FAILED")
}

func TestHuman(t *testing.T) {
	for d, want := range map[time.Duration]string{50 * time.Millisecond: "50 ms", time.Second: "1 s", 1500 * time.Millisecond: "1.5 s", 30 * time.Second: "30 s"} {
		assert.Equal(t, want, human(d))
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1_000_000: "1,000,000", -12345: "-12,345"} {
		assert.Equal(t, want, thousands(n))
	}
}

// TestGovernance runs issue 8's set at a tiny size: two handler processes
// (built with go build), a shared budget on Azurite, a storm and the
// budget lifted.
func TestGovernance(t *testing.T) {
	conn := azurite.Azurite(t)
	t.Parallel()
	storm := tinyThroughput()
	storm.Repositories, storm.OldTags, storm.SkipBaseline = 2, 6, true
	storm.Limits = acremu.Limits{RegistryWrites: 5, RegistryWindow: time.Second}
	storm.DeletesPerMinute = 4 * 5 * 60
	un := tinyThroughput()
	un.SkipBaseline = true
	g, err := RunGovernance(t.Context(), GovernanceOptions{
		TableConnString: conn,
		Budget: BudgetOptions{PerMinute: 600, Run: 2 * time.Second, Warmup: 500 * time.Millisecond,
			Repositories: 10, OldTags: 5, Latency: time.Millisecond, RegistryLimit: 6000},
		Instances: InstancesOptions{Instances: 2, PerMinute: 600, RegistryLimit: 6000, Repositories: 4, OldTags: 6,
			Latency: time.Millisecond, Run: 5 * time.Second, Warmup: time.Second},
		Storm: storm, Unthrottled: un,
	})
	require.NoError(t, err)
	f := g.Figures
	assert.True(t, g.Budget.Shared, "the budget was shared through the table")
	assert.Positive(t, f.BudgetHeldPct)
	assert.Len(t, g.Instances.PerInstance, 2)
	assert.Positive(t, f.InstancesTotalPct)
	assert.Positive(t, f.InstancesMinSharePct, "every instance deleted")
	assert.LessOrEqual(t, f.InstancesMinSharePct, 50.0)
	assert.Zero(t, g.Instances.Fallbacks, "Azurite was up")
	assert.Positive(t, g.Storm.Throttled, "the registry throttled")
	assert.Positive(t, f.StormEfficiencyPct)
	assert.Positive(t, f.Storm429Pct)
	assert.GreaterOrEqual(t, f.RequestsPerDelete, 1.0, "at least the delete itself")
	assert.Positive(t, f.UnthrottledUtilisationPct)

	// The figures print under exactly issue 8's names.
	b, err := json.Marshal(f)
	require.NoError(t, err)
	var keys map[string]any
	require.NoError(t, json.Unmarshal(b, &keys))
	assert.ElementsMatch(t, []string{"budget_held_pct", "instances_total_pct", "instances_min_share_pct", "storm_efficiency_pct",
		"storm_429_pct", "requests_per_delete", "unthrottled_utilisation_pct"}, slices.Collect(maps.Keys(keys)))
}

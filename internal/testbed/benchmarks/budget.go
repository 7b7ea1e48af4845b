package benchmarks

import (
	"context"
	"fmt"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/budget"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
)

// BudgetOptions configure DeleteBudget. Zero fields take the defaults of
// DefaultBudget.
type BudgetOptions struct {
	// PerMinute is PURGE_DELETES_PER_MINUTE.
	PerMinute int
	// Run is how long the purge runs (it stops starting deletes then);
	// the first Warmup of it is left out of the steady rate.
	Run, Warmup time.Duration
	// RegistryLimit is the registry's write-operations limit per minute,
	// for the whole registry, above PerMinute so that the budget is what
	// binds.
	RegistryLimit int
	// TableConnString, when set, shares the budget through a fresh table
	// of that account (Azurite), as the deployed app does; empty: the
	// budget of this process alone.
	TableConnString string `json:"-"`
	// Repositories × OldTags is the work available; it must keep the
	// budget busy for all of Run.
	Repositories, OldTags int
	// Latency is added to every data-plane request.
	Latency time.Duration
	// BatchSize, InFlight and Concurrency shape the run as in
	// ThroughputOptions.
	BatchSize, InFlight, Concurrency int
}

// DefaultBudget is the delete-budget scenario of issues 4 and 8: a budget
// of 1,200 deletes per minute held for 24 s (the first 2 s left out), a
// registry that admits 5,000 write operations per minute, 50 ms latency.
func DefaultBudget() BudgetOptions {
	t := DefaultThroughput()
	return BudgetOptions{
		PerMinute: 1200, Run: 24 * time.Second, Warmup: 2 * time.Second, RegistryLimit: 5000,
		Repositories: 80, OldTags: 10, Latency: 50 * time.Millisecond,
		BatchSize: t.BatchSize, InFlight: t.InFlight, Concurrency: t.Concurrency,
	}
}

func (o *BudgetOptions) defaults() {
	d := DefaultBudget()
	if o.PerMinute < 1 {
		o.PerMinute = d.PerMinute
	}
	if o.Run <= 0 {
		o.Run = d.Run
	}
	if o.Warmup <= 0 || o.Warmup >= o.Run {
		o.Warmup = o.Run / 6
	}
	if o.RegistryLimit < 1 {
		o.RegistryLimit = d.RegistryLimit
	}
	if o.Repositories < 1 {
		o.Repositories = d.Repositories
	}
	if o.OldTags < 1 {
		o.OldTags = d.OldTags
	}
	if o.Latency < 0 {
		o.Latency = 0
	}
	if o.BatchSize < 1 {
		o.BatchSize = d.BatchSize
	}
	if o.InFlight < 1 {
		o.InFlight = d.InFlight
	}
	if o.Concurrency < 1 {
		o.Concurrency = d.Concurrency
	}
}

// BudgetFigures are the results of DeleteBudget.
type BudgetFigures struct {
	Options BudgetOptions `json:"options"`
	// PerMinute is the steady rate: deletes the registry recorded between
	// Warmup and Run after the start, per minute.
	PerMinute float64 `json:"perMinute"`
	// DeviationPercent is 100 × (PerMinute − budget) / budget.
	DeviationPercent float64 `json:"deviationPercent"`
	// PerMinuteWithBurst counts from the start.
	PerMinuteWithBurst float64 `json:"perMinuteWithBurst"`
	// Shared says the budget was shared through a table (Azurite).
	Shared bool `json:"shared"`
	// Budget is the delete budget's own counters (table operations).
	Budget budget.Stats `json:"budget"`
	// Throttled is the 429s the registry answered (goal 0: its limit is
	// above the budget).
	Throttled int `json:"throttled"`
	// Total is every delete of the run, including those already waiting
	// on the limiter at the deadline, which still go through after it.
	Total int `json:"total"`
}

// DeleteBudget purges with PURGE_DELETES_PER_MINUTE = o.PerMinute for
// o.Run against a registry whose own limit is above it, and measures the
// steady deletes per minute from the registry's deletion records (emulator
// clock).
func DeleteBudget(ctx context.Context, o BudgetOptions) (BudgetFigures, error) {
	o.defaults()
	f := BudgetFigures{Options: o}
	if capacity := o.Repositories * o.OldTags; float64(capacity) < 1.2*float64(o.PerMinute)*o.Run.Minutes() {
		return f, fmt.Errorf("delete budget: %d deletes seeded: not enough to keep %d/min busy for %s", capacity, o.PerMinute, o.Run)
	}
	pol, err := parseOldTagsPolicy()
	if err != nil {
		return f, err
	}
	bo := budget.Options{PerMinute: o.PerMinute, Scope: "bench.azurecr.io"}
	var deletes *budget.Budget
	if o.TableConnString != "" {
		tbl, err := newTable(ctx, o.TableConnString)
		if err != nil {
			return f, fmt.Errorf("delete budget: %w", err)
		}
		defer tbl.drop()
		deletes, err = budget.NewShared(tbl.opts, bo)
		if err != nil {
			return f, fmt.Errorf("delete budget: %w", err)
		}
		f.Shared = true
	} else if deletes, err = budget.NewLocal(bo); err != nil {
		return f, fmt.Errorf("delete budget: %w", err)
	}
	lim := acr.NewLimiter(acr.LimiterOptions{Deletes: deletes})
	e, err := startEnv(envOptions{limiter: lim})
	if err != nil {
		return f, err
	}
	defer e.Close()
	names := seedOldTags(e.reg, o.Repositories, o.OldTags, 0)
	e.reg.SetLimits(acremu.Limits{RegistryWrites: o.RegistryLimit, RegistryWindow: time.Minute})
	e.reg.SetFaults(acremu.Faults{Latency: o.Latency})
	e.reg.ResetStats()
	e.reg.ResetDeletes()

	start := e.reg.Now()
	if _, err := purgeLikeWorkers(ctx, e, workerShape{o.BatchSize, o.InFlight, o.Concurrency, config.DefaultRepoParallelism}, names, pol, start.Add(o.Run)); err != nil {
		return f, fmt.Errorf("delete budget: %w", err)
	}
	from, to := start.Add(o.Warmup), start.Add(o.Run)
	var steady, whole int
	for _, rec := range e.reg.Deletes() {
		f.Total++
		if rec.At.Before(to) {
			whole++
			if !rec.At.Before(from) {
				steady++
			}
		}
	}
	f.PerMinute = float64(steady) / to.Sub(from).Minutes()
	f.DeviationPercent = 100 * (f.PerMinute - float64(o.PerMinute)) / float64(o.PerMinute)
	f.PerMinuteWithBurst = float64(whole) / o.Run.Minutes()
	f.Throttled = e.reg.Stats().Throttled
	f.Budget = deletes.Stats()
	return f, nil
}

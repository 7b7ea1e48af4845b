package benchmarks

import (
	"context"
	"fmt"
)

// GovernanceOptions configure Governance: the scenarios of issue 8, the
// registry-wide adaptive delete budget. Zero fields take the defaults of
// DefaultGovernance.
type GovernanceOptions struct {
	// Budget: one instance holding its budget against a registry that
	// admits more.
	Budget BudgetOptions
	// Instances: separate handler processes sharing one budget.
	Instances InstancesOptions
	// Storm: a registry that admits less than the budget.
	Storm ThroughputOptions
	// Unthrottled: the throughput scenario with the budget lifted.
	Unthrottled ThroughputOptions
	// TableConnString is the Table Storage (Azurite) account the budget is
	// shared through. Required.
	TableConnString string `json:"-"`
}

// DefaultGovernance is issue 8's set: DefaultBudget (1,200/min, registry
// 5,000/min), DefaultInstances (4 processes, 1,200/min), StormScenario
// (registry 15 writes/s, budget 3,600/min) and DefaultThroughput with the
// budget lifted (200 repositories × 10 old tags, 50 ms), the last two
// without their sequential baselines.
func DefaultGovernance() GovernanceOptions {
	storm := StormScenario()
	storm.SkipBaseline = true
	un := DefaultThroughput()
	un.SkipBaseline = true
	return GovernanceOptions{Budget: DefaultBudget(), Instances: DefaultInstances(), Storm: storm, Unthrottled: un}
}

// GovernanceFigures are issue 8's figures, under the names `make bench
// ARGS='-json -only governance'` prints.
type GovernanceFigures struct {
	// BudgetHeldPct: one instance, deletes/min ÷ budget × 100 (goal 95–105).
	BudgetHeldPct float64 `json:"budget_held_pct"`
	// InstancesTotalPct: the processes' combined deletes/min ÷ budget ×
	// 100 (goal 90–105).
	InstancesTotalPct float64 `json:"instances_total_pct"`
	// InstancesMinSharePct: the smallest instance's share of the combined
	// deletes × 100 (goal ≥ 15).
	InstancesMinSharePct float64 `json:"instances_min_share_pct"`
	// StormEfficiencyPct: deletes/s achieved ÷ what the registry admits ×
	// 100 (goal ≥ 90).
	StormEfficiencyPct float64 `json:"storm_efficiency_pct"`
	// Storm429Pct: 429s ÷ registry requests × 100 in the storm (goal ≤ 5).
	Storm429Pct float64 `json:"storm_429_pct"`
	// RequestsPerDelete: registry requests ÷ items deleted with the budget
	// lifted (goal ≤ 1.2).
	RequestsPerDelete float64 `json:"requests_per_delete"`
	// UnthrottledUtilisationPct: deletes/s ÷ (deletes allowed in flight ÷
	// latency) × 100 with the budget lifted (goal ≥ 80).
	UnthrottledUtilisationPct float64 `json:"unthrottled_utilisation_pct"`
}

// Governance holds the figures and the runs they come from.
type Governance struct {
	Figures     GovernanceFigures `json:"figures"`
	Budget      BudgetFigures     `json:"budget"`
	Instances   InstancesFigures  `json:"instances"`
	Storm       ThroughputFigures `json:"storm"`
	Unthrottled ThroughputFigures `json:"unthrottled"`
	// IdealPerSecond is the unthrottled scenario's ceiling: deletes allowed
	// in flight ÷ latency.
	IdealPerSecond float64 `json:"idealPerSecond"`
}

// RunGovernance runs the four scenarios in turn.
func RunGovernance(ctx context.Context, o GovernanceOptions) (Governance, error) {
	var g Governance
	d := DefaultGovernance()
	if o.Budget.PerMinute == 0 {
		o.Budget = d.Budget
	}
	if o.Instances.Instances == 0 {
		o.Instances = d.Instances
	}
	if o.Storm.Repositories == 0 {
		o.Storm = d.Storm
	}
	if o.Unthrottled.Repositories == 0 {
		o.Unthrottled = d.Unthrottled
	}
	o.Budget.TableConnString, o.Instances.TableConnString = o.TableConnString, o.TableConnString
	var err error

	if g.Budget, err = DeleteBudget(ctx, o.Budget); err != nil {
		return g, fmt.Errorf("budget held: %w", err)
	}
	g.Figures.BudgetHeldPct = 100 * g.Budget.PerMinute / float64(o.Budget.PerMinute)

	if g.Instances, err = Instances(ctx, o.Instances); err != nil {
		return g, err
	}
	g.Figures.InstancesTotalPct = g.Instances.TotalPercent
	g.Figures.InstancesMinSharePct = g.Instances.MinSharePercent

	if g.Storm, err = Throughput(ctx, o.Storm); err != nil {
		return g, fmt.Errorf("storm: %w", err)
	}
	if l := o.Storm.Limits; l.RegistryWrites > 0 && l.RegistryWindow > 0 {
		admits := float64(l.RegistryWrites) / l.RegistryWindow.Seconds()
		g.Figures.StormEfficiencyPct = 100 * g.Storm.SteadyDeletesPerSecond / admits
	}
	if g.Storm.Requests > 0 {
		g.Figures.Storm429Pct = 100 * float64(g.Storm.Throttled) / float64(g.Storm.Requests)
	}

	if g.Unthrottled, err = Throughput(ctx, o.Unthrottled); err != nil {
		return g, fmt.Errorf("unthrottled: %w", err)
	}
	u := g.Unthrottled.Options
	g.Figures.RequestsPerDelete = g.Unthrottled.RequestsPerDelete
	if u.Latency > 0 {
		g.IdealPerSecond = float64(u.InFlight*u.Concurrency) / u.Latency.Seconds()
	}
	g.Figures.UnthrottledUtilisationPct = g.Unthrottled.SlotUsePercent
	return g, nil
}

// governanceRows are the table's rows for g.
func governanceRows(g *Governance) []Row {
	f := g.Figures
	b, in, st, un := g.Budget, g.Instances, g.Storm, g.Unthrottled
	pct := func(v float64) string { return fmt.Sprintf("%.1f %%", v) }
	per100 := func(ops, deletes int64) string {
		if deletes == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", 100*float64(ops)/float64(deletes))
	}
	shares := ""
	for i, n := range in.PerInstance {
		if i > 0 {
			shares += "/"
		}
		shares += fmt.Sprint(n)
	}
	admits := 0.0
	if l := st.Options.Limits; l.RegistryWindow > 0 {
		admits = float64(l.RegistryWrites) / l.RegistryWindow.Seconds()
	}
	store := "local"
	if b.Shared {
		store = "shared on Azurite"
	}
	return []Row{{
		Figure: fmt.Sprintf("budget held: 1 instance, %s/min (%s), registry admits %s writes/min", thousands(b.Options.PerMinute), store, thousands(b.Options.RegistryLimit)),
		Acrpurge: fmt.Sprintf("%s (%.0f/min, %d × 429, %s table ops per 100 deletes)", pct(f.BudgetHeldPct), b.PerMinute, b.Throttled,
			per100(b.Budget.TableOps, b.Budget.Granted)),
		Baseline: na, Goal: "95–105 %", Met: met(f.BudgetHeldPct >= 95 && f.BudgetHeldPct <= 105, ""),
	}, {
		Figure:   fmt.Sprintf("%d handler processes sharing %s/min: combined", in.Options.Instances, thousands(in.Options.PerMinute)),
		Acrpurge: fmt.Sprintf("%s (%.0f/min, %d × 429, %d fallbacks)", pct(f.InstancesTotalPct), in.PerMinute, in.Throttled, in.Fallbacks),
		Baseline: na, Goal: "90–105 %", Met: met(f.InstancesTotalPct >= 90 && f.InstancesTotalPct <= 105, ""),
	}, {
		Figure:   "  the smallest instance's share",
		Acrpurge: fmt.Sprintf("%s (deletes %s)", pct(f.InstancesMinSharePct), shares),
		Baseline: na, Goal: "≥ 15 %", Met: met(f.InstancesMinSharePct >= 15, ""),
	}, {
		Figure: fmt.Sprintf("429 storm: registry admits %.0f writes/s, budget %s/min", admits, thousands(st.Options.DeletesPerMinute)),
		Acrpurge: fmt.Sprintf("%s (%.1f/s steady, %.1f/s overall, %d failed)", pct(f.StormEfficiencyPct), st.SteadyDeletesPerSecond,
			st.DeletesPerSecond, st.DeleteErrors),
		Baseline: na, Goal: "≥ 90 % of the limit", Met: met(f.StormEfficiencyPct >= 90, ""),
	}, {
		Figure:   "  429s ÷ registry requests in the storm",
		Acrpurge: fmt.Sprintf("%s (%d of %d)", pct(f.Storm429Pct), st.Throttled, st.Requests),
		Baseline: na, Goal: "≤ 5 %", Met: met(f.Storm429Pct <= 5, ""),
	}, {
		Figure:   fmt.Sprintf("budget lifted, %d repos × %d old tags, %s: registry requests per delete", un.Options.Repositories, un.Options.OldTags, human(un.Options.Latency)),
		Acrpurge: fmt.Sprintf("%.2f (%d for %d)", f.RequestsPerDelete, un.Requests, un.Deleted),
		Baseline: na, Goal: "≤ 1.2", Met: met(f.RequestsPerDelete <= 1.2, ""),
	}, {
		Figure: "  budget lifted: utilisation of the deletes in flight",
		Acrpurge: fmt.Sprintf("%s (%.0f deletes/s of %.0f = %d in flight ÷ %s)", pct(f.UnthrottledUtilisationPct), un.DeletesPerSecond,
			g.IdealPerSecond, un.Options.InFlight*un.Options.Concurrency, human(un.Options.Latency)),
		Baseline: na, Goal: "≥ 80 %", Met: met(f.UnthrottledUtilisationPct >= 80, ""),
	}}
}

// governanceNotes explain how the figures were measured.
func governanceNotes(g *Governance) []string {
	in := g.Instances
	return []string{
		fmt.Sprintf("Governance: deletes are counted from the registry's own records. Budget held: the first %s of %s left out. "+
			"Instances: %d `handler serve` processes (built with go build in %.1f s, not counted) signing in through the emulator's "+
			"App Service managed-identity endpoint, each driven with its own portal messages over the custom-handler protocol, "+
			"%d in flight each (host.json maxConcurrentCalls), %s latency; they share the budget through one Azurite table; the "+
			"first %s of %s left out; %d deliveries, %d answered non-2xx.",
			human(g.Budget.Options.Warmup), human(g.Budget.Options.Run), in.Options.Instances, in.Build.Seconds(), in.Options.MaxConcurrentCalls,
			human(in.Options.Latency), human(in.Options.Warmup), human(in.Options.Run), in.Deliveries, in.Failed),
		fmt.Sprintf("Storm: the registry admits %d write operations per %s for the whole registry (fixed windows) and answers 429 with "+
			"Retry-After in whole seconds beyond that; efficiency is the steady rate (first to last delete) over that limit. The "+
			"budget (local here) cuts to just below the rate the registry admitted on a 429 and probes back up while quiet. "+
			"Utilisation: the throughput scenario with the budget at its maximum; ceiling = deletes allowed in flight (%d messages × "+
			"%d) ÷ latency; requests per delete counts every registry request (tokens, listings, re-reads, deletes) over the items deleted.",
			g.Storm.Options.Limits.RegistryWrites, human(g.Storm.Options.Limits.RegistryWindow),
			g.Unthrottled.Options.InFlight, g.Unthrottled.Options.Concurrency),
	}
}

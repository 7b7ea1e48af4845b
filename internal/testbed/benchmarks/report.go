package benchmarks

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Scenario names, as cmd/benchtable's -only takes them, in the order they run.
const (
	ScenarioPlan       = "plan"
	ScenarioThroughput = "throughput"
	ScenarioErrors     = "errors"
	ScenarioGovernance = "governance"
	ScenarioFanOut     = "fanout"
	ScenarioLocalStack = "localstack"
)

// Scenarios lists every scenario name in running order.
var Scenarios = []string{ScenarioPlan, ScenarioThroughput, ScenarioErrors, ScenarioGovernance, ScenarioFanOut, ScenarioLocalStack}

// Goals of issue 4 and 8.
const (
	GoalSpeedup           = 10  // acrpurge deletes/s over the sequential baseline's
	GoalTokensPerMessage  = 1   // access tokens per message
	GoalPlanHeapMB        = 300 // peak heap planning the huge repository
	GoalFanOutSeconds     = 10  // one fan-out of 100,000 repositories
	GoalFanOutHeapMB      = 200 // its heap
	GoalRequestsPerDelete = 1.2 // registry requests per delete (step 8)
	GoalSlotUsePercent    = 80  // deletes/s over (deletes in flight ÷ latency)
)

// Results holds the figures of the scenarios that ran (nil: not run) and
// the errors of those that failed, by scenario name.
type Results struct {
	Machine    Machine            `json:"machine"`
	Plan       *PlanFigures       `json:"plan,omitempty"`
	Listing    *ListingFigures    `json:"planBaseline,omitempty"`
	Throughput *ThroughputFigures `json:"throughput,omitempty"`
	Errors     *ThroughputFigures `json:"errors,omitempty"`
	Governance *Governance        `json:"governance,omitempty"`
	FanOut     *FanOutFigures     `json:"fanout,omitempty"`
	LocalStack *LocalStackFigures `json:"localstack,omitempty"`
	// TableSkipped says why the Table-store fan-out did not run.
	TableSkipped string            `json:"tableSkipped,omitempty"`
	Failed       map[string]string `json:"failed,omitempty"`
	Elapsed      time.Duration     `json:"elapsedNs"`
}

// Row is one line of the table.
type Row struct {
	Figure   string `json:"figure"`
	Acrpurge string `json:"acrpurge"`
	Baseline string `json:"baseline"`
	Goal     string `json:"goal"`
	// Met is "yes", "no" or "-" (no goal to meet).
	Met string `json:"met"`
}

// Column headers of the table.
var header = Row{Figure: "figure", Acrpurge: "acrpurge", Baseline: "sequential baseline", Goal: "goal", Met: "met?"}

const (
	noGoal = "none set"
	na     = "n/a"
)

// met renders the met? column: yes or no, with an optional detail.
func met(ok bool, detail string) string {
	s := "no"
	if ok {
		s = "yes"
	}
	if detail != "" {
		s += " (" + detail + ")"
	}
	return s
}

// Rows turns the results into the table's rows, in scenario order. A failed
// scenario gets one row saying so.
func (r *Results) Rows() []Row {
	var rows []Row
	fail := func(name, what string) {
		if msg, ok := r.Failed[name]; ok {
			rows = append(rows, Row{Figure: what, Acrpurge: "FAILED: " + msg, Baseline: "-", Goal: "-", Met: "no"})
		}
	}
	if p := r.Plan; p != nil {
		base := "-"
		if l := r.Listing; l != nil {
			base = fmt.Sprintf("%.0f MB (listing held, unplanned)", mb(l.Heap.Inuse))
		}
		rows = append(rows, Row{
			Figure:   fmt.Sprintf("peak heap planning %s tags + %s manifests", thousands(p.Tags), thousands(p.Manifests)),
			Acrpurge: fmt.Sprintf("%.0f MB (plan %.1f s)", mb(p.Heap.Inuse), p.Elapsed.Seconds()),
			Baseline: base, Goal: fmt.Sprintf("< %d MB", GoalPlanHeapMB),
			Met: met(mb(p.Heap.Inuse) < GoalPlanHeapMB, ""),
		})
	}
	fail(ScenarioPlan, "peak heap planning a huge repository")
	if t := r.Throughput; t != nil {
		o := t.Options
		rows = append(rows, Row{
			Figure:   fmt.Sprintf("deletes/s, %d repos × %d old tags, %s latency", o.Repositories, o.OldTags, human(o.Latency)),
			Acrpurge: fmt.Sprintf("%.0f (%d in %.1f s)", t.DeletesPerSecond, t.Deleted, t.Elapsed.Seconds()),
			Baseline: baselineRate(t.Baseline, o.Repositories),
			Goal:     fmt.Sprintf("≥ %d× baseline", GoalSpeedup),
			Met:      met(t.Speedup >= GoalSpeedup, fmt.Sprintf("%.1f×", t.Speedup)),
		}, Row{
			Figure:   fmt.Sprintf("access tokens per message (%d repos each)", o.BatchSize),
			Acrpurge: fmt.Sprintf("%.2f (%d for %d)", t.TokensPerBatch, t.Tokens, t.Batches),
			Baseline: fmt.Sprintf("%.1f per %d repos (1 per repo)", float64(o.BatchSize)*perRepo(t.Baseline), o.BatchSize),
			Goal:     fmt.Sprint(GoalTokensPerMessage),
			Met:      met(t.TokensPerBatch == GoalTokensPerMessage, ""),
		}, Row{
			Figure:   "registry requests per delete (token requests included)",
			Acrpurge: fmt.Sprintf("%.2f (%d for %d)", t.RequestsPerDelete, t.Requests, t.Deleted),
			Baseline: fmt.Sprintf("%.2f (no re-read)", t.Baseline.RequestsPerDelete),
			Goal:     fmt.Sprintf("≤ %.1f", GoalRequestsPerDelete),
			Met:      met(t.RequestsPerDelete <= GoalRequestsPerDelete, ""),
		}, Row{
			Figure:   fmt.Sprintf("deletes/s ÷ (%d in flight ÷ %s latency)", o.InFlight*o.Concurrency, human(o.Latency)),
			Acrpurge: fmt.Sprintf("%.0f %%", t.SlotUsePercent), Baseline: na,
			Goal: fmt.Sprintf("≥ %d %%", GoalSlotUsePercent),
			Met:  met(t.SlotUsePercent >= GoalSlotUsePercent, ""),
		})
	}
	fail(ScenarioThroughput, "deletes/s with 50 ms latency")
	if t := r.Errors; t != nil {
		o := t.Options
		ok := t.Speedup >= GoalSpeedup && t.DeleteErrors == 0
		rows = append(rows, Row{
			Figure:   fmt.Sprintf("deletes/s with %.0f %% of requests 5xx (same %d repos)", 100*o.ErrorRate, o.Repositories),
			Acrpurge: fmt.Sprintf("%.0f (%d 5xx, %d failed)", t.DeletesPerSecond, t.Faults, t.DeleteErrors),
			Baseline: baselineRate(t.Baseline, o.Repositories) + fmt.Sprintf(", %d 5xx", t.Baseline.Faults),
			Goal:     fmt.Sprintf("≥ %d× baseline, 0 failed", GoalSpeedup),
			Met:      met(ok, fmt.Sprintf("%.1f×", t.Speedup)),
		})
	}
	fail(ScenarioErrors, "deletes/s with 5 % 5xx")
	if g := r.Governance; g != nil {
		rows = append(rows, governanceRows(g)...)
	}
	fail(ScenarioGovernance, "registry-wide delete budget (governance)")
	if f := r.FanOut; f != nil {
		rows = append(rows, fanOutRows(f.Memory, "Memory store", false)...)
		if f.Table != nil {
			rows = append(rows, fanOutRows(*f.Table, "Table store on Azurite", true)...)
		} else {
			rows = append(rows, Row{Figure: "fan-out, Table store on Azurite", Acrpurge: "skipped: " + r.TableSkipped, Baseline: na,
				Goal: fmt.Sprintf("< %d s, < %d MB", GoalFanOutSeconds, GoalFanOutHeapMB), Met: "-"})
		}
	}
	fail(ScenarioFanOut, "fan-out of 100,000 repositories")
	if l := r.LocalStack; l != nil {
		sample := ""
		if l.Baseline.Sample {
			sample = fmt.Sprintf(", extrapolated from %d repos", l.Baseline.Repositories)
		}
		rows = append(rows, Row{
			Figure:   fmt.Sprintf("local stack, %s repos: timer to queue drained", thousands(l.Repositories)),
			Acrpurge: fmt.Sprintf("%.1f s", l.Purge.Seconds()),
			Baseline: fmt.Sprintf("%.1f s%s", l.BaselinePurge.Seconds(), sample),
			Goal:     noGoal, Met: "-",
		}, Row{
			Figure:   fmt.Sprintf("local stack: deletes/s (%s deletes)", thousands(int(l.Deleted()))),
			Acrpurge: fmt.Sprintf("%.0f", l.DeletesPerSecond),
			Baseline: fmt.Sprintf("%.0f", l.Baseline.DeletesPerSecond),
			Goal:     noGoal, Met: "-",
		}, Row{
			Figure:   "local stack: messages, none dead-lettered; deletions as seeded",
			Acrpurge: fmt.Sprintf("%d in %d deliveries; exact", l.Messages, l.Deliveries),
			Baseline: "exact",
			Goal:     "all handled, exact", Met: met(true, "checked"),
		}, Row{
			Figure:   "local stack: access tokens per message",
			Acrpurge: fmt.Sprintf("%.2f (%d for %d)", l.TokensPerMessage, l.WorkerTokens, l.Messages),
			Baseline: fmt.Sprintf("%.1f per repo", perRepo(l.Baseline)),
			Goal:     fmt.Sprint(GoalTokensPerMessage),
			Met:      met(l.TokensPerMessage == GoalTokensPerMessage, ""),
		})
	}
	fail(ScenarioLocalStack, "local stack end to end")
	return rows
}

// fanOutRows are the two rows of one fan-out run.
func fanOutRows(f FanOutRun, store string, azurite bool) []Row {
	detail := ""
	if azurite && f.Elapsed.Seconds() >= GoalFanOutSeconds {
		detail = "Azurite, see notes"
	}
	return []Row{{
		Figure:   fmt.Sprintf("fan-out %s repos → %s messages, %s: time", thousands(f.Repositories), thousands(int(f.Messages)), store),
		Acrpurge: fmt.Sprintf("%.2f s", f.Elapsed.Seconds()), Baseline: na,
		Goal: fmt.Sprintf("< %d s", GoalFanOutSeconds), Met: met(f.Elapsed.Seconds() < GoalFanOutSeconds, detail),
	}, {
		Figure:   fmt.Sprintf("fan-out, %s: heap", store),
		Acrpurge: fmt.Sprintf("%.0f MB (live %.0f MB)", mb(f.Heap.Alloc), mb(f.Heap.Live)), Baseline: na,
		Goal: fmt.Sprintf("< %d MB", GoalFanOutHeapMB), Met: met(mb(f.Heap.Alloc) < GoalFanOutHeapMB, ""),
	}}
}

// baselineRate renders a baseline's deletes/s, saying when it is a sample.
func baselineRate(b SequentialFigures, of int) string {
	s := fmt.Sprintf("%.1f", b.DeletesPerSecond)
	if b.Sample {
		s += fmt.Sprintf(" (first %d of %d repos)", b.Repositories, of)
	}
	return s
}

// perRepo is a baseline's tokens per repository it purged or skipped.
func perRepo(b SequentialFigures) float64 {
	if b.Repositories == 0 {
		return 0
	}
	return float64(b.Tokens) / float64(b.Repositories)
}

// human renders a duration as people write it: "50 ms", "1.5 s".
func human(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%g s", d.Seconds())
}

// thousands renders n with comma separators.
func thousands(n int) string {
	if n < 0 {
		return "-" + thousands(-n)
	}
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// WriteTable writes rows as one table, columns padded, with a header.
func WriteTable(w io.Writer, rows []Row) error {
	all := append([]Row{header}, rows...)
	var width [5]int
	cells := func(r Row) [5]string { return [5]string{r.Figure, r.Acrpurge, r.Baseline, r.Goal, r.Met} }
	for _, r := range all {
		for i, c := range cells(r) {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	line := func(c [5]string) string {
		var b strings.Builder
		b.WriteString("|")
		for i, s := range c {
			b.WriteString(" " + s + strings.Repeat(" ", width[i]-utf8.RuneCountInString(s)) + " |")
		}
		return b.String() + "\n"
	}
	var sep [5]string
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	out := line(cells(header)) + line(sep)
	for _, r := range rows {
		out += line(cells(r))
	}
	_, err := io.WriteString(w, out)
	return err
}

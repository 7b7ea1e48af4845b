package runs

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"golang.org/x/sync/errgroup"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
)

// DefaultListRuns is how many runs the list page shows.
const DefaultListRuns = checkpoint.DefaultListLimit

// RunList is the recent runs, newest first, each summed up.
type RunList struct {
	Runs []RunSummary `json:"runs"`
	// Limit is how many runs were asked for.
	Limit int `json:"limit"`
}

// RunSummary is one run of a RunList: its report without the lists.
type RunSummary struct {
	Run     RunInfo     `json:"run"`
	Batches BatchCounts `json:"batches"`
	Totals  Totals      `json:"totals"`
}

// listConcurrency bounds the reports BuildList reads at once.
const listConcurrency = 4

// BuildList reads the latest runs (at most limit; DefaultListRuns when
// limit <= 0) and sums each up.
func BuildList(ctx context.Context, store checkpoint.Store, limit int) (*RunList, error) {
	if limit <= 0 {
		limit = DefaultListRuns
	}
	recs, err := store.LatestRuns(ctx, limit)
	if err != nil {
		return nil, fmt.Errorf("report: latest runs: %w", err)
	}
	l := &RunList{Runs: make([]RunSummary, len(recs)), Limit: limit}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(listConcurrency)
	for i, rec := range recs {
		g.Go(func() error {
			batches, err := store.ListBatches(gctx, rec.ID)
			if err != nil {
				return fmt.Errorf("report: run %q: %w", rec.ID, err)
			}
			repos, err := store.ListRepos(gctx, rec.ID)
			if err != nil {
				return fmt.Errorf("report: run %q: %w", rec.ID, err)
			}
			r := assemble(rec, batches, repos, Options{}.withDefaults())
			l.Runs[i] = RunSummary{Run: r.Run, Batches: r.Batches, Totals: r.Totals}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return l, nil
}

// WriteHTML writes the list as one self-contained HTML page: charts of the
// items deleted and the space freed per run, and a sortable table of the
// runs, each linking to its page (PageOptions.RunHref).
func (l *RunList) WriteHTML(w io.Writer, o PageOptions) error {
	v := listPage{pageBase: newBase("acrpurge runs", o), Limit: l.Limit, Limited: len(l.Runs) >= l.Limit}
	v.ListHref = "" // this is the list
	var deleted, freed []chartItem
	anyDry := false
	for _, s := range l.Runs {
		href := o.runHref(s.Run.ID)
		title := fmt.Sprintf("%s (%s, started %s)", s.Run.ID, s.Run.Trigger, stamp(s.Run.Started))
		if s.Run.DryRun {
			title += ", dry run"
			anyDry = true
		}
		deleted = append(deleted, chartItem{Label: s.Run.ID, Title: title, N: s.Totals.TagsDeleted + s.Totals.ManifestsDeleted, Href: href, Alt: s.Run.DryRun})
		freed = append(freed, chartItem{Label: s.Run.ID, Title: title, N: s.Totals.BytesFreed, Href: href, Alt: s.Run.DryRun})
	}
	dry := ""
	if anyDry {
		dry = " Lighter bars are dry runs: what they would have deleted."
	}
	v.Deleted = layout(chart{ID: "deleted", Title: "Tags and manifests deleted, per run", Empty: "No run deleted anything.",
		Caption: "Newest first." + dry}, deleted, count)
	v.Freed = layout(chart{ID: "freed", Title: "Space freed, per run", Empty: "No run freed space.",
		Caption: "Newest first." + dry}, freed, Bytes)
	v.Table = buildTable("runs", listColumns(o), l.Runs)
	return pages.ExecuteTemplate(w, "list", v)
}

type listPage struct {
	pageBase
	Limit          int
	Limited        bool
	Deleted, Freed chart
	Table          table
}

func listColumns(o PageOptions) []column[RunSummary] {
	return []column[RunSummary]{
		{head{Text: "Run"}, func(s RunSummary) cell {
			if href := o.runHref(s.Run.ID); href != "" {
				return cell{Kind: "link", Text: s.Run.ID, Href: href}
			}
			return cell{Kind: "name", Text: s.Run.ID}
		}},
		{head{Text: "Started"}, func(s RunSummary) cell {
			return cell{Text: stamp(s.Run.Started), Class: "nw", Sort: s.Run.Started.UTC().Format("2006-01-02T15:04:05.000000000")}
		}},
		{head{Text: "Trigger"}, func(s RunSummary) cell { return cell{Text: s.Run.Trigger} }},
		{head{Text: "Status"}, func(s RunSummary) cell { return badge(s.Run.Status) }},
		{head{Text: "Dry run"}, func(s RunSummary) cell {
			if s.Run.DryRun {
				return cell{Text: "yes"}
			}
			return cell{Text: "no", Class: "dim"}
		}},
		{head{Text: "Batches", Num: true}, func(s RunSummary) cell { return numCell(int64(s.Batches.Total)) }},
		{head{Text: "Repositories", Num: true}, func(s RunSummary) cell { return numCell(int64(s.Totals.Repositories)) }},
		{head{Text: "Tags", Title: "tags deleted", Num: true}, func(s RunSummary) cell { return numCell(s.Totals.TagsDeleted) }},
		{head{Text: "Manifests", Title: "manifests deleted", Num: true}, func(s RunSummary) cell { return numCell(s.Totals.ManifestsDeleted) }},
		{head{Text: "Freed", Num: true}, func(s RunSummary) cell { return bytesCell(s.Totals.BytesFreed) }},
		{head{Text: "Problems", Title: "repositories failed or forbidden, batches failed or rejected", Num: true}, func(s RunSummary) cell {
			n := int64(s.Totals.Failed + s.Totals.Forbidden + s.Batches.Failed + s.Batches.Rejected)
			c := numCell(n)
			c.Title = strconv.Itoa(s.Totals.Failed) + " repositories failed, " + strconv.Itoa(s.Totals.Forbidden) + " forbidden; " +
				strconv.Itoa(s.Batches.Failed) + " batches failed, " + strconv.Itoa(s.Batches.Rejected) + " rejected"
			return c
		}},
	}
}

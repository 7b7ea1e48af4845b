package purgecli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/acrpurge/acrpurge/internal/purge"
	"github.com/acrpurge/acrpurge/internal/runs"
)

const (
	dryRunBanner = "DRY RUN: nothing was deleted. Rows marked \"would-delete\" show what a run with --dry-run=false would delete."
	dryRunFooter = "DRY RUN: nothing was deleted. Run again with --dry-run=false to delete."
)

// writeJSON writes the report as one indented JSON document.
func writeJSON(w io.Writer, rep *report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("write JSON report: %w", err)
	}
	return nil
}

// writeTable writes the report for people: the items, why the rest was
// kept, a per-repository summary, problems, and the totals.
func writeTable(w io.Writer, rep *report) error {
	ew := runs.NewErrWriter(w)
	if rep.DryRun {
		fmt.Fprintf(ew, "%s\n\n", dryRunBanner)
	}
	fmt.Fprintf(ew, "Registry %s, policy %s, %d %s.\n\n", rep.Registry, rep.PolicyHash,
		len(rep.Repositories), plural(int64(len(rep.Repositories)), "repository", "repositories"))
	writeItems(ew, rep)
	writeKept(ew, rep)
	writeSummary(ew, rep)
	writeProblems(ew, rep)
	writeTotals(ew, rep)
	if rep.DryRun {
		fmt.Fprintf(ew, "\n%s\n", dryRunFooter)
	}
	if err := ew.Err(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func writeItems(w io.Writer, rep *report) {
	n := 0
	for _, r := range rep.Repositories {
		n += len(r.Items)
	}
	if n == 0 {
		if rep.DryRun {
			fmt.Fprintln(w, "Nothing would be deleted.")
		} else {
			fmt.Fprintln(w, "Nothing was deleted.")
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tKIND\tTAG/DIGEST\tACTION\tREASON\tRULE\tSIZE\tERROR")
	for _, r := range rep.Repositories {
		for _, it := range r.Items {
			ref, size := it.Tag, "-"
			if it.Kind != "tag" {
				ref, size = shortDigest(it.Digest), runs.Bytes(it.Size)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Repository, it.Kind, ref,
				it.Action, it.Reason, dash(it.Rule), size, runs.OneLine(it.Error))
		}
	}
	tw.Flush()
}

// writeKept explains, per repository, why the rest was kept.
func writeKept(w io.Writer, rep *report) {
	var lines []string
	for _, r := range rep.Repositories {
		tags, manifests := sum(r.Kept.Tags), sum(r.Kept.Manifests)
		if tags+manifests == 0 {
			continue
		}
		var parts []string
		if tags > 0 {
			parts = append(parts, fmt.Sprintf("%d %s (%s)", tags, plural(tags, "tag", "tags"), byReason(r.Kept.Tags)))
		}
		if manifests > 0 {
			parts = append(parts, fmt.Sprintf("%d %s (%s)", manifests, plural(manifests, "manifest", "manifests"), byReason(r.Kept.Manifests)))
		}
		lines = append(lines, fmt.Sprintf("  %s: %s", r.Repository, strings.Join(parts, "; ")))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "\nKept, by reason:")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

func writeSummary(w io.Writer, rep *report) {
	if len(rep.Repositories) == 0 {
		fmt.Fprintln(w, "\nNo repositories to purge.")
		return
	}
	verb := "DELETED"
	if rep.DryRun {
		verb = "TO DELETE"
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "REPOSITORY\tSTATUS\tTAGS %s\tMANIFESTS %s\tFREED\tKEPT\tTIME\n", verb, verb)
	for _, r := range rep.Repositories {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%s\n", r.Repository, r.Status,
			r.TagsDeleted, r.ManifestsDeleted, runs.Bytes(r.BytesFreed), sum(r.Kept.Tags)+sum(r.Kept.Manifests),
			humanSeconds(r.DurationSeconds))
	}
	t := rep.Totals
	fmt.Fprintf(tw, "TOTAL\t\t%d\t%d\t%s\t%d\t%s\n",
		t.TagsDeleted, t.ManifestsDeleted, runs.Bytes(t.BytesFreed), t.KeptTags+t.KeptManifests,
		humanSeconds(rep.DurationSeconds))
	tw.Flush()
}

// writeProblems lists the repositories that need attention: not done, or
// done with deletes that failed and were left in place.
func writeProblems(w io.Writer, rep *report) {
	var lines []string
	for _, r := range rep.Repositories {
		if r.Status != string(purge.StatusDone) {
			lines = append(lines, fmt.Sprintf("  %s: %s: %s", r.Repository, r.Status, runs.OneLine(cmp.Or(r.Reason, "no reason given"))))
		}
		if r.DeleteErrors > 0 {
			lines = append(lines, fmt.Sprintf("  %s: %d %s failed and left in place (see ERROR above)",
				r.Repository, r.DeleteErrors, plural(r.DeleteErrors, "delete", "deletes")))
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "\nAttention:")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

func writeTotals(w io.Writer, rep *report) {
	t := rep.Totals
	verb := "Deleted"
	if rep.DryRun {
		verb = "Would delete"
	}
	fmt.Fprintf(w, "\n%s %d %s and %d %s (%s freed) in %d %s: %s.\n", verb,
		t.TagsDeleted, plural(t.TagsDeleted, "tag", "tags"),
		t.ManifestsDeleted, plural(t.ManifestsDeleted, "manifest", "manifests"), runs.Bytes(t.BytesFreed),
		t.Repositories, plural(int64(t.Repositories), "repository", "repositories"), statusCounts(t))
	fmt.Fprintf(w, "Kept %d %s and %d %s.\n", t.KeptTags, plural(t.KeptTags, "tag", "tags"),
		t.KeptManifests, plural(t.KeptManifests, "manifest", "manifests"))
	if rep.Interrupted {
		fmt.Fprintln(w, "INTERRUPTED: no new deletes were started after the interrupt; the counts above are what was done.")
	}
}

func statusCounts(t totals) string {
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(t.Done, "done")
	add(t.Skipped, "skipped")
	add(t.Partial, "partial")
	add(t.Forbidden, "forbidden")
	add(t.Failed, "failed")
	add(t.Interrupted, "interrupted")
	add(t.NotStarted, "not started")
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// byReason renders counts as "keep 2, too-new 1", largest first.
func byReason(m map[string]int64) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

package report

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the report as a readable table: the run, then one line
// per repository with its status, tags and manifests deleted, bytes freed,
// kept counts by reason and the reason or error, then the totals, failed
// batches and rejections.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	mode := ""
	if r.Run.DryRun {
		mode = " (dry run: counts are what would be deleted)"
	}
	ew.printf("Run %s: %s, trigger %s, started %s%s\n", r.Run.ID, r.Run.Status, r.Run.Trigger,
		r.Run.Started.UTC().Format(time.RFC3339), mode)
	if r.Run.Note != "" {
		ew.printf("Note: %s\n", oneLine(r.Run.Note))
	}
	b := r.Batches
	ew.printf("Batches: %d total, %d done, %d continued, %d running, %d queued, %d failed, %d rejected\n\n",
		b.Total, b.Done, b.Continued, b.Running, b.Queued, b.Failed, b.Rejected)

	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tBATCH\tSTATUS\tTAGS\tMANIFESTS\tFREED\tKEPT\tREASON")
	for _, x := range r.Repositories {
		why := x.Reason
		if x.Error != "" {
			why = strings.TrimPrefix(why+"; error: "+x.Error, "; ")
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\t%s\n", x.Name, x.Batch, x.Status, x.TagsDeleted,
			x.ManifestsDeleted, Bytes(x.BytesFreed), keptText(x.Kept), oneLine(why))
	}
	t := r.Totals
	fmt.Fprintf(tw, "TOTAL (%d)\t\t%s\t%d\t%d\t%s\t%s\t\n", t.Repositories, statusText(t), t.TagsDeleted,
		t.ManifestsDeleted, Bytes(t.BytesFreed), keptText(t.Kept))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.FailedBatches) > 0 {
		ew.printf("\nFailed batches:\n")
		for _, fb := range r.FailedBatches {
			ew.printf("  batch %d %s after %d deliveries: %s\n", fb.Batch, fb.Status, fb.Deliveries, oneLine(fb.Error))
		}
	}
	if len(r.Rejections) > 0 {
		ew.printf("\nRejected messages:\n")
		for _, j := range r.Rejections {
			ew.printf("  %s %s: %s\n", j.At.UTC().Format(time.RFC3339), j.MessageID, oneLine(j.Reason))
		}
	}
	return ew.err
}

func statusText(t Totals) string {
	var parts []string
	for _, p := range []struct {
		n    int
		name string
	}{{t.Done, "done"}, {t.Partial, "partial"}, {t.Pending, "pending"}, {t.Skipped, "skipped"},
		{t.Forbidden, "forbidden"}, {t.Failed, "failed"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.name))
		}
	}
	return strings.Join(parts, ", ")
}

func keptText(kept map[string]int64) string {
	keys := slices.Sorted(maps.Keys(kept))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, kept[k]))
	}
	return strings.Join(parts, " ")
}

// oneLine keeps a free text on one table line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Bytes renders a byte count with a binary unit (e.g. "1.5 MiB").
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// errWriter remembers the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) {
	fmt.Fprintf(e, format, args...)
}

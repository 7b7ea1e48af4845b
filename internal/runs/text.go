package runs

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// WriteText writes the report as a readable table: the run, then one line
// per repository with its batch, status, tags and manifests deleted and
// bytes freed (numbers right-aligned), followed by what was kept, by
// reason, and the reason or error of a repository that was not done; then
// the totals, failed batches and rejections. The last column is not padded,
// so a long reason does not widen the table.
func (r *Report) WriteText(w io.Writer) error {
	ew := NewErrWriter(w)
	mode := ""
	if r.Run.DryRun {
		mode = " (dry run: counts are what would be deleted)"
	}
	ew.printf("Run %s: %s, trigger %s, started %s%s\n", r.Run.ID, r.Run.Status, r.Run.Trigger,
		r.Run.Started.UTC().Format(time.RFC3339), mode)
	if r.Run.Note != "" {
		ew.printf("Note: %s\n", OneLine(r.Run.Note))
	}
	b := r.Batches
	ew.printf("Batches: %d total, %d done, %d continued, %d running, %d queued, %d failed, %d rejected",
		b.Total, b.Done, b.Continued, b.Running, b.Queued, b.Failed, b.Rejected)
	if b.Stalled > 0 {
		ew.printf(", %d stalled", b.Stalled)
	}
	ew.printf("\n\n")

	tb := textTable{
		heads: []string{"REPOSITORY", "BATCH", "STATUS", "TAGS", "MANIFESTS", "FREED", "KEPT, BY REASON / NOTE"},
		right: []bool{false, true, false, true, true, true},
	}
	for _, x := range r.Repositories {
		why := x.Reason
		if x.Error != "" {
			why = strings.TrimPrefix(why+"; error: "+x.Error, "; ")
		}
		last := keptText(x.Kept)
		if why = OneLine(why); why != "" {
			last = strings.TrimPrefix(last+"; "+why, "; ")
		}
		tb.add(textRow{cells: []string{x.Name, fmt.Sprint(x.Batch), x.Status, atLeast(x.CountsAtLeast, fmt.Sprint(x.TagsDeleted)),
			atLeast(x.CountsAtLeast, fmt.Sprint(x.ManifestsDeleted)), atLeast(x.CountsAtLeast, Bytes(x.BytesFreed)), last}})
	}
	t := r.Totals
	// The statuses of the total span the BATCH and STATUS columns.
	tb.add(textRow{span: 1, cells: []string{fmt.Sprintf("TOTAL (%d)", t.Repositories), statusText(t), "",
		atLeast(t.CountsAtLeast, fmt.Sprint(t.TagsDeleted)), atLeast(t.CountsAtLeast, fmt.Sprint(t.ManifestsDeleted)),
		atLeast(t.CountsAtLeast, Bytes(t.BytesFreed)), keptText(t.Kept)}})
	tb.write(ew)
	if t.CountsAtLeast {
		ew.printf("\n>= : at least: an attempt died with deletes it may not have counted; never an overcount.\n")
	}
	if len(r.FailedBatches) > 0 {
		ew.printf("\nFailed batches:\n")
		for _, fb := range r.FailedBatches {
			ew.printf("  batch %d %s after %d deliveries: %s\n", fb.Batch, fb.Status, fb.Deliveries, OneLine(fb.Error))
		}
	}
	if len(r.Rejections) > 0 {
		ew.printf("\nRejected messages:\n")
		for _, j := range r.Rejections {
			ew.printf("  %s %s: %s\n", j.At.UTC().Format(time.RFC3339), j.MessageID, OneLine(j.Reason))
		}
	}
	return ew.Err()
}

// textRow is one line of a textTable: a cell per column, the last one free
// text. span > 0 makes cells[span] also cover the next column (whose cell
// is ignored).
type textRow struct {
	cells []string
	span  int
}

// textTable aligns columns separated by two spaces; right-aligned columns
// suit numbers. The last column is written as is, never padded.
type textTable struct {
	heads []string
	right []bool // per aligned column (all but the last)
	rows  []textRow
}

func (t *textTable) add(r textRow) { t.rows = append(t.rows, r) }

// widths computes the column widths; a spanning cell too wide for its two
// columns widens the second.
func (t *textTable) widths() []int {
	n := len(t.heads) - 1
	w := make([]int, n)
	rows := append([]textRow{{cells: t.heads}}, t.rows...)
	for _, r := range rows {
		for i := 0; i < n && i < len(r.cells); i++ {
			if r.span > 0 && (i == r.span || i == r.span+1) {
				continue
			}
			w[i] = max(w[i], utf8.RuneCountInString(r.cells[i]))
		}
	}
	for _, r := range rows {
		if s := r.span; s > 0 && s+1 < n {
			if need := utf8.RuneCountInString(r.cells[s]) - (w[s] + 2 + w[s+1]); need > 0 {
				w[s+1] += need
			}
		}
	}
	return w
}

func (t *textTable) write(ew *ErrWriter) {
	w := t.widths()
	n := len(w)
	rows := append([]textRow{{cells: t.heads}}, t.rows...)
	var line strings.Builder
	for _, r := range rows {
		line.Reset()
		for i := 0; i < n; i++ {
			cell, width := "", w[i]
			if i < len(r.cells) {
				cell = r.cells[i]
			}
			if r.span > 0 && i == r.span && i+1 < n {
				width += 2 + w[i+1]
				i++
			}
			pad := strings.Repeat(" ", max(0, width-utf8.RuneCountInString(cell)))
			if i < len(t.right) && t.right[i] && r.span != i {
				line.WriteString(pad + cell)
			} else {
				line.WriteString(cell + pad)
			}
			line.WriteString("  ")
		}
		if n < len(r.cells) {
			line.WriteString(r.cells[n])
		}
		ew.printf("%s\n", strings.TrimRight(line.String(), " "))
	}
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

// keptOrder puts the policy's own reasons first, then the reasons a
// manifest is needed by another; any other reason follows alphabetically.
var keptOrder = []string{"too-new", "keep", "protected", "locked", "no-match",
	"tagged", "child-of-kept-index", "referrer-of-kept", "subject-of-kept"}

func keptText(kept map[string]int64) string {
	keys := slices.Sorted(maps.Keys(kept))
	slices.SortStableFunc(keys, func(a, b string) int {
		return cmp.Compare(keptRank(a), keptRank(b))
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, kept[k]))
	}
	return strings.Join(parts, " ")
}

func keptRank(reason string) int {
	if i := slices.Index(keptOrder, reason); i >= 0 {
		return i
	}
	return len(keptOrder)
}

// OneLine keeps a free text (a reason, an error) on one table line.
func OneLine(s string) string {
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

// ErrWriter writes to an io.Writer and remembers the first write error, so
// that a renderer can write freely and check once, with Err.
type ErrWriter struct {
	w   io.Writer
	err error
}

// NewErrWriter returns an ErrWriter writing to w.
func NewErrWriter(w io.Writer) *ErrWriter { return &ErrWriter{w: w} }

// Err is the first write error, if any.
func (e *ErrWriter) Err() error { return e.err }

func (e *ErrWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *ErrWriter) printf(format string, args ...any) {
	fmt.Fprintf(e, format, args...)
}

// atLeast marks a count that is a lower bound.
func atLeast(lower bool, v string) string {
	if lower {
		return ">=" + v
	}
	return v
}

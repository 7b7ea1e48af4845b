package runs

import (
	"cmp"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The HTML pages are self-contained: one stylesheet and one small script,
// both inline and allowed by their hashes in the Content-Security-Policy,
// charts as inline SVG drawn on the server. Every text from the checkpoints
// goes through html/template, which escapes it for its context. The pages
// read fully without JavaScript; the script only makes tables sortable and
// carries a function key (?code=) over to the pages' own links.

//go:embed assets/page.css assets/page.js assets/pages.tmpl
var assetFS embed.FS

// pageAssets are what every page inlines.
type pageAssets struct {
	CSS template.CSS
	JS  template.JS
	// MetaCSP is the policy repeated in a <meta> element, so that a page
	// saved to a file keeps it (frame-ancestors is header-only).
	MetaCSP string
	csp     string
}

var (
	assets = loadAssets()
	pages  = template.Must(template.New("pages").ParseFS(assetFS, "assets/pages.tmpl"))
)

func loadAssets() pageAssets {
	css, err := assetFS.ReadFile("assets/page.css")
	if err != nil {
		panic(err) // embedded: cannot happen
	}
	js, err := assetFS.ReadFile("assets/page.js")
	if err != nil {
		panic(err)
	}
	hash := func(b []byte) string {
		sum := sha256.Sum256(b)
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	meta := "default-src 'none'; style-src " + hash(css) + "; script-src " + hash(js) +
		"; img-src data:; base-uri 'none'; form-action 'none'"
	return pageAssets{CSS: template.CSS(css), JS: template.JS(js), MetaCSP: meta, csp: meta + "; frame-ancestors 'none'"}
}

// ContentSecurityPolicy is the Content-Security-Policy header the HTML
// pages are served with: nothing may be loaded from anywhere, only the
// page's own inline style and script run (allowed by their SHA-256), and
// images only as data: URLs.
func ContentSecurityPolicy() string { return assets.csp }

// PageOptions tune the links and stamp of an HTML page.
type PageOptions struct {
	// ListHref links to the list of recent runs; "" leaves the link out.
	ListHref string
	// RunHref gives the link to a run's page (the list's links); nil or ""
	// leaves the link out.
	RunHref func(runID string) string
	// FormatLinks adds links to the run's report as JSON and as text
	// (?format=json, ?format=text, relative to the page).
	FormatLinks bool
	// Now stamps the page; zero means time.Now.
	Now time.Time
}

func (o PageOptions) generated() string {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	return now.UTC().Format("2006-01-02 15:04:05")
}

func (o PageOptions) runHref(id string) string {
	if o.RunHref == nil {
		return ""
	}
	return o.RunHref(id)
}

// pageBase is what the "head" and "foot" templates read.
type pageBase struct {
	Title     string
	Assets    pageAssets
	ListHref  string
	Formats   []link
	Generated string
}

type link struct{ Label, Href string }

func newBase(title string, o PageOptions) pageBase {
	b := pageBase{Title: title, Assets: assets, ListHref: o.ListHref, Generated: o.generated()}
	if o.FormatLinks {
		b.Formats = []link{{"JSON", "?format=json"}, {"Text", "?format=text"}}
	}
	return b
}

// WriteHTML writes the report as one self-contained HTML page: the run,
// its totals and batches, a chart of the space freed by repository (the
// largest and the rest summed), a chart of what was kept by reason, a
// sortable table of the repositories, then failed batches and rejected
// messages.
func (r *Report) WriteHTML(w io.Writer, o PageOptions) error {
	v := runPage{pageBase: newBase("acrpurge run "+r.Run.ID, o), Run: r.Run, Batches: r.Batches, StatusClass: statusClass(r.Run.Status)}
	v.Facts = runFacts(r)
	v.Cards = runCards(r)
	v.BatchBar = batchBar(r.Batches)
	v.Freed = freedChart(r)
	v.Kept = keptChart(r.Totals.Kept)
	v.Table = repoTable(r)
	v.Failed = failedTable(r.FailedBatches)
	v.Rejections = rejectionTable(r.Rejections)
	return pages.ExecuteTemplate(w, "run", v)
}

type runPage struct {
	pageBase
	Run         RunInfo
	Batches     BatchCounts
	StatusClass string
	Facts       []fact
	Cards       []card
	BatchBar    stacked
	Freed, Kept chart
	Table       table
	Failed      table
	Rejections  table
}

type fact struct {
	Key, Value string
	Mono       bool
}

type card struct{ Key, Value, Sub string }

func runFacts(r *Report) []fact {
	run := r.Run
	f := []fact{{Key: "Trigger", Value: run.Trigger}, {Key: "Started", Value: stamp(run.Started)}}
	if last := lastUpdate(r.Repositories); !last.IsZero() && !run.Started.IsZero() && !last.Before(run.Started) {
		f = append(f, fact{Key: "Last update", Value: stamp(last)}, fact{Key: "Duration", Value: duration(last.Sub(run.Started))})
	}
	mode := "no: deletes for real"
	if run.DryRun {
		mode = "yes: nothing deleted"
	}
	f = append(f, fact{Key: "Dry run", Value: mode})
	enq := "all enqueued"
	if !run.Enqueued {
		enq = "not all enqueued yet"
	}
	f = append(f, fact{Key: "Batches", Value: fmt.Sprintf("%d planned, %s", run.Batches, enq)},
		fact{Key: "Repositories", Value: fmt.Sprintf("%d planned", run.Repositories)})
	if run.PolicyHash != "" {
		f = append(f, fact{Key: "Policy", Value: run.PolicyHash, Mono: true})
	}
	return f
}

func lastUpdate(repos []RepoReport) time.Time {
	var last time.Time
	for _, x := range repos {
		if x.Updated != nil && x.Updated.After(last) {
			last = *x.Updated
		}
	}
	return last
}

// runCards are the totals at a glance: the known ones first, then any other
// field of Totals (read from its JSON), so that a new total shows up here
// without a change to this code.
func runCards(r *Report) []card {
	t := r.Totals
	verb := "deleted"
	freed := "Space freed"
	if r.Run.DryRun {
		verb, freed = "to delete", "Space to free"
	}
	var kept int64
	for _, n := range t.Kept {
		kept += n
	}
	cards := []card{
		{Key: "Repositories", Value: count(int64(t.Repositories)), Sub: statusSummary(repoStatusCounts(r.Repositories))},
		{Key: "Tags " + verb, Value: count(t.TagsDeleted)},
		{Key: "Manifests " + verb, Value: count(t.ManifestsDeleted)},
		{Key: freed, Value: Bytes(t.BytesFreed), Sub: count(t.BytesFreed) + " bytes"},
		{Key: "Items kept", Value: count(kept), Sub: plural(len(t.Kept), "reason")},
	}
	for _, f := range otherFields(t, "repositories", "pending", "partial", "done", "skipped", "forbidden", "failed",
		"tagsDeleted", "manifestsDeleted", "bytesFreed", "kept") {
		cards = append(cards, card{Key: f.Key, Value: f.Value})
	}
	return cards
}

// statusCount is how many repositories or batches have a status.
type statusCount struct {
	Status string
	N      int64
}

// statusOrder ranks statuses from settled to open; others follow by name.
var statusOrder = []string{"done", "partial", "continued", "running", "queued", "pending", "skipped", "forbidden", "failed", "rejected"}

func sortStatuses(c []statusCount) []statusCount {
	slices.SortStableFunc(c, func(a, b statusCount) int {
		return cmp.Or(cmp.Compare(rank(statusOrder, a.Status), rank(statusOrder, b.Status)), strings.Compare(a.Status, b.Status))
	})
	return c
}

func rank(order []string, s string) int {
	if i := slices.Index(order, s); i >= 0 {
		return i
	}
	return len(order)
}

func repoStatusCounts(repos []RepoReport) []statusCount {
	m := map[string]int64{}
	for _, x := range repos {
		m[x.Status]++
	}
	out := make([]statusCount, 0, len(m))
	for s, n := range m {
		out = append(out, statusCount{s, n})
	}
	return sortStatuses(out)
}

// batchStatusCounts reads every status count of BatchCounts from its JSON
// form, so that a status added there is drawn without a change here.
func batchStatusCounts(b BatchCounts) []statusCount {
	var out []statusCount
	for _, f := range jsonFields(b) {
		if f.name == "total" {
			continue
		}
		if n, ok := f.value.(float64); ok && n > 0 {
			out = append(out, statusCount{f.name, int64(n)})
		}
	}
	return sortStatuses(out)
}

func statusSummary(c []statusCount) string {
	parts := make([]string, 0, len(c))
	for _, x := range c {
		parts = append(parts, fmt.Sprintf("%s %s", count(x.N), x.Status))
	}
	return strings.Join(parts, " · ")
}

// knownStatuses have their own colour; any other status is drawn as
// "st-other".
var knownStatuses = map[string]bool{"done": true, "partial": true, "continued": true, "running": true, "queued": true,
	"pending": true, "skipped": true, "forbidden": true, "failed": true, "rejected": true}

func statusClass(s string) string {
	if knownStatuses[s] {
		return "st-" + s
	}
	return "st-other"
}

// stacked is a one-line bar of counts by status.
type stacked struct {
	Width    int
	Label    string
	Segments []segment
}

type segment struct {
	Name, Class string
	N           int64
	X, W        float64
}

func batchBar(b BatchCounts) stacked {
	c := batchStatusCounts(b)
	s := stacked{Width: chartWidth, Label: "Batches by status: " + statusSummary(c)}
	var total int64
	for _, x := range c {
		total += x.N
	}
	x := 0.0
	for _, sc := range c {
		w := round1(float64(chartWidth) * float64(sc.N) / float64(total))
		s.Segments = append(s.Segments, segment{Name: sc.Status, Class: statusClass(sc.Status), N: sc.N, X: x, W: w})
		x = round1(x + w)
	}
	return s
}

// chart is a horizontal bar chart drawn as SVG.
type chart struct {
	ID, Title, Caption, Empty string
	Width, Height             int
	LabelW, BarW, RowH        int
	Bars                      []bar
}

type bar struct {
	// Label is the text shown (shortened); Full the whole, in the tooltip.
	Label, Full, Value string
	Href               string
	// Rest marks the bar that sums what is not shown; Alt a second kind of
	// bar (a dry run's).
	Rest, Alt bool
	Y, TextY  int
	W, ValueX float64
}

// chartItem is one bar before layout.
type chartItem struct {
	Label, Title string
	N            int64
	Href         string
	Rest, Alt    bool
}

// Chart geometry, in SVG user units (the SVG scales to its box).
const (
	chartWidth  = 540
	chartLabelW = 200
	chartValueW = 86
	chartRowH   = 18
	chartGap    = 8
	// labelRunes is how much of a label fits in chartLabelW.
	labelRunes = 26
	// topRepos is how many repositories the freed-space chart names.
	topRepos = 10
)

func layout(c chart, items []chartItem, format func(int64) string) chart {
	c.Width, c.LabelW, c.RowH = chartWidth, chartLabelW, chartRowH
	c.BarW = chartWidth - chartLabelW - chartValueW
	var top int64
	for _, it := range items {
		top = max(top, it.N)
	}
	if top <= 0 {
		return c
	}
	for i, it := range items {
		y := 2 + i*(chartRowH+chartGap)
		w := round1(float64(c.BarW) * float64(it.N) / float64(top))
		if it.N > 0 && w < 2 {
			w = 2
		}
		title := it.Title
		if title == "" {
			title = it.Label
		}
		c.Bars = append(c.Bars, bar{
			Label: shorten(it.Label, labelRunes), Full: title, Value: format(it.N), Href: it.Href, Rest: it.Rest, Alt: it.Alt,
			Y: y, TextY: y + chartRowH - 5, W: w, ValueX: round1(float64(chartLabelW) + w + 6),
		})
	}
	c.Height = 4 + len(items)*(chartRowH+chartGap) - chartGap
	return c
}

func freedChart(r *Report) chart {
	c := chart{ID: "freed", Title: "Space freed by repository", Empty: "No space was freed."}
	if r.Run.DryRun {
		c.Title, c.Empty = "Space a real run would free, by repository", "A real run would free no space."
	}
	var items []chartItem
	for _, x := range r.Repositories {
		if x.BytesFreed > 0 {
			items = append(items, chartItem{Label: x.Name, N: x.BytesFreed})
		}
	}
	slices.SortStableFunc(items, func(a, b chartItem) int { return cmp.Or(cmp.Compare(b.N, a.N), strings.Compare(a.Label, b.Label)) })
	if len(items) > topRepos+1 {
		var rest int64
		for _, it := range items[topRepos:] {
			rest += it.N
		}
		n := len(items) - topRepos
		c.Caption = fmt.Sprintf("The %d repositories that freed the most; the other %d are summed.", topRepos, n)
		items = append(items[:topRepos], chartItem{Label: fmt.Sprintf("others (%d)", n), Title: fmt.Sprintf("%d other repositories", n), N: rest, Rest: true})
	}
	return layout(c, items, Bytes)
}

func keptChart(kept map[string]int64) chart {
	c := chart{ID: "kept", Title: "Items kept, by reason", Empty: "Nothing was kept.",
		Caption: "Tags and manifests that stay, by why they stay (each repository's latest plan)."}
	var items []chartItem
	for _, k := range keptReasons(kept) {
		items = append(items, chartItem{Label: k, N: kept[k]})
	}
	return layout(c, items, count)
}

// keptReasons orders kept reasons as the text report does.
func keptReasons(kept map[string]int64) []string {
	keys := slices.Sorted(maps.Keys(kept))
	slices.SortStableFunc(keys, func(a, b string) int { return cmp.Compare(keptRank(a), keptRank(b)) })
	return keys
}

// table is a sortable HTML table: a header cell and a body cell per
// column, and an optional footer row.
type table struct {
	ID    string
	Heads []head
	Rows  [][]cell
	Foot  []cell
}

type head struct {
	Text, Title string
	// Num sorts the column as numbers (largest first on the first click)
	// and aligns it right, unless Left.
	Num, Left bool
}

// cell is one table cell; Kind picks how the template draws it: "name"
// (monospace, wraps anywhere), "link" (a name linking to Href), "badge"
// (a status), "num" (right-aligned), "note" (Text, then Err in red),
// "parts" (Parts, each kept on one line) or "" (plain, with Class). Sort,
// when set, is what the table sorts on.
type cell struct {
	Kind, Text, Err, Sort, Title, Class, Href string
	Parts                                     []string
}

// column is one column of a table of T: its head, its cell for each row
// and its cell in the footer.
type column[T any] struct {
	head
	cell func(T) cell
}

func buildTable[T any](id string, cols []column[T], rows []T) table {
	t := table{ID: id}
	for _, c := range cols {
		t.Heads = append(t.Heads, c.head)
	}
	t.Rows = make([][]cell, 0, len(rows))
	for _, x := range rows {
		row := make([]cell, len(cols))
		for i, c := range cols {
			row[i] = c.cell(x)
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

func numCell(n int64) cell { return cell{Kind: "num", Text: count(n), Sort: strconv.FormatInt(n, 10)} }

func bytesCell(n int64) cell {
	return cell{Kind: "num", Text: Bytes(n), Sort: strconv.FormatInt(n, 10), Title: count(n) + " bytes"}
}

func badge(status string) cell { return cell{Kind: "badge", Text: status, Class: statusClass(status)} }

func keptCell(kept map[string]int64) cell {
	var total int64
	parts := make([]string, 0, len(kept))
	for _, k := range keptReasons(kept) {
		total += kept[k]
		parts = append(parts, fmt.Sprintf("%s %s", k, count(kept[k])))
	}
	return cell{Kind: "parts", Parts: parts, Sort: strconv.FormatInt(total, 10), Title: count(total) + " kept"}
}

// repoColumns are the repository table's columns, in order.
var repoColumns = []column[RepoReport]{
	{head{Text: "Repository"}, func(x RepoReport) cell { return cell{Kind: "name", Text: x.Name} }},
	{head{Text: "Batch", Num: true}, func(x RepoReport) cell { return numCell(int64(x.Batch)) }},
	{head{Text: "Status"}, func(x RepoReport) cell { return badge(x.Status) }},
	{head{Text: "Tags", Title: "tags deleted", Num: true}, func(x RepoReport) cell { return numCell(x.TagsDeleted) }},
	{head{Text: "Manifests", Title: "manifests deleted", Num: true}, func(x RepoReport) cell { return numCell(x.ManifestsDeleted) }},
	{head{Text: "Freed", Title: "the deleted manifests' size", Num: true}, func(x RepoReport) cell { return bytesCell(x.BytesFreed) }},
	{head{Text: "Kept, by reason", Title: "sorts by the number kept", Num: true, Left: true}, func(x RepoReport) cell { return keptCell(x.Kept) }},
	{head{Text: "Note"}, func(x RepoReport) cell {
		return cell{Kind: "note", Text: OneLine(x.Reason), Err: OneLine(x.Error), Sort: OneLine(x.Reason + " " + x.Error)}
	}},
}

func repoTable(r *Report) table {
	t := buildTable("repos", repoColumns, r.Repositories)
	tot := r.Totals
	t.Foot = []cell{{Text: fmt.Sprintf("Total (%d)", tot.Repositories)}, {}, {Text: statusSummary(repoStatusCounts(r.Repositories))},
		numCell(tot.TagsDeleted), numCell(tot.ManifestsDeleted), bytesCell(tot.BytesFreed), keptCell(tot.Kept), {}}
	return t
}

var failedColumns = []column[BatchReport]{
	{head{Text: "Batch", Num: true}, func(b BatchReport) cell { return numCell(int64(b.Batch)) }},
	{head{Text: "Status"}, func(b BatchReport) cell { return badge(b.Status) }},
	{head{Text: "Deliveries", Num: true}, func(b BatchReport) cell { return numCell(int64(b.Deliveries)) }},
	{head{Text: "Continuations", Num: true}, func(b BatchReport) cell { return numCell(int64(b.Continuations)) }},
	{head{Text: "Error"}, func(b BatchReport) cell { return cell{Kind: "note", Err: OneLine(b.Error), Sort: b.Error} }},
}

func failedTable(b []BatchReport) table { return buildTable("failed", failedColumns, b) }

var rejectionColumns = []column[Rejection]{
	{head{Text: "At"}, func(j Rejection) cell { return cell{Text: stamp(j.At), Sort: j.At.UTC().Format(time.RFC3339Nano)} }},
	{head{Text: "Message"}, func(j Rejection) cell { return cell{Kind: "name", Text: j.MessageID} }},
	{head{Text: "Reason"}, func(j Rejection) cell { return cell{Kind: "note", Text: OneLine(j.Reason), Sort: j.Reason} }},
	{head{Text: "Excerpt"}, func(j Rejection) cell { return cell{Kind: "name", Text: shorten(OneLine(j.Excerpt), 200)} }},
}

func rejectionTable(j []Rejection) table { return buildTable("rejections", rejectionColumns, j) }

// field is a scalar field of a JSON object.
type field struct {
	name  string
	value any
}

// jsonFields returns the fields of v's JSON object form, in key order.
func jsonFields(v any) []field {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	out := make([]field, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, field{k, m[k]})
	}
	return out
}

// otherFields renders the scalar fields of v's JSON form not named in
// known (numbers other than 0, texts other than "", true), labelled from
// their names ("tagsDeletedAtLeast" reads "Tags deleted at least").
func otherFields(v any, known ...string) []fact {
	var out []fact
	for _, f := range jsonFields(v) {
		if slices.Contains(known, f.name) {
			continue
		}
		var val string
		switch x := f.value.(type) {
		case float64:
			if x != 0 {
				val = strconv.FormatFloat(x, 'f', -1, 64)
				if x == float64(int64(x)) {
					val = count(int64(x))
				}
			}
		case string:
			val = x
		case bool:
			if x {
				val = "yes"
			}
		}
		if val != "" {
			out = append(out, fact{Key: humanize(f.name), Value: val})
		}
	}
	return out
}

// humanize turns a lowerCamel name into words: "bytesFreed" → "Bytes freed".
func humanize(name string) string {
	var b strings.Builder
	for i, r := range name {
		switch {
		case i == 0:
			b.WriteRune(unicode.ToUpper(r))
		case unicode.IsUpper(r):
			b.WriteRune(' ')
			b.WriteRune(unicode.ToLower(r))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// count renders a count with thousands separators: 1234567 → "1,234,567".
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// shorten keeps at most n runes of s, ending with "…" when cut.
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

func duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

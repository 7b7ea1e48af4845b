package runs_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/runs"
)

// parse parses a page and fails the test when it is not HTML.
func parse(t *testing.T, page string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	require.NoError(t, err)
	return doc
}

// findAll returns the nodes under n, in document order, that match.
func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for c := range n.Descendants() {
		if match(c) {
			out = append(out, c)
		}
	}
	return out
}

func elem(tag string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Type == html.ElementNode && n.Data == tag }
}

func byID(doc *html.Node, id string) *html.Node {
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode && attr(n, "id") == id {
			return n
		}
	}
	return nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, class string) bool {
	return slices.Contains(strings.Fields(attr(n, "class")), class)
}

// text is the text content of n.
func text(n *html.Node) string {
	var b strings.Builder
	for c := range n.Descendants() {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	}
	return b.String()
}

func pageOptions() runs.PageOptions {
	return runs.PageOptions{
		ListHref:    "/api/runs?format=html",
		RunHref:     func(id string) string { return "/api/runs/" + id + "?format=html" },
		FormatLinks: true,
		Now:         t0.Add(time.Hour),
	}
}

func TestWriteHTML(t *testing.T) {
	store := checkpoint.NewMemory()
	seed(t, store)
	r, err := runs.Build(t.Context(), store, "s-1")
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, r.WriteHTML(&buf, pageOptions()))
	doc := parse(t, buf.String())

	h1 := findAll(doc, elem("h1"))
	require.Len(t, h1, 1)
	assert.Equal(t, "Run s-1 running", strings.Join(strings.Fields(text(h1[0])), " "))
	assert.Equal(t, "acrpurge run s-1", text(findAll(doc, elem("title"))[0]))
	assert.Empty(t, findAll(doc, func(n *html.Node) bool { return hasClass(n, "banner") }), "no dry-run banner")

	repos := byID(doc, "repos")
	require.NotNil(t, repos)
	rows := findAll(repos, elem("tr"))
	require.Len(t, rows, 1+8+1, "head, a row per repository, total")
	first := findAll(rows[1], elem("td"))
	var cells []string
	for _, td := range first {
		cells = append(cells, strings.TrimSpace(text(td)))
	}
	assert.Equal(t, []string{"a/done", "1", "done", "7", "3", "3.0 MiB", "keep 2 · protected 1", ""}, cells)
	assert.Equal(t, "3145728", attr(first[5], "data-sort"), "bytes sort as numbers")
	assert.Equal(t, "3", attr(first[6], "data-sort"), "kept sorts by its total")
	failed := findAll(rows[5], elem("td"))
	assert.Equal(t, "c/failed", text(failed[0]))
	assert.Equal(t, "gave up after 5 deliveries503 service unavailable retry", text(failed[7]), "reason, then the error on one line")
	assert.Len(t, findAll(failed[7], func(n *html.Node) bool { return hasClass(n, "err") }), 1)
	total := findAll(rows[9], elem("td"))
	assert.Equal(t, "Total (8)", text(total[0]))
	assert.Equal(t, "1 done · 1 partial · 3 pending · 1 skipped · 1 forbidden · 1 failed", text(total[2]))
	assert.Equal(t, "11", text(total[3]))

	heads := findAll(repos, elem("th"))
	require.Len(t, heads, 8)
	assert.Equal(t, "Repository", text(heads[0]))
	assert.Empty(t, attr(heads[0], "data-num"))
	assert.True(t, slices.ContainsFunc(heads[5].Attr, func(a html.Attribute) bool { return a.Key == "data-num" }), "Freed sorts as numbers")

	freed := byID(doc, "chart-freed")
	require.NotNil(t, freed)
	bars := findAll(freed, func(n *html.Node) bool { return n.Data == "rect" && hasClass(n, "bar") })
	require.Len(t, bars, 1, "one repository freed space")
	assert.Contains(t, text(freed), "a/done")
	assert.Contains(t, text(freed), "3.0 MiB")
	kept := byID(doc, "chart-kept")
	require.NotNil(t, kept)
	keptBars := findAll(kept, func(n *html.Node) bool { return n.Data == "rect" && hasClass(n, "bar") })
	require.Len(t, keptBars, 2, "keep, protected")
	track := findAll(kept, func(n *html.Node) bool { return n.Data == "rect" && hasClass(n, "track") })[0]
	assert.Equal(t, attr(track, "width"), attr(keptBars[0], "width"), "the largest bar (keep=4) spans the bar area")
	assert.InDelta(t, 0.25, number(t, attr(keptBars[1], "width"))/number(t, attr(keptBars[0], "width")), 0.01,
		"protected=1 is a quarter of it")

	batches := text(byID(doc, "h-batches").Parent)
	for _, want := range []string{"1 done", "1 continued", "1 queued", "1 failed"} {
		assert.Contains(t, batches, want)
	}
	failedBatches := byID(doc, "failed")
	require.NotNil(t, failedBatches)
	assert.Len(t, findAll(failedBatches, elem("tr")), 2)
	assert.Contains(t, text(failedBatches), "transient")

	var hrefs []string
	for _, a := range findAll(doc, elem("a")) {
		hrefs = append(hrefs, attr(a, "href"))
	}
	assert.Equal(t, []string{"/api/runs?format=html", "?format=json", "?format=text"}, hrefs)

	r.Run.DryRun = true
	buf.Reset()
	require.NoError(t, r.WriteHTML(&buf, runs.PageOptions{}))
	doc = parse(t, buf.String())
	assert.Len(t, findAll(doc, func(n *html.Node) bool { return hasClass(n, "banner") }), 1)
	assert.Contains(t, text(byID(doc, "chart-freed")), "would free")
	assert.Empty(t, findAll(doc, elem("a")), "no links asked for")
}

func TestWriteHTMLEmptyRun(t *testing.T) {
	store := checkpoint.NewMemory()
	_, _, err := store.CreateRun(t.Context(), checkpoint.Run{ID: "m-0", Trigger: "manual", Started: t0}, nil)
	require.NoError(t, err)
	r, err := runs.Build(t.Context(), store, "m-0")
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, r.WriteHTML(&buf, runs.PageOptions{}))
	doc := parse(t, buf.String())
	assert.Nil(t, byID(doc, "repos"), "no table without repositories")
	assert.Contains(t, text(doc), "No repository in this run.")
	assert.Contains(t, text(doc), "No space was freed.")
	assert.Contains(t, text(doc), "Nothing was kept.")
	assert.Empty(t, findAll(doc, elem("svg")))
}

func TestFreedChartSumsTheRest(t *testing.T) {
	store := checkpoint.NewMemory()
	var names []string
	var progress []checkpoint.Repo
	for i := range 14 {
		name := fmt.Sprintf("r/%02d", i)
		names = append(names, name)
		progress = append(progress, checkpoint.Repo{Name: name, Batch: 1, Status: checkpoint.StatusDone, BytesFreed: int64(i+1) << 20})
	}
	_, _, err := store.CreateRun(t.Context(), checkpoint.Run{ID: "m-1", Started: t0, Batches: 1}, []checkpoint.Batch{{N: 1, Repositories: names}})
	require.NoError(t, err)
	require.NoError(t, store.SaveProgress(t.Context(), "m-1", progress, nil))
	r, err := runs.Build(t.Context(), store, "m-1")
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, r.WriteHTML(&buf, runs.PageOptions{}))
	freed := byID(parse(t, buf.String()), "chart-freed")
	var labels []string
	for _, g := range findAll(freed, func(n *html.Node) bool { return n.Data == "g" }) {
		labels = append(labels, text(findAll(g, elem("text"))[0]))
	}
	require.Len(t, labels, 11, "ten repositories and the rest")
	assert.Equal(t, "r/13", labels[0], "largest first")
	assert.Equal(t, "r/04", labels[9])
	assert.Equal(t, "others (4)", labels[10])
	assert.Contains(t, text(freed), "10.0 MiB", "the other four sum 1+2+3+4 MiB")
	assert.Len(t, findAll(freed, func(n *html.Node) bool { return hasClass(n, "rest") }), 1)
}

// hostile are names and texts that would break out of their context if
// they were not escaped.
var hostile = []string{
	`<script>alert(1)</script>`,
	`"><img src=x onerror=alert(2)>`,
	`'><svg onload=alert(3)>`,
	`</svg><script>alert(4)</script>`,
	`</title></style></textarea><script>alert(5)</script>`,
	`javascript:alert(6)`,
	`<a href="javascript:alert(7)">x</a>`,
	`{{.Run.ID}} ${alert(8)} --> <!--`,
	"团队/应用\u202egnp.exe 🚀 ünïcödé",
	strings.Repeat("very-long-name/", 300) + "end",
}

func TestHTMLEscapesHostileText(t *testing.T) {
	store := checkpoint.NewMemory()
	ctx := t.Context()
	var batches []checkpoint.Batch
	var progress []checkpoint.Repo
	for i, s := range hostile {
		name := fmt.Sprintf("%s#%d", s, i)
		batches = append(batches, checkpoint.Batch{N: i + 1, Repositories: []string{name}})
		progress = append(progress, checkpoint.Repo{
			Name: name, Batch: i + 1, Status: checkpoint.Status([]string{"done", "failed", s}[i%3]), Reason: s, Error: s,
			TagsDeleted: int64(i), BytesFreed: int64(i+1) << 20, Kept: map[string]int64{s: int64(i + 1)}, Attempts: 1,
		})
	}
	runID := hostile[1] // run ids are free text in the checkpoint store
	_, _, err := store.CreateRun(ctx, checkpoint.Run{ID: runID, Trigger: hostile[0], PolicyHash: hostile[3], Note: hostile[4],
		Started: t0, Batches: len(batches), Repositories: len(batches)}, batches)
	require.NoError(t, err)
	require.NoError(t, store.SaveProgress(ctx, runID, progress, nil))
	require.NoError(t, store.SaveProgress(ctx, runID, nil, &checkpoint.Batch{N: 1, Repositories: batches[0].Repositories,
		Status: checkpoint.StatusFailed, Error: hostile[2]}))
	require.NoError(t, store.RecordRejection(ctx, checkpoint.Rejection{MessageID: hostile[5], Reason: hostile[6], Excerpt: hostile[7], At: t0}))

	r, err := runs.Build(ctx, store, "") // the latest, with the rejection
	require.NoError(t, err)
	require.Equal(t, runID, r.Run.ID)
	var buf bytes.Buffer
	require.NoError(t, r.WriteHTML(&buf, pageOptions()))
	doc := assertNoInjection(t, buf.String())
	assert.Equal(t, "acrpurge run "+runID, text(findAll(doc, elem("title"))[0]), "the page title is text")
	assert.Equal(t, "Run "+runID+" running", strings.TrimSpace(text(findAll(doc, elem("h1"))[0])))

	// Every name reads as written, in full, in the table.
	var names []string
	for _, td := range findAll(byID(doc, "repos"), func(n *html.Node) bool { return n.Data == "td" && hasClass(n, "name") }) {
		names = append(names, text(td))
	}
	var want []string
	for _, x := range progress {
		want = append(want, x.Name)
	}
	assert.ElementsMatch(t, want, names)
	assert.Contains(t, text(byID(doc, "rejections")), hostile[6])
	assert.Contains(t, text(doc), hostile[4], "the note reads as written")
	// Chart labels are shortened; the tooltip has the whole name.
	for _, label := range findAll(byID(doc, "chart-freed"), elem("text")) {
		assert.LessOrEqual(t, utf8.RuneCountInString(text(label)), 26)
	}
	assert.Contains(t, text(byID(doc, "chart-freed")), hostile[9]+"#9")

	l, err := runs.BuildList(ctx, store, 0)
	require.NoError(t, err)
	buf.Reset()
	require.NoError(t, l.WriteHTML(&buf, pageOptions()))
	doc = assertNoInjection(t, buf.String())
	links := findAll(byID(doc, "runs"), elem("a"))
	require.Len(t, links, 1)
	assert.Equal(t, runID, text(links[0]))
}

// allowedElements are the elements the pages are made of.
var allowedElements = map[string]bool{
	"html": true, "head": true, "meta": true, "title": true, "link": true, "style": true, "body": true, "header": true,
	"nav": true, "main": true, "footer": true, "section": true, "h1": true, "h2": true, "p": true, "strong": true,
	"code": true, "span": true, "div": true, "dl": true, "dt": true, "dd": true, "ul": true, "li": true, "br": true, "a": true,
	"figure": true, "figcaption": true, "svg": true, "g": true, "rect": true, "text": true,
	"table": true, "thead": true, "tbody": true, "tfoot": true, "tr": true, "th": true, "td": true, "script": true,
}

// assertNoInjection parses the page and checks that no text of the data
// became markup: only the page's own elements, no event handler
// attributes, one script (the page's own, allowed by its hash), one style,
// and links only to the page's own paths.
func assertNoInjection(t *testing.T, page string) *html.Node {
	t.Helper()
	doc := parse(t, page)
	var scripts, styles []*html.Node
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		assert.True(t, allowedElements[n.Data], "unexpected element <%s>", n.Data)
		for _, a := range n.Attr {
			assert.False(t, strings.HasPrefix(strings.ToLower(a.Key), "on"), "event handler attribute %s on <%s>", a.Key, n.Data)
			assert.NotContains(t, a.Key, "<", "attribute name")
			if a.Key == "href" || a.Key == "src" {
				ok := strings.HasPrefix(a.Val, "/api/runs") || strings.HasPrefix(a.Val, "?format=") || a.Val == "data:,"
				assert.True(t, ok, "link %q on <%s>", a.Val, n.Data)
				assert.NotContains(t, strings.ToLower(a.Val), "javascript:")
			}
		}
		switch n.Data {
		case "script":
			scripts = append(scripts, n)
		case "style":
			styles = append(styles, n)
		}
	}
	require.Len(t, scripts, 1, "the page's own script only")
	require.Len(t, styles, 1)
	csp := runs.ContentSecurityPolicy()
	assert.Contains(t, csp, hashOf(text(scripts[0])), "the script is the one the policy allows")
	assert.Contains(t, csp, hashOf(text(styles[0])), "the style is the one the policy allows")
	meta := findAll(doc, func(n *html.Node) bool { return n.Data == "meta" && attr(n, "http-equiv") == "Content-Security-Policy" })
	require.Len(t, meta, 1)
	assert.True(t, strings.HasPrefix(csp, attr(meta[0], "content")), "the meta policy is the header's, less frame-ancestors")
	return doc
}

func number(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	require.NoError(t, err)
	return f
}

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

func TestContentSecurityPolicy(t *testing.T) {
	csp := runs.ContentSecurityPolicy()
	directives := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	assert.Equal(t, "'none'", directives["default-src"], "nothing loads by default")
	assert.Regexp(t, `^'sha256-[A-Za-z0-9+/]+={0,2}'$`, directives["script-src"])
	assert.Regexp(t, `^'sha256-[A-Za-z0-9+/]+={0,2}'$`, directives["style-src"])
	assert.Equal(t, "data:", directives["img-src"])
	assert.Equal(t, "'none'", directives["frame-ancestors"])
	assert.NotContains(t, csp, "http", "no external source is allowed")
}

func TestWriteListHTML(t *testing.T) {
	store := checkpoint.NewMemory()
	seed(t, store)
	_, _, err := store.CreateRun(t.Context(), checkpoint.Run{ID: "p-2", Trigger: "portal", DryRun: true, Started: t0.Add(time.Hour), Batches: 1},
		[]checkpoint.Batch{{N: 1, Repositories: []string{"x/y"}}})
	require.NoError(t, err)
	require.NoError(t, store.SaveProgress(t.Context(), "p-2", []checkpoint.Repo{
		{Name: "x/y", Batch: 1, Status: checkpoint.StatusDone, TagsDeleted: 2, ManifestsDeleted: 2, BytesFreed: 1 << 30},
	}, &checkpoint.Batch{N: 1, Repositories: []string{"x/y"}, Status: checkpoint.StatusDone}))

	l, err := runs.BuildList(t.Context(), store, 0)
	require.NoError(t, err)
	require.Len(t, l.Runs, 2)
	assert.Equal(t, "p-2", l.Runs[0].Run.ID, "newest first")
	assert.Equal(t, runs.RunDone, l.Runs[0].Run.Status)
	assert.Equal(t, int64(11), l.Runs[1].Totals.TagsDeleted)

	var buf bytes.Buffer
	require.NoError(t, l.WriteHTML(&buf, pageOptions()))
	doc := assertNoInjection(t, buf.String())
	assert.Equal(t, "Recent runs", text(findAll(doc, elem("h1"))[0]))
	rows := findAll(byID(doc, "runs"), elem("tr"))
	require.Len(t, rows, 3)
	var links []string
	for _, a := range findAll(byID(doc, "runs"), elem("a")) {
		links = append(links, attr(a, "href"))
	}
	assert.Equal(t, []string{"/api/runs/p-2?format=html", "/api/runs/s-1?format=html"}, links)
	deleted := byID(doc, "chart-deleted")
	bars := findAll(deleted, func(n *html.Node) bool { return n.Data == "rect" && hasClass(n, "bar") })
	require.Len(t, bars, 2)
	assert.True(t, hasClass(bars[0], "alt"), "a dry run's bar is drawn apart")
	assert.Equal(t, "/api/runs/p-2?format=html", attr(findAll(deleted, elem("a"))[0], "href"), "bars link to their run")
	assert.Contains(t, text(deleted), "14", "11 tags and 3 manifests")
	assert.Contains(t, text(byID(doc, "chart-freed")), "1.0 GiB")

	l, err = runs.BuildList(t.Context(), store, 1)
	require.NoError(t, err)
	assert.Len(t, l.Runs, 1)
	empty, err := runs.BuildList(t.Context(), checkpoint.NewMemory(), 0)
	require.NoError(t, err)
	buf.Reset()
	require.NoError(t, empty.WriteHTML(&buf, runs.PageOptions{}))
	assert.Contains(t, text(parse(t, buf.String())), "No run recorded yet.")
}

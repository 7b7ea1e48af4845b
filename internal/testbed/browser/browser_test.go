package browser_test

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/testbed/browser"
	"github.com/acrpurge/acrpurge/internal/testbed/localstack"
)

// startBrowser starts Chromium, or fails the test saying how to get it; it
// skips only when ACRPURGE_SKIP_BROWSER=1 is set.
func startBrowser(t *testing.T) *browser.Browser {
	t.Helper()
	b, err := browser.Start(t.Context(), browser.Options{})
	if err != nil {
		if os.Getenv(browser.SkipEnv) == "1" {
			t.Skipf("%s=1: skipping the browser test: %v", browser.SkipEnv, err)
		}
		t.Fatalf("Chromium could not be started: %v\n"+
			"Install it (apt-get install -y chromium; .ci/run does), point %s at a Chromium or Chrome,\n"+
			"or set %s=1 to skip the browser tests on a machine without one.", err, browser.PathEnv, browser.SkipEnv)
	}
	t.Cleanup(b.Close)
	return b
}

func newTab(t *testing.T, b *browser.Browser) *browser.Tab {
	t.Helper()
	tab, err := b.NewTab()
	require.NoError(t, err)
	t.Cleanup(tab.Close)
	return tab
}

func eval[T any](t *testing.T, tab *browser.Tab, expr string) T {
	t.Helper()
	v, err := browser.Eval[T](tab, expr)
	require.NoError(t, err)
	return v
}

// screenshot saves the page under the test's temporary directory.
func screenshot(t *testing.T, tab *browser.Tab, name string) {
	t.Helper()
	png, err := tab.Screenshot()
	require.NoError(t, err)
	require.Greater(t, len(png), 1000)
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, png, 0o644))
	t.Logf("screenshot: %s (%d KiB)", p, len(png)>>10)
}

// column returns the cells' data-sort values (or texts) of one column of a
// table's body, top to bottom.
func column(t *testing.T, tab *browser.Tab, table string, n int) []string {
	return eval[[]string](t, tab, fmt.Sprintf(
		`Array.from(document.querySelectorAll(%q)).map(r => { const c = r.cells[%d]; return c.dataset.sort ?? c.textContent.trim() })`,
		"#"+table+" tbody tr", n))
}

func numbers(t *testing.T, s []string) []float64 {
	out := make([]float64, len(s))
	for i, v := range s {
		_, err := fmt.Sscan(v, &out[i])
		require.NoError(t, err, v)
	}
	return out
}

// visibleBars counts the bars of a chart that the browser draws wider than
// nothing.
func visibleBars(t *testing.T, tab *browser.Tab, chart string) int {
	return eval[int](t, tab, fmt.Sprintf(
		`Array.from(document.querySelectorAll(%q)).filter(r => r.getBoundingClientRect().width > 0).length`, "#"+chart+" svg rect.bar"))
}

func headings(t *testing.T, tab *browser.Tab) []string {
	return eval[[]string](t, tab, `Array.from(document.querySelectorAll("h1, h2")).map(h => h.innerText.trim())`)
}

func TestRunPagesInChromium(t *testing.T) {
	start := time.Now()
	b := startBrowser(t)
	t.Logf("browser up in %s", time.Since(start).Round(time.Millisecond))
	tab := newTab(t, b)

	_, err := browser.Demo(t.Context(), browser.DemoOptions(), func(base string, res *localstack.Result) error {
		require.Len(t, res.Runs, 3, "a push, a dry run, the nightly purge")
		byID := map[string]*runs.Report{}
		var nightly *runs.Report
		for _, r := range res.Runs {
			byID[r.Run.ID] = r
			if r.Run.Trigger == "schedule" {
				nightly = r
			}
		}
		require.NotNil(t, nightly)

		// The list: a browser's Accept header asks for HTML.
		require.NoError(t, tab.Open(base+localstack.RunsPath))
		assert.Equal(t, "Recent runs", headings(t, tab)[0])
		ids := column(t, tab, "runs", 0)
		assert.Len(t, ids, len(res.Runs), "a row per run")
		assert.ElementsMatch(t, slices.Collect(func(yield func(string) bool) {
			for id := range byID {
				if !yield(id) {
					return
				}
			}
		}), ids)
		deleting := 0
		for _, r := range res.Runs {
			if r.Totals.TagsDeleted+r.Totals.ManifestsDeleted > 0 {
				deleting++
			}
		}
		assert.Equal(t, deleting, visibleBars(t, tab, "chart-deleted"), "a bar per run that deleted something")
		assert.Equal(t, len(res.Runs), eval[int](t, tab, `document.querySelectorAll("#chart-deleted svg rect.bar").length`))
		screenshot(t, tab, "runs-list.png")

		// Follow the nightly run's link.
		row := slices.Index(ids, nightly.Run.ID)
		require.NoError(t, tab.Click(fmt.Sprintf("#runs tbody tr:nth-child(%d) a", row+1)))
		require.NoError(t, tab.WaitVisible("#repos"))
		assert.Equal(t, base+localstack.RunsPath+"/"+nightly.Run.ID+"?format=html", eval[string](t, tab, "location.href"))
		h := headings(t, tab)
		assert.Contains(t, h[0], nightly.Run.ID)
		assert.Contains(t, h[0], nightly.Run.Status)
		for _, want := range []string{
			fmt.Sprintf("Batches (%d)", nightly.Batches.Total), "Space freed by repository", "Items kept, by reason",
			fmt.Sprintf("Repositories (%d)", len(nightly.Repositories)),
		} {
			assert.Contains(t, h, want)
		}

		names := column(t, tab, "repos", 0)
		require.Len(t, names, len(nightly.Repositories), "a row per repository")
		assert.True(t, slices.IsSorted(names), "by name at first")
		freeing := 0
		for _, x := range nightly.Repositories {
			if x.BytesFreed > 0 {
				freeing++
			}
		}
		require.Greater(t, freeing, 11, "the demo has enough repositories to sum the rest")
		assert.Equal(t, 11, visibleBars(t, tab, "chart-freed"), "ten repositories and the others")
		assert.Equal(t, fmt.Sprintf("others (%d)", freeing-10), eval[string](t, tab, `document.querySelector("#chart-freed g:last-of-type text").textContent`))
		assert.Equal(t, len(nightly.Totals.Kept), visibleBars(t, tab, "chart-kept"), "a bar per kept reason")

		// The script ran (the policy allows it): the heads are buttons.
		assert.Equal(t, 8, eval[int](t, tab, `document.querySelectorAll("#repos thead th button").length`))
		require.NoError(t, tab.Click("#repos thead th:nth-child(6) button")) // Freed
		freed := numbers(t, column(t, tab, "repos", 5))
		assert.True(t, slices.IsSortedFunc(freed, func(a, b float64) int { return int(b - a) }), "largest first: %v", freed)
		assert.NotEqual(t, names, column(t, tab, "repos", 0), "the rows moved")
		assert.Equal(t, "descending", eval[string](t, tab, `document.querySelector("#repos thead th:nth-child(6)").getAttribute("aria-sort")`))
		require.NoError(t, tab.Click("#repos thead th:nth-child(6) button"))
		assert.True(t, slices.IsSorted(numbers(t, column(t, tab, "repos", 5))), "then smallest first")
		require.NoError(t, tab.Click("#repos thead th:nth-child(1) button"))
		assert.Equal(t, names, column(t, tab, "repos", 0), "by name again")
		screenshot(t, tab, "run-page.png")

		// The dry run, asked for explicitly.
		for _, r := range res.Runs {
			if r.Run.DryRun {
				require.NoError(t, tab.Open(base+localstack.RunsPath+"/"+r.Run.ID+"?format=html"))
				assert.Contains(t, eval[string](t, tab, `document.querySelector(".banner").innerText`), "Dry run")
				assert.Len(t, column(t, tab, "repos", 0), len(r.Repositories))
			}
		}

		assert.Empty(t, tab.Problems(), "no console error, exception or policy violation")
		for _, u := range tab.Requests() {
			assert.True(t, strings.HasPrefix(u, base+"/"), "the page loads nothing from elsewhere: %s", u)
		}
		return nil
	})
	require.NoError(t, err)
	t.Logf("done in %s", time.Since(start).Round(time.Millisecond))
}

// TestHostileNamesInChromium shows a run whose names and reasons are
// markup to the browser: they read as written, and nothing runs.
func TestHostileNamesInChromium(t *testing.T) {
	b := startBrowser(t)
	store := checkpoint.NewMemory()
	names := []string{
		`<script>alert(1)</script>`, `"><img src=x onerror=alert(2)>`, `</svg><script>alert(3)</script>`,
		`javascript:alert(4)`, "团队/应用 🚀 \u202eevil", strings.Repeat("long/", 100) + "end",
	}
	var progress []checkpoint.Repo
	for i, n := range names {
		progress = append(progress, checkpoint.Repo{Name: n, Batch: 1, Status: checkpoint.StatusDone, Reason: names[(i+1)%len(names)],
			Error: `<b onmouseover=alert(5)>x</b>`, BytesFreed: int64(i+1) << 20, Kept: map[string]int64{`<i>` + n: 1}})
	}
	ctx := t.Context()
	_, _, err := store.CreateRun(ctx, checkpoint.Run{ID: `x"><script>alert(6)</script>`, Trigger: `<svg onload=alert(7)>`, Started: time.Now(), Batches: 1},
		[]checkpoint.Batch{{N: 1, Repositories: names}})
	require.NoError(t, err)
	require.NoError(t, store.SaveProgress(ctx, `x"><script>alert(6)</script>`, progress, nil))

	fn := &runs.Function{Store: store}
	app := httptest.NewServer(funchost.NewServer(map[string]funchost.Handler{runs.Name: fn.Invoke}, nil))
	t.Cleanup(app.Close)
	front := httptest.NewServer(&localstack.HostFront{Base: app.URL})
	t.Cleanup(front.Close)

	tab := newTab(t, b)
	require.NoError(t, tab.Open(front.URL+localstack.RunsPath))
	require.NoError(t, tab.Click("#runs tbody a"))
	require.NoError(t, tab.WaitVisible("#repos"))
	got := column(t, tab, "repos", 0)
	assert.ElementsMatch(t, names, got, "every name reads as written")
	assert.Equal(t, 1, eval[int](t, tab, `document.scripts.length`), "only the page's own script")
	assert.Equal(t, 0, eval[int](t, tab, `document.querySelectorAll("img, [onerror], [onload], [onmouseover], b, i").length`))
	assert.Empty(t, tab.Problems())
}

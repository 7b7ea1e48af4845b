// Package browser opens acrpurge's HTML pages in a real browser: Debian's
// Chromium, headless, driven over the DevTools protocol with chromedp. It
// starts the browser with flags that keep it off the network (the test
// machines have none, and Chromium otherwise waits on its background
// requests), in a fresh profile, and gives tabs that record what a person
// would not want to see: console errors and warnings, uncaught exceptions,
// browser log errors (a Content-Security-Policy violation is one), and
// every request the page makes.
//
// It is test support: the browser tests of the Runs pages and `make
// screenshots` (cmd/screenshots) use it; no production package imports it.
package browser

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Environment variables.
const (
	// SkipEnv set to 1 lets the browser tests skip when no browser can be
	// started; without it they fail.
	SkipEnv = "ACRPURGE_SKIP_BROWSER"
	// PathEnv names the browser executable, instead of looking for
	// Chromium.
	PathEnv = "ACRPURGE_CHROMIUM"
)

// candidates are where Chromium is looked for, in order.
var candidates = []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// ErrNoBrowser is wrapped when no browser executable is found.
var ErrNoBrowser = errors.New("no Chromium found (install it: apt-get install -y chromium)")

// Find returns the browser executable: $ACRPURGE_CHROMIUM, else the first of
// candidates that exists.
func Find() (string, error) {
	if p := strings.TrimSpace(os.Getenv(PathEnv)); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", PathEnv, p, err)
		}
		return p, nil
	}
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", ErrNoBrowser
}

// Flags are the command-line flags the browser runs with: headless, no
// sandbox (tests run as root), no GPU, and nothing that reaches the network
// on its own.
var Flags = []string{
	"headless", "no-sandbox", "disable-gpu", "disable-quic", "no-first-run", "no-default-browser-check",
	"disable-background-networking", "disable-component-update", "disable-sync", "disable-extensions",
	"disable-default-apps", "disable-dev-shm-usage", "disable-breakpad", "hide-scrollbars", "mute-audio",
	"metrics-recording-only", "disable-client-side-phishing-detection",
}

// StartTimeout bounds how long the browser may take to come up.
const StartTimeout = 30 * time.Second

// Options configure Start.
type Options struct {
	// Width and Height of the window in CSS pixels; default 1200 × 900.
	Width, Height int
	// Logf receives chromedp's diagnostics; nil discards them.
	Logf func(format string, args ...any)
}

// Browser is a running headless browser with a throw-away profile.
type Browser struct {
	ctx     context.Context // the browser's chromedp context
	cancel  func()
	profile string
}

// Start finds and starts the browser, and waits until it answers. The
// browser lives until Close or until ctx ends.
func Start(ctx context.Context, o Options) (*Browser, error) {
	path, err := Find()
	if err != nil {
		return nil, err
	}
	if o.Width <= 0 {
		o.Width = 1200
	}
	if o.Height <= 0 {
		o.Height = 900
	}
	profile, err := os.MkdirTemp("", "acrpurge-chromium-")
	if err != nil {
		return nil, fmt.Errorf("browser profile: %w", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.UserDataDir(profile), chromedp.WindowSize(o.Width, o.Height),
		chromedp.WSURLReadTimeout(StartTimeout),
	}
	for _, f := range Flags {
		opts = append(opts, chromedp.Flag(f, true))
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(logf), chromedp.WithErrorf(logf))
	b := &Browser{ctx: bctx, profile: profile, cancel: func() {
		cancelBrowser()
		cancelAlloc()
	}}
	// The first Run starts the browser; its context must not carry a
	// deadline (that would end the browser), so the wait is bounded here.
	started := make(chan error, 1)
	go func() {
		_, err := chromedp.Run(bctx, chromedp.Evaluate[int]("1 + 1"))
		started <- err
	}()
	timer := time.NewTimer(StartTimeout)
	defer timer.Stop()
	select {
	case err = <-started:
	case <-timer.C:
		err = fmt.Errorf("no answer within %s", StartTimeout)
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	return b, nil
}

// Close stops the browser and removes its profile.
func (b *Browser) Close() {
	b.cancel()
	_ = os.RemoveAll(b.profile)
}

// Tab is one browser tab that records problems and requests.
type Tab struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	problems []string
	requests []string
}

// NewTab opens a tab.
func (b *Browser) NewTab() (*Tab, error) {
	ctx, cancel := chromedp.NewContext(b.ctx)
	t := &Tab{ctx: ctx, cancel: cancel}
	if err := chromedp.Listen(ctx, t.observe); err != nil {
		cancel()
		return nil, fmt.Errorf("open a tab: %w", err)
	}
	return t, nil
}

// Close closes the tab.
func (t *Tab) Close() { t.cancel() }

// observe records the events worth reporting; it runs on chromedp's reader
// goroutine, so it only appends.
func (t *Tab) observe(ev any) {
	var problem, request string
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning ||
			e.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range e.Args {
				parts = append(parts, remoteText(a))
			}
			problem = fmt.Sprintf("console.%s: %s", e.Type, strings.Join(parts, " "))
		}
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		problem = fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, msg)
	case *log.EventEntryAdded:
		if e.Entry.Level == log.EntryLevelError || e.Entry.Level == log.EntryLevelWarning {
			problem = fmt.Sprintf("browser %s (%s): %s %s", e.Entry.Level, e.Entry.Source, e.Entry.Text, e.Entry.URL)
		}
	case *page.EventJavascriptDialogOpening:
		problem = fmt.Sprintf("a %s dialog opened: %s", e.Type, e.Message)
	case *network.EventRequestWillBeSent:
		request = e.Request.URL
	}
	if problem == "" && request == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if problem != "" {
		t.problems = append(t.problems, problem)
	}
	if request != "" {
		t.requests = append(t.requests, request)
	}
}

func remoteText(o *runtime.RemoteObject) string {
	if len(o.Value) > 0 {
		return string(o.Value)
	}
	return o.Description
}

// Problems returns the console errors and warnings, exceptions and browser
// log errors seen so far.
func (t *Tab) Problems() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.problems...)
}

// Requests returns the URL of every request the tab made so far.
func (t *Tab) Requests() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.requests...)
}

// ActionTimeout bounds one action in a tab.
const ActionTimeout = 15 * time.Second

// Open loads url in the tab and waits for the page to have loaded.
func (t *Tab) Open(url string) error {
	ctx, cancel := context.WithTimeout(t.ctx, ActionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		return fmt.Errorf("open %s: %w", url, err)
	}
	return nil
}

// Click clicks the first element that matches a CSS selector.
func (t *Tab) Click(selector string) error {
	ctx, cancel := context.WithTimeout(t.ctx, ActionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(selector))); err != nil {
		return fmt.Errorf("click %s: %w", selector, err)
	}
	return nil
}

// WaitVisible waits until an element that matches a CSS selector is
// visible (after a click that navigates, for instance).
func (t *Tab) WaitVisible(selector string) error {
	ctx, cancel := context.WithTimeout(t.ctx, ActionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(selector))); err != nil {
		return fmt.Errorf("wait for %s: %w", selector, err)
	}
	return nil
}

// Eval evaluates a JavaScript expression in the tab's page and decodes its
// JSON value into T.
func Eval[T any](t *Tab, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(t.ctx, ActionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		return v, fmt.Errorf("evaluate %q: %w", expr, err)
	}
	return v, nil
}

// Screenshot captures the whole page, beyond the window, as a PNG.
func (t *Tab) Screenshot() ([]byte, error) { return t.capture(chromedp.FullScreenshot(100)) }

// ScreenshotWindow captures what the window shows, as a PNG.
func (t *Tab) ScreenshotWindow() ([]byte, error) { return t.capture(chromedp.CaptureScreenshot()) }

// PageHeight is the bottom of the page's body in CSS pixels: a full
// screenshot is at least the window's height, and this is where the page
// itself ends.
func (t *Tab) PageHeight() (int, error) {
	h, err := Eval[float64](t, "document.body.getBoundingClientRect().bottom + window.scrollY")
	return int(math.Ceil(h)), err
}

func (t *Tab) capture(a chromedp.Action[[]byte]) ([]byte, error) {
	ctx, cancel := context.WithTimeout(t.ctx, ActionTimeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("screenshot: %w", err)
	}
	return raw, nil
}

// Compact keeps the top maxHeight pixels of a PNG (all when maxHeight <=
// 0) and encodes it again with the best compression, for images to commit.
func Compact(raw []byte, maxHeight int) ([]byte, error) {
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("screenshot: %w", err)
	}
	if r := img.Bounds(); maxHeight > 0 && r.Dy() > maxHeight {
		if sub, ok := img.(interface {
			SubImage(image.Rectangle) image.Image
		}); ok {
			img = sub.SubImage(image.Rect(r.Min.X, r.Min.Y, r.Max.X, r.Min.Y+maxHeight))
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("screenshot: %w", err)
	}
	return buf.Bytes(), nil
}

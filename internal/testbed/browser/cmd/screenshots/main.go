// Command screenshots renders the Runs function's HTML pages for the README:
// it runs the local stack with browser.DemoOptions, opens the list of runs
// and the nightly run's page in headless Chromium, and writes
// runs-list.png and run-page.png to -out. `make screenshots` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/testbed/browser"
	"github.com/acrpurge/acrpurge/internal/testbed/localstack"
)

func main() {
	out := flag.String("out", filepath.Join("internal", "runs", "screenshots"), "`directory` for the PNG files")
	width := flag.Int("width", 1200, "window width in CSS pixels")
	height := flag.Int("height", 1400, "window height of the run page's screenshot (the list is captured whole)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *out, *width, *height); err != nil {
		fmt.Fprintln(os.Stderr, "screenshots:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out string, width, height int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	b, err := browser.Start(ctx, browser.Options{Width: width, Height: height})
	if err != nil {
		return err
	}
	defer b.Close()
	tab, err := b.NewTab()
	if err != nil {
		return err
	}
	defer tab.Close()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	_, err = browser.Demo(ctx, browser.DemoOptions(), func(base string, res *localstack.Result) error {
		var nightly *runs.Report
		for _, r := range res.Runs {
			if r.Run.Trigger == "schedule" {
				nightly = r
			}
		}
		if nightly == nil {
			return errors.New("the demo made no scheduled run")
		}
		shots := []struct {
			file, url string
			whole     bool
		}{
			{"runs-list.png", base + localstack.RunsPath, true},
			{"run-page.png", base + localstack.RunsPath + "/" + nightly.Run.ID, false},
		}
		for _, s := range shots {
			if err := tab.Open(s.url); err != nil {
				return err
			}
			capture, height := tab.ScreenshotWindow, 0
			if s.whole {
				capture = tab.Screenshot
				if height, err = tab.PageHeight(); err != nil {
					return err
				}
			}
			raw, err := capture()
			if err != nil {
				return err
			}
			png, err := browser.Compact(raw, height)
			if err != nil {
				return err
			}
			p := filepath.Join(out, s.file)
			if err := os.WriteFile(p, png, 0o644); err != nil {
				return err
			}
			fmt.Printf("%s (%d KiB)\n", p, len(png)>>10)
		}
		if p := tab.Problems(); len(p) > 0 {
			return fmt.Errorf("the pages reported problems:\n  %s", strings.Join(p, "\n  "))
		}
		return nil
	})
	return err
}

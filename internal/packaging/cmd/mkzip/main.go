// Command mkzip builds the deployment zip of the function app: it compiles
// ./handler for linux/amd64 and writes handler, host.json and the function
// folders to one zip (dist/acrpurge.zip by default). `make package` runs it.
//
//	go run ./internal/packaging/cmd/mkzip [-root .] [-out dist/acrpurge.zip] [-go go] [-binary path]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/acrpurge/acrpurge/internal/packaging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkzip:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fl := flag.NewFlagSet("mkzip", flag.ContinueOnError)
	fl.SetOutput(stderr)
	root := fl.String("root", ".", "module root holding host.json, functions/ and handler/")
	out := fl.String("out", packaging.DefaultZipPath, "zip to write (relative paths are relative to -root)")
	goCmd := fl.String("go", "go", "go command used to compile the handler")
	pkg := fl.String("pkg", packaging.MainPackage, "handler package, relative to -root")
	binary := fl.String("binary", "", "package this prebuilt linux/amd64 binary instead of compiling")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fl.Args())
	}
	zipPath := *out
	if !filepath.IsAbs(zipPath) {
		zipPath = filepath.Join(*root, zipPath)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if err := packaging.BuildWith(ctx, packaging.Options{
		Root:        *root,
		Out:         zipPath,
		Go:          *goCmd,
		MainPackage: *pkg,
		Binary:      *binary,
		Logger:      log,
	}); err != nil {
		return err
	}
	st, err := os.Stat(zipPath)
	if err != nil {
		return fmt.Errorf("stat %s: %w", zipPath, err)
	}
	fmt.Fprintf(stderr, "wrote %s (%d bytes)\n", zipPath, st.Size())
	return nil
}

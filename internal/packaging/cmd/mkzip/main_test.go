package main

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRunWritesTheZipRelativeToRoot(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "go.mod"), "module example.com/mk\n\ngo 1.26\n")
	writeFile(t, filepath.Join(root, "cmd", "h", "main.go"), "package main\n\nfunc main() {}\n")
	writeFile(t, filepath.Join(root, "host.json"), `{"customHandler":{"description":{"defaultExecutablePath":"handler"}}}`)
	writeFile(t, filepath.Join(root, "functions", "Runs", "function.json"), `{"bindings":[{"name":"req","type":"httpTrigger"}]}`)

	var stderr bytes.Buffer
	err := run(t.Context(), []string{"-root", root, "-pkg", "./cmd/h", "-out", "out/app.zip"}, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	zr, err := zip.OpenReader(filepath.Join(root, "out", "app.zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	if got := strings.Join(names, ","); got != "handler,host.json,Runs/function.json" {
		t.Errorf("entries %s", got)
	}
	if !strings.Contains(stderr.String(), "wrote ") {
		t.Errorf("no summary line in %q", stderr.String())
	}
}

func TestRunRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{{"-nope"}, {"extra"}} {
		var stderr bytes.Buffer
		if err := run(t.Context(), args, &stderr); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
	if err := run(t.Context(), []string{"-h"}, &bytes.Buffer{}); err != nil {
		t.Errorf("-h is not an error: %v", err)
	}
}

func TestRunFailsWithoutHost(t *testing.T) {
	root := t.TempDir()
	var stderr bytes.Buffer
	err := run(t.Context(), []string{"-root", root, "-binary", filepath.Join(root, "missing")}, &stderr)
	if err == nil {
		t.Fatal("run succeeded in an empty directory")
	}
}

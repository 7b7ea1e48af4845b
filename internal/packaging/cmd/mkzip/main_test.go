package main

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
}

func TestRunWritesTheZipRelativeToRoot(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "go.mod"), "module example.com/mk\n\ngo 1.26\n")
	writeFile(t, filepath.Join(root, "cmd", "h", "main.go"), "package main\n\nfunc main() {}\n")
	writeFile(t, filepath.Join(root, "host.json"), `{"customHandler":{"description":{"defaultExecutablePath":"handler"}}}`)
	writeFile(t, filepath.Join(root, "functions", "Runs", "function.json"), `{"bindings":[{"name":"req","type":"httpTrigger"}]}`)

	var stderr bytes.Buffer
	err := run(t.Context(), []string{"-root", root, "-pkg", "./cmd/h", "-out", "out/app.zip"}, &stderr)
	require.NoError(t, err, stderr.String())
	zr, err := zip.OpenReader(filepath.Join(root, "out", "app.zip"))
	require.NoError(t, err)
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	assert.Equal(t, []string{"handler", "host.json", "Runs/function.json"}, names)
	assert.Contains(t, stderr.String(), "wrote ", "no summary line")
}

func TestRunRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{{"-nope"}, {"extra"}} {
		var stderr bytes.Buffer
		assert.Error(t, run(t.Context(), args, &stderr), "run(%q)", args)
	}
	assert.NoError(t, run(t.Context(), []string{"-h"}, &bytes.Buffer{}), "-h is not an error")
}

func TestRunFailsWithoutHost(t *testing.T) {
	root := t.TempDir()
	var stderr bytes.Buffer
	err := run(t.Context(), []string{"-root", root, "-binary", filepath.Join(root, "missing")}, &stderr)
	assert.Error(t, err, "run succeeded in an empty directory")
}

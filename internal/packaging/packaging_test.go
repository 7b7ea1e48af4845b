package packaging_test

import (
	"archive/zip"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acrpurge/acrpurge/internal/packaging"
)

// placeholderMain stands in for the real handler: packaging must not
// depend on the handler being finished, only on it being a main package.
const placeholderMain = `package main

import "fmt"

func main() { fmt.Println("placeholder handler") }
`

const goMod = "module example.com/placeholder\n\ngo 1.26\n"

const hostJSON = `{
  "version": "2.0",
  "customHandler": {"description": {"defaultExecutablePath": "handler", "arguments": ["serve"]}}
}`

// writeModule lays out a module root like the repository's: go.mod,
// handler/main.go, host.json and function folders.
func writeModule(t *testing.T, mainSrc string, functions map[string]string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"go.mod":           goMod,
		"handler/main.go":  mainSrc,
		packaging.HostFile: hostJSON,
	}
	for name, body := range functions {
		files[filepath.Join(packaging.FunctionsDir, name, packaging.FunctionFile)] = body
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func twoFunctions() map[string]string {
	return map[string]string{
		"Worker":    `{"bindings":[{"name":"msg","type":"serviceBusTrigger","direction":"in"}]}`,
		"Scheduler": `{"bindings":[{"name":"timer","type":"timerTrigger","direction":"in"}]}`,
	}
}

// compiled is one placeholder binary shared by the tests that only need
// some valid linux/amd64 executable.
var compiled = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "packaging-test-")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(goMod), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(placeholderMain), 0o644); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute) // a cold build cache
	defer cancel()
	out := filepath.Join(dir, "bin", packaging.BinaryName)
	return out, packaging.CompileHandler(ctx, "", dir, ".", out)
})

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := compiled(); err == nil {
		os.RemoveAll(filepath.Dir(filepath.Dir(bin)))
	}
	os.Exit(code)
}

func placeholderBinary(t *testing.T) string {
	t.Helper()
	bin, err := compiled()
	if err != nil {
		t.Fatalf("compile placeholder handler: %v", err)
	}
	return bin
}

func readZip(t *testing.T, path string) *zip.Reader {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("%s is not a zip: %v", path, err)
	}
	return zr
}

func entryBytes(t *testing.T, f *zip.File) []byte {
	t.Helper()
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWriteZipLayout(t *testing.T) {
	root := writeModule(t, placeholderMain, twoFunctions())
	bin := placeholderBinary(t)
	out := filepath.Join(t.TempDir(), "nested", "app.zip")
	if err := packaging.WriteZip(root, bin, out); err != nil {
		t.Fatal(err)
	}
	zr := readZip(t, out)

	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	want := []string{"handler", "host.json", "Scheduler/function.json", "Worker/function.json"}
	if !slices.Equal(names, want) {
		t.Fatalf("entries = %q, want %q", names, want)
	}
	sources := map[string]string{
		"handler":                 bin,
		"host.json":               filepath.Join(root, "host.json"),
		"Scheduler/function.json": filepath.Join(root, "functions", "Scheduler", "function.json"),
		"Worker/function.json":    filepath.Join(root, "functions", "Worker", "function.json"),
	}
	for _, f := range zr.File {
		src, err := os.ReadFile(sources[f.Name])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(entryBytes(t, f), src) {
			t.Errorf("%s: content differs from %s", f.Name, sources[f.Name])
		}
		if creator := f.CreatorVersion >> 8; creator != 3 {
			t.Errorf("%s: created-by %d, want 3 (Unix) so the mode is honoured", f.Name, creator)
		}
		wantMode := os.FileMode(0o644)
		if f.Name == packaging.BinaryName {
			wantMode = 0o755
		}
		if got := f.Mode(); got != wantMode {
			t.Errorf("%s: mode %v, want %v", f.Name, got, wantMode)
		}
		if f.Name == packaging.BinaryName && f.ExternalAttrs>>16&0o170000 != 0o100000 {
			t.Errorf("handler: external attributes %o lack the regular-file type", f.ExternalAttrs>>16)
		}
	}
	// The handler in the zip is the linux/amd64 executable.
	hf, err := zr.Open(packaging.BinaryName)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(hf)
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("handler entry is not ELF: %v", err)
	}
	if ef.Machine != elf.EM_X86_64 {
		t.Errorf("handler machine %v, want x86-64", ef.Machine)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("zip file mode %v, want 0644", st.Mode().Perm())
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".acrpurge-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %q", left)
	}
}

func TestWriteZipIsReproducible(t *testing.T) {
	root := writeModule(t, placeholderMain, twoFunctions())
	bin := placeholderBinary(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.zip"), filepath.Join(dir, "b.zip")
	if err := packaging.WriteZip(root, bin, a); err != nil {
		t.Fatal(err)
	}
	// Touch every source: timestamps must not leak into the zip.
	later := time.Now().Add(time.Hour)
	for _, p := range []string{filepath.Join(root, "host.json"), filepath.Join(root, "functions", "Worker", "function.json")} {
		if err := os.Chtimes(p, later, later); err != nil {
			t.Fatal(err)
		}
	}
	if err := packaging.WriteZip(root, bin, b); err != nil {
		t.Fatal(err)
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Error("two zips of the same inputs differ")
	}
}

func TestWriteZipRejects(t *testing.T) {
	bin := placeholderBinary(t)
	script := filepath.Join(t.TempDir(), "handler.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(t *testing.T, root string) (binary string)
		want   string
	}{
		{"missing host.json", func(t *testing.T, root string) string {
			mustRemove(t, filepath.Join(root, "host.json"))
			return bin
		}, "host.json"},
		{"host.json names another executable", func(t *testing.T, root string) string {
			mustWrite(t, filepath.Join(root, "host.json"), `{"customHandler":{"description":{"defaultExecutablePath":"app"}}}`)
			return bin
		}, `"app"`},
		{"host.json without customHandler", func(t *testing.T, root string) string {
			mustWrite(t, filepath.Join(root, "host.json"), `{"version":"2.0"}`)
			return bin
		}, "customHandler"},
		{"host.json with trailing data", func(t *testing.T, root string) string {
			mustWrite(t, filepath.Join(root, "host.json"), hostJSON+" {}")
			return bin
		}, "unexpected data"},
		{"invalid function.json", func(t *testing.T, root string) string {
			mustWrite(t, filepath.Join(root, "functions", "Worker", "function.json"), `{"bindings":[`)
			return bin
		}, "Worker"},
		{"function.json without bindings", func(t *testing.T, root string) string {
			mustWrite(t, filepath.Join(root, "functions", "Worker", "function.json"), `{"bindings":[]}`)
			return bin
		}, "no bindings"},
		{"folder without function.json", func(t *testing.T, root string) string {
			if err := os.MkdirAll(filepath.Join(root, "functions", "Stray"), 0o755); err != nil {
				t.Fatal(err)
			}
			return bin
		}, "Stray"},
		{"invalid folder name", func(t *testing.T, root string) string {
			mustWrite(t, filepath.Join(root, "functions", "bad name", "function.json"), `{"bindings":[{}]}`)
			return bin
		}, "bad name"},
		{"no function folders", func(t *testing.T, root string) string {
			mustRemove(t, filepath.Join(root, "functions"))
			if err := os.MkdirAll(filepath.Join(root, "functions"), 0o755); err != nil {
				t.Fatal(err)
			}
			return bin
		}, "no function folders"},
		{"binary missing", func(t *testing.T, root string) string {
			return filepath.Join(root, "nope")
		}, "nope"},
		{"binary not an executable for linux", func(t *testing.T, root string) string {
			return script
		}, "not a linux executable"},
		{"no binary", func(t *testing.T, root string) string { return "" }, "no handler binary"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := writeModule(t, placeholderMain, twoFunctions())
			binary := tc.mutate(t, root)
			outDir := t.TempDir()
			out := filepath.Join(outDir, "app.zip")
			err := packaging.WriteZip(root, binary, out)
			if err == nil {
				t.Fatal("WriteZip succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if left, _ := os.ReadDir(outDir); len(left) != 0 {
				t.Errorf("files left in the output directory: %v", left)
			}
		})
	}
}

func TestBuildWithCompilesTheHandlerPackage(t *testing.T) {
	root := writeModule(t, placeholderMain, twoFunctions())
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	out := filepath.Join(root, packaging.DefaultZipPath)
	if err := packaging.Build(ctx, root, out); err != nil {
		t.Fatal(err)
	}
	zr := readZip(t, out)
	if zr.File[0].Name != packaging.BinaryName || zr.File[0].Mode() != 0o755 {
		t.Fatalf("first entry %s %v, want the executable handler", zr.File[0].Name, zr.File[0].Mode())
	}
	data := entryBytes(t, zr.File[0])
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil || ef.Machine != elf.EM_X86_64 {
		t.Fatalf("handler is not a linux/amd64 executable: %v", err)
	}
	// -ldflags "-s -w": no symbol table.
	if syms, err := ef.Symbols(); err == nil && len(syms) > 0 {
		t.Errorf("handler has %d symbols, want a stripped binary", len(syms))
	}
}

func TestBuildWithPrebuiltBinary(t *testing.T) {
	root := writeModule(t, "package main\n\nthis does not compile\n", twoFunctions())
	out := filepath.Join(t.TempDir(), "app.zip")
	err := packaging.BuildWith(t.Context(), packaging.Options{Root: root, Out: out, Binary: placeholderBinary(t)})
	if err != nil {
		t.Fatalf("with Binary set nothing is compiled, got %v", err)
	}
	if len(readZip(t, out).File) != 4 {
		t.Error("unexpected entry count")
	}
}

func TestBuildReportsCompilerErrors(t *testing.T) {
	root := writeModule(t, "package main\n\nfunc main() { undefinedThing() }\n", twoFunctions())
	out := filepath.Join(t.TempDir(), "app.zip")
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	err := packaging.Build(ctx, root, out)
	if err == nil {
		t.Fatal("Build succeeded with a broken handler")
	}
	if !strings.Contains(err.Error(), "undefinedThing") {
		t.Errorf("error does not carry the compiler output: %v", err)
	}
	if _, statErr := os.Stat(out); statErr == nil {
		t.Error("a zip was written despite the failed build")
	}
}

func TestBuildWithNeedsRootAndOut(t *testing.T) {
	for _, o := range []packaging.Options{{Out: "x.zip"}, {Root: "."}} {
		if err := packaging.BuildWith(t.Context(), o); err == nil {
			t.Errorf("BuildWith(%+v) succeeded", o)
		}
	}
}

func TestBuildEnvTargetsLinuxAmd64(t *testing.T) {
	env := packaging.BuildEnv([]string{"GOOS=windows", "GOARCH=arm64", "CGO_ENABLED=1", "HOME=/x"})
	last := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		last[k] = v // os/exec uses the last value of a duplicated key
	}
	want := map[string]string{"GOOS": "linux", "GOARCH": "amd64", "CGO_ENABLED": "0", "HOME": "/x"}
	for k, v := range want {
		if last[k] != v {
			t.Errorf("%s = %q, want %q", k, last[k], v)
		}
	}
	args := strings.Join(packaging.GoBuildArgs("./handler", "/tmp/h"), " ")
	for _, part := range []string{"build", "-trimpath", "-ldflags -s -w", "-o /tmp/h", "./handler"} {
		if !strings.Contains(args, part) {
			t.Errorf("go build args %q lack %q", args, part)
		}
	}
}

func mustWrite(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRemove(t *testing.T, path string) {
	t.Helper()
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(fmt.Errorf("remove %s: %w", path, err))
	}
}

package packaging

import (
	"archive/zip"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"
)

// zipTime is the timestamp of every entry, so the same inputs give the same
// bytes (the earliest time a zip can hold).
var zipTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// functionName is what a function folder may be called.
var functionName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,127}$`)

// Entry is one file of the package.
type Entry struct {
	// Name is the path inside the zip ("handler", "Worker/function.json").
	Name string
	// Source is the file it is copied from.
	Source string
	// Mode is the Unix permission recorded in the zip.
	Mode fs.FileMode
}

// Entries lists what WriteZip puts in the zip for the module at root and
// the binary, in zip order, after checking that every file exists and that
// host.json and each function.json are valid. binary "" lists the handler
// entry without checking a binary.
func Entries(root, binary string) ([]Entry, error) {
	hostPath := filepath.Join(root, HostFile)
	if err := checkHost(hostPath); err != nil {
		return nil, err
	}
	names, err := FunctionNames(root)
	if err != nil {
		return nil, err
	}
	entries := []Entry{
		{Name: BinaryName, Source: binary, Mode: 0o755},
		{Name: HostFile, Source: hostPath, Mode: 0o644},
	}
	for _, n := range names {
		p := filepath.Join(root, FunctionsDir, n, FunctionFile)
		if err := checkFunction(p); err != nil {
			return nil, err
		}
		entries = append(entries, Entry{Name: n + "/" + FunctionFile, Source: p, Mode: 0o644})
	}
	return entries, nil
}

// FunctionNames returns the function folders under root/functions, sorted.
// Every folder must be a valid function name and hold a function.json;
// hidden entries (".name") and plain files are ignored.
func FunctionNames(root string) ([]string, error) {
	dir := filepath.Join(root, FunctionsDir)
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("packaging: read function folders: %w", err)
	}
	var names []string
	for _, de := range des {
		n := de.Name()
		if !de.IsDir() || n[0] == '.' {
			continue
		}
		if !functionName.MatchString(n) {
			return nil, fmt.Errorf("packaging: function folder %q: not a valid function name", filepath.Join(dir, n))
		}
		if _, err := os.Stat(filepath.Join(dir, n, FunctionFile)); err != nil {
			return nil, fmt.Errorf("packaging: function folder %s: %w", filepath.Join(dir, n), err)
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("packaging: no function folders in %s", dir)
	}
	slices.Sort(names)
	return names, nil
}

// WriteZip writes the deployment zip for the module at root with the given
// handler binary (a linux/amd64 ELF executable) to outZip. The file is
// written next to outZip and renamed into place, so a failed run never
// leaves a partial zip behind.
func WriteZip(root, binary, outZip string) (err error) {
	if binary == "" {
		return errors.New("packaging: no handler binary given")
	}
	if err := checkBinary(binary); err != nil {
		return err
	}
	entries, err := Entries(root, binary)
	if err != nil {
		return err
	}
	dir := filepath.Dir(outZip)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("packaging: create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".acrpurge-*.zip")
	if err != nil {
		return fmt.Errorf("packaging: create zip in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	zw := zip.NewWriter(tmp)
	for _, e := range entries {
		if err := addFile(zw, e); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("packaging: finish %s: %w", outZip, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("packaging: write %s: %w", outZip, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("packaging: chmod %s: %w", outZip, err)
	}
	if err := os.Rename(tmp.Name(), outZip); err != nil {
		return fmt.Errorf("packaging: move zip to %s: %w", outZip, err)
	}
	return nil
}

func addFile(zw *zip.Writer, e Entry) error {
	f, err := os.Open(e.Source)
	if err != nil {
		return fmt.Errorf("packaging: %s: %w", e.Name, err)
	}
	defer f.Close()
	h := &zip.FileHeader{Name: e.Name, Method: zip.Deflate, Modified: zipTime}
	// SetMode records a Unix mode (creator "Unix", mode in the external
	// attributes), which is what keeps the handler executable when the
	// platform extracts or mounts the package.
	h.SetMode(e.Mode)
	w, err := zw.CreateHeader(h)
	if err != nil {
		return fmt.Errorf("packaging: %s: %w", e.Name, err)
	}
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("packaging: %s: copy from %s: %w", e.Name, e.Source, err)
	}
	return nil
}

// checkBinary accepts only a non-empty linux/amd64 executable: a binary for
// the build machine's platform would package fine and fail on the instance.
func checkBinary(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("packaging: handler binary: %w", err)
	}
	if !st.Mode().IsRegular() || st.Size() == 0 {
		return fmt.Errorf("packaging: handler binary %s is not a non-empty regular file", path)
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("packaging: handler binary %s is not a linux executable (build with GOOS=%s GOARCH=%s): %w", path, TargetOS, TargetArch, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 || f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("packaging: handler binary %s is %v/%v/%v, want a %s/%s executable", path, f.Class, f.Machine, f.Type, TargetOS, TargetArch)
	}
	return nil
}

// hostConfig is the part of host.json packaging depends on.
type hostConfig struct {
	Version       string `json:"version"`
	CustomHandler *struct {
		Description *struct {
			DefaultExecutablePath string `json:"defaultExecutablePath"`
		} `json:"description"`
	} `json:"customHandler"`
}

// checkHost requires host.json to be valid JSON whose custom handler is the
// packaged binary.
func checkHost(path string) error {
	var h hostConfig
	if err := readJSON(path, &h); err != nil {
		return err
	}
	if h.CustomHandler == nil || h.CustomHandler.Description == nil {
		return fmt.Errorf("packaging: %s: no customHandler.description", path)
	}
	if got := h.CustomHandler.Description.DefaultExecutablePath; got != BinaryName {
		return fmt.Errorf("packaging: %s: customHandler.description.defaultExecutablePath is %q, the package's binary is %q", path, got, BinaryName)
	}
	return nil
}

// checkFunction requires a function.json with at least one binding.
func checkFunction(path string) error {
	var fn struct {
		Bindings []json.RawMessage `json:"bindings"`
	}
	if err := readJSON(path, &fn); err != nil {
		return err
	}
	if len(fn.Bindings) == 0 {
		return fmt.Errorf("packaging: %s: no bindings", path)
	}
	return nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("packaging: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("packaging: %s: invalid JSON: %w", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("packaging: %s: unexpected data after the JSON value", path)
	}
	return nil
}

package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const modulePath = "github.com/acrpurge/acrpurge"

// repoRoot finds the module root by walking up from the test's directory.
var repoRoot = sync.OnceValues(func() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module "+modulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the test directory", modulePath)
		}
		dir = parent
	}
})

func root(t *testing.T) string {
	t.Helper()
	r, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// decodeJSON decodes exactly one JSON value.
func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("unexpected data after the JSON value")
	}
	return nil
}

// set is a sorted-output string set for readable diffs.
type set map[string]bool

func newSet(items ...string) set {
	s := set{}
	for _, it := range items {
		s[it] = true
	}
	return s
}

func (s set) minus(o set) set {
	r := set{}
	for k := range s {
		if !o[k] {
			r[k] = true
		}
	}
	return r
}

func (s set) sorted() []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// diff returns "" when a and b hold the same names, else what each lacks.
func diff(aName string, a set, bName string, b set) string {
	onlyA, onlyB := a.minus(b).sorted(), b.minus(a).sorted()
	if len(onlyA) == 0 && len(onlyB) == 0 {
		return ""
	}
	var sb strings.Builder
	if len(onlyA) > 0 {
		fmt.Fprintf(&sb, "in %s but not in %s: %q. ", aName, bName, onlyA)
	}
	if len(onlyB) > 0 {
		fmt.Fprintf(&sb, "in %s but not in %s: %q.", bName, aName, onlyB)
	}
	return sb.String()
}

// hostDuration parses a host.json time span "[d.]hh:mm:ss[.fff]".
func hostDuration(s string) (time.Duration, error) {
	var days int64
	rest := s
	if d, r, ok := strings.Cut(s, "."); ok && !strings.Contains(d, ":") {
		n, err := strconv.ParseInt(d, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("time span %q: %w", s, err)
		}
		days, rest = n, r
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 3 {
		return 0, fmt.Errorf("time span %q: want hh:mm:ss", s)
	}
	h, err1 := strconv.ParseInt(parts[0], 10, 64)
	m, err2 := strconv.ParseInt(parts[1], 10, 64)
	sec, err3 := strconv.ParseFloat(parts[2], 64)
	if err1 != nil || err2 != nil || err3 != nil || m > 59 || sec >= 60 || h < 0 || m < 0 || sec < 0 {
		return 0, fmt.Errorf("time span %q: want hh:mm:ss", s)
	}
	return time.Duration(days)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(m)*time.Minute +
		time.Duration(sec*float64(time.Second)), nil
}

// appSettingRef matches %NAME% references in function.json values.
var appSettingRef = regexp.MustCompile(`%([A-Za-z0-9_]+)%`)

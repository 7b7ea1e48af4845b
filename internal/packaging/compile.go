package packaging

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The platform of Flex Consumption instances.
const (
	TargetOS   = "linux"
	TargetArch = "amd64"
)

// GoBuildArgs returns the arguments of `go build` for the handler: a
// stripped, path-independent binary written to out.
func GoBuildArgs(pkg, out string) []string {
	return []string{"build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg}
}

// BuildEnv returns base with the cross-compilation settings appended:
// GOOS=linux, GOARCH=amd64 and CGO_ENABLED=0 (a static binary needs nothing
// from the instance image). Appended values win over earlier ones.
func BuildEnv(base []string) []string {
	env := make([]string, 0, len(base)+3)
	env = append(env, base...)
	return append(env, "GOOS="+TargetOS, "GOARCH="+TargetArch, "CGO_ENABLED=0")
}

// CompileHandler runs `go build` in dir for pkg and writes the binary to
// out. goCmd "" means "go". The compiler's output is part of the error.
func CompileHandler(ctx context.Context, goCmd, dir, pkg, out string) error {
	if goCmd == "" {
		goCmd = "go"
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("packaging: binary path %q: %w", out, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return fmt.Errorf("packaging: create %s: %w", filepath.Dir(abs), err)
	}
	cmd := exec.CommandContext(ctx, goCmd, GoBuildArgs(pkg, abs)...)
	cmd.Dir = dir
	cmd.Env = BuildEnv(os.Environ())
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("packaging: go build %s in %s: %w", pkg, dir, ctxErr)
		}
		return fmt.Errorf("packaging: go build %s in %s: %w\n%s", pkg, dir, err, tail(output.String(), 4000))
	}
	return nil
}

// tail keeps the last n bytes of s: compiler errors can be long, the end
// names the failure.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

package migrate

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/policy"
)

type cliResult struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, stdin io.Reader, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errOut bytes.Buffer
	code := Run(ctx, args, stdin, &out, &errOut)
	return cliResult{code: code, stdout: out.String(), stderr: errOut.String()}
}

// stderrLines checks that every stderr line is a "# " comment and returns
// the settings and the other notes.
func stderrLines(t *testing.T, stderr string) (settings map[string]string, notes []string) {
	t.Helper()
	settings = map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		if line == "" {
			continue
		}
		require.True(t, strings.HasPrefix(line, "# "), "every stderr line is a comment: %q", line)
		if kv, ok := strings.CutPrefix(line, "# setting: "); ok {
			name, val, ok := strings.Cut(kv, "=")
			require.True(t, ok, line)
			settings[name] = val
			continue
		}
		notes = append(notes, strings.TrimPrefix(line, "# "))
	}
	return settings, notes
}

func TestCLIConvertArguments(t *testing.T) {
	res := runCLI(t, nil, "convert", "--schedule", "0 1 * * Sun", "--",
		"acr purge --filter 'hello-world:.*' --ago 1d --untagged --dry-run --concurrency 4",
		"acr purge -r contoso --filter 'samples/.*:^(?!v1).*$' --ago 30d --keep 5")
	require.Equal(t, exitOK, res.code, res.stderr)
	p := requireRoundTrip(t, []byte(res.stdout))
	require.Len(t, p.Rules, 2)
	assert.Equal(t, policy.Rule{Name: "hello-world", Filters: []string{"hello-world:.*"}, Ago: "1d", Untagged: true}, p.Rules[0])
	assert.Equal(t, policy.Rule{Name: "samples", Filters: []string{"samples/.*:^(?!v1).*$"}, Ago: "30d", Keep: 5}, p.Rules[1])

	settings, notes := stderrLines(t, res.stderr)
	assert.Equal(t, map[string]string{
		"ACR_LOGIN_SERVER":  "contoso.azurecr.io",
		"PURGE_SCHEDULE":    "0 0 1 * * Sun",
		"PURGE_DRY_RUN":     "true",
		"PURGE_CONCURRENCY": "4",
	}, settings)
	joined := strings.Join(notes, "\n")
	for _, want := range []string{"protect", "children of every surviving index", "applied together", "--dry-run is the app setting"} {
		assert.Contains(t, joined, want)
	}
}

func TestCLIConvertWordsSplitByTheShell(t *testing.T) {
	// handler policy convert -- acr purge --filter 'hello-world:.*' --ago 1d
	res := runCLI(t, nil, "convert", "--", "acr", "purge", "--filter", "hello-world:.*", "--ago", "1d", "--registry", "{{.Run.Registry}}")
	require.Equal(t, exitOK, res.code, res.stderr)
	p := requireRoundTrip(t, []byte(res.stdout))
	assert.Equal(t, []string{"hello-world:.*"}, p.Rules[0].Filters)

	// The same for an az line: the --cmd value is one word.
	res = runCLI(t, nil, "convert", "az", "acr", "task", "create", "-n", "nightly",
		"--cmd", "acr purge --filter 'team-a/.*:^ci-' --ago 30d --untagged", "--schedule", "0 2 * * *", "--context", "/dev/null")
	require.Equal(t, exitOK, res.code, res.stderr)
	p = requireRoundTrip(t, []byte(res.stdout))
	assert.Equal(t, "nightly", p.Rules[0].Name)
	settings, _ := stderrLines(t, res.stderr)
	assert.Equal(t, "0 0 2 * * *", settings["PURGE_SCHEDULE"])
}

func TestCLIConvertStdin(t *testing.T) {
	script := `# the nightly task, as created from the docs
PURGE_CMD="acr purge --filter 'samples/devimage1:.*' --filter 'samples/devimage2:.*' \
  --ago 0d --untagged"
az acr task create --name weeklyPurgeTask --cmd "$PURGE_CMD" --schedule "0 1 * * Sun" \
  --registry myregistry --context /dev/null

acr purge --untagged-only --ago 7d
`
	for _, args := range [][]string{{"convert"}, {"convert", "-"}} {
		res := runCLI(t, strings.NewReader(script), args...)
		require.Equal(t, exitOK, res.code, res.stderr)
		p := requireRoundTrip(t, []byte(res.stdout))
		require.Len(t, p.Rules, 2, "the assignment is used by the az line, not converted twice")
		assert.Equal(t, "weeklyPurgeTask", p.Rules[0].Name)
		assert.True(t, p.Rules[1].UntaggedOnly)
		settings, _ := stderrLines(t, res.stderr)
		assert.Equal(t, "0 0 1 * * Sun", settings["PURGE_SCHEDULE"])
		assert.Equal(t, "myregistry.azurecr.io", settings["ACR_LOGIN_SERVER"])
	}
}

func TestCLIConvertTaskFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "purge.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`version: v1.1.0
steps:
  - cmd: acr purge --registry {{.Run.Registry}} --filter 'hello-world:.*' --ago 30d --untagged
  - cmd: bash echo done
`), 0o600))
	res := runCLI(t, nil, "convert", "-f", file, "--schedule", "0 3 * * *")
	require.Equal(t, exitOK, res.code, res.stderr)
	p := requireRoundTrip(t, []byte(res.stdout))
	require.Len(t, p.Rules, 1)
	assert.Equal(t, "30d", p.Rules[0].Ago)
	settings, notes := stderrLines(t, res.stderr)
	assert.Equal(t, map[string]string{"PURGE_SCHEDULE": "0 0 3 * * *"}, settings)
	assert.Contains(t, strings.Join(notes, "\n"), file+` line 4: steps[1] runs "bash echo", not acr purge; skipped`)

	// With -f, no argument means no stdin: the file is the whole input.
	res = runCLI(t, strings.NewReader("acr purge --bogus"), "convert", "--file", file)
	require.Equal(t, exitOK, res.code, res.stderr)

	res = runCLI(t, nil, "convert", "-f", filepath.Join(dir, "missing.yaml"))
	assert.Equal(t, exitRuntime, res.code)
	assert.Contains(t, res.stderr, "missing.yaml")
}

func TestCLIConvertErrors(t *testing.T) {
	tests := []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"unknown flag", "", []string{"convert", "acr purge --filter 'a:.*' --ago 1d --all"}, exitUsage, "argument 1: unknown flag --all"},
		{"missing ago", "acr purge --filter 'a:.*'\n", []string{"convert"}, exitUsage, "stdin: --ago is required unless --untagged-only"},
		{"unbalanced quote on line 2", "acr purge --filter 'a:.*' --ago 1d\nacr purge --filter 'b:.* --ago 1d\n", []string{"convert"}, exitUsage,
			"stdin line 2, column 20: unbalanced single quote"},
		{"bad cron", "", []string{"convert", "--schedule", "0 25 * * *", "acr purge --filter 'a:.*' --ago 1d"}, exitUsage, "hour field"},
		{"empty stdin", "", []string{"convert"}, exitUsage, "no acr purge command in the input"},
		{"stdin among arguments", "", []string{"convert", "acr purge --untagged-only", "-"}, exitUsage, `"-" (stdin) must be the only command argument`},
		{"a flag after the commands", "", []string{"convert", "acr purge --untagged-only", "--schedule", "0 1 * * *"}, exitUsage, "put the flags of convert first"},
		{"unknown convert flag", "", []string{"convert", "--bogus"}, exitUsage, "flag provided but not defined: -bogus"},
		{"no subcommand", "", nil, exitUsage, "want a subcommand"},
		{"unknown subcommand", "", []string{"validate"}, exitUsage, `unknown subcommand "validate"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runCLI(t, strings.NewReader(tc.stdin), tc.args...)
			assert.Equal(t, tc.code, res.code, res.stderr)
			assert.Empty(t, res.stdout, "no policy on stdout after an error")
			assert.Contains(t, res.stderr, tc.want)
		})
	}
}

func TestCLIHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"convert", "-h"}} {
		res := runCLI(t, nil, args...)
		assert.Equal(t, exitOK, res.code, args)
		assert.Contains(t, res.stdout+res.stderr, "handler policy convert [-f task.yaml]", args)
		assert.Contains(t, res.stdout+res.stderr, "-schedule cron", args)
	}
	res := runCLI(t, nil, "check", "-h")
	assert.Equal(t, exitOK, res.code)
	assert.Contains(t, res.stdout, "Usage: handler policy check POLICY")
}

func TestCLIConvertInterrupted(t *testing.T) {
	pr, pw := io.Pipe() // stdin that never ends
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out, errOut bytes.Buffer
	go func() { done <- Run(ctx, []string{"convert"}, pr, &out, &errOut) }()
	cancel()
	select {
	case code := <-done:
		assert.Equal(t, exitInterrupted, code)
		assert.Contains(t, errOut.String(), "context canceled")
	case <-time.After(10 * time.Second):
		t.Fatal("convert did not give up reading stdin when its context ended")
	}
}

const validPolicy = `{"rules":[{"name":"ci","filters":["team-a/.*:^ci-"],"ago":"30d","keep":5,"untagged":true}],"protect":["^latest$"]}`

func TestCLICheck(t *testing.T) {
	want, err := policy.Parse([]byte(validPolicy))
	require.NoError(t, err)
	description := want.Describe() + "\n"

	dir := t.TempDir()
	file := filepath.Join(dir, "policy.json")
	require.NoError(t, os.WriteFile(file, []byte(validPolicy), 0o600))

	for name, run := range map[string]func() cliResult{
		"inline": func() cliResult { return runCLI(t, nil, "check", validPolicy) },
		"@file":  func() cliResult { return runCLI(t, nil, "check", "@"+file) },
		"stdin":  func() cliResult { return runCLI(t, strings.NewReader(validPolicy), "check", "-") },
	} {
		t.Run(name, func(t *testing.T) {
			res := run()
			require.Equal(t, exitOK, res.code, res.stderr)
			assert.Equal(t, description, res.stdout)
			assert.Contains(t, res.stdout, `ci: tags, then untagged manifests matching "team-a/.*:^ci-", older than 30d, keeping the 5 most recent`)
			assert.Empty(t, res.stderr)
		})
	}
}

func TestCLICheckInvalid(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.json")
	require.NoError(t, os.WriteFile(file, []byte(validPolicy), 0o600))
	tests := []struct {
		name  string
		args  []string
		stdin string
		code  int
		want  string
	}{
		{"a rule without ago", []string{"check", `{"rules":[{"name":"x","filters":["a:.*"]}]}`}, "", exitUsage, `rules[0] "x": ago: required`},
		{"a bad regex", []string{"check", `{"rules":[{"filters":["a:(x"],"ago":"1d"}]}`}, "", exitUsage, "filters[0]: tag expression"},
		{"an unknown field", []string{"check", "-"}, `{"rules":[{"filters":["a:.*"],"ago":"1d","older":"2d"}]}`, exitUsage, `unknown field "older"`},
		{"not JSON", []string{"check", "-"}, "rules: []", exitUsage, "invalid policy"},
		{"a missing file", []string{"check", "@" + filepath.Join(dir, "nope.json")}, "", exitUsage, "nope.json"},
		{"a file without @", []string{"check", file}, "", exitUsage, "(to read the file " + file + ", write @" + file + ")"},
		{"no argument", []string{"check"}, "", exitUsage, "want one policy"},
		{"two arguments", []string{"check", validPolicy, validPolicy}, "", exitUsage, "got 2 arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runCLI(t, strings.NewReader(tc.stdin), tc.args...)
			assert.Equal(t, tc.code, res.code, res.stderr)
			assert.Empty(t, res.stdout)
			assert.Contains(t, res.stderr, tc.want)
		})
	}
}

func TestCLIConvertThenCheck(t *testing.T) {
	conv := runCLI(t, nil, "convert", "acr purge --filter 'samples/devimage:.*' --ago 0d --keep 5", "acr purge --untagged-only")
	require.Equal(t, exitOK, conv.code, conv.stderr)
	check := runCLI(t, strings.NewReader(conv.stdout), "check", "-")
	require.Equal(t, exitOK, check.code, check.stderr)
	lines := strings.Split(strings.TrimSpace(check.stdout), "\n")
	assert.Equal(t, []string{
		`samples-devimage: tags matching "samples/devimage:.*", older than 0d, keeping the 5 most recent`,
		`untagged: untagged manifests only in every repository, any age`,
	}, lines[:2])
	assert.True(t, strings.HasPrefix(lines[2], "protect: none; filterTimeout: 1m0s; hash: "), lines[2])
}

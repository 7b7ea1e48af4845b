package localstack_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
	"github.com/acrpurge/acrpurge/internal/testbed/localstack"
)

// handlerBinary builds the handler once per test binary, with -race when
// this binary has it, so the build reuses the packages already compiled.
var handlerBinary = sync.OnceValues(func() (string, error) {
	gotool, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("the go command is not on PATH")
	}
	dir, err := os.MkdirTemp("", "localstack-handler-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "handler")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute) // a cold build cache
	defer cancel()
	cmd := exec.CommandContext(ctx, gotool, append(args, "github.com/acrpurge/acrpurge/handler")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", errors.New("go build ./handler: " + err.Error() + "\n" + string(out))
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := handlerBinary(); err == nil {
		_ = os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

// local runs `handler local args...` and returns its exit code, stdout and
// stderr. env adds settings; CheckpointStorage and CHECKPOINT_TABLE are
// otherwise unset.
func local(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	bin, err := handlerBinary()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"local"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.CheckpointConnString+"=") && !strings.HasPrefix(kv, config.CheckpointTable+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// The HTML pages go to a new directory under TMPDIR.
	cmd.Env = append(cmd.Env, "TMPDIR="+t.TempDir())
	cmd.Env = append(cmd.Env, env...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err, stderr.String())
	}
	require.NoError(t, ctx.Err(), "handler local did not finish in time")
	return code, stdout.String(), stderr.String()
}

// row is one repository line of a text report.
type row struct {
	batch, status    string
	tags, manifests  int64
	freed            string
	kept             map[string]int64
	note             string
	run, runTrigger  string
	runDryRunWording bool
}

var (
	runLine = regexp.MustCompile(`^Run (\S+): (\w+), trigger (\w+), started \S+( \(dry run.*\))?$`)
	rowLine = regexp.MustCompile(`^(\S+)\s+(\d+)\s+(\w+)\s+(\d+)\s+(\d+)\s+(\d+(?:\.\d)? (?:[KMGTPE]i)?B)(?:\s+(.*))?$`)
	keptTok = regexp.MustCompile(`^([a-z-]+)=(\d+)$`)
)

// parseReports reads every report table in out: repository -> row, per run
// in order.
func parseReports(t *testing.T, out string) []map[string]row {
	t.Helper()
	var runs []map[string]row
	var cur map[string]row
	var id, trigger string
	var dry, inTable bool
	for _, line := range strings.Split(out, "\n") {
		if m := runLine.FindStringSubmatch(line); m != nil {
			id, trigger, dry = m[1], m[3], m[4] != ""
			cur = map[string]row{}
			runs = append(runs, cur)
			continue
		}
		switch {
		case strings.HasPrefix(line, "REPOSITORY "):
			inTable = true
			continue
		case strings.HasPrefix(line, "TOTAL ("):
			inTable = false
			continue
		case !inTable:
			continue
		}
		m := rowLine.FindStringSubmatch(line)
		require.NotNil(t, m, "unreadable report line %q", line)
		r := row{batch: m[2], status: m[3], freed: m[6], run: id, runTrigger: trigger, runDryRunWording: dry}
		r.tags, _ = strconv.ParseInt(m[4], 10, 64)
		r.manifests, _ = strconv.ParseInt(m[5], 10, 64)
		last := m[7]
		first, rest, _ := strings.Cut(last, "; ")
		for _, tok := range strings.Fields(first) {
			km := keptTok.FindStringSubmatch(tok)
			if km == nil {
				r.kept, rest = nil, last
				break
			}
			if r.kept == nil {
				r.kept = map[string]int64{}
			}
			r.kept[km[1]], _ = strconv.ParseInt(km[2], 10, 64)
		}
		r.note = rest
		cur[m[1]] = r
	}
	return runs
}

// expectedDemo seeds a throwaway registry: what the policy does to each
// repository does not depend on when it runs.
func expectedDemo(n int) *localstack.Demo {
	return localstack.Seed(acremu.New(acremu.Options{}), time.Now(), n)
}

// pushedTo names the repositories an image was pushed to before the
// purge: the new image adds a too-new tag and a tagged manifest.
type pushedTo map[string]bool

// assertRows checks report rows against the seed: deleted counts, bytes,
// kept by reason; forbidden repositories reported with the missing actions.
func assertRows(t *testing.T, rows map[string]row, demo *localstack.Demo, pushed pushedTo, names ...string) {
	t.Helper()
	require.Len(t, rows, len(names), "repositories in the report: %v", rows)
	for _, name := range names {
		r, ok := demo.Repo(name)
		require.True(t, ok, name)
		got, ok := rows[name]
		require.True(t, ok, "%s is in the report", name)
		if r.Forbidden {
			assert.Equal(t, "forbidden", got.status, name)
			assert.Contains(t, got.note, "does not grant metadata_read", name)
			assert.Zero(t, got.tags+got.manifests, name)
			continue
		}
		tags, manifests, freed := r.Deleted()
		assert.Equal(t, "done", got.status, name)
		assert.Equal(t, tags, got.tags, "%s: tags deleted", name)
		assert.Equal(t, manifests, got.manifests, "%s: manifests deleted", name)
		assert.Equal(t, runs.Bytes(freed), got.freed, "%s: freed", name)
		kept := r.Kept()
		if pushed[name] {
			kept["too-new"]++
			kept["tagged"]++
		}
		assert.Equal(t, kept, got.kept, "%s: kept, by reason", name)
	}
}

var covered = []string{"team-a/api", "team-a/web", "team-b/jobs", "team-b/worker", "team-c/docs", "team-legacy/monolith"}

// inventoryRow reads "  name  before  after  change" from the output.
func inventoryRow(t *testing.T, out, name string) (before, after int) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + name + `\s+(\d+)\s+(\d+)\s+\S+$`).FindStringSubmatch(out)
	require.NotNil(t, m, "no %s line in the before/after table", name)
	before, _ = strconv.Atoi(m[1])
	after, _ = strconv.Atoi(m[2])
	return before, after
}

func seededTotals(demo *localstack.Demo, dryRun bool) (tags, manifests, tagsAfter, manifestsAfter int) {
	for _, r := range demo.Repos {
		tags += len(r.Tags)
		manifests += len(r.Manifests)
		if r.Purged() && !dryRun {
			dt, dm, _ := r.Deleted()
			tagsAfter -= int(dt)
			manifestsAfter -= int(dm)
		}
	}
	return tags, manifests, tags + tagsAfter, manifests + manifestsAfter
}

// TestLocalNightly: `handler local` runs the nightly purge of the demo
// registry and reports, per repository, exactly what the policy deletes
// and keeps: kept multi-arch indexes keep their platform images, kept
// images their signatures and SBOMs, and the forbidden prefix is reported.
func TestLocalNightly(t *testing.T) {
	code, out, errOut := local(t, nil)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, out, `{"name":"ci-builds","filters":["team-.*:^ci-"],"ago":"30d","keep":3}`, "the policy is shown")
	assert.Regexp(t, `(?m)^  Scheduler\s+timer\s+ok .* 6 repositories in 2 batches enqueued$`, out)
	assert.Regexp(t, `(?m)^  Worker\s+s-\d{8}T020000Z/2\s+delivery 1\s+ok .*\(2 done, 1 forbidden\)`, out)
	assert.NotContains(t, out, "DRY RUN")

	runs := parseReports(t, out)
	require.Len(t, runs, 1)
	demo := expectedDemo(localstack.DefaultRepositories)
	assertRows(t, runs[0], demo, nil, covered...)
	assert.Equal(t, "schedule", runs[0]["team-a/api"].runTrigger)
	assert.Positive(t, runs[0]["team-a/web"].kept["child-of-kept-index"], "platform images of kept indexes are kept")
	assert.Positive(t, runs[0]["team-b/worker"].kept["referrer-of-kept"], "signatures and SBOMs of kept images are kept")
	assert.Positive(t, runs[0]["team-b/worker"].manifests, "those of deleted images go with them")
	assert.Equal(t, 2, int(runs[0]["team-b/jobs"].kept["locked"]))
	assert.Contains(t, out, "No rule covers base/alpine")

	tags, manifests, tagsAfter, manifestsAfter := seededTotals(demo, false)
	b, a := inventoryRow(t, out, "tags")
	assert.Equal(t, [2]int{tags, tagsAfter}, [2]int{b, a})
	b, a = inventoryRow(t, out, "manifests")
	assert.Equal(t, [2]int{manifests, manifestsAfter}, [2]int{b, a})
	assert.Contains(t, out, "child-of-kept-index  a platform image of a kept multi-arch index", "the legend explains the reasons")
	assert.Regexp(t, `(?m)^Done in \S+`, out)
	assert.NotContains(t, errOut, "level=ERROR")

	m := regexp.MustCompile(`(?m)^HTML page \(GET /api/runs/(\S+)\?format=html, or from a browser\): (.+)$`).FindStringSubmatch(out)
	require.NotNil(t, m, "the run's page is written and its path printed")
	page, err := os.ReadFile(m[2])
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(page), "<!DOCTYPE html>"))
	assert.Contains(t, string(page), "<title>acrpurge run "+m[1]+"</title>")
	assert.Equal(t, len(runs[0]), strings.Count(string(page), `<td class="name">`), "a row per repository of the report")
}

// TestLocalHTMLDir: --html-dir puts the pages where asked.
func TestLocalHTMLDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pages")
	code, out, errOut := local(t, nil, "--html-dir", dir, "--send", `{"repositories":["team-a/api"],"dryRun":true}`)
	require.Equal(t, 0, code, errOut)
	files, err := filepath.Glob(filepath.Join(dir, "run-*.html"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	assert.Contains(t, out, files[0])
	page, err := os.ReadFile(files[0])
	require.NoError(t, err)
	assert.Contains(t, string(page), "Dry run:")
}

// TestLocalDryRun: nothing is deleted, the report says what would be.
func TestLocalDryRun(t *testing.T) {
	code, out, errOut := local(t, nil, "--dry-run")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "DRY RUN: nothing will be deleted")
	assert.Contains(t, out, "DRY RUN: nothing was deleted")
	runs := parseReports(t, out)
	require.Len(t, runs, 1)
	demo := expectedDemo(localstack.DefaultRepositories)
	assertRows(t, runs[0], demo, nil, covered...)
	assert.True(t, runs[0]["team-a/api"].runDryRunWording)
	tags, manifests, _, _ := seededTotals(demo, true)
	b, a := inventoryRow(t, out, "tags")
	assert.Equal(t, [2]int{tags, tags}, [2]int{b, a})
	b, a = inventoryRow(t, out, "manifests")
	assert.Equal(t, [2]int{manifests, manifests}, [2]int{b, a})
}

// TestLocalPushAndSend: a push (CloudEvents) purges its repository; a
// portal message purges what it names, reporting the forbidden one; a
// malformed message is rejected; no timer fires.
func TestLocalPushAndSend(t *testing.T) {
	code, out, errOut := local(t, nil, "--push", "team-a/api:ci-1501", "--cloudevents",
		"--send", `{"repositories":["team-b/worker","team-legacy/monolith"]}`, "--send", "not json")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.NotContains(t, out, "Timer fired")
	assert.Contains(t, out, "Pushed team-a/api:ci-1501")
	assert.Contains(t, out, "(CloudEvents 1.0)")
	runs := parseReports(t, out)
	require.Len(t, runs, 2)
	demo := expectedDemo(localstack.DefaultRepositories)
	assertRows(t, runs[0], demo, pushedTo{"team-a/api": true}, "team-a/api")
	assert.Equal(t, "push", runs[0]["team-a/api"].runTrigger)
	assertRows(t, runs[1], demo, nil, "team-b/worker", "team-legacy/monolith")
	assert.Equal(t, "portal", runs[1]["team-b/worker"].runTrigger)
	assert.Regexp(t, `(?m)^Rejected messages .*\n  \S+: .*not valid JSON`, out)
}

// TestLocalCheckpointsInAzurite: CheckpointStorage from the environment
// puts the checkpoints in Table Storage (skipped without Azurite).
func TestLocalCheckpointsInAzurite(t *testing.T) {
	conn := azurite.Azurite(t)
	table := azurite.TableName(t)
	code, out, errOut := local(t, []string{config.CheckpointConnString + "=" + conn, config.CheckpointTable + "=" + table})
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "Table Storage, table "+table)
	runs := parseReports(t, out)
	require.Len(t, runs, 1)
	assertRows(t, runs[0], expectedDemo(localstack.DefaultRepositories), nil, covered...)
}

func TestLocalExitCodes(t *testing.T) {
	code, _, errOut := local(t, nil, "--batch-size", "0", "--push", "no-tag")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "want repository:tag")

	code, _, errOut = local(t, nil, "--batch-size", "0")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "--batch-size must be from 1 to 50")

	code, _, errOut = local(t, nil, "-h")
	assert.Equal(t, 0, code)
	assert.Contains(t, errOut, "Usage: handler local")
	assert.Contains(t, errOut, "-push repository:tag")

	code, out, errOut := local(t, nil, "--error-rate", "1", "--max-deliveries", "2", "--send", `{"repository":"team-a/api"}`)
	assert.Equal(t, 3, code, "a dead-lettered message: stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Regexp(t, `(?m)^  Worker .* delivery 2\s+failed .* -> dead-lettered after 2 deliveries$`, out)
	assert.Contains(t, out, "Dead-lettered messages")

	code, _, errOut = local(t, nil, "--policy", "@missing.json")
	assert.Equal(t, 2, code, "a policy that cannot be read is a usage error, as for handler purge")
	assert.Contains(t, errOut, "PURGE_POLICY")

	code, _, errOut = local(t, nil, "--policy", `{"rules":[{"filters":["x"]}]}`)
	assert.Equal(t, 2, code, "so is an invalid one")
	assert.Contains(t, errOut, "PURGE_POLICY")
}

// TestLocalResumesAfterKill: a `handler local` with Table checkpoints is
// killed (SIGKILL) in the middle of its run; its in-process queue dies with
// it. The next one finds the run unfinished, sends its unfinished batches
// again and reports the run done (skipped without Azurite).
func TestLocalResumesAfterKill(t *testing.T) {
	conn := azurite.Azurite(t)
	table := azurite.TableName(t)
	bin, err := handlerBinary()
	require.NoError(t, err)
	env := append(os.Environ(), config.CheckpointConnString+"="+conn, config.CheckpointTable+"="+table, "TMPDIR="+t.TempDir())
	args := []string{"local", "--repositories", "400", "--batch-size", "2", "--error-rate", "0.02"}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(stdout)
	workers := 0
	for sc.Scan() && workers < 20 {
		if strings.HasPrefix(strings.TrimSpace(sc.Text()), "Worker ") {
			workers++
		}
	}
	require.Equal(t, 20, workers, "the first run got going")
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()

	code, out, errOut := local(t, []string{config.CheckpointConnString + "=" + conn, config.CheckpointTable + "=" + table},
		"--repositories", "400", "--batch-size", "2")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Regexp(t, `(?m)^Resuming run s-\S+: an earlier .handler local. left \d+ of its \d+ batches unfinished`, out)
	assert.Regexp(t, `(?m)^Run s-\S+: done, trigger schedule`, out, "the resumed run is reported, and finished")
	assert.NotContains(t, out, "No run was created")
}

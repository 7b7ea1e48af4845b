package purgecli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu/emutest"
)

const day = 24 * time.Hour

// testPolicy: ci- tags older than 30 days go, the newest such one stays,
// untagged leftovers go too; "ci-pinned" is protected everywhere.
const testPolicy = `{"rules":[{"name":"ci","filters":["team-.*:^ci-"],"ago":"30d","keep":1,"untagged":true}],
 "protect":["^ci-pinned$"]}`

// seedRepo fills repo with five old ci-N tags (ci-1 newest), a fresh
// ci-fresh, an old protected "ci-pinned", an old "stable" no rule matches, and
// one old untagged leftover.
func seedRepo(reg *acremu.Registry, repo string) {
	now := reg.Now().Truncate(time.Second)
	for i := 1; i <= 5; i++ {
		reg.Put(repo, acremu.Artifact{Tags: []string{fmt.Sprintf("ci-%d", i)}, Created: now.Add(-40*day - time.Duration(i)*time.Hour), Size: 1000 + int64(i)})
	}
	reg.Put(repo, acremu.Artifact{Tags: []string{"ci-fresh"}, Created: now.Add(-time.Hour), Size: 2000})
	reg.Put(repo, acremu.Artifact{Tags: []string{"ci-pinned"}, Created: now.Add(-90 * day), Size: 3000})
	reg.Put(repo, acremu.Artifact{Tags: []string{"stable"}, Created: now.Add(-90 * day), Size: 3500})
	reg.Put(repo, acremu.Artifact{Created: now.Add(-60 * day), Seed: "leftover", Size: 700})
}

// cli runs the command against an emulator.
type cli struct {
	t    *testing.T
	env  *emutest.Env
	deps deps
	env2 map[string]string // getenv
}

func newCLI(t *testing.T, o emutest.Options) *cli {
	t.Helper()
	env := emutest.Start(t, o)
	return &cli{
		t:   t,
		env: env,
		deps: deps{
			credential: func(string) (azcore.TokenCredential, error) { return env.Cred, nil },
			now:        env.Registry.Now,
			retry:      acr.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, MaxThrottle: time.Second},
		},
		env2: map[string]string{},
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs the command with args under the test's context.
func (c *cli) run(args ...string) result {
	c.t.Helper()
	return c.runContext(c.t.Context(), args...)
}

// runContext is run under ctx, for tests that cancel the command.
func (c *cli) runContext(ctx context.Context, args ...string) result {
	c.t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb, func(k string) string { return c.env2[k] }, c.deps)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// args are the flags naming the emulator and the test policy, with a
// delete budget high enough not to slow the tests down (later flags win).
func (c *cli) args(extra ...string) []string {
	return append([]string{"--registry", c.env.Registry.URL(), "--policy", testPolicy, "--deletes-per-minute", "60000"}, extra...)
}

func decodeReport(t *testing.T, s string) *report {
	t.Helper()
	var rep report
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&rep), "stdout must be one JSON document:\n%s", s)
	require.False(t, dec.More(), "stdout must hold exactly one JSON document")
	return &rep
}

func repoOf(t *testing.T, rep *report, name string) repoReport {
	t.Helper()
	for _, r := range rep.Repositories {
		if r.Repository == name {
			return r
		}
	}
	require.FailNowf(t, "repository not in report", "%q", name)
	return repoReport{}
}

func tagNames(reg *acremu.Registry, repo string) []string {
	var names []string
	for _, tg := range reg.Tags(repo) {
		names = append(names, tg.Name)
	}
	return names
}

func writePolicyFile(t *testing.T, js string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.json")
	require.NoError(t, os.WriteFile(p, []byte(js), 0o600))
	return p
}

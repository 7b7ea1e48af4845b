package migrate

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTaskFile(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		want     string
		settings map[string]string
		notes    []string
	}{
		{
			name: "docs: one purge step",
			yaml: `version: v1.1.0
steps:
  - cmd: acr purge --filter 'hello-world:.*' --ago 30d --untagged
    disableWorkingDirectoryOverride: true
    timeout: 3600
`,
			want:  `{"rules":[{"name":"hello-world","filters":["hello-world:.*"],"ago":"30d","untagged":true}]}`,
			notes: []string{"task.yaml line 3: the step timeout 3600 is not needed"},
		},
		{
			name: "docs: aliases, a non-purge step, $RegistryName",
			yaml: `version: v1.1.0
steps:
  - cmd: acr tag list --registry $RegistryName --repository samples/hello-world
  - cmd: acr purge --registry $RegistryName --filter samples/hello-world:.* --ago 7d
`,
			want:  `{"rules":[{"name":"samples-hello-world","filters":["samples/hello-world:.*"],"ago":"7d"}]}`,
			notes: []string{`task.yaml line 3: steps[0] runs "acr tag", not acr purge; skipped`},
		},
		{
			name: "block scalars, quoting, custom aliases, step ids, env, other steps",
			yaml: `version: v1.1.0
alias:
  values:
    repo: samples/devimage
env: ["ABAC_BATCH_SIZE=5"]
steps:
  - build: -t $Registry/hello:$ID .
  - push: ["$Registry/hello:$ID"]
  - id: dev-images
    cmd: >
      acr purge --registry {{.Run.Registry}}
      --filter '$repo:.*'
      --filter "samples/.*:^(?!v1).*$"
      --ago 7d --keep 3
    env: ["ABAC_BATCH_SIZE=20", "OTHER=x"]
  - cmd: |
      mcr.microsoft.com/acr/acr-cli:0.5 purge
        --untagged-only --ago 2d
  - cmd: "acr purge --filter \"team-(a|b)/api:^pr-\\\\d+$\" --ago 3d --dry-run"
    when: ["-"]
`,
			want: `{"rules":[` +
				`{"name":"dev-images","filters":["samples/devimage:.*","samples/.*:^(?!v1).*$"],"ago":"7d","keep":3},` +
				`{"name":"untagged","ago":"2d","untaggedOnly":true},` +
				`{"name":"team-a-b-api","filters":["team-(a|b)/api:^pr-\\d+$"],"ago":"3d"}]}`,
			settings: map[string]string{"ABAC_BATCH_SIZE": "5", "PURGE_DRY_RUN": "true"},
			notes: []string{
				"task.yaml line 7: steps[0] is a build step, not acr purge; skipped",
				"task.yaml line 8: steps[1] is a push step, not acr purge; skipped",
				"ABAC_BATCH_SIZE differs between commands",
				"only some commands have --dry-run (task.yaml line 19)",
			},
		},
		{
			name: "flow-style steps",
			yaml: `{"version": "v1.1.0", "steps": [{"cmd": "acr purge --untagged-only"}]}`,
			want: `{"rules":[{"name":"untagged","untaggedOnly":true}]}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := ParseTaskFile([]byte(tc.yaml), "task.yaml")
			require.NoError(t, err)
			res, err := Convert(in, Options{})
			require.NoError(t, err)
			assert.JSONEq(t, tc.want, string(res.Policy))
			requireRoundTrip(t, res.Policy)
			want := tc.settings
			if want == nil {
				want = map[string]string{}
			}
			assert.Equal(t, want, settingsMap(res))
			all := strings.Join(res.Notes, "\n")
			for _, n := range tc.notes {
				assert.Contains(t, all, n)
			}
		})
	}
}

func TestTaskFileErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"not YAML", "steps: [", []string{"task.yaml: not a valid task file"}},
		{"a template where YAML cannot hold it", "steps:\n  - cmd: acr purge --ago 1d\n    timeout: {{.Values.t}}\n",
			[]string{"not a valid task file", "renders a task file as a template"}},
		{"no steps", "version: v1.1.0\n", []string{"no steps"}},
		{"no purge step", "steps:\n  - cmd: bash echo hi\n  - build: .\n", []string{"no step runs acr purge (2 steps read)"}},
		{"a bad purge step names its line", "version: v1.1.0\nsteps:\n  - cmd: acr purge --filter 'a:.*'\n",
			[]string{"task.yaml line 3: --ago is required"}},
		{"unbalanced quote in cmd", "steps:\n  - cmd: acr purge --filter 'a:.* --ago 1d\n", []string{"task.yaml line 2: cmd: column 20: unbalanced single quote"}},
		{"a template value", "steps:\n  - cmd: acr purge --filter 'a:.*' --ago {{.Values.ago}}\n", []string{"resolved only when the task runs"}},
		{"bad ABAC_BATCH_SIZE", "steps:\n  - cmd: acr purge --untagged-only\n    env: [ABAC_BATCH_SIZE=many]\n", []string{"env: ABAC_BATCH_SIZE=many: not a whole number"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTaskFile([]byte(tc.yaml), "task.yaml")
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestExpandAliases(t *testing.T) {
	values := map[string]string{"repo": "samples/dev", "repository": "team-a/api", "n": "3"}
	assert.Equal(t, "samples/dev:.* team-a/api:.* --keep 3 $reponame $Registry",
		expandAliases("$repo:.* $repository:.* --keep $n $reponame $Registry", values))
	assert.Equal(t, "no aliases $repo", expandAliases("no aliases $repo", nil))
}

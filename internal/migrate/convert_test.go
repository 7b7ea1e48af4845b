package migrate

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/policy"
)

// convertLines reads each text as one argument and converts them.
func convertLines(opt Options, texts ...string) (*Result, error) {
	r := NewScriptReader()
	for i, s := range texts {
		if err := r.Read(s, fmt.Sprintf("argument %d", i+1)); err != nil {
			return nil, err
		}
	}
	return Convert(r.Input(), opt)
}

// requireRoundTrip checks that out parses with policy.Parse and that the
// parsed policy writes back to exactly out; it returns the policy.
func requireRoundTrip(t *testing.T, out []byte) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(out)
	require.NoError(t, err, "the converted policy must parse:\n%s", out)
	again, err := DocumentOf(p).Marshal()
	require.NoError(t, err)
	require.Equal(t, string(out), string(again), "the policy must read back the same")
	return p
}

func settingsMap(res *Result) map[string]string {
	m := map[string]string{}
	for _, s := range res.Settings {
		m[s.Name] = s.Value
	}
	return m
}

func TestConvertRealWorldCommands(t *testing.T) {
	tests := []struct {
		name     string
		in       []string
		schedule string
		want     string            // the policy JSON
		settings map[string]string // exactly these settings
		notes    []string          // each is a substring of some note
	}{
		{
			name: "docs: on-demand purge of hello-world",
			in:   []string{`acr purge --filter 'hello-world:.*' --untagged --ago 1d`},
			want: `{"rules":[{"name":"hello-world","filters":["hello-world:.*"],"ago":"1d","untagged":true}]}`,
			notes: []string{"younger than 1 hour", `no "protect" patterns`, "read again just before it is deleted",
				"the infra deploys with PURGE_DRY_RUN=true"},
		},
		{
			name: "docs: every tag of a repository, keeping the newest 5",
			in:   []string{`acr purge --filter 'samples/devimage:.*' --ago 0d --keep 5`},
			want: `{"rules":[{"name":"samples-devimage","filters":["samples/devimage:.*"],"ago":"0d","keep":5}]}`,
		},
		{
			name: "docs: lookahead exclusion, $ at the end",
			in:   []string{`acr purge --filter 'samples/.*:^(?!v1).*$' --ago 30d`},
			want: `{"rules":[{"name":"samples","filters":["samples/.*:^(?!v1).*$"],"ago":"30d"}]}`,
		},
		{
			name:     "acr purge help: double quotes, registry name, keep",
			in:       []string{`acr purge -r example --filter "hello-world:^hello.*" --ago 7d --keep 2`},
			want:     `{"rules":[{"name":"hello-world","filters":["hello-world:^hello.*"],"ago":"7d","keep":2}]}`,
			settings: map[string]string{"ACR_LOGIN_SERVER": "example.azurecr.io"},
		},
		{
			name:     "acr purge help: regex backslashes inside double quotes",
			in:       []string{`acr purge -r example.azurecr.io --filter "hello-world:\w*test\w*" --ago 5d --untagged`},
			want:     `{"rules":[{"name":"hello-world","filters":["hello-world:\\w*test\\w*"],"ago":"5d","untagged":true}]}`,
			settings: map[string]string{"ACR_LOGIN_SERVER": "example.azurecr.io"},
		},
		{
			name:     "acr purge help: every dangling manifest",
			in:       []string{`acr purge -r example --untagged-only`},
			want:     `{"rules":[{"name":"untagged","untaggedOnly":true}]}`,
			notes:    []string{"younger than 1 hour"},
			settings: map[string]string{"ACR_LOGIN_SERVER": "example.azurecr.io"},
		},
		{
			name: "acr purge help: dangling manifests of one repository, old ones, keeping 5",
			in: []string{
				`acr purge --filter "hello-world:.*" --untagged-only`,
				`acr purge --untagged-only --ago 3d --keep 5`,
			},
			want: `{"rules":[{"name":"hello-world","filters":["hello-world:.*"],"untaggedOnly":true},` +
				`{"name":"untagged","ago":"3d","keep":5,"untaggedOnly":true}]}`,
			notes: []string{"the rules are applied together"},
		},
		{
			name:     "acr purge help: include locked",
			in:       []string{`acr purge -r example --filter ".*:.*" --ago 7d --include-locked`},
			want:     `{"rules":[{"name":"purge-1","filters":[".*:.*"],"ago":"7d","includeLocked":true}]}`,
			notes:    []string{"argument 1: --include-locked: a locked item is unlocked, deleted, and locked again"},
			settings: map[string]string{"ACR_LOGIN_SERVER": "example.azurecr.io"},
		},
		{
			name:     "acr purge help: concurrency is a setting",
			in:       []string{`acr purge --filter "hello-world:.*" --ago 1d --concurrency 4`},
			want:     `{"rules":[{"name":"hello-world","filters":["hello-world:.*"],"ago":"1d"}]}`,
			settings: map[string]string{"PURGE_CONCURRENCY": "4"},
			notes:    []string{"--concurrency is the app setting PURGE_CONCURRENCY"},
		},
		{
			name:  "acr purge help: repository page size is not needed",
			in:    []string{`acr purge --filter ".*:.*" --ago 7d --repository-page-size 50`},
			want:  `{"rules":[{"name":"purge-1","filters":[".*:.*"],"ago":"7d"}]}`,
			notes: []string{"argument 1: --repository-page-size is not needed"},
		},
		{
			name:     "docs: dry run is a setting",
			in:       []string{`acr purge --filter 'samples/devimage1:.*' --filter 'samples/devimage2:.*' --ago 0d --untagged --dry-run`},
			want:     `{"rules":[{"name":"samples-devimage1","filters":["samples/devimage1:.*","samples/devimage2:.*"],"ago":"0d","untagged":true}]}`,
			settings: map[string]string{"PURGE_DRY_RUN": "true"},
			notes:    []string{"--dry-run is the app setting PURGE_DRY_RUN=true"},
		},
		{
			name: "quoting: spaces, $, | and a lookahead inside quotes; a byte order mark",
			in:   []string{"\ufeff" + `acr purge --filter 'team-a/(web|api):^(?!keep me)v.*$' --filter "team-b/.*:^pr-[0-9]+$" --ago 1d`},
			want: `{"rules":[{"name":"team-a-web-api","filters":["team-a/(web|api):^(?!keep me)v.*$","team-b/.*:^pr-[0-9]+$"],"ago":"1d"}]}`,
		},
		{
			name: "ACR Task placeholder for the registry, unquoted filter",
			in:   []string{`acr purge --registry {{.Run.Registry}} --filter hello-world:.* --untagged --ago 7d`},
			want: `{"rules":[{"name":"hello-world","filters":["hello-world:.*"],"ago":"7d","untagged":true}]}`,
		},
		{
			name: "acr-cli image with the $Registry alias and flags in = form",
			in:   []string{`mcr.microsoft.com/acr/acr-cli:0.5 purge --registry=$Registry --filter=team-a/api:^ci- --ago=30d --keep=3 --untagged=true`},
			want: `{"rules":[{"name":"team-a-api","filters":["team-a/api:^ci-"],"ago":"30d","keep":3,"untagged":true}]}`,
		},
		{
			name:     "shorthands: -f value, -fvalue, -f=value; root flags before purge",
			in:       []string{`acr -r contoso purge -f 'a:.*' -f'b:^x' -f=c:y --ago 2d3h6m`},
			want:     `{"rules":[{"name":"a","filters":["a:.*","b:^x","c:y"],"ago":"2d3h6m"}]}`,
			settings: map[string]string{"ACR_LOGIN_SERVER": "contoso.azurecr.io"},
		},
		{
			name: "filter timeout is a policy field",
			in:   []string{`acr purge --filter 'repo:.*' --ago 1d --filter-timeout-seconds 120`},
			want: `{"rules":[{"name":"repo","filters":["repo:.*"],"ago":"1d"}],"filterTimeout":120}`,
		},
		{
			name:  "filter timeout beyond acrpurge's bound is capped",
			in:    []string{`acr purge --filter 'repo:.*' --ago 1d --filter-timeout-seconds 3600`},
			want:  `{"rules":[{"name":"repo","filters":["repo:.*"],"ago":"1d"}],"filterTimeout":300}`,
			notes: []string{"--filter-timeout-seconds 3600 is more than acrpurge allows; filterTimeout is 300"},
		},
		{
			name: "alternation: inside a group is fine, at the top it is anchored differently",
			in: []string{
				`acr purge --filter 'team-(a|b)/api:^pr-\d+$|^dev-' --ago 7d`,
				`acr purge --filter "ci|nightly:.*" --ago 3d`,
			},
			want: `{"rules":[{"name":"team-a-b-api","filters":["team-(a|b)/api:^pr-\\d+$|^dev-"],"ago":"7d"},` +
				`{"name":"ci-nightly","filters":["ci|nightly:.*"],"ago":"3d"}]}`,
			notes: []string{`argument 2: --filter "ci|nightly:.*": the repository expression must match the whole name, ^(?:ci|nightly)$`},
		},
		{
			name: "several commands: several rules, unique names, keep note",
			in: []string{
				"acr purge --filter 'team-a/.*:^ci-' --ago 30d --keep 5 --untagged\n" +
					"acr purge --filter 'team-a/.*:^pr-' --ago 7d",
				`acr purge --filter 'team-a/web:.*' --ago 90d --keep 10`,
			},
			want: `{"rules":[` +
				`{"name":"team-a","filters":["team-a/.*:^ci-"],"ago":"30d","keep":5,"untagged":true},` +
				`{"name":"team-a-2","filters":["team-a/.*:^pr-"],"ago":"7d"},` +
				`{"name":"team-a-web","filters":["team-a/web:.*"],"ago":"90d","keep":10}]}`,
			notes: []string{"the rules are applied together, not one command after another"},
		},
		{
			name:     "docs: az acr run with --cmd",
			in:       []string{`az acr run --cmd "acr purge --filter 'hello-world:.*' --untagged --ago 1d" --registry myregistry /dev/null`},
			want:     `{"rules":[{"name":"hello-world","filters":["hello-world:.*"],"ago":"1d","untagged":true}]}`,
			settings: map[string]string{"ACR_LOGIN_SERVER": "myregistry.azurecr.io"},
		},
		{
			name: "docs: az acr task create with a schedule",
			in: []string{`az acr task create --name purgeTask --cmd "acr purge --filter 'hello-world:.*' --ago 7d" ` +
				`--schedule "0 0 * * *" --registry myregistry --context /dev/null`},
			want:     `{"rules":[{"name":"purgeTask","filters":["hello-world:.*"],"ago":"7d"}]}`,
			settings: map[string]string{"ACR_LOGIN_SERVER": "myregistry.azurecr.io", "PURGE_SCHEDULE": "0 0 0 * * *"},
			notes:    []string{"PURGE_SCHEDULE is NCRONTAB in UTC"},
		},
		{
			name: "old docs: image reference, {{.Run.Registry}}, --timeout",
			in: []string{`az acr task create -n purge --cmd "mcr.microsoft.com/acr/acr-cli:0.1 purge --registry {{.Run.Registry}} ` +
				`--filter hello-world:.* --filter myimage:.* --ago 7d" --context /dev/null --schedule "0 0 * * *" -r myregistry --timeout 3600`},
			want:     `{"rules":[{"name":"purge","filters":["hello-world:.*","myimage:.*"],"ago":"7d"}]}`,
			settings: map[string]string{"ACR_LOGIN_SERVER": "myregistry.azurecr.io", "PURGE_SCHEDULE": "0 0 0 * * *"},
			notes:    []string{"(--cmd): the task --timeout 3600 is not needed"},
		},
		{
			name: "docs paste: PURGE_CMD assignment, then az acr task create --cmd \"$PURGE_CMD\"",
			in: []string{`# Environment variable for container command line
PURGE_CMD="acr purge \
  --filter 'samples/devimage1:.*' --filter 'samples/devimage2:.*' \
  --ago 0d --untagged"

az acr task create --name weeklyPurgeTask \
  --cmd "$PURGE_CMD" \
  --schedule "0 1 * * Sun" \
  --registry myregistry \
  --context /dev/null
`},
			want:     `{"rules":[{"name":"weeklyPurgeTask","filters":["samples/devimage1:.*","samples/devimage2:.*"],"ago":"0d","untagged":true}]}`,
			settings: map[string]string{"ACR_LOGIN_SERVER": "myregistry.azurecr.io", "PURGE_SCHEDULE": "0 0 1 * * Sun"},
		},
		{
			name: "an assignment alone is converted",
			in:   []string{`export PURGE_CMD="acr purge --filter 'hello-world:.*' --ago 7d"`},
			want: `{"rules":[{"name":"hello-world","filters":["hello-world:.*"],"ago":"7d"}]}`,
		},
		{
			name: "a timer line gives the schedule",
			in: []string{
				`acr purge --filter 'hello-world:.*' --ago 7d`,
				`az acr task timer add --name purge --registry myregistry --timer-name t2 --schedule "30 10 * * Mon-Fri"`,
			},
			want:     `{"rules":[{"name":"hello-world","filters":["hello-world:.*"],"ago":"7d"}]}`,
			settings: map[string]string{"PURGE_SCHEDULE": "0 30 10 * * Mon-Fri"},
		},
		{
			name: "--schedule replaces a timer's",
			in: []string{
				`acr purge --filter 'a:.*' --ago 7d`,
				`az acr task timer update -n p --timer-name t1 --schedule "0 0 * * *"`,
				`az acr task timer update -n p --timer-name t2 --schedule "0 12 * * *" --status Disabled`,
			},
			schedule: "0 1 * * Sun",
			want:     `{"rules":[{"name":"a","filters":["a:.*"],"ago":"7d"}]}`,
			settings: map[string]string{"PURGE_SCHEDULE": "0 0 1 * * Sun"},
			notes: []string{`--schedule "0 1 * * Sun" replaces the schedule "0 0 * * *" of argument 2`,
				`argument 3: the timer is disabled (--status Disabled); its schedule "0 12 * * *" is not used`},
		},
		{
			name:     "--schedule replaces the task's",
			in:       []string{`az acr task create -n p --cmd "acr purge --filter 'a:.*' --ago 7d" --schedule "0 0 * * *"`},
			schedule: "0 1 * * Sun",
			want:     `{"rules":[{"name":"p","filters":["a:.*"],"ago":"7d"}]}`,
			settings: map[string]string{"PURGE_SCHEDULE": "0 0 1 * * Sun"},
			notes:    []string{`--schedule "0 1 * * Sun" replaces the schedule "0 0 * * *"`},
		},
		{
			name:  "credentials and --verbose are read and ignored, values never echoed",
			in:    []string{`acr purge -u admin -p 's3cr3t!' --config /home/me/.docker/config.json --filter 'a:.*' --ago 1d --verbose`},
			want:  `{"rules":[{"name":"a","filters":["a:.*"],"ago":"1d"}]}`,
			notes: []string{"--password is ignored", "--username is ignored", "--config is ignored", "--verbose is ignored"},
		},
		{
			name:     "ABAC_BATCH_SIZE before the command",
			in:       []string{`ABAC_BATCH_SIZE=20 acr purge --filter 'a:.*' --ago 1d`},
			want:     `{"rules":[{"name":"a","filters":["a:.*"],"ago":"1d"}]}`,
			settings: map[string]string{"ABAC_BATCH_SIZE": "20"},
		},
		{
			name:     "acr-cli's environment before the command",
			in:       []string{`ACR_DEFAULT_REGISTRY=contoso HTTPS_PROXY=http://proxy:3128 acr purge --filter 'a:.*' --ago 1d`},
			want:     `{"rules":[{"name":"a","filters":["a:.*"],"ago":"1d"}]}`,
			settings: map[string]string{"ACR_LOGIN_SERVER": "contoso.azurecr.io"},
			notes:    []string{"argument 1: the environment variable HTTPS_PROXY has no acrpurge equivalent; ignored"},
		},
		{
			name:  "a repeated flag takes the last value, as in acr purge",
			in:    []string{`acr purge --filter 'a:.*' --ago 1d --ago 2d`},
			want:  `{"rules":[{"name":"a","filters":["a:.*"],"ago":"2d"}]}`,
			notes: []string{`--ago is given more than once; acr purge uses the last, "2d"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := convertLines(Options{Schedule: tc.schedule}, tc.in...)
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
			assert.NotContains(t, all, "s3cr3t", "a password must never be repeated")
			for _, n := range res.Notes {
				assert.NotContains(t, n, "\n", "one note is one line")
			}
		})
	}
}

func TestConvertErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       []string
		schedule string
		want     []string // substrings of the error
	}{
		{"unknown flag", []string{`acr purge --filter 'a:.*' --ago 1d --older-than 3d`},
			"", []string{"argument 1", "unknown flag --older-than", "--untagged-only"}},
		{"unknown shorthand", []string{`acr purge -x 'a:.*' --ago 1d`}, "", []string{"unknown flag -x"}},
		{"missing --ago", []string{`acr purge --filter 'a:.*' --untagged`}, "", []string{"--ago is required unless --untagged-only"}},
		{"missing --filter", []string{`acr purge --ago 1d`}, "", []string{"--filter is required unless --untagged-only"}},
		{"a flag without its value", []string{`acr purge --filter 'a:.*' --ago`}, "", []string{"--ago needs a value"}},
		{"a flag swallowing the next", []string{`acr purge --filter 'a:.*' --ago --untagged`}, "", []string{"--ago needs a value (it is followed by the flag --untagged)"}},
		{"bad ago: days after the duration", []string{`acr purge --filter 'a:.*' --ago 1h30d`}, "", []string{`--ago "1h30d"`}},
		{"bad ago: negative", []string{`acr purge --filter 'a:.*' --ago -1d`}, "", []string{`--ago "-1d"`}},
		{"bad ago: garbage", []string{`acr purge --filter 'a:.*' --ago xd`}, "", []string{`--ago "xd"`}},
		{"untagged and untagged-only", []string{`acr purge --untagged --untagged-only`}, "", []string{"cannot be used together"}},
		{"negative keep", []string{`acr purge --filter 'a:.*' --ago 1d --keep -1`}, "", []string{"--keep -1: must not be negative"}},
		{"keep not a number", []string{`acr purge --filter 'a:.*' --ago 1d --keep five`}, "", []string{`--keep "five": not a whole number`}},
		{"bad bool", []string{`acr purge --filter 'a:.*' --ago 1d --untagged=maybe`}, "", []string{"--untagged=maybe: want true or false"}},
		{"positional argument", []string{`acr purge hello-world:.* --ago 1d`}, "", []string{`unexpected argument "hello-world:.*"`}},
		{"help", []string{`acr purge --help`}, "", []string{"nothing to convert"}},
		{"not purge", []string{`acr tag list -r x --repository y`}, "", []string{"acr tag is not acr purge"}},
		{"not acr at all", []string{`docker image prune -a`}, "", []string{`"docker" does not start an acr purge command`}},
		{"unbalanced quote", []string{`acr purge --filter 'hello:.* --ago 1d`}, "", []string{"argument 1, column 20: unbalanced single quote"}},
		{"unbalanced quote, several lines", []string{"acr purge --ago 1d --filter 'a:.*'\nacr purge --filter \"b:.* --ago 1d"},
			"", []string{"argument 1 line 2, column 20: unbalanced double quote"}},
		{"unquoted pipe", []string{`acr purge --filter repo:a|b --ago 1d`}, "", []string{`unquoted "|"`, "quote the argument"}},
		{"bad regex in the tag part", []string{`acr purge --filter 'repo:(unclosed' --ago 1d`},
			"", []string{"argument 1: --filter \"repo:(unclosed\": tag expression", "invalid regular expression"}},
		{"bad regex in the repository part", []string{`acr purge --filter 'team-a/app)|(.*:.*' --ago 1d`},
			"", []string{"--filter \"team-a/app)|(.*:.*\": repository expression"}},
		{"filter without a colon", []string{`acr purge --filter 'hello-world' --ago 1d`}, "", []string{"no ':' separating repository and tag"}},
		{"template value", []string{`acr purge --filter 'a:.*' --ago {{.Values.ago}}`}, "", []string{"{{.Values.ago}} is resolved only when the task runs"}},
		{"unset shell variable", []string{`acr purge --filter "$REPO:.*" --ago 1d`}, "", []string{"$REPO", "not set in this input"}},
		{"--cmd with an unset variable", []string{`az acr task create -n p --cmd "$PURGE_CMD" --schedule "0 0 * * *"`},
			"", []string{`--cmd "$PURGE_CMD": $PURGE_CMD is not set in this input`}},
		{"az task file", []string{`az acr task create -n p -f purge.yaml --schedule "0 0 * * *"`}, "", []string{"convert that file with handler policy convert -f purge.yaml"}},
		{"az other command", []string{`az acr repository delete -n r --image x:1`}, "", []string{"az acr repository delete does not run acr purge"}},
		{"az --cmd that is not purge", []string{`az acr task create -n t --cmd hello-world --schedule "0 21 * * *"`}, "", []string{`--cmd "hello-world" does not run acr purge`}},
		{"bad cron: four fields", []string{`acr purge --filter 'a:.*' --ago 1d`}, "0 1 * *", []string{`schedule "0 1 * *" has 4 fields`}},
		{"bad cron: minute out of range", []string{`az acr task create -n p --cmd "acr purge --filter 'a:.*' --ago 1d" --schedule "61 1 * * *"`},
			"", []string{"argument 1", "minute field"}},
		{"bad cron: six fields", []string{`acr purge --filter 'a:.*' --ago 1d`}, "0 0 1 * * Sun", []string{"has 6 fields", "already NCRONTAB"}},
		{"bad cron: a day that never comes", []string{`acr purge --filter 'a:.*' --ago 1d`}, "0 0 30 2 *", []string{"never occurs"}},
		{"two schedules", []string{
			`az acr task create -n a --cmd "acr purge --filter 'a:.*' --ago 1d" --schedule "0 0 * * *"`,
			`az acr task create -n b --cmd "acr purge --filter 'b:.*' --ago 1d" --schedule "0 12 * * *"`,
		}, "", []string{"several timer schedules", "choose one with --schedule"}},
		{"two registries", []string{`acr purge -r one --filter 'a:.*' --ago 1d`, `acr purge -r two --filter 'b:.*' --ago 1d`},
			"", []string{"registry two.azurecr.io differs from one.azurecr.io"}},
		{"a registry that is not one", []string{`acr purge -r 'bad host' --filter 'a:.*' --ago 1d`}, "", []string{`-r "bad host"`, "registry endpoint"}},
		{"zero filter timeout", []string{`acr purge --filter 'a:.*' --ago 1d --filter-timeout-seconds 0`}, "", []string{"--filter-timeout-seconds 0: want at least 1"}},
		{"nothing", []string{"# only a comment\n"}, "", []string{"no acr purge command"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := convertLines(Options{Schedule: tc.schedule}, tc.in...)
			require.Error(t, err, "converted to %s", resultPolicy(res))
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func resultPolicy(res *Result) string {
	if res == nil {
		return "nothing"
	}
	return string(res.Policy)
}

func TestConvertNotesEveryDifference(t *testing.T) {
	// Every rule kind and setting at once: each deliberate difference
	// listed in README.md is named once.
	res, err := convertLines(Options{Schedule: "0 1 * * Sun"},
		`acr purge --filter 'a|b:.*' --ago 30d --keep 3 --untagged --include-locked --dry-run --concurrency 40`,
		`acr purge --untagged-only --ago 2d`)
	require.NoError(t, err)
	requireRoundTrip(t, res.Policy)
	assert.Equal(t, []Setting{
		{"PURGE_SCHEDULE", "0 0 1 * * Sun"},
		{"PURGE_DRY_RUN", "true"},
		{"PURGE_CONCURRENCY", "32"},
	}, res.Settings)
	for _, want := range []string{
		"acr purge caps --concurrency 40 at 32",
		"^(?:a|b)$",
		`no "protect" patterns`,
		"read again just before it is deleted",
		"children of every surviving index",
		"locked again if the delete fails",
		"applied together",
		"only some commands have --dry-run",
		"NCRONTAB in UTC",
	} {
		n := 0
		for _, note := range res.Notes {
			if strings.Contains(note, want) {
				n++
			}
		}
		assert.Equal(t, 1, n, "notes naming %q:\n%s", want, strings.Join(res.Notes, "\n"))
	}
}

func TestConvertKeepsRuleNamesValid(t *testing.T) {
	long := strings.Repeat("very-long-repository-name/", 10)
	res, err := convertLines(Options{},
		`acr purge --filter '`+long+`x:.*' --ago 1d`,
		`acr purge --filter '.*:.*' --ago 1d`,
		`acr purge --filter '.*:^v' --ago 1d`,
		`acr purge --filter 'a:.*' --ago 1d`,
		`acr purge --filter 'a:^b' --ago 1d`,
		`acr purge --filter 'a:^c' --ago 1d`)
	require.NoError(t, err)
	p := requireRoundTrip(t, res.Policy)
	var names []string
	for _, r := range p.Rules {
		names = append(names, r.Name)
	}
	assert.Len(t, names[0], maxGeneratedName)
	assert.Equal(t, []string{"purge-2", "purge-3", "a", "a-2", "a-3"}, names[1:])
}

func TestDocumentOfWritesDefaultsOnlyWhenSet(t *testing.T) {
	p, err := policy.Parse([]byte(`{"rules":[{"filters":["a:.*"],"ago":"1d"}],"protect":["^latest$"],"filterTimeout":"90s"}`))
	require.NoError(t, err)
	out, err := DocumentOf(p).Marshal()
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(out, &got))
	assert.Equal(t, float64(90), got["filterTimeout"])
	assert.Equal(t, []any{"^latest$"}, got["protect"])
	requireRoundTrip(t, out)
}

func TestPolicyJSONIsOneRulePerLine(t *testing.T) {
	res, err := convertLines(Options{},
		`acr purge --filter 'team-a/.*:^(?!keep-)<&>' --ago 1d --filter-timeout-seconds 90`,
		`acr purge --untagged-only`)
	require.NoError(t, err)
	requireRoundTrip(t, res.Policy)
	assert.Equal(t, `{
  "rules": [
    {"name":"team-a","filters":["team-a/.*:^(?!keep-)<&>"],"ago":"1d"},
    {"name":"untagged","untaggedOnly":true}
  ],
  "filterTimeout": 90
}
`, string(res.Policy))
}

func TestTopLevelAlternation(t *testing.T) {
	tests := map[string]bool{
		"a|b":        true,
		"(a)|b":      true,
		"[a|b]c|d":   true,
		"(a|b)":      false,
		"a(b|c)d":    false,
		"(?:a|b)/.*": false,
		"[|]":        false,
		`a\|b`:       false,
		"[]|]":       false,
		"[^]|]x":     false,
		`[\]|]`:      false,
		"team-a/.*":  false,
	}
	for expr, want := range tests {
		assert.Equal(t, want, topLevelAlternation(expr), expr)
	}
}

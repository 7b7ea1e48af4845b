package config_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/config"
)

const (
	sbSecret    = "c2VjcmV0LXNlcnZpY2UtYnVzLWtleQ=="
	tableSecret = "dGFibGUtYWNjb3VudC1rZXktc2VjcmV0"
	sbConn      = "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + sbSecret
	tableConn   = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + tableSecret + ";EndpointSuffix=core.windows.net"
)

// env is a minimal valid environment.
func env(over map[string]string) func(string) string {
	m := map[string]string{
		config.LoginServer: "contoso.azurecr.io",
		config.Policy:      `{"rules":[{"filters":[".*:.*"],"ago":"30d"}]}`,
	}
	for k, v := range over {
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	c, err := config.Load(env(nil), config.Requirement{})
	require.NoError(t, err)
	assert.Equal(t, "https://contoso.azurecr.io", c.Registry.String())
	assert.Equal(t, "contoso.azurecr.io", c.Registry.Service)
	assert.Equal(t, config.DefaultSchedule, c.Schedule.String())
	assert.Equal(t, config.DefaultQueue, c.Queue)
	assert.Equal(t, config.DefaultCheckpointTable, c.CheckpointTable)
	assert.Equal(t, config.DefaultBatchSize, c.BatchSize)
	assert.Equal(t, config.DefaultConcurrency, c.Concurrency)
	assert.Equal(t, config.DefaultDeletesPerMinute, c.DeletesPerMinute)
	assert.Equal(t, config.DefaultMaxInstances, c.MaxInstances)
	assert.Equal(t, config.DefaultRepoParallelism, c.RepoParallelism)
	assert.False(t, c.DryRun)
	assert.Nil(t, c.Repositories)
	assert.Equal(t, config.DefaultPushDebounce, c.PushDebounce)
	assert.Equal(t, config.DefaultMessageDeadline, c.MessageDeadline)
	assert.Equal(t, config.DefaultMaxDeliveries, c.MaxDeliveries)
	assert.Zero(t, c.Port)
}

func TestValidValues(t *testing.T) {
	c, err := config.Load(env(map[string]string{
		config.LoginServer:          " http://127.0.0.1:5000 ",
		config.Policy:               "@policy.json",
		config.Schedule:             "0 30 9 * * 1-5",
		config.Queue:                "purge.queue-1",
		config.ServiceBusNamespace:  "contoso.servicebus.windows.net",
		config.CheckpointURI:        "https://acct.table.core.windows.net",
		config.CheckpointTable:      "checkpoints2",
		config.ClientID:             "00000000-0000-0000-0000-000000000001",
		config.BatchSize:            "25",
		config.Concurrency:          "16",
		config.DeletesPerMinute:     "2000",
		config.MaxInstances:         "100",
		config.RepoParallelism:      "6",
		config.DryRun:               "TRUE",
		config.Repositories:         "team-a/api, team-b/web;team-a/api\nops/x",
		config.PushDebounce:         "0s",
		config.MessageDeadline:      "90s",
		config.MaxDeliveries:        "10",
		config.HandlerPort:          "7071",
		config.ServiceBusConnString: "",
	}), config.Requirement{ServiceBus: true, Checkpoint: true, Port: true})
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:5000", c.Registry.String())
	assert.Equal(t, "@policy.json", c.PolicySetting)
	assert.Equal(t, "0 30 9 * * 1-5", c.Schedule.String())
	assert.Equal(t, "purge.queue-1", c.Queue)
	assert.Equal(t, "contoso.servicebus.windows.net", c.ServiceBusNamespace)
	assert.Equal(t, "https://acct.table.core.windows.net", c.CheckpointURI)
	assert.Equal(t, "checkpoints2", c.CheckpointTable)
	assert.Equal(t, "00000000-0000-0000-0000-000000000001", c.ClientID)
	assert.Equal(t, 25, c.BatchSize)
	assert.Equal(t, 16, c.Concurrency)
	assert.Equal(t, 2000, c.DeletesPerMinute)
	assert.Equal(t, 100, c.MaxInstances)
	assert.Equal(t, 6, c.RepoParallelism)
	assert.True(t, c.DryRun)
	assert.Equal(t, []string{"team-a/api", "team-b/web", "ops/x"}, c.Repositories)
	assert.Equal(t, time.Duration(0), c.PushDebounce)
	assert.Equal(t, 90*time.Second, c.MessageDeadline)
	assert.Equal(t, 10, c.MaxDeliveries)
	assert.Equal(t, 7071, c.Port)

	// Connection strings instead of identity-based endpoints.
	c, err = config.Load(env(map[string]string{config.ServiceBusConnString: sbConn, config.CheckpointConnString: tableConn}),
		config.Requirement{ServiceBus: true, Checkpoint: true})
	require.NoError(t, err)
	assert.Equal(t, sbConn, c.ServiceBusConnString.Reveal())
	assert.Equal(t, tableConn, c.CheckpointConnString.Reveal())
}

func TestEveryInvalidSettingIsNamed(t *testing.T) {
	all := config.Requirement{ServiceBus: true, Checkpoint: true, Port: true}
	ok := map[string]string{config.ServiceBusConnString: sbConn, config.CheckpointConnString: tableConn, config.HandlerPort: "7071"}
	cases := []struct {
		setting, value, want string
	}{
		{config.LoginServer, "", "is required"},
		{config.LoginServer, "http://contoso.azurecr.io", ""},
		{config.LoginServer, "https://contoso.azurecr.io/v2/", ""},
		{config.LoginServer, "ftp://contoso.azurecr.io", ""},
		{config.LoginServer, "https://user:hunter2@contoso.azurecr.io", "without user information"},
		{config.Policy, "", "is required"},
		{config.Schedule, "0 0 25 * * *", ""},
		{config.Schedule, "every night", ""},
		{config.Queue, "bad queue!", "not a valid queue name"},
		{config.Queue, strings.Repeat("q", 261), "not a valid queue name"},
		{config.ServiceBusNamespace, "sb://contoso.servicebus.windows.net/", "host name"},
		{config.CheckpointURI, "http://acct.table.core.windows.net", "https URL"},
		{config.CheckpointURI, "acct.table.core.windows.net", "https URL"},
		{config.CheckpointTable, "ab", "not a valid table name"},
		{config.CheckpointTable, "1table", "not a valid table name"},
		{config.CheckpointTable, "bad-name", "not a valid table name"},
		{config.BatchSize, "0", "from 1 to 50"},
		{config.BatchSize, "51", "from 1 to 50"},
		{config.BatchSize, "ten", "whole number"},
		{config.Concurrency, "0", "from 1 to 64"},
		{config.Concurrency, "65", "from 1 to 64"},
		{config.DeletesPerMinute, "-1", "whole number"},
		{config.DeletesPerMinute, "0", "from 1 to 1000000"},
		{config.DeletesPerMinute, "1000001", "from 1 to 1000000"},
		{config.DeletesPerMinute, "1.5", "whole number"},
		{config.MaxInstances, "0", "from 1 to 1000"},
		{config.MaxInstances, "-3", "from 1 to 1000"},
		{config.MaxInstances, "5000", "from 1 to 1000"},
		{config.RepoParallelism, "0", "from 1 to 64"},
		{config.RepoParallelism, "65", "from 1 to 64"},
		{config.DryRun, "yes please", "true or false"},
		{config.Repositories, "team-a/api, Team-B/Web", `"Team-B/Web"`},
		{config.Repositories, "team-a//api", `"team-a//api"`},
		{config.PushDebounce, "10", "duration"},
		{config.PushDebounce, "-1m", "duration"},
		{config.PushDebounce, "25h", "duration"},
		{config.MessageDeadline, "500ms", "duration"},
		{config.MessageDeadline, "3h", "duration"},
		{config.MessageDeadline, "11m", "duration"},
		{config.MaxDeliveries, "0", "whole number"},
		{config.HandlerPort, "", "is required"},
		{config.HandlerPort, "70000", "from 1 to 65535"},
		{config.HandlerPort, "http", "whole number"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s=%q", c.setting, c.value), func(t *testing.T) {
			over := map[string]string{}
			for k, v := range ok {
				over[k] = v
			}
			over[c.setting] = c.value
			_, err := config.Load(env(over), all)
			require.Error(t, err)
			msg := err.Error()
			assert.Contains(t, msg, c.setting, "the error names the setting")
			assert.Contains(t, msg, c.want)
			assert.NotContains(t, msg, sbSecret)
			assert.NotContains(t, msg, tableSecret)
			assert.NotContains(t, msg, "hunter2")
		})
	}
}

func TestRequirements(t *testing.T) {
	cases := []struct {
		need config.Requirement
		want []string
	}{
		{config.Requirement{ServiceBus: true}, []string{config.ServiceBusNamespace, config.ServiceBusConnString}},
		{config.Requirement{Checkpoint: true}, []string{config.CheckpointURI, config.CheckpointConnString}},
		{config.Requirement{Port: true}, []string{config.HandlerPort}},
	}
	for _, c := range cases {
		_, err := config.Load(env(nil), c.need)
		require.Error(t, err)
		for _, w := range c.want {
			assert.Contains(t, err.Error(), w)
		}
	}
	_, err := config.Load(env(nil), config.Requirement{})
	require.NoError(t, err, "nothing optional is needed unless asked for")
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	_, err := config.Load(env(map[string]string{
		config.LoginServer: "", config.BatchSize: "0", config.DryRun: "maybe",
	}), config.Requirement{})
	require.Error(t, err)
	for _, s := range []string{config.LoginServer, config.BatchSize, config.DryRun} {
		assert.Contains(t, err.Error(), s)
	}
}

func TestSecretsAreNeverPrinted(t *testing.T) {
	c, err := config.Load(env(map[string]string{config.ServiceBusConnString: sbConn, config.CheckpointConnString: tableConn}),
		config.Requirement{ServiceBus: true, Checkpoint: true})
	require.NoError(t, err)
	for _, out := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", *c), fmt.Sprintf("%#v", *c), mustJSON(t, c)} {
		assert.NotContains(t, out, sbSecret)
		assert.NotContains(t, out, tableSecret)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// TestSampleSettingsListEveryName keeps local.settings.sample.json in step
// with Names (the host sets FUNCTIONS_CUSTOMHANDLER_PORT itself).
func TestSampleSettingsListEveryName(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "local.settings.sample.json"))
	require.NoError(t, err)
	var sample struct{ Values map[string]string }
	require.NoError(t, json.Unmarshal(b, &sample))
	for _, n := range config.Names {
		if n == config.HandlerPort {
			continue
		}
		assert.Contains(t, sample.Values, n)
	}
	// And the sample loads.
	_, err = config.Load(func(k string) string { return sample.Values[k] }, config.Requirement{ServiceBus: true, Checkpoint: true})
	require.NoError(t, err)
}

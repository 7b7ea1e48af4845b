package contract

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/packaging"
	"github.com/acrpurge/acrpurge/internal/policy"
)

// Settings outside config.Names, per place. These lists are the documented
// exceptions of the contract; anything else must match exactly.
var (
	// providedByHost are settings the app reads that the Functions host sets
	// at run time: nobody configures them.
	providedByHost = newSet(config.HandlerPort)

	// hostOnlySample are local.settings.sample.json values for the local
	// Functions host, not read by the app.
	hostOnlySample = newSet("FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage")

	// hostOnlyBicep are app settings infra/main.bicep writes for the host and
	// the platform (identity-based host storage and Service Bus trigger
	// connection, Application Insights), not read by the app.
	hostOnlyBicep = newSet(
		"AzureWebJobsStorage__accountName",
		"AzureWebJobsStorage__credential",
		"AzureWebJobsStorage__clientId",
		"ServiceBusConnection__credential",
		"ServiceBusConnection__clientId",
		"APPLICATIONINSIGHTS_CONNECTION_STRING",
		"APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
	)

	// notWrittenByBicep are settings the app reads that the templates must
	// not write: the connection-string alternatives (the deployment is
	// identity-only) and the port the host provides.
	notWrittenByBicep = newSet(config.HandlerPort, config.ServiceBusConnString, config.CheckpointConnString)

	// flexDeprecated are app settings a Flex Consumption app must not carry
	// (functionAppConfig replaces them).
	// https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations
	flexDeprecated = newSet(
		"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_WORKER_RUNTIME_VERSION", "FUNCTIONS_EXTENSION_VERSION",
		"WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_CONTENTSHARE", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
		"SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD", "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
		"WEBSITE_TIME_ZONE", "AzureWebJobsStorage",
	)
)

func configNames(t *testing.T) set {
	t.Helper()
	s := newSet(config.Names...)
	if len(s) != len(config.Names) {
		t.Fatalf("config.Names has duplicates: %q", config.Names)
	}
	return s
}

func TestSampleSettingsMatchConfig(t *testing.T) {
	var sample struct {
		IsEncrypted bool
		Values      map[string]string
	}
	if err := decodeJSON(readFile(t, "local.settings.sample.json"), &sample); err != nil {
		t.Fatalf("local.settings.sample.json: %v", err)
	}
	values := set{}
	for k := range sample.Values {
		values[k] = true
	}
	if missing := hostOnlySample.minus(values); len(missing) > 0 {
		t.Errorf("local.settings.sample.json lacks the host settings %q", missing.sorted())
	}
	if d := diff("local.settings.sample.json (minus host-only settings)", values.minus(hostOnlySample),
		"config.Names (minus settings the host provides)", configNames(t).minus(providedByHost)); d != "" {
		t.Error(d)
	}
	if v := sample.Values["FUNCTIONS_WORKER_RUNTIME"]; v != "custom" {
		t.Errorf("FUNCTIONS_WORKER_RUNTIME = %q, want custom", v)
	}
	// The sample must load: its values are the "safe local values".
	env := func(k string) string { return sample.Values[k] }
	cfg, err := config.Load(env, config.Requirement{ServiceBus: true, Checkpoint: true})
	if err != nil {
		t.Fatalf("the sample's values do not load: %v", err)
	}
	if _, err := policy.Load(cfg.PolicySetting, root(t)); err != nil {
		t.Errorf("the sample's %s: %v", config.Policy, err)
	}
}

func TestFunctionJSONReferencesAreSettings(t *testing.T) {
	names := configNames(t)
	fns, err := packaging.FunctionNames(root(t))
	if err != nil {
		t.Fatal(err)
	}
	refs := set{}
	for _, fn := range fns {
		data := readFile(t, filepath.Join(packaging.FunctionsDir, fn, packaging.FunctionFile))
		for _, m := range appSettingRef.FindAllStringSubmatch(string(data), -1) {
			refs[m[1]] = true
			if !names[m[1]] {
				t.Errorf("%s/function.json refers to %%%s%%, which is not in config.Names", fn, m[1])
			}
		}
	}
	if len(refs) == 0 {
		t.Error("no %NAME% references found; the schedule and queue name should come from settings")
	}
}

func TestBicepAppSettingsMatchConfig(t *testing.T) {
	f := mainBicep(t)
	got := bicepAppSettings(t, f)
	if bad := got.minus(got.minus(notWrittenByBicep)); len(bad) > 0 {
		t.Errorf("infra writes settings it must not (connection strings or host-provided): %q", bad.sorted())
	}
	for k := range got {
		if flexDeprecated[k] {
			t.Errorf("infra sets %s, which Flex Consumption replaces with functionAppConfig", k)
		}
	}
	if missing := hostOnlyBicep.minus(got); len(missing) > 0 {
		t.Errorf("infra lacks the host settings %q", missing.sorted())
	}
	if d := diff("infra app settings (minus host-only settings)", got.minus(hostOnlyBicep),
		"config.Names (minus settings infra must not write)", configNames(t).minus(notWrittenByBicep)); d != "" {
		t.Error(d)
	}
}

// bicepAppSettings returns the keys of the properties of the single
// Microsoft.Web/sites/config 'appsettings' resource.
func bicepAppSettings(t *testing.T, f *bicepFile) set {
	t.Helper()
	cfgs := f.resourcesOfType(t, "Microsoft.Web/sites/config")
	if len(cfgs) != 1 {
		t.Fatalf("%s: want exactly one Microsoft.Web/sites/config resource, found %d", f.path, len(cfgs))
	}
	top, err := f.entries(cfgs[0].body)
	if err != nil {
		t.Fatal(err)
	}
	if name, _ := value(top, "name"); name != "'appsettings'" {
		t.Fatalf("%s: the sites/config resource is %s, want 'appsettings'", f.path, name)
	}
	props, _, err := f.object(cfgs[0].body, "properties")
	if err != nil {
		t.Fatal(err)
	}
	keys := set{}
	for _, e := range props {
		if keys[e.key] {
			t.Errorf("%s: app setting %s is set twice", f.path, e.key)
		}
		keys[e.key] = true
	}
	return keys
}

func bicepAppSetting(t *testing.T, f *bicepFile, key string) string {
	t.Helper()
	cfg := f.resourcesOfType(t, "Microsoft.Web/sites/config")[0]
	props, _, err := f.object(cfg.body, "properties")
	if err != nil {
		t.Fatal(err)
	}
	v, ok := value(props, key)
	if !ok {
		t.Fatalf("no app setting %s", key)
	}
	return v
}

func TestWorkerConnectionIsIdentityBased(t *testing.T) {
	var fn functionJSON
	if err := decodeJSON(readFile(t, "functions/Worker/function.json"), &fn); err != nil {
		t.Fatal(err)
	}
	conn := ""
	for _, b := range fn.Bindings {
		if b.Type == "serviceBusTrigger" {
			conn = b.Connection
		}
	}
	if conn == "" {
		t.Fatal("the Worker has no serviceBusTrigger connection")
	}
	// The trigger's connection prefix must be what the app reads, and infra
	// must configure it identity-based (namespace + managed identity).
	if conn+"__fullyQualifiedNamespace" != config.ServiceBusNamespace || conn != config.ServiceBusConnString {
		t.Errorf("trigger connection %q is not the app's Service Bus setting %s", conn, config.ServiceBusNamespace)
	}
	got := bicepAppSettings(t, mainBicep(t))
	for _, suffix := range []string{"__fullyQualifiedNamespace", "__credential", "__clientId"} {
		if !got[conn+suffix] {
			t.Errorf("infra lacks %s%s", conn, suffix)
		}
	}
	if v := bicepAppSetting(t, mainBicep(t), conn+"__credential"); v != "'managedidentity'" {
		t.Errorf("%s__credential = %s, want 'managedidentity'", conn, v)
	}
}

// readmeConfigNames returns the setting names of the README's configuration
// table: the backquoted names in the first cell of each row of the table
// under the "## Configuration" heading.
func readmeConfigNames(readme string) ([]string, error) {
	lines := strings.Split(readme, "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == "## Configuration" {
			start = i + 1
			break
		}
	}
	if start < 0 {
		return nil, errors.New(`no "## Configuration" heading`)
	}
	var names []string
	for _, l := range lines[start:] {
		s := strings.TrimSpace(l)
		if strings.HasPrefix(s, "## ") || strings.HasPrefix(s, "# ") {
			break
		}
		if !strings.HasPrefix(s, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(s, "|"), "|")
		first := strings.TrimSpace(cells[0])
		if !strings.HasPrefix(first, "`") {
			continue // header or separator row
		}
		for _, m := range codeSpan.FindAllStringSubmatch(first, -1) {
			names = append(names, m[1])
		}
	}
	if len(names) == 0 {
		return nil, errors.New("no rows of the form | `NAME` | ... | under ## Configuration")
	}
	return names, nil
}

var codeSpan = regexp.MustCompile("`([^`]+)`")

func TestReadmeConfigNamesParser(t *testing.T) {
	tests := []struct {
		name    string
		readme  string
		want    []string
		wantErr bool
	}{
		{"table", "# x\n## Configuration\n| setting | meaning |\n|---|---|\n| `A` | a |\n| `B__x` / `B` | b |\n## Next\n| `C` | c |\n", []string{"A", "B__x", "B"}, false},
		{"table at end", "## Configuration\n\ntext\n\n| `A` | `not a name` |\n", []string{"A"}, false},
		{"no heading", "## Settings\n| `A` | a |\n", nil, true},
		{"no rows", "## Configuration\nnone\n## Other\n| `A` | a |\n", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readmeConfigNames(tc.readme)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadmeConfigurationTableMatchesConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root(t), "README.md"))
	if errors.Is(err, os.ErrNotExist) {
		t.Fatalf("README.md: %v (its ## Configuration table must list every setting)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	names, err := readmeConfigNames(string(data))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	seen := set{}
	for _, n := range names {
		if seen[n] {
			t.Errorf("README.md lists %s twice", n)
		}
		seen[n] = true
	}
	if d := diff("the README's configuration table", seen, "config.Names", configNames(t)); d != "" {
		t.Error(d)
	}
}

// functionJSON is the part of function.json the contract checks.
type functionJSON struct {
	Bindings []struct {
		Name       string `json:"name"`
		Type       string `json:"type"`
		Direction  string `json:"direction"`
		Schedule   string `json:"schedule"`
		QueueName  string `json:"queueName"`
		Connection string `json:"connection"`
		Route      string `json:"route"`
		AuthLevel  string `json:"authLevel"`
	} `json:"bindings"`
}

package contract

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/policy"
)

// knownRoles are the built-in role definition IDs infra may use, from
// https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
// (ACR roles: .../built-in-roles/containers).
var knownRoles = map[string]string{
	"bfdb9389-c9a5-478a-bb2f-ba9ca092c3c7": "Container Registry Repository Catalog Lister",
	"2efddaa5-3f1f-4df3-97df-af3f13818f4c": "Container Registry Repository Contributor",
	"69a216fc-b8fb-44d8-bc22-1f3c2cd27a39": "Azure Service Bus Data Sender",
	"4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0": "Azure Service Bus Data Receiver",
	"090c5cfd-751d-490a-894a-3ce6f1109419": "Azure Service Bus Data Owner",
	"b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
	"0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
	"974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
	"3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}

var guidRE = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)

func TestLexBicep(t *testing.T) {
	tests := []struct {
		name, src  string
		wantCode   string // code view
		wantText   string // comment-free view
		lexErr     bool
		unbalanced bool
	}{
		{name: "comments and strings",
			src:      "var a = 'x{y' // }\n/* ( */var b = {\n}",
			wantCode: "var a = '   '     \n       var b = {\n}",
			wantText: "var a = 'x{y'     \n       var b = {\n}"},
		{name: "escapes and interpolation",
			src:      `var a = 'it\'s ${f('}')} {'`,
			wantCode: `var a = '      ${f(' ')}  '`,
			wantText: `var a = 'it\'s ${f('}')} {'`},
		{name: "verbatim string",
			src:      "var a = '''\n{ // '\n'''",
			wantCode: "var a = '''\n      \n'''",
			wantText: "var a = '''\n{ // '\n'''"},
		{name: "unbalanced", src: "var a = {\n", unbalanced: true},
		{name: "crossed", src: "var a = [ { ] }", unbalanced: true},
		{name: "unterminated string", src: "var a = 'x\n", lexErr: true},
		{name: "unterminated comment", src: "/* x", lexErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := lexBicep("t.bicep", tc.src)
			if (err != nil) != tc.lexErr {
				t.Fatalf("lex error %v, want error %v", err, tc.lexErr)
			}
			if err != nil {
				return
			}
			if tc.wantCode != "" && f.code != tc.wantCode {
				t.Errorf("code\n%q\nwant\n%q", f.code, tc.wantCode)
			}
			if tc.wantText != "" && f.text != tc.wantText {
				t.Errorf("text\n%q\nwant\n%q", f.text, tc.wantText)
			}
			if err := f.checkBalanced(); (err != nil) != tc.unbalanced {
				t.Errorf("checkBalanced = %v, want unbalanced %v", err, tc.unbalanced)
			}
		})
	}
}

func TestBicepEntries(t *testing.T) {
	src := "resource x 'A/b@2020-01-01' = if (c) {\n  name: 'n'\n  properties: {\n    K_1: f({\n      inner: 1\n    })\n    'q': 2\n  }\n}\n"
	f, err := lexBicep("t.bicep", src)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := f.resources()
	if err != nil || len(rs) != 1 || rs[0].typ != "A/b" || rs[0].apiVersion != "2020-01-01" {
		t.Fatalf("resources = %+v, %v", rs, err)
	}
	props, _, err := f.object(rs[0].body, "properties")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range props {
		keys = append(keys, e.key)
	}
	if strings.Join(keys, ",") != "K_1,q" {
		t.Errorf("keys %q, want K_1,q (not the nested one)", keys)
	}
	if v, _ := value(props, "K_1"); v != "f({" {
		t.Errorf("K_1 value %q", v)
	}
}

func TestBicepFilesAreWellFormed(t *testing.T) {
	for _, f := range infraFiles(t) {
		if err := f.checkBalanced(); err != nil {
			t.Error(err)
		}
	}
}

func TestBicepParamsAreUsed(t *testing.T) {
	for _, f := range infraFiles(t) {
		if strings.HasSuffix(f.path, ".bicepparam") {
			continue
		}
		ps := f.params()
		seen := set{}
		for _, p := range ps {
			if seen[p.name] {
				t.Errorf("%s: param %s declared twice", f.path, p.name)
			}
			seen[p.name] = true
			if f.uses(p.name, p.at) == 0 {
				t.Errorf("%s:%d: param %s is never used", f.path, f.lineAt(p.at), p.name)
			}
			if !strings.Contains(p.decorators, "@description(") {
				t.Errorf("%s:%d: param %s has no @description", f.path, f.lineAt(p.at), p.name)
			}
		}
	}
}

var varRE = regexp.MustCompile(`(?m)^var[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*=`)

func TestBicepVariablesAndResourcesAreUsed(t *testing.T) {
	for _, f := range infraFiles(t) {
		for _, m := range varRE.FindAllStringSubmatchIndex(f.text, -1) {
			name := f.text[m[2]:m[3]]
			if f.uses(name, m[0]) == 0 {
				t.Errorf("%s:%d: var %s is never used", f.path, f.lineAt(m[0]), name)
			}
		}
		rs, err := f.resources()
		if err != nil {
			t.Fatal(err)
		}
		symbols := set{}
		for _, r := range rs {
			if symbols[r.symbol] {
				t.Errorf("%s: resource symbol %s declared twice", f.path, r.symbol)
			}
			symbols[r.symbol] = true
			if r.existing && f.uses(r.symbol, r.at) == 0 {
				t.Errorf("%s:%d: existing resource %s is never used", f.path, f.lineAt(r.at), r.symbol)
			}
		}
	}
}

var apiVersionRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(-preview)?$`)

func TestBicepResourceTypes(t *testing.T) {
	n := 0
	for _, f := range infraFiles(t) {
		rs, err := f.resources()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			n++
			if !apiVersionRE.MatchString(r.apiVersion) {
				t.Errorf("%s:%d: %s has API version %q", f.path, f.lineAt(r.at), r.typ, r.apiVersion)
			}
			if strings.HasSuffix(r.apiVersion, "-preview") {
				t.Errorf("%s:%d: %s uses a preview API version", f.path, f.lineAt(r.at), r.typ)
			}
			if !strings.Contains(r.typ, "/") || !strings.HasPrefix(r.typ, "Microsoft.") {
				t.Errorf("%s:%d: resource type %q", f.path, f.lineAt(r.at), r.typ)
			}
		}
	}
	if n < 15 {
		t.Errorf("only %d resources found: the declaration parser is probably broken", n)
	}
}

func TestBicepModules(t *testing.T) {
	for _, f := range infraFiles(t) {
		mods, err := f.modules()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mods {
			path := filepath.Join(filepath.Dir(f.path), m.path)
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s:%d: module %s: %v", f.path, f.lineAt(m.at), m.path, err)
				continue
			}
			mod := loadBicep(t, path)
			declared := map[string]param{}
			for _, p := range mod.params() {
				declared[p.name] = p
			}
			args, _, err := f.object(m.body, "params")
			if err != nil {
				t.Errorf("%s:%d: module %s: %v", f.path, f.lineAt(m.at), m.symbol, err)
				continue
			}
			passed := set{}
			for _, a := range args {
				passed[a.key] = true
				if _, ok := declared[a.key]; !ok {
					t.Errorf("%s:%d: module %s passes %s, which %s does not declare", f.path, f.lineAt(m.at), m.symbol, a.key, m.path)
				}
			}
			for name, p := range declared {
				if !p.hasDefault && !passed[name] {
					t.Errorf("%s:%d: module %s does not pass the required param %s", f.path, f.lineAt(m.at), m.symbol, name)
				}
			}
		}
	}
}

var paramAssignRE = regexp.MustCompile(`(?m)^param[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*=`)

func TestBicepParamFile(t *testing.T) {
	r := root(t)
	pf := loadBicep(t, filepath.Join(r, "infra", "main.bicepparam"))
	if !regexp.MustCompile(`(?m)^using '\./main\.bicep'`).MatchString(pf.text) {
		t.Error("main.bicepparam does not start from using './main.bicep'")
	}
	declared := map[string]param{}
	for _, p := range mainBicep(t).params() {
		declared[p.name] = p
	}
	set := set{}
	for _, m := range paramAssignRE.FindAllStringSubmatch(pf.text, -1) {
		set[m[1]] = true
		if _, ok := declared[m[1]]; !ok {
			t.Errorf("main.bicepparam sets %s, which main.bicep does not declare", m[1])
		}
	}
	for name, p := range declared {
		if !p.hasDefault && !set[name] {
			t.Errorf("main.bicepparam does not set the required param %s", name)
		}
	}
	// The example's policy must be a valid policy.
	m := regexp.MustCompile(`(?m)^param purgePolicy = ('.*')$`).FindStringSubmatch(pf.text)
	if m == nil {
		t.Fatal("main.bicepparam sets no single-line purgePolicy")
	}
	if _, err := policy.Parse([]byte(unquote(t, m[1]))); err != nil {
		t.Errorf("main.bicepparam's purgePolicy: %v", err)
	}
}

// secretPatterns must not appear in the templates (outside comments): keys,
// SAS and connection strings with secrets. The Application Insights
// connection string is allowed by name: it locates the resource and grants
// nothing with local authentication disabled.
var secretPatterns = []*regexp.Regexp{
	regexp.MustCompile(`(?i)\blist[A-Za-z]*Keys?\s*\(`),
	regexp.MustCompile(`(?i)\blistConnectionStrings\b`),
	regexp.MustCompile(`(?i)\blistCredentials\b`),
	regexp.MustCompile(`(?i)\blistAccountSas\b|\blistServiceSas\b`),
	regexp.MustCompile(`(?i)AccountKey\s*=`),
	regexp.MustCompile(`(?i)SharedAccessKey`),
	regexp.MustCompile(`(?i)DefaultEndpointsProtocol`),
	regexp.MustCompile(`(?i)@secure\(`),
}

var connectionStringRE = regexp.MustCompile(`(?i)connectionString`)

func TestBicepHasNoSecrets(t *testing.T) {
	for _, f := range infraFiles(t) {
		for _, re := range secretPatterns {
			if loc := re.FindStringIndex(f.text); loc != nil {
				t.Errorf("%s:%d: %q looks like a key or secret", f.path, f.lineAt(loc[0]), f.text[loc[0]:loc[1]])
			}
		}
		for _, loc := range connectionStringRE.FindAllStringIndex(f.text, -1) {
			if !strings.HasSuffix(f.text[:loc[1]], "appInsights.properties.ConnectionString") {
				t.Errorf("%s:%d: a connection string other than Application Insights'", f.path, f.lineAt(loc[0]))
			}
		}
	}
}

func TestBicepDefaultsMatchConfig(t *testing.T) {
	f := mainBicep(t)
	if p := f.param(t, "dryRun"); p.typ != "bool" || p.def != "true" {
		t.Errorf("dryRun defaults to %q, want true: a fresh deployment must not delete", p.def)
	}
	if v := bicepAppSetting(t, f, config.DryRun); !strings.Contains(v, "dryRun") {
		t.Errorf("%s = %s does not come from the dryRun param", config.DryRun, v)
	}
	strDefaults := map[string]string{
		"schedule":            config.DefaultSchedule,
		"queueName":           config.DefaultQueue,
		"checkpointTableName": config.DefaultCheckpointTable,
	}
	for name, want := range strDefaults {
		if got := unquote(t, f.param(t, name).def); got != want {
			t.Errorf("param %s defaults to %q, the code's default is %q", name, got, want)
		}
	}
	intDefaults := map[string]int{
		"abacBatchSize":         config.DefaultBatchSize,
		"concurrency":           config.DefaultConcurrency,
		"repositoryParallelism": config.DefaultRepoParallelism,
		"maxDeliveryCount":      config.DefaultMaxDeliveries,
		"maximumInstanceCount":  config.DefaultMaxInstances,
		// 0: by the registry's SKU (checked below).
		"deletesPerMinute": 0,
	}
	for name, want := range intDefaults {
		got, err := strconv.Atoi(f.param(t, name).def)
		if err != nil || got != want {
			t.Errorf("param %s defaults to %q, the code's default is %d", name, f.param(t, name).def, want)
		}
	}
	if !strings.Contains(f.param(t, "abacBatchSize").decorators, "@maxValue("+strconv.Itoa(config.MaxBatchSize)+")") {
		t.Errorf("abacBatchSize lacks @maxValue(%d), the code's limit", config.MaxBatchSize)
	}
	durDefaults := map[string]time.Duration{
		"pushDebounce":    config.DefaultPushDebounce,
		"messageDeadline": config.DefaultMessageDeadline,
	}
	for name, want := range durDefaults {
		got, err := time.ParseDuration(unquote(t, f.param(t, name).def))
		if err != nil || got != want {
			t.Errorf("param %s defaults to %s, the code's default is %v", name, f.param(t, name).def, want)
		}
	}
	// The delete budget is the whole registry's, by SKU: the documented
	// minimum WriteOps per minute, times deleteBudgetPercent; the code's
	// default is that of a Standard registry.
	skus := f.varObject(t, "skuWriteOpsPerMinute")
	for sku, want := range map[string]string{"Basic": "100", "Standard": "500", "Premium": "2000"} {
		if got, _ := value(skus, sku); got != want {
			t.Errorf("skuWriteOpsPerMinute.%s = %q, want %s (ACR's documented minimum WriteOps/min)", sku, got, want)
		}
	}
	pct, err := strconv.Atoi(f.param(t, "deleteBudgetPercent").def)
	if err != nil || 500*pct/100 != config.DefaultDeletesPerMinute {
		t.Errorf("deleteBudgetPercent %q of Standard's 500 WriteOps/min is not the code's default budget %d", f.param(t, "deleteBudgetPercent").def, config.DefaultDeletesPerMinute)
	}
	if v := bicepAppSetting(t, f, config.DeletesPerMinute); v != "string(effectiveDeletesPerMinute)" {
		t.Errorf("%s = %s, want string(effectiveDeletesPerMinute)", config.DeletesPerMinute, v)
	}
	if !strings.Contains(f.text, "deletesPerMinute > 0 ? deletesPerMinute : ") || !strings.Contains(f.text, "registryAccess.outputs.sku") {
		t.Error("effectiveDeletesPerMinute must be the deletesPerMinute param, or by the registry's SKU when it is 0")
	}
	if !strings.Contains(f.param(t, "deletesPerMinute").decorators, "@maxValue("+strconv.Itoa(config.MaxDeletesPerMinute)+")") {
		t.Errorf("deletesPerMinute lacks @maxValue(%d), the code's limit", config.MaxDeletesPerMinute)
	}
	// An instance that cannot reach the shared budget keeps to budget ÷
	// PURGE_MAX_INSTANCES: the plan's maximumInstanceCount.
	if v := bicepAppSetting(t, f, config.MaxInstances); v != "string(maximumInstanceCount)" {
		t.Errorf("%s = %s, want string(maximumInstanceCount)", config.MaxInstances, v)
	}

	// The worker learns the queue's maxDeliveryCount from PURGE_MAX_DELIVERIES:
	// both must come from the same param.
	if v := bicepAppSetting(t, f, config.MaxDeliveries); v != "string(maxDeliveryCount)" {
		t.Errorf("%s = %s, want string(maxDeliveryCount)", config.MaxDeliveries, v)
	}
	queue := f.resourceBySymbol(t, "queue")
	props, _, err := f.object(queue.body, "properties")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := value(props, "maxDeliveryCount"); v != "maxDeliveryCount" {
		t.Errorf("queue maxDeliveryCount = %q, want the maxDeliveryCount param", v)
	}
	// The same for the other values that exist twice.
	same := map[string]string{config.Queue: "queue.name", config.CheckpointTable: "checkpointTable.name", config.Schedule: "schedule"}
	for setting, want := range same {
		if v := bicepAppSetting(t, f, setting); v != want {
			t.Errorf("%s = %s, want %s", setting, v, want)
		}
	}
}

func TestBicepResources(t *testing.T) {
	f := mainBicep(t)
	props := func(symbol string) []entry {
		t.Helper()
		es, _, err := f.object(f.resourceBySymbol(t, symbol).body, "properties")
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	expect := func(what string, es []entry, key, want string) {
		t.Helper()
		if v, _ := value(es, key); v != want {
			t.Errorf("%s %s = %q, want %q", what, key, v, want)
		}
	}

	q := props("queue")
	expect("queue", q, "lockDuration", "'PT5M'")
	expect("queue", q, "requiresDuplicateDetection", "true")
	expect("queue", q, "deadLetteringOnMessageExpiration", "true")
	expect("queue", q, "duplicateDetectionHistoryTimeWindow", "duplicateDetectionWindow")
	sbTop, err := f.entries(f.resourceBySymbol(t, "serviceBus").body)
	if err != nil {
		t.Fatal(err)
	}
	sku, _, _ := f.object(f.resourceBySymbol(t, "serviceBus").body, "sku")
	expect("Service Bus sku", sku, "name", "'Standard'")
	_ = sbTop
	expect("Service Bus", props("serviceBus"), "disableLocalAuth", "true")

	st := props("storage")
	expect("storage", st, "allowSharedKeyAccess", "false")
	expect("storage", st, "allowBlobPublicAccess", "false")
	expect("storage", st, "minimumTlsVersion", "'TLS1_2'")

	expect("Application Insights", props("appInsights"), "DisableLocalAuth", "true")
	if v := bicepAppSetting(t, f, "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"); !strings.HasPrefix(v, "'Authorization=AAD;ClientId=${identity.properties.clientId}'") {
		t.Errorf("APPLICATIONINSIGHTS_AUTHENTICATION_STRING = %s, want Authorization=AAD with the identity's client ID", v)
	}
	if v := bicepAppSetting(t, f, config.ClientID); v != "identity.properties.clientId" {
		t.Errorf("%s = %s, want the user-assigned identity's client ID", config.ClientID, v)
	}

	planSku, _, err := f.object(f.resourceBySymbol(t, "plan").body, "sku")
	if err != nil {
		t.Fatal(err)
	}
	expect("plan sku", planSku, "name", "'FC1'")
	expect("plan sku", planSku, "tier", "'FlexConsumption'")

	site := f.resourceBySymbol(t, "functionApp")
	_, fac, err := f.object(site.body, "properties")
	if err != nil {
		t.Fatal(err)
	}
	_, cfgAt, err := f.object(fac, "functionAppConfig")
	if err != nil {
		t.Fatal(err)
	}
	runtime, _, err := f.object(cfgAt, "runtime")
	if err != nil {
		t.Fatal(err)
	}
	expect("functionAppConfig.runtime", runtime, "name", "'custom'")
	scale, _, err := f.object(cfgAt, "scaleAndConcurrency")
	if err != nil {
		t.Fatal(err)
	}
	expect("scaleAndConcurrency", scale, "instanceMemoryMB", "2048")
	expect("scaleAndConcurrency", scale, "maximumInstanceCount", "maximumInstanceCount")
	_, depAt, err := f.object(cfgAt, "deployment")
	if err != nil {
		t.Fatal(err)
	}
	_, stAt, err := f.object(depAt, "storage")
	if err != nil {
		t.Fatal(err)
	}
	auth, _, err := f.object(stAt, "authentication")
	if err != nil {
		t.Fatal(err)
	}
	expect("deployment storage authentication", auth, "type", "'UserAssignedIdentity'")
}

func TestBicepRegistryAndPushEvents(t *testing.T) {
	r := root(t)
	reg := loadBicep(t, filepath.Join(r, "infra", "modules", "registry.bicep"))
	if !strings.Contains(reg.text, "roleAssignmentMode: 'AbacRepositoryPermissions'") {
		t.Error("a registry created by the template must be in AbacRepositoryPermissions mode")
	}
	sub := loadBicep(t, filepath.Join(r, "infra", "modules", "push-subscription.bicep"))
	for _, want := range []string{
		"'Microsoft.ContainerRegistry.ImagePushed'", "deliveryWithResourceIdentity:", "endpointType: 'ServiceBusQueue'",
		"key: 'data.target.repository'", "operatorType: 'StringBeginsWith'",
	} {
		if !strings.Contains(sub.text, want) {
			t.Errorf("push-subscription.bicep lacks %s", want)
		}
	}
	acc := loadBicep(t, filepath.Join(r, "infra", "modules", "registry-access.bicep"))
	if !strings.Contains(acc.text, "type: 'SystemAssigned'") || !strings.Contains(acc.text, "topicType: 'Microsoft.ContainerRegistry.Registries'") {
		t.Error("the system topic needs a system-assigned identity and the registry topic type")
	}
}

// TestBicepRoleAssignments checks every role assignment: a comment saying why
// right above it, known built-in role IDs only, and the repository role
// limited by an ABAC condition.
func TestBicepRoleAssignments(t *testing.T) {
	used := set{}
	assignments := 0
	for _, f := range infraFiles(t) {
		for _, m := range guidRE.FindAllStringIndex(f.text, -1) {
			id := strings.ToLower(f.text[m[0]:m[1]])
			name, ok := knownRoles[id]
			if !ok {
				t.Errorf("%s:%d: %s is not a known built-in role ID", f.path, f.lineAt(m[0]), id)
				continue
			}
			used[name] = true
			// The line carrying the ID names the role too.
			lineEnd := strings.IndexByte(f.raw[m[1]:], '\n')
			if lineEnd < 0 {
				lineEnd = len(f.raw) - m[1]
			}
			if !strings.Contains(f.raw[m[1]:m[1]+lineEnd], name) {
				t.Errorf("%s:%d: role %s is not named (%s) on its line", f.path, f.lineAt(m[0]), id, name)
			}
		}
		lines := strings.Split(f.raw, "\n")
		for _, ra := range f.resourcesOfType(t, "Microsoft.Authorization/roleAssignments") {
			assignments++
			ln := f.lineAt(ra.at) - 1
			if ln == 0 || !strings.HasPrefix(strings.TrimSpace(lines[ln-1]), "//") {
				t.Errorf("%s:%d: role assignment %s has no comment saying why", f.path, ln+1, ra.symbol)
			}
			es, _, err := f.object(ra.body, "properties")
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := value(es, "principalType"); v != "'ServicePrincipal'" {
				t.Errorf("%s: %s principalType %s, want 'ServicePrincipal' (managed identities)", f.path, ra.symbol, v)
			}
		}
	}
	for _, name := range knownRoles {
		if name == "Storage Queue Data Contributor" {
			continue // optional (grantHostQueueAccess)
		}
		if !used[name] {
			t.Errorf("infra never assigns %s", name)
		}
	}
	if assignments < 9 {
		t.Errorf("%d role assignments found, want at least 9", assignments)
	}

	acc := loadBicep(t, filepath.Join(root(t), "infra", "modules", "registry-access.bicep"))
	contrib, _, err := acc.object(acc.resourceBySymbol(t, "repositoryContributor").body, "properties")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := value(contrib, "condition"); v == "" {
		t.Error("the Repository Contributor assignment has no ABAC condition")
	}
	if v, _ := value(contrib, "conditionVersion"); v != "'2.0'" {
		t.Errorf("conditionVersion %s, want '2.0'", v)
	}
	if v, _ := value(contrib, "roleDefinitionId"); !strings.Contains(v, "repositoryContributorRoleId") {
		t.Errorf("repositoryContributor assigns %s", v)
	}
	// The condition covers every data action of the role (from the role
	// definition) and limits them by repository name prefix.
	for _, want := range []string{
		"@Request[Microsoft.ContainerRegistry/registries/repositories:name]",
		"StringStartsWithIgnoreCase", "StringEqualsIgnoreCase", "conditionVersion: '2.0'",
		"repositories/content/read'", "repositories/content/write'", "repositories/content/delete'",
		"repositories/metadata/read'", "repositories/metadata/write'", "repositories/metadata/delete'",
	} {
		if !strings.Contains(acc.text, want) {
			t.Errorf("registry-access.bicep lacks %s", want)
		}
	}
}

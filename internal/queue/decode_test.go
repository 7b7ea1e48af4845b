package queue

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeFixtures(t *testing.T) {
	pushed := &Event{
		ID:         "8c2f5d3e-41a7-4b39-9d0e-3b6e2f1a7c55",
		Type:       EventTypeImagePushed,
		Time:       time.Date(2025, 3, 4, 21, 39, 47, 654961400, time.UTC),
		Repository: "team-a/api",
		Tag:        "1.4.2",
		Digest:     "sha256:9f2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809",
		Host:       "contosoplatform.azurecr.io",
	}
	withSchema := func(e *Event, s string) *Event { c := *e; c.Schema = s; return &c }
	tests := []struct {
		file string
		want Decoded
	}{
		{"eventgrid-imagepushed.json", Decoded{Kind: KindEvent, Repositories: []string{"team-a/api"}, Event: withSchema(pushed, SchemaEventGrid)}},
		{"cloudevents-imagepushed.json", Decoded{Kind: KindEvent, Repositories: []string{"team-a/api"}, Event: withSchema(pushed, SchemaCloudEvents)}},
		{"eventgrid-imagedeleted.json", Decoded{Kind: KindIgnored, Ignored: `event type "Microsoft.ContainerRegistry.ImageDeleted"`, Event: &Event{
			ID: "f06e3921-301f-42ec-b368-212f7d5354bd", Type: "Microsoft.ContainerRegistry.ImageDeleted", Schema: SchemaEventGrid,
			Time: time.Date(2025, 3, 5, 2, 0, 13, 821126800, time.UTC),
		}}},
		{"portal-servicebus-explorer.json", Decoded{Kind: KindPortal, Repositories: []string{"team-a/api", "team-b/worker"}, DryRun: true}},
		{"own-continuation.json", Decoded{Kind: KindOwn, Repositories: []string{"team-a/api", "team-a/web", "tools/ci/runner"}, Own: &Message{
			Version: 1, RunID: "20250305T020000Z-7f3a9c", Batch: 3, Batches: 42, Trigger: TriggerSchedule,
			Repositories: []string{"team-a/api", "team-a/web", "tools/ci/runner"},
			Resume:       &Resume{N: 2, Cursors: map[string]json.RawMessage{"team-a/web": json.RawMessage(`{"phase":"tags","last":"1.2.3"}`)}},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := Decode(fixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode:\n got %+v\nwant %+v", show(got), show(tt.want))
			}
		})
	}
}

func show(d Decoded) string {
	b, _ := json.Marshal(d)
	return string(b)
}

func TestDecodeEventArrayAndSingle(t *testing.T) {
	single := fixture(t, "eventgrid-imagepushed.json")
	array := append(append([]byte("[\n"), single...), ']')
	a, err := Decode(single)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Decode(array)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("array %v != single %v", show(b), show(a))
	}
	two := append(append(append(append([]byte("["), single...), ','), single...), ']')
	if _, err := Decode(two); !IsReject(err) || !strings.Contains(err.Error(), "array of 2") {
		t.Errorf("two events: %v", err)
	}
}

// TestDecodeEventHostExposed checks that an event from another registry is
// decoded (so the worker can compare Host and ignore it), not trusted.
func TestDecodeEventHostExposed(t *testing.T) {
	body := strings.Replace(string(fixture(t, "cloudevents-imagepushed.json")), "contosoplatform.azurecr.io", "evil.example.com:8443", 1)
	d, err := Decode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if d.Event.Host != "evil.example.com:8443" {
		t.Errorf("Host = %q", d.Event.Host)
	}
}

func TestDecodeIgnoredTypes(t *testing.T) {
	for _, typ := range []string{"Microsoft.ContainerRegistry.ChartPushed", "Microsoft.ContainerRegistry.ImageDeleted", "Microsoft.EventGrid.SubscriptionValidationEvent", "ImagePushed"} {
		eg := `{"id":"1","eventType":"` + typ + `","eventTime":"2025-01-01T00:00:00Z","data":{},"dataVersion":"1","metadataVersion":"1"}`
		ce := `{"specversion":"1.0","id":"1","source":"/x","type":"` + typ + `","data":null}`
		for _, body := range []string{eg, ce} {
			d, err := Decode([]byte(body))
			if err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			if d.Kind != KindIgnored || !strings.Contains(d.Ignored, typ) {
				t.Errorf("%s: %+v", body, d)
			}
		}
	}
}

func TestDecodePortalShapes(t *testing.T) {
	tests := []struct {
		body   string
		repos  []string
		dryRun bool
	}{
		{`{"repository":"team-a/api"}`, []string{"team-a/api"}, false},
		{`{"repositories":["b","a","b"],"dryRun":false}`, []string{"b", "a"}, false},
		{`{"repositories":["a"],"dryRun":null}`, []string{"a"}, false},
		{"\xef\xbb\xbf {\"repository\":\"x/y\",\"dryRun\":true}\n", []string{"x/y"}, true},
	}
	for _, tt := range tests {
		d, err := Decode([]byte(tt.body))
		if err != nil {
			t.Fatalf("%s: %v", tt.body, err)
		}
		if d.Kind != KindPortal || !reflect.DeepEqual(d.Repositories, tt.repos) || d.DryRun != tt.dryRun {
			t.Errorf("%s: %+v", tt.body, d)
		}
	}
}

func ownBody(mut func(m map[string]any)) []byte {
	m := map[string]any{
		"version": 1, "runId": "run-1", "batch": 1, "batches": 2, "trigger": "schedule",
		"repositories": []string{"a", "b"}, "dryRun": false,
	}
	if mut != nil {
		mut(m)
	}
	b, _ := json.Marshal(m)
	return b
}

func TestDecodeRejects(t *testing.T) {
	long := strings.Repeat("a", 257)
	tests := []struct {
		name string
		body []byte
		want string // substring of the reason
	}{
		{"empty", []byte("  "), "empty"},
		{"malformed", []byte(`{"repositories":["a"]`), "not valid JSON"},
		{"string body", []byte(`"{\"repositories\":[\"a\"]}"`), "JSON string"},
		{"number body", []byte(`42`), "number"},
		{"null body", []byte(`null`), "null"},
		{"empty array", []byte(`[]`), "array of 0"},
		{"array of own", []byte(`[{"repositories":["a"]}]`), "one Event Grid or CloudEvents event"},
		{"unknown shape", []byte(`{"hello":"world"}`), `unknown message shape (fields: "hello")`},
		{"empty object", []byte(`{}`), "fields: none"},
		{"too large", append([]byte(`{"repositories":["a"],"x":"`), append([]byte(strings.Repeat("x", MaxBodyBytes)), '"', '}')...), "more than 262144"},
		{"duplicate key", []byte(`{"repositories":["a"],"repositories":["b"]}`), `field "repositories" appears more than once`},

		// The registry can never come from a message.
		{"portal registry", []byte(`{"repositories":["a"],"registry":"evil.azurecr.io"}`), `field "registry" is not allowed`},
		{"portal loginServer", []byte(`{"repository":"a","loginServer":"evil.azurecr.io"}`), `field "loginServer" is not allowed`},
		{"portal LoginServer", []byte(`{"repository":"a","LoginServer":"evil"}`), `field "LoginServer" is not allowed`},
		{"portal login_server", []byte(`{"repository":"a","login_server":"evil"}`), `"login_server" is not allowed`},
		{"portal server", []byte(`{"repository":"a","server":"evil"}`), `"server" is not allowed`},
		{"portal endpoint", []byte(`{"repository":"a","endpoint":"https://evil"}`), `"endpoint" is not allowed`},
		{"portal host", []byte(`{"repository":"a","host":"evil"}`), `"host" is not allowed`},
		{"portal url", []byte(`{"repository":"a","url":"https://evil"}`), `"url" is not allowed`},
		{"portal registryUrl", []byte(`{"repository":"a","registryUrl":"https://evil"}`), `"registryUrl" is not allowed`},
		{"portal acrEndpoint", []byte(`{"repository":"a","acrEndpoint":"x"}`), `"acrEndpoint" is not allowed`},
		{"only registry", []byte(`{"registry":"evil.azurecr.io"}`), `field "registry" is not allowed`},
		{"own registry", ownBody(func(m map[string]any) { m["registry"] = "evil.azurecr.io" }), `field "registry" is not allowed`},
		{"own loginServer", ownBody(func(m map[string]any) { m["loginServer"] = "evil.azurecr.io" }), `"loginServer" is not allowed`},
		{"own endpoint", ownBody(func(m map[string]any) { m["Endpoint"] = "https://evil" }), `"Endpoint" is not allowed`},
		{"own url", ownBody(func(m map[string]any) { m["URL"] = "https://evil" }), `"URL" is not allowed`},
		{"own host", ownBody(func(m map[string]any) { m["host"] = "evil" }), `"host" is not allowed`},
		{"resume host", ownBody(func(m map[string]any) { m["resume"] = map[string]any{"n": 1, "host": "evil"} }), `"host" is not allowed`},
		{"cursor host", ownBody(func(m map[string]any) {
			m["resume"] = map[string]any{"n": 1, "cursors": map[string]any{"a": map[string]any{"last": "x", "loginServer": "evil"}}}
		}), `has field "loginServer"`},
		{"cursor nested url", ownBody(func(m map[string]any) {
			m["resume"] = map[string]any{"n": 1, "cursors": map[string]any{"a": []any{map[string]any{"URL": "/x"}}}}
		}), `has field "URL"`},
		{"cursor absolute link", ownBody(func(m map[string]any) {
			m["resume"] = map[string]any{"n": 1, "cursors": map[string]any{"a": map[string]any{"next": "https://evil/acr/v1/a/_tags?last=x"}}}
		}), "absolute URL"},
		{"cursor protocol-relative", ownBody(func(m map[string]any) {
			m["resume"] = map[string]any{"n": 1, "cursors": map[string]any{"a": "//evil/acr/v1/a/_tags"}}
		}), "absolute URL"},
		{"cursor other repo", ownBody(func(m map[string]any) {
			m["resume"] = map[string]any{"n": 1, "cursors": map[string]any{"c": "x"}}
		}), `cursor for "c", which is not in repositories`},
		{"cursor too big", ownBody(func(m map[string]any) {
			m["resume"] = map[string]any{"n": 1, "cursors": map[string]any{"a": strings.Repeat("x", MaxCursorBytes)}}
		}), "more than 8192"},

		// Own message ranges.
		{"version 2", ownBody(func(m map[string]any) { m["version"] = 2 }), "version 2 is not supported"},
		{"version missing", ownBody(func(m map[string]any) { delete(m, "version") }), "version 0"},
		{"version string", ownBody(func(m map[string]any) { m["version"] = "1" }), "cannot unmarshal"},
		{"batch 0", ownBody(func(m map[string]any) { m["batch"] = 0 }), "batch 0 is out of range"},
		{"batch > batches", ownBody(func(m map[string]any) { m["batch"] = 3 }), "batch 3 is out of range 1..2"},
		{"batches 0", ownBody(func(m map[string]any) { m["batches"] = 0; m["batch"] = 0 }), "batches 0 is out of range"},
		{"batches huge", ownBody(func(m map[string]any) { m["batches"] = MaxBatches + 1 }), "out of range 1..100000"},
		{"batch float", ownBody(func(m map[string]any) { m["batch"] = 1.5 }), "cannot unmarshal"},
		{"batch negative", ownBody(func(m map[string]any) { m["batch"] = -1 }), "batch -1"},
		{"trigger", ownBody(func(m map[string]any) { m["trigger"] = "cron" }), `trigger "cron"`},
		{"no repos", ownBody(func(m map[string]any) { m["repositories"] = []string{} }), "repositories is empty"},
		{"null repos", ownBody(func(m map[string]any) { m["repositories"] = nil }), "repositories is empty"},
		{"dup repos", ownBody(func(m map[string]any) { m["repositories"] = []string{"a", "b", "a"} }), `repositories[2] "a" repeats repositories[0]`},
		{"runId slash", ownBody(func(m map[string]any) { m["runId"] = "a/b" }), `runId "a/b": character '/'`},
		{"runId empty", ownBody(func(m map[string]any) { m["runId"] = "" }), "runId is empty"},
		{"runId long", ownBody(func(m map[string]any) { m["runId"] = strings.Repeat("r", 65) }), "longer than 64"},
		{"resume n 0", ownBody(func(m map[string]any) { m["resume"] = map[string]any{"n": 0} }), "resume.n 0"},
		{"unknown own field", ownBody(func(m map[string]any) { m["policy"] = "x" }), `unknown field "policy" in a acrpurge message`},
		{"case variant", ownBody(func(m map[string]any) { m["RunId"] = "x" }), `unknown field "RunId"`},
		{"too many repos", ownBody(func(m map[string]any) {
			r := make([]string, MaxBatchRepositories+1)
			for i := range r {
				r[i] = "r" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + "/" + strings.Repeat("n", 1+i/26)
			}
			m["repositories"] = r
		}), "more than the 50 of the largest batch"},

		// Portal shape.
		{"portal both", []byte(`{"repository":"a","repositories":["b"]}`), "either"},
		{"portal empty", []byte(`{"repositories":[]}`), "repositories is empty"},
		{"portal null", []byte(`{"repositories":null}`), "repositories is null"},
		{"portal number", []byte(`{"repository":5}`), "must be a string"},
		{"portal null one", []byte(`{"repository":null}`), "must be a string"},
		{"portal list of numbers", []byte(`{"repositories":[1]}`), "array of strings"},
		{"portal dryRun string", []byte(`{"repository":"a","dryRun":"yes"}`), "dryRun must be true or false"},
		{"portal unknown", []byte(`{"repository":"a","tag":"latest"}`), `unknown field "tag" in a portal message`},

		// Hostile repository names, each naming the entry.
		{"uppercase", []byte(`{"repositories":["ok","Team-A/api"]}`), `repositories[1] "Team-A/api": uppercase letter 'T'`},
		{"dotdot", []byte(`{"repository":"a/../b"}`), `repository "a/../b": path component ".."`},
		{"dotdot start", []byte(`{"repository":"../b"}`), `path component ".."`},
		{"percent", []byte(`{"repository":"a%2Fb"}`), `repository "a%2Fb": '%' at offset 1`},
		{"space", []byte(`{"repository":"a b"}`), "space at offset 1"},
		{"control", []byte(`{"repository":"a\u0000b"}`), "control character 0x00"},
		{"newline", []byte(`{"repository":"a\nb"}`), "control character 0x0a"},
		{"leading slash", []byte(`{"repository":"/a"}`), "starts with '/'"},
		{"trailing slash", []byte(`{"repository":"a/"}`), "ends with '/'"},
		{"double slash", []byte(`{"repository":"a//b"}`), "empty path component"},
		{"question", []byte(`{"repository":"a?b=1"}`), `'?' at offset 1`},
		{"hash", []byte(`{"repository":"a#b"}`), `'#' at offset 1`},
		{"too long", []byte(`{"repository":"` + long + `"}`), "257 bytes, longer than 256"},
		{"unicode", []byte(`{"repository":"caf\u00e9"}`), "non-ASCII"},
		{"backslash", []byte(`{"repository":"a\\b"}`), `'\\' at offset 1`},
		{"empty name", []byte(`{"repositories":["a",""]}`), `repositories[1] "": empty repository name`},
		{"own hostile", ownBody(func(m map[string]any) { m["repositories"] = []string{"a", "B"} }), `repositories[1] "B": uppercase`},

		// Events.
		{"pushed no data", []byte(`{"eventType":"Microsoft.ContainerRegistry.ImagePushed","id":"1"}`), "has no data"},
		{"pushed no repo", []byte(`{"eventType":"Microsoft.ContainerRegistry.ImagePushed","data":{"target":{"tag":"x"}}}`), "no data.target.repository"},
		{"pushed hostile repo", []byte(`{"eventType":"Microsoft.ContainerRegistry.ImagePushed","data":{"target":{"repository":"A/../b"}}}`), `data.target.repository "A/../b"`},
		{"pushed bad tag", []byte(`{"eventType":"Microsoft.ContainerRegistry.ImagePushed","data":{"target":{"repository":"a","tag":"-x"}}}`), "not a valid tag"},
		{"pushed bad digest", []byte(`{"eventType":"Microsoft.ContainerRegistry.ImagePushed","data":{"target":{"repository":"a","digest":"sha256"}}}`), "not a valid digest"},
		{"pushed bad host", []byte(`{"eventType":"Microsoft.ContainerRegistry.ImagePushed","data":{"target":{"repository":"a"},"request":{"host":"a/b"}}}`), "not a valid host"},
		{"pushed bad time", []byte(`{"eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"yesterday","data":{"target":{"repository":"a"}}}`), "not an RFC 3339 time"},
		{"eventType number", []byte(`{"eventType":5}`), "eventType must be a string"},
		{"cloudevents 0.3", []byte(`{"specversion":"0.3","type":"Microsoft.ContainerRegistry.ImagePushed","data":{"target":{"repository":"a"}}}`), `specversion "0.3"`},
		{"cloudevents no type", []byte(`{"specversion":"1.0","data":{}}`), "has no type"},
		{"cloudevents base64", []byte(`{"specversion":"1.0","type":"Microsoft.ContainerRegistry.ImagePushed","data_base64":"e30="}`), "data_base64"},
		{"data string", []byte(`{"eventType":"Microsoft.ContainerRegistry.ImagePushed","data":"{}"}`), "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Decode(tt.body)
			if err == nil {
				t.Fatalf("Decode accepted: %s", show(d))
			}
			if !IsReject(err) {
				t.Fatalf("error %v is not a RejectError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("reason %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestMessageIDAndEncode(t *testing.T) {
	m := Message{Version: 1, RunID: "20250305T020000Z-7f3a9c", Batch: 7, Batches: 9, Trigger: TriggerManual, Repositories: []string{"a/b"}}
	if got := m.MessageID(); got != "20250305T020000Z-7f3a9c/7" {
		t.Errorf("MessageID = %q", got)
	}
	m.Resume = &Resume{N: 3, Cursors: map[string]json.RawMessage{"a/b": json.RawMessage(`{"last":"<v1&v2>"}`)}}
	if got := m.MessageID(); got != "20250305T020000Z-7f3a9c/7/resume-3" {
		t.Errorf("MessageID = %q", got)
	}
	body, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"last":"<v1&v2>"`) {
		t.Errorf("Encode escaped HTML: %s", body)
	}
	d, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*d.Own, m) {
		t.Errorf("round trip: got %+v want %+v", *d.Own, m)
	}
	// The longest valid id fits Service Bus.
	m.RunID = strings.Repeat("r", MaxRunIDLength)
	m.Batch, m.Batches, m.Resume.N = MaxBatches, MaxBatches, MaxResume
	if err := m.Validate(); err != nil || len(m.MessageID()) > MaxMessageIDLength {
		t.Errorf("longest id %q (%d): %v", m.MessageID(), len(m.MessageID()), err)
	}
	m.Repositories = []string{"Bad"}
	if _, err := m.Encode(); !IsReject(err) || !strings.Contains(err.Error(), `"Bad"`) {
		t.Errorf("Encode of invalid message: %v", err)
	}
}

func TestValidateRepositoryName(t *testing.T) {
	valid := []string{"a", "team-a/api", "a.b_c__d---e/f0/9", "library/ubuntu", strings.Repeat("a", 256), "a-b/c.d/e_f"}
	for _, n := range valid {
		if err := ValidateRepositoryName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	invalid := map[string]string{
		"":       "empty",
		"-a":     "starts with '-'",
		"a-":     "ends with '-'",
		"a..b":   `separator ".."`,
		"a___b":  `separator "___"`,
		"a._b":   `separator "._"`,
		"a/.b":   "starts with '.'",
		".":      `path component "."`,
		"a/./b":  `path component "."`,
		"a:b":    `':' at offset 1`,
		"a@b":    `'@'`,
		"a\x7fb": "control character 0x7f",
		"a\tb":   "control character 0x09",
		"a+b":    `'+'`,
	}
	for n, want := range invalid {
		err := ValidateRepositoryName(n)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", n, err, want)
		}
	}
}

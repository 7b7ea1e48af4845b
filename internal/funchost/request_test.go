package funchost

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const portalBody = "{\r\n  \"repositories\": [\r\n    \"team-a/api\",\r\n    \"team-b/worker\"\r\n  ],\r\n  \"dryRun\": true\r\n}"

func loadRequest(t testing.TB, name string) *Request {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	req, err := parseRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func sameJSON(t testing.TB, got, want []byte) bool {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		return false
	}
	if err := json.Unmarshal(want, &b); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(a, b)
}

func TestServiceBusFixtures(t *testing.T) {
	event, err := os.ReadFile("../queue/testdata/eventgrid-imagepushed.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file          string
		want          []byte
		exact         bool
		deliveryCount int
		messageID     string
	}{
		{"sb-object.json", []byte(portalBody), false, 2, "portal-1"},
		{"sb-string.json", []byte(portalBody), true, 1, "portal-2"},
		{"sb-double.json", []byte(portalBody), true, 3, "portal-3"},
		{"sb-base64.json", event, false, 5, "8c2f5d3e-41a7-4b39-9d0e-3b6e2f1a7c55"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			req := loadRequest(t, tt.file)
			got, err := req.Payload("msg")
			if err != nil {
				t.Fatal(err)
			}
			if tt.exact && !bytes.Equal(got, tt.want) || !sameJSON(t, got, tt.want) {
				t.Errorf("Payload = %q", got)
			}
			if n, ok := req.MetaInt("DeliveryCount"); !ok || n != tt.deliveryCount {
				t.Errorf("DeliveryCount = %d, %v", n, ok)
			}
			if id := req.MetaString("MessageId"); id != tt.messageID {
				t.Errorf("MessageId = %q", id)
			}
			if ct := req.MetaString("ContentType"); ct != "application/json" {
				t.Errorf("ContentType = %q", ct)
			}
			if n, ok := req.MetaInt("SequenceNumber"); !ok || n != 42 {
				t.Errorf("SequenceNumber = %d, %v", n, ok)
			}
			want := time.Date(2025, 3, 5, 2, 0, 1, 123000000, time.UTC)
			for _, k := range []string{"EnqueuedTimeUtc", "EnqueuedTime"} {
				if got, ok := req.MetaTime(k); !ok || !got.Equal(want) {
					t.Errorf("%s = %s, %v", k, got, ok)
				}
			}
			if got, ok := req.MetaTime("ExpiresAtUtc"); !ok || got.Year() != 9999 {
				t.Errorf("ExpiresAtUtc = %s, %v", got, ok)
			}
			sys := req.Sys()
			if sys.MethodName != "Worker" || sys.RandGuid != "0f8e2d4c-6b1a-4e3f-9c7d-5a2b1e0f3d4c" ||
				!sys.UtcNow.Equal(time.Date(2025, 3, 5, 2, 0, 1, 456789100, time.UTC)) {
				t.Errorf("Sys = %+v", sys)
			}
			if got := req.MetaString("ApplicationProperties"); got != "{}" {
				t.Errorf("ApplicationProperties = %q", got)
			}
		})
	}
}

func TestPayload(t *testing.T) {
	obj := `{"repository":"a"}`
	str, _ := json.Marshal(obj)
	dbl, _ := json.Marshal(string(str))
	tests := []struct {
		name, raw, want string
	}{
		{"object", obj, obj},
		{"object with spaces", "  \n" + obj + " ", obj},
		{"array", `[{"a":1}]`, `[{"a":1}]`},
		{"string", string(str), obj},
		{"double", string(dbl), obj},
		{"triple", mustString(string(dbl)), obj},
		{"base64", `"eyJyZXBvc2l0b3J5IjoiYSJ9"`, obj},
		{"base64 of a JSON string", `"` + b64(string(str)) + `"`, obj},
		{"string of base64", mustString(`"eyJyZXBvc2l0b3J5IjoiYSJ9"`), obj},
		{"plain text", `"hello world"`, "hello world"},
		{"base64 of non-JSON", `"aGVsbG8="`, "aGVsbG8="},
		{"text starting with brace", `"{not json"`, "{not json"},
		{"number", `42`, `42`},
		{"bool", `true`, `true`},
		{"string number", `"42"`, `42`},
		{"empty string", `""`, ``},
		{"quote text", mustString(`"unterminated`), `"unterminated`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Request{Data: map[string]json.RawMessage{"msg": json.RawMessage(tt.raw)}}
			got, err := r.Payload("msg")
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("Payload(%s) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
	r := &Request{Data: map[string]json.RawMessage{"msg": json.RawMessage(`null`)}}
	if _, err := r.Payload("msg"); err == nil || !strings.Contains(err.Error(), `"msg" is null`) {
		t.Errorf("null: %v", err)
	}
	if _, err := r.Payload("other"); err == nil || !strings.Contains(err.Error(), `"other" is missing`) {
		t.Errorf("missing: %v", err)
	}
}

func mustString(s string) string { b, _ := json.Marshal(s); return string(b) }

func b64(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	_ = enc.Encode([]byte(s)) // encoding/json writes []byte as base64
	var out string
	_ = json.Unmarshal(buf.Bytes(), &out)
	return out
}

func TestMeta(t *testing.T) {
	r := &Request{Metadata: map[string]json.RawMessage{
		"n": json.RawMessage(`7`), "s": json.RawMessage(`"7"`), "q": json.RawMessage(`"\"7\""`), "f": json.RawMessage(`2.0`),
		"half": json.RawMessage(`2.5`), "word": json.RawMessage(`"seven"`), "b": json.RawMessage(`true`),
		"null": json.RawMessage(`null`), "obj": json.RawMessage(`{ "a" : 1 }`), "quoted": json.RawMessage(`"\"id-1\""`),
		"huge": json.RawMessage(`1e300`),
	}}
	for k, want := range map[string]int{"n": 7, "s": 7, "q": 7, "f": 2} {
		if got, ok := r.MetaInt(k); !ok || got != want {
			t.Errorf("MetaInt(%s) = %d, %v", k, got, ok)
		}
	}
	for _, k := range []string{"half", "word", "b", "null", "missing", "obj", "huge"} {
		if got, ok := r.MetaInt(k); ok {
			t.Errorf("MetaInt(%s) = %d, want none", k, got)
		}
	}
	for k, want := range map[string]string{"b": "true", "null": "", "missing": "", "obj": `{"a":1}`, "quoted": "id-1", "word": "seven"} {
		if got := r.MetaString(k); got != want {
			t.Errorf("MetaString(%s) = %q, want %q", k, got, want)
		}
	}
	if sys := r.Sys(); sys != (Sys{}) {
		t.Errorf("Sys without sys = %+v", sys)
	}
	r.Metadata["sys"] = json.RawMessage(`"{\"MethodName\":\"Worker\",\"UtcNow\":\"2025-01-01T00:00:00Z\"}"`)
	if sys := r.Sys(); sys.MethodName != "Worker" || sys.UtcNow.Year() != 2025 {
		t.Errorf("Sys from a string = %+v", sys)
	}
}

func TestTimerFixtures(t *testing.T) {
	ti, err := loadRequest(t, "timer.json").Timer("timer")
	if err != nil {
		t.Fatal(err)
	}
	if ti.IsPastDue || ti.ScheduleStatus != nil || ti.Schedule["AdjustForDST"] != true {
		t.Errorf("timer = %+v", ti)
	}
	req := loadRequest(t, "timer-pastdue.json")
	ti, err = req.Timer("timer")
	if err != nil {
		t.Fatal(err)
	}
	want := &ScheduleStatus{
		Last:        time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		Next:        time.Date(2025, 3, 5, 2, 0, 0, 0, time.UTC),
		LastUpdated: time.Date(2025, 3, 4, 22, 17, 58, 133807600, time.UTC),
	}
	if !ti.IsPastDue || ti.ScheduleStatus == nil || !ti.ScheduleStatus.Last.Equal(want.Last) ||
		!ti.ScheduleStatus.Next.Equal(want.Next) || !ti.ScheduleStatus.LastUpdated.Equal(want.LastUpdated) {
		t.Errorf("timer = %+v %+v", ti, ti.ScheduleStatus)
	}
	if sys := req.Sys(); sys.MethodName != "Scheduler" {
		t.Errorf("sys = %+v", sys)
	}
	for _, bad := range []string{`{"IsPastDue":"maybe"}`, `{"ScheduleStatus":{"Last":"yesterday"}}`, `[1]`} {
		r := &Request{Data: map[string]json.RawMessage{"timer": json.RawMessage(bad)}}
		if _, err := r.Timer("timer"); err == nil {
			t.Errorf("Timer(%s) accepted", bad)
		}
	}
	// Lower-case keys, as some workers write them, and IsPastDue as a string.
	r := &Request{Data: map[string]json.RawMessage{"timer": json.RawMessage(`{"isPastDue":"True","scheduleStatus":{"next":"2025-01-01T00:00:00Z"}}`)}}
	if ti, err := r.Timer("timer"); err != nil || !ti.IsPastDue || ti.ScheduleStatus.Next.Year() != 2025 {
		t.Errorf("lower-case timer = %+v, %v", ti, err)
	}
}

func TestHTTPFixture(t *testing.T) {
	req := loadRequest(t, "http.json")
	hr, err := req.HTTP("req")
	if err != nil {
		t.Fatal(err)
	}
	want := HTTPRequest{
		URL:     "https://func-acrpurge.azurewebsites.net/api/runs/20250305T020000Z-7f3a9c?format=json",
		Method:  "GET",
		Query:   map[string]string{"format": "json"},
		Headers: map[string][]string{"Accept": {"application/json"}, "Host": {"func-acrpurge.azurewebsites.net"}, "X-Forwarded-For": {"203.0.113.7:51234"}},
		Params:  map[string]string{"runId": "20250305T020000Z-7f3a9c"},
	}
	if !reflect.DeepEqual(hr, want) {
		t.Errorf("HTTP =\n%+v\nwant\n%+v", hr, want)
	}
	if got := req.MetaString("runId"); got != "20250305T020000Z-7f3a9c" {
		t.Errorf("route param metadata = %q", got)
	}
	r := &Request{Data: map[string]json.RawMessage{"req": json.RawMessage(`{"Url":"/x","Method":"POST","Query":{},"Headers":{"A":"b"},"Body":"{\"a\":1}"}`)}}
	hr, err = r.HTTP("req")
	if err != nil || hr.Body != `{"a":1}` || hr.Headers["A"][0] != "b" || len(hr.Query) != 0 {
		t.Errorf("HTTP = %+v, %v", hr, err)
	}
	r.Data["req"] = json.RawMessage(`{"Query":5}`)
	if _, err := r.HTTP("req"); err == nil {
		t.Error("numeric Query accepted")
	}
}

func FuzzPayload(f *testing.F) {
	for _, name := range []string{"sb-object.json", "sb-string.json", "sb-double.json", "sb-base64.json", "timer.json", "timer-pastdue.json", "http.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"Data":{"msg":"\"\\\"\\\\\\\"x\\\\\\\"\\\"\""},"Metadata":{"DeliveryCount":"1e9","sys":"{"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseRequest(body)
		if err != nil {
			return
		}
		for name := range req.Data {
			p, err := req.Payload(name)
			// Unquoting only shrinks, except that each invalid UTF-8 byte
			// becomes U+FFFD (three bytes).
			if err == nil && len(p) > 3*len(body) {
				t.Fatalf("payload of %q grew: %d > 3*%d", name, len(p), len(body))
			}
			_, _ = req.Timer(name)
			_, _ = req.HTTP(name)
		}
		for k := range req.Metadata {
			_ = req.MetaString(k)
			_, _ = req.MetaInt(k)
			_, _ = req.MetaTime(k)
		}
		_ = req.Sys()
	})
}

func TestHTTPHeader(t *testing.T) {
	hr := HTTPRequest{Headers: map[string][]string{"accept": {"text/html", "application/xhtml+xml"}, "X-Forwarded-For": {"203.0.113.7"}}}
	if got := hr.Header("Accept"); got != "text/html, application/xhtml+xml" {
		t.Errorf("Header(Accept) = %q: the name matches without regard to case, values are joined", got)
	}
	if got := hr.Header("x-forwarded-for"); got != "203.0.113.7" {
		t.Errorf("Header(x-forwarded-for) = %q", got)
	}
	if got := hr.Header("Cookie"); got != "" {
		t.Errorf("absent header = %q", got)
	}
}

func TestNewHTTPTriggerRequestRoundTrip(t *testing.T) {
	in := HTTPRequest{
		URL: "http://127.0.0.1:7071/api/runs/s-1?format=html", Method: "get",
		Query:   map[string]string{"format": "html"},
		Headers: map[string][]string{"Accept": {"text/html,*/*;q=0.8"}, "User-Agent": {"Mozilla/5.0 <x>"}},
		Params:  map[string]string{"runId": "s-1"},
	}
	req := NewHTTPTriggerRequest("req", in)
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var back Request
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	got, err := back.HTTP("req")
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.Method = "GET"
	want.Headers = map[string][]string{"Accept": {"text/html,*/*;q=0.8"}, "User-Agent": {"Mozilla/5.0 <x>"}, "Host": {"127.0.0.1:7071"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip =\n%+v\nwant\n%+v", got, want)
	}
	if got := back.MetaString("runId"); got != "s-1" {
		t.Errorf("route param metadata = %q", got)
	}
	in.Headers = map[string][]string{"host": {"front.example"}}
	again := NewHTTPTriggerRequest("req", in)
	got, _ = again.HTTP("req")
	if h := got.Header("Host"); h != "front.example" {
		t.Errorf("a given Host header is kept, got %q", h)
	}
}

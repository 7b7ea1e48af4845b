package contract

import (
	"archive/zip"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/acrpurge/acrpurge/internal/app"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/deadletters"
	"github.com/acrpurge/acrpurge/internal/packaging"
	"github.com/acrpurge/acrpurge/internal/worker"
)

// hostJSON is the part of host.json the contract checks.
type hostJSON struct {
	Version         string `json:"version"`
	FunctionTimeout string `json:"functionTimeout"`
	CustomHandler   struct {
		Description struct {
			DefaultExecutablePath string   `json:"defaultExecutablePath"`
			Arguments             []string `json:"arguments"`
		} `json:"description"`
		EnableForwardingHTTPRequest bool `json:"enableForwardingHttpRequest"`
	} `json:"customHandler"`
	ExtensionBundle struct {
		ID      string `json:"id"`
		Version string `json:"version"`
	} `json:"extensionBundle"`
	Extensions struct {
		ServiceBus struct {
			MaxAutoLockRenewalDuration string `json:"maxAutoLockRenewalDuration"`
			AutoCompleteMessages       *bool  `json:"autoCompleteMessages"`
		} `json:"serviceBus"`
		HTTP struct {
			RoutePrefix *string `json:"routePrefix"`
		} `json:"http"`
	} `json:"extensions"`
}

func loadHost(t *testing.T) hostJSON {
	t.Helper()
	var h hostJSON
	if err := decodeJSON(readFile(t, packaging.HostFile), &h); err != nil {
		t.Fatalf("host.json: %v", err)
	}
	return h
}

func TestHostJSON(t *testing.T) {
	h := loadHost(t)
	if h.Version != "2.0" {
		t.Errorf("version %q, want 2.0", h.Version)
	}
	if got := h.CustomHandler.Description.DefaultExecutablePath; got != packaging.BinaryName {
		t.Errorf("customHandler.description.defaultExecutablePath = %q, the package's binary is %q", got, packaging.BinaryName)
	}
	if h.CustomHandler.EnableForwardingHTTPRequest {
		t.Error("enableForwardingHttpRequest is true: the Runs function answers through its res output binding")
	}
	if h.ExtensionBundle.ID != "Microsoft.Azure.Functions.ExtensionBundle" || h.ExtensionBundle.Version != "[4.*, 5.0.0)" {
		t.Errorf("extension bundle %s %s, want Microsoft.Azure.Functions.ExtensionBundle [4.*, 5.0.0)", h.ExtensionBundle.ID, h.ExtensionBundle.Version)
	}
	if p := h.Extensions.HTTP.RoutePrefix; p == nil || *p != "api" {
		t.Error(`extensions.http.routePrefix must be "api": the run report is documented at /api/runs/{runId}`)
	}

	// An invocation (message deadline, grace, set-up) must end before the
	// host gives up on the message: lock renewal and the function timeout
	// both outlast it, for the default, the largest allowed and the
	// deadline infra deploys.
	deadlines := map[string]time.Duration{
		"config.DefaultMessageDeadline": config.DefaultMessageDeadline,
		"config.MaxMessageDeadline":     config.MaxMessageDeadline,
	}
	if d, err := time.ParseDuration(unquote(t, mainBicep(t).param(t, "messageDeadline").def)); err != nil {
		t.Errorf("infra messageDeadline default: %v", err)
	} else {
		deadlines["infra messageDeadline"] = d
	}
	renew, err := hostDuration(h.Extensions.ServiceBus.MaxAutoLockRenewalDuration)
	if err != nil {
		t.Fatalf("serviceBus.maxAutoLockRenewalDuration: %v", err)
	}
	if renew != app.LockRenewal {
		t.Errorf("serviceBus.maxAutoLockRenewalDuration %v differs from app.LockRenewal %v (the Runs function's stall detection)", renew, app.LockRenewal)
	}
	timeout, err := hostDuration(h.FunctionTimeout)
	if err != nil {
		t.Fatalf("functionTimeout: %v", err)
	}
	for name, d := range deadlines {
		d += worker.Grace + worker.SetupTimeout
		if renew <= d {
			t.Errorf("serviceBus.maxAutoLockRenewalDuration %v is not above %s plus grace and set-up (%v)", renew, name, d)
		}
		if timeout <= d {
			t.Errorf("functionTimeout %v is not above %s plus grace and set-up (%v)", timeout, name, d)
		}
	}
}

func TestHostDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"00:15:00", 15 * time.Minute, false},
		{"01:00:30", time.Hour + 30*time.Second, false},
		{"1.02:00:00", 26 * time.Hour, false},
		{"00:00:01.5", 1500 * time.Millisecond, false},
		{"15:00", 0, true},
		{"00:60:00", 0, true},
		{"x", 0, true},
	}
	for _, tc := range tests {
		got, err := hostDuration(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("hostDuration(%q) = %v, %v; want %v, bad=%v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

// wantBinding is one binding a function must declare, with the fields the
// handler depends on.
type wantBinding struct {
	name, typ, direction string
	extra                map[string]string // schedule, queueName, connection, route, authLevel
}

// wantFunctions are the functions the handler serves and the binding names
// its custom-handler requests use (internal/app's Function* and Binding*).
var wantFunctions = map[string][]wantBinding{
	app.FunctionScheduler: {{app.BindingTimer, "timerTrigger", "in", map[string]string{"schedule": "%" + config.Schedule + "%"}}},
	app.FunctionWorker: {{app.BindingMessage, "serviceBusTrigger", "in", map[string]string{
		"queueName": "%" + config.Queue + "%", "connection": config.ServiceBusConnString}}},
	app.FunctionRuns: {
		{app.BindingRequest, "httpTrigger", "in", map[string]string{"authLevel": "function", "route": "runs/{runId?}"}},
		{app.BindingResponse, "http", "out", nil},
	},
	app.FunctionDeadLetters: {{deadletters.BindingMessage, "serviceBusTrigger", "in", map[string]string{
		"queueName": "%" + config.Queue + "%/$DeadLetterQueue", "connection": config.ServiceBusConnString}}},
}

func TestFunctionBindings(t *testing.T) {
	names, err := packaging.FunctionNames(root(t))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for n := range wantFunctions {
		want = append(want, n)
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("function folders %q, want %q", names, want)
	}
	for fn, bindings := range wantFunctions {
		var got functionJSON
		if err := decodeJSON(readFile(t, filepath.Join(packaging.FunctionsDir, fn, packaging.FunctionFile)), &got); err != nil {
			t.Errorf("%s/function.json: %v", fn, err)
			continue
		}
		if len(got.Bindings) != len(bindings) {
			t.Errorf("%s: %d bindings, want %d", fn, len(got.Bindings), len(bindings))
			continue
		}
		for i, w := range bindings {
			b := got.Bindings[i]
			if b.Name != w.name || b.Type != w.typ || b.Direction != w.direction {
				t.Errorf("%s binding %d: %s %s %s, want %s %s %s", fn, i, b.Name, b.Type, b.Direction, w.name, w.typ, w.direction)
			}
			fields := map[string]string{"schedule": b.Schedule, "queueName": b.QueueName, "connection": b.Connection,
				"route": b.Route, "authLevel": b.AuthLevel}
			for k, v := range w.extra {
				if fields[k] != v {
					t.Errorf("%s binding %s: %s = %q, want %q", fn, b.Name, k, fields[k], v)
				}
			}
		}
	}
}

// TestPackageOfTheRepository builds the real deployment zip, as `make
// package` does, and checks its layout against the repository.
func TestPackageOfTheRepository(t *testing.T) {
	r := root(t)
	if _, err := os.Stat(filepath.Join(r, "handler")); os.IsNotExist(err) {
		t.Skip("handler/ does not exist yet")
	}
	if testing.Short() {
		t.Skip("compiles the handler; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute) // a cold build cache
	defer cancel()
	out := filepath.Join(t.TempDir(), "acrpurge.zip")
	if err := packaging.Build(ctx, r, out); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.OpenReader(out)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	got := map[string]*zip.File{}
	for _, f := range zr.File {
		got[f.Name] = f
	}
	want := []string{packaging.BinaryName, packaging.HostFile}
	for fn := range wantFunctions {
		want = append(want, fn+"/"+packaging.FunctionFile)
	}
	if len(got) != len(want) {
		t.Errorf("zip has %d entries, want %d", len(got), len(want))
	}
	for _, name := range want {
		f, ok := got[name]
		if !ok {
			t.Errorf("zip lacks %s", name)
			continue
		}
		if name == packaging.BinaryName {
			if f.Mode() != 0o755 {
				t.Errorf("handler mode %v, want 0755", f.Mode())
			}
			continue
		}
		src := readFile(t, map[bool]string{true: name, false: filepath.Join(packaging.FunctionsDir, name)}[name == packaging.HostFile])
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, err = buf.ReadFrom(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), src) {
			t.Errorf("%s differs from the repository's", name)
		}
	}
}

package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/app"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu/emutest"
	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
)

const testPolicy = `{"rules":[{"filters":["team-.*:^ci-"],"ago":"30d","keep":2}]}`

type nopSender struct{}

func (nopSender) Send(context.Context, []queue.Outgoing) error { return nil }

func newApp(t *testing.T, store checkpoint.Store) (*app.App, *emutest.Env) {
	t.Helper()
	env := emutest.Start(t, emutest.Options{})
	cfg, err := config.Load(func(k string) string {
		return map[string]string{config.LoginServer: env.Registry.URL(), config.Policy: testPolicy}[k]
	}, config.Requirement{})
	require.NoError(t, err)
	pol, err := policy.Parse([]byte(testPolicy))
	require.NoError(t, err)
	a, err := app.New(cfg, pol, app.Deps{Credential: env.Cred, Sender: nopSender{}, Store: store, Now: env.Registry.Now})
	require.NoError(t, err)
	return a, env
}

// runsResponse invokes Runs and returns the "res" output binding.
func runsResponse(t *testing.T, base string, params, query map[string]string) funchost.HTTPResponse {
	t.Helper()
	resp, status, err := funchost.Invoke(t.Context(), nil, base, app.FunctionRuns,
		funchost.HTTPTriggerRequest(app.BindingRequest, "GET", base+"/api/runs", params, query))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, "the HTTP status travels in the output binding")
	require.Nil(t, resp.ReturnValue)
	raw, err := json.Marshal(resp.Outputs[app.BindingResponse])
	require.NoError(t, err)
	var res funchost.HTTPResponse
	require.NoError(t, json.Unmarshal(raw, &res))
	return res
}

func TestRunsFunction(t *testing.T) {
	store := checkpoint.NewMemory()
	a, _ := newApp(t, store)
	srv := httptest.NewServer(a.HTTPHandler())
	t.Cleanup(srv.Close)

	res := runsResponse(t, srv.URL, nil, nil)
	assert.Equal(t, http.StatusNotFound, res.StatusCode)
	assert.JSONEq(t, `{"error":"no run recorded yet"}`, res.Body)
	assert.Contains(t, res.Headers["Content-Type"], "application/json")

	res = runsResponse(t, srv.URL, map[string]string{"runId": "s-missing"}, nil)
	assert.Equal(t, http.StatusNotFound, res.StatusCode)
	assert.Contains(t, res.Body, "s-missing")

	// A blank id is a mistake, not "the latest run"; a long one is not echoed.
	res = runsResponse(t, srv.URL, map[string]string{"runId": "  "}, nil)
	assert.Equal(t, http.StatusBadRequest, res.StatusCode)
	assert.Contains(t, res.Body, "blank run id")
	long := strings.Repeat("<x>", 1000)
	res = runsResponse(t, srv.URL, map[string]string{"runId": long}, nil)
	assert.Equal(t, http.StatusBadRequest, res.StatusCode)
	assert.NotContains(t, res.Body, "<x>")
	assert.Less(t, len(res.Body), 200)

	_, _, err := store.CreateRun(t.Context(), checkpoint.Run{ID: "p-1", Trigger: "portal", Batches: 1, Repositories: 1},
		[]checkpoint.Batch{{N: 1, Repositories: []string{"team-a/x"}}})
	require.NoError(t, err)
	for _, params := range []map[string]string{{"runId": "p-1"}, {"runId": "latest"}, nil} {
		res = runsResponse(t, srv.URL, params, nil)
		require.Equal(t, http.StatusOK, res.StatusCode)
		var rep struct {
			Run struct {
				ID, Status string
			}
			Repositories []struct{ Name, Status string }
		}
		require.NoError(t, json.Unmarshal([]byte(res.Body), &rep))
		assert.Equal(t, "p-1", rep.Run.ID)
		assert.Equal(t, "queued", rep.Run.Status)
		require.Len(t, rep.Repositories, 1)
		assert.Equal(t, "pending", rep.Repositories[0].Status)
	}
	res = runsResponse(t, srv.URL, map[string]string{"runId": "p-1"}, map[string]string{"format": "text"})
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, res.Headers["Content-Type"], "text/plain")
	assert.Contains(t, res.Body, "Run p-1: queued")
}

func TestHostProtocol(t *testing.T) {
	a, _ := newApp(t, checkpoint.NewMemory())
	srv := httptest.NewServer(a.HTTPHandler())
	t.Cleanup(srv.Close)
	require.NoError(t, funchost.WaitReady(t.Context(), nil, srv.URL), "GET / answers the host's probe")
	assert.ElementsMatch(t, []string{"Scheduler", "Worker", "Runs", "DeadLetters"}, keys(a.Handlers()))

	// A poison message is completed (200) and its reason logged.
	resp, status, err := funchost.Invoke(t.Context(), nil, srv.URL, app.FunctionWorker,
		funchost.ServiceBusRequest(app.BindingMessage, []byte(`{"repositories":["x"],"loginServer":"evil.io"}`), funchost.BodyDoubleString,
			funchost.ServiceBusMeta{MessageID: "m1", DeliveryCount: 1, DeliveryCountAsString: true}))
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, status)
	require.Len(t, resp.Logs, 1)
	assert.Contains(t, resp.Logs[0], "rejected")
	assert.Equal(t, map[string]any{}, resp.Outputs)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestNewValidates(t *testing.T) {
	_, err := app.New(nil, nil, app.Deps{})
	require.Error(t, err)
	for _, w := range []string{"configuration", "policy", "credential", "sender", "store"} {
		assert.Contains(t, err.Error(), w)
	}
}

func TestLoadPolicyFromTheAppRoot(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "policy.json"), []byte(testPolicy), 0o600))
	cfg := &config.Config{PolicySetting: "@policy.json"}
	pol, err := app.LoadPolicy(cfg, func(k string) string {
		return map[string]string{app.EnvScriptRoot: root}[k]
	})
	require.NoError(t, err)
	assert.Len(t, pol.Rules, 1)

	_, err = app.LoadPolicy(&config.Config{PolicySetting: "@missing.json"}, func(k string) string {
		return map[string]string{app.EnvScriptRoot: root}[k]
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), config.Policy)
	_, err = app.LoadPolicy(&config.Config{PolicySetting: `{"rules":[]}`}, func(string) string { return "" })
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), config.Policy+":"), err.Error())
}

func TestServeRejectsBadConfiguration(t *testing.T) {
	err := app.Serve(t.Context(), func(k string) string {
		return map[string]string{config.LoginServer: "contoso.azurecr.io", config.Policy: testPolicy,
			config.ServiceBusConnString: "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0"}[k]
	}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), config.HandlerPort)
	assert.Contains(t, err.Error(), config.CheckpointURI)
	assert.NotContains(t, err.Error(), "c2VjcmV0")
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// TestServe starts the handler as the host would (settings in the
// environment, Azurite for checkpoints), probes it, asks for a report and
// stops it.
func TestServe(t *testing.T) {
	connStr := azurite.Azurite(t)
	env := emutest.Start(t, emutest.Options{})
	port := freePort(t)
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "policy.json"), []byte(testPolicy), 0o600))
	settings := map[string]string{
		config.LoginServer:          env.Registry.URL(),
		config.Policy:               "@policy.json",
		app.EnvScriptRoot:           root,
		config.ServiceBusConnString: "Endpoint=sb://127.0.0.1/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0",
		config.CheckpointConnString: connStr,
		config.CheckpointTable:      azurite.TableName(t),
		config.HandlerPort:          strconv.Itoa(port),
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx, func(k string) string { return settings[k] }, nil) }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	ready := make(chan error, 1)
	go func() { ready <- funchost.WaitReady(ctx, nil, base) }()
	select {
	case err := <-done:
		t.Fatalf("Serve returned before serving: %v", err)
	case err := <-ready:
		require.NoError(t, err)
	}
	// The table is created in the background; invocations wait for it.
	require.Eventually(t, func() bool {
		_, status, err := funchost.Invoke(ctx, nil, base, app.FunctionRuns,
			funchost.HTTPTriggerRequest(app.BindingRequest, "GET", base+"/api/runs", nil, nil))
		return err == nil && status == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)
	res := runsResponse(t, base, nil, nil)
	assert.Equal(t, http.StatusNotFound, res.StatusCode, "an empty table has no run")
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "a cancelled context is a clean shutdown")
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

// TestSharedBudgetFromSettings: Serve's delete budget is the registry-wide
// one of the settings, shared through the checkpoint table.
func TestSharedBudgetFromSettings(t *testing.T) {
	tbl := azurite.NewTable(t)
	cfg, err := config.Load(func(k string) string {
		return map[string]string{config.LoginServer: "contoso.azurecr.io", config.Policy: testPolicy,
			config.DeletesPerMinute: "600", config.MaxInstances: "12"}[k]
	}, config.Requirement{})
	require.NoError(t, err)
	b, err := app.NewSharedBudget(cfg, checkpoint.TableOptions{ConnectionString: azurite.Azurite(t), Table: tbl.Name()}, nil)
	require.NoError(t, err)
	assert.Equal(t, 600, b.PerMinute())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, b.Wait(ctx))
	assert.False(t, b.Fallback(), "the budget is shared through the table")
	assert.Positive(t, b.Stats().TableOps)

	_, err = app.NewSharedBudget(cfg, checkpoint.TableOptions{ConnectionString: azurite.Azurite(t), Table: "x"}, nil)
	require.ErrorContains(t, err, config.DeletesPerMinute, "a bad table is reported with the settings it comes from")
}

// TestServeAnswersWhileStorageHangs: the Functions host gives a custom
// handler 60 s to answer GET /. With a table endpoint that accepts
// connections and never answers, Serve still answers the probe within a
// second, and invocations fail at once with a retryable error naming the
// start-up check instead of hanging.
func TestServeAnswersWhileStorageHangs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	})
	env := emutest.Start(t, emutest.Options{})
	port := freePort(t)
	hanging := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
		"AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;" +
		"TableEndpoint=http://" + ln.Addr().String() + "/devstoreaccount1;"
	settings := map[string]string{
		config.LoginServer:          env.Registry.URL(),
		config.Policy:               testPolicy,
		config.ServiceBusConnString: "Endpoint=sb://127.0.0.1/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0",
		config.CheckpointConnString: hanging,
		config.HandlerPort:          strconv.Itoa(port),
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- app.Serve(ctx, func(k string) string { return settings[k] }, nil) }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	require.NoError(t, funchost.WaitReady(wctx, nil, base))
	assert.Less(t, time.Since(start), time.Second, "GET / answered within a second")

	call := time.Now()
	resp, status, err := funchost.Invoke(wctx, nil, base, app.FunctionRuns,
		funchost.HTTPTriggerRequest(app.BindingRequest, "GET", base+"/api/runs", nil, nil))
	require.NoError(t, err)
	assert.Equal(t, http.StatusInternalServerError, status, "a retryable failure, not a hang")
	require.NotEmpty(t, resp.Logs)
	assert.Contains(t, resp.Logs[0], "starting and cannot serve yet")
	assert.Less(t, time.Since(call), time.Second)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

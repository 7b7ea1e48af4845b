// Package e2etest runs the Functions app end to end in one process, for the
// end-to-end tests (internal/testbed/e2e) and the fault-injection suite
// (internal/testbed/chaos): the ACR emulator (an ABAC registry, the identity limited
// to some prefixes), Azurite for the checkpoints, an in-memory Queue standing
// in for Service Bus, and the custom handler served over HTTP, driven with
// requests shaped exactly like the Functions host's.
//
// A Harness can replace its app instance (StartApp) while keeping the
// registry, the checkpoint store and the queue, as a restarted Worker
// process would; Hooks wrap the parts of one instance so that tests can
// record or cut its registry traffic, its checkpoint writes or its
// credential.
package e2etest

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/app"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu/emutest"
	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
	"github.com/acrpurge/acrpurge/internal/testbed/fakebus"
	"github.com/acrpurge/acrpurge/internal/testbed/hostdriver"
	"github.com/acrpurge/acrpurge/internal/worker"
)

// Day is 24 hours.
const Day = 24 * time.Hour

// Policy deletes ci-* tags older than 30 days beyond the 2 newest, then
// untagged manifests (keep 2 applies to them too), and never ci-stable.
const Policy = `{"rules":[{"name":"ci","filters":["team-.*:^ci-"],"ago":"30d","keep":2,"untagged":true}],
  "protect":["^latest$","^ci-stable$"]}`

// ABACIdentity may list the catalog and has the Repository Contributor
// role under an ABAC condition for team-a/ and team-b/ only.
func ABACIdentity() *acremu.Identity {
	return &acremu.Identity{Name: "acrpurge-mi", CatalogLister: true, Grants: []acremu.Grant{
		{RepositoryPrefix: "team-a/"}, {RepositoryPrefix: "team-b/"},
	}}
}

// FastRetry is the registry retry policy of the harness: a real one would
// make the suites slow.
var FastRetry = acr.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}

// Options tune New.
type Options struct {
	// Settings override the defaults (see New).
	Settings map[string]string
	// Identity defaults to ABACIdentity().
	Identity *acremu.Identity
	// Registry defaults to an ABAC registry.
	Registry *acremu.Options
	// Logger receives the app's logs; nil discards.
	Logger *slog.Logger
	// Retry defaults to FastRetry.
	Retry *acr.RetryPolicy
	// Now is the app's clock; default the emulator's.
	Now func() time.Time
	// Hooks wrap the parts of the first app instance.
	Hooks Hooks
}

// Hooks wrap the parts of one app instance. Nil functions leave the part
// as it is.
type Hooks struct {
	// Transport wraps the round tripper of the app's registry HTTP client
	// (token broker and data plane).
	Transport func(http.RoundTripper) http.RoundTripper
	// Store wraps the checkpoint store.
	Store func(checkpoint.Store) checkpoint.Store
	// Credential wraps the AAD credential.
	Credential func(azcore.TokenCredential) azcore.TokenCredential
}

// Harness is one app instance with its registry, store and queue.
type Harness struct {
	T     testing.TB
	Env   *emutest.Env
	Reg   *acremu.Registry
	Store checkpoint.Store
	Queue *fakebus.Queue
	// Driver stands in for the Functions host in front of the current app
	// instance.
	Driver *hostdriver.Driver
	Config *config.Config
	Policy *policy.Policy
	// RedeliveryDelay is waited before a failed message is delivered again
	// (Service Bus waits for the lock to expire); default none.
	RedeliveryDelay time.Duration
	// MaxDrainDeliveries bounds the deliveries of one Drain; default 2000.
	MaxDrainDeliveries int

	opts     Options
	inflight sync.WaitGroup

	mu        sync.Mutex
	base      string
	srv       *httptest.Server
	seq       int64
	delivered map[string]int
	invoked   map[*fakebus.Message]bool
	logs      []string
}

// New starts an emulator, an Azurite table and an app instance. The
// settings default to: the emulator as ACR_LOGIN_SERVER, Policy, batches
// of 10, 4 deletes in flight, 3 deliveries, a 30 s message deadline,
// a 10 min push debounce and an unlimited delete budget.
func New(t testing.TB, o Options) *Harness {
	t.Helper()
	if o.Identity == nil {
		o.Identity = ABACIdentity()
	}
	regOpts := acremu.Options{ABAC: true}
	if o.Registry != nil {
		regOpts = *o.Registry
	}
	if o.Retry == nil {
		o.Retry = &FastRetry
	}
	env := emutest.Start(t, emutest.Options{Registry: regOpts, Identity: o.Identity})
	settings := map[string]string{
		config.LoginServer:     env.Registry.URL(),
		config.Policy:          Policy,
		config.BatchSize:       "10",
		config.Concurrency:     "4",
		config.MaxDeliveries:   "3",
		config.MessageDeadline: "30s",
		config.PushDebounce:    "10m",
		// The delete budget of a real registry would make the suite slow.
		config.DeletesPerMinute: "100000",
	}
	for k, v := range o.Settings {
		settings[k] = v
	}
	cfg, err := config.Load(func(k string) string { return settings[k] }, config.Requirement{})
	require.NoError(t, err)
	pol, err := app.LoadPolicy(cfg, func(string) string { return "" })
	require.NoError(t, err)
	if o.Now == nil {
		o.Now = env.Registry.Now
	}
	h := &Harness{
		T: t, Env: env, Reg: env.Registry, Store: azurite.NewTable(t),
		Queue:  fakebus.New(fakebus.Options{Now: o.Now, MaxDeliveries: cfg.MaxDeliveries}),
		Config: cfg, Policy: pol, opts: o, delivered: map[string]int{}, invoked: map[*fakebus.Message]bool{},
	}
	h.Driver = &hostdriver.Driver{Base: h.Base, Queue: h.Queue, Now: o.Now, StrictAnswers: true, OnInvocation: h.observe, DeadLetters: true}
	h.StartApp(o.Hooks)
	return h
}

// StartApp replaces the app instance, as a new Worker process would: a
// fresh broker, limiter and client, on the same registry, store and queue.
// The previous instance's server is closed first (its client connections
// cut, which cancels its invocations, and then waited for).
func (h *Harness) StartApp(hooks Hooks) {
	h.T.Helper()
	h.StopApp()
	httpClient := acr.NewHTTPClient()
	if hooks.Transport != nil {
		httpClient.Transport = hooks.Transport(httpClient.Transport)
	}
	var store checkpoint.Store = h.Store
	if hooks.Store != nil {
		store = hooks.Store(store)
	}
	var cred azcore.TokenCredential = h.Env.Cred
	if hooks.Credential != nil {
		cred = hooks.Credential(cred)
	}
	a, err := app.New(h.Config, h.Policy, app.Deps{
		Credential: cred, Sender: h.Queue, Store: store, Now: h.opts.Now, Logger: h.opts.Logger,
		HTTPClient: httpClient, Retry: *h.opts.Retry,
	})
	require.NoError(h.T, err)
	handler := a.HTTPHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.inflight.Add(1)
		defer h.inflight.Done()
		handler.ServeHTTP(w, r)
	}))
	h.T.Cleanup(srv.Close)
	h.mu.Lock()
	h.srv, h.base = srv, srv.URL
	h.mu.Unlock()
	require.NoError(h.T, funchost.WaitReady(h.T.Context(), nil, srv.URL))
}

// StopApp closes the current app instance's server, if any: its client
// connections are cut and its invocations waited for.
func (h *Harness) StopApp() {
	h.mu.Lock()
	srv := h.srv
	h.srv, h.base = nil, ""
	h.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

// Base is the URL of the current app instance.
func (h *Harness) Base() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.base
}

// Wait waits for the invocations in flight to return.
func (h *Harness) Wait() { h.inflight.Wait() }

// Settle waits for the registry requests an abandoned invocation (killed or
// cancelled) left in flight: Service Bus delivers a message again only after
// its lock expires, long after those have been answered or dropped.
func (h *Harness) Settle() {
	h.T.Helper()
	require.NoError(h.T, h.Reg.WaitIdle(h.T.Context(), 20*time.Millisecond))
}

// FireTimer invokes the Scheduler once, as the host does at at.
func (h *Harness) FireTimer(at time.Time, pastDue bool) (*funchost.Response, int) {
	h.T.Helper()
	v := h.Driver.Timer(h.T.Context(), at, pastDue)
	require.NoError(h.T, v.Err)
	return v.Response, v.Status
}

// keepLogs records the Logs of an invocation's answer.
func (h *Harness) keepLogs(resp *funchost.Response) {
	if resp == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs = append(h.logs, resp.Logs...)
}

// InvocationLogs are the Logs lines of every Scheduler and Worker answer
// so far (what the host would write to Application Insights).
func (h *Harness) InvocationLogs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.logs...)
}

// observe counts the driver's Worker invocations and keeps their logs.
func (h *Harness) observe(v hostdriver.Invocation) {
	h.keepLogs(v.Response)
	if v.Function != worker.Name {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.delivered[v.MessageID]++
	h.seq++
}

// Receive takes the first queued message (its first delivery counted) for
// a test to deliver by hand, or returns nil when none is queued. The
// message leaves the queue; Requeue puts it back.
func (h *Harness) Receive() *fakebus.Message {
	m, _, _ := h.Queue.Receive()
	if m != nil {
		h.Queue.Complete(m)
	}
	return m
}

// Deliver invokes the Worker once for a received message m, as the host
// does, without settling it: the body in encoding enc, DeliveryCount as a
// string. Delivering the same message again (its lock lost, a killed
// instance) counts one more delivery.
func (h *Harness) Deliver(ctx context.Context, m *fakebus.Message, enc funchost.Encoding) (*funchost.Response, int, error) {
	h.mu.Lock()
	if h.invoked[m] {
		m.DeliveryCount++
	}
	h.invoked[m] = true
	this := *m
	h.mu.Unlock()
	v := h.Driver.Invoke(ctx, &this, &enc)
	h.observe(v)
	return v.Response, v.Status, v.Err
}

// Requeue puts a message received and delivered by hand back in the queue,
// unsettled, in its sequence position: a later Drain delivers it again.
func (h *Harness) Requeue(m *fakebus.Message) {
	h.mu.Lock()
	delete(h.invoked, m)
	h.mu.Unlock()
	h.Queue.Requeue(m) // Receive counts the next delivery
}

// Delivered is how often the message with this ID was delivered.
func (h *Harness) Delivered(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.delivered[id]
}

// Deliveries is the number of Worker invocations so far.
func (h *Harness) Deliveries() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return int(h.seq)
}

// DeadLetters are the messages that exhausted their deliveries.
func (h *Harness) DeadLetters() []fakebus.DeadLetter { return h.Queue.DeadLetters() }

// Drain delivers every queued message, one at a time, until the queue is
// empty: a non-2xx answer makes the message be delivered again (in its
// sequence position, so first in line) with DeliveryCount+1, up to
// PURGE_MAX_DELIVERIES, after which it is dead-lettered.
func (h *Harness) Drain(enc funchost.Encoding) {
	h.T.Helper()
	h.DrainParallel(enc, 1)
}

// DrainParallel is Drain with up to n messages delivered at once, as the
// host does with several concurrent calls. It fails the test if a delivery
// gets no HTTP answer or the queue does not drain within
// MaxDrainDeliveries.
func (h *Harness) DrainParallel(enc funchost.Encoding, n int) {
	h.T.Helper()
	limit := h.MaxDrainDeliveries
	if limit <= 0 {
		limit = 2000
	}
	d := h.Driver
	d.Encoding, d.MaxCalls, d.MaxInvocations, d.Backoff = &enc, n, limit, h.RedeliveryDelay
	require.NoError(h.T, d.Drain(h.T.Context()))
	require.Zero(h.T, h.Queue.Len(), "the queue never drained")
}

// RunReport asks the Runs function for a run's report ("" = latest).
func (h *Harness) RunReport(runID string) (*runs.Report, int) {
	h.T.Helper()
	body, code := h.RunReportRaw(runID, false)
	if code != http.StatusOK {
		return nil, code
	}
	var r runs.Report
	require.NoError(h.T, json.Unmarshal([]byte(body), &r))
	return &r, code
}

// RunReportRaw returns the Runs function's answer for a run ("" = latest)
// as sent: JSON, or the plain text rendering when text is set.
func (h *Harness) RunReportRaw(runID string, text bool) (string, int) {
	h.T.Helper()
	query := map[string]string{}
	if text {
		query["format"] = "text"
	}
	res, err := h.Driver.Run(h.T.Context(), runID, query)
	require.NoError(h.T, err)
	return res.Body, res.StatusCode
}

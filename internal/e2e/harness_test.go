// Package e2e_test runs the Functions app end to end in one process: the
// ACR emulator (ABAC registry, identity limited to some prefixes), Azurite
// for the checkpoints, an in-memory queue standing in for Service Bus, and
// the custom handler served over HTTP, driven with requests shaped exactly
// like the Functions host's.
package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/acremu"
	"github.com/acrpurge/acrpurge/internal/acremu/emutest"
	"github.com/acrpurge/acrpurge/internal/app"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/checkpoint/checkpointtest"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/fanout/fanouttest"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/report"
)

const day = 24 * time.Hour

// e2ePolicy deletes ci-* tags older than 30 days beyond the 2 newest, then
// untagged manifests (keep 2 applies to them too), and never ci-stable.
const e2ePolicy = `{"rules":[{"name":"ci","filters":["team-.*:^ci-"],"ago":"30d","keep":2,"untagged":true}],
  "protect":["^latest$","^ci-stable$"]}`

// message is one message in the in-memory queue.
type message struct {
	ID         string
	Body       []byte
	EnqueuedAt time.Time
	// Deliveries so far (Service Bus DeliveryCount of the next delivery - 1).
	Deliveries int
}

// memQueue stands in for the Service Bus queue: its Sender (the app's)
// drops repeated MessageIDs like duplicate detection and captures what was
// sent, which joins the queue for the driver to deliver.
type memQueue struct {
	*fanouttest.Sender
	mu      sync.Mutex
	pending []*message
}

// collect moves what the app sent to the end of the queue. Caller holds mu.
func (q *memQueue) collect() {
	for _, o := range q.Take() {
		q.pending = append(q.pending, &message{ID: o.ID, Body: o.Body, EnqueuedAt: time.Now()})
	}
}

// put enqueues a message sent by someone else (the portal, Event Grid).
func (q *memQueue) put(id string, body []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.collect()
	q.pending = append(q.pending, &message{ID: id, Body: body, EnqueuedAt: time.Now()})
}

func (q *memQueue) pop() *message {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.collect()
	if len(q.pending) == 0 {
		return nil
	}
	m := q.pending[0]
	q.pending = q.pending[1:]
	return m
}

func (q *memQueue) pushFront(m *message) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.collect()
	q.pending = append([]*message{m}, q.pending...)
}

func (q *memQueue) ids() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.collect()
	out := make([]string, len(q.pending))
	for i, m := range q.pending {
		out[i] = m.ID
	}
	return out
}

// harness is one app instance with its registry, store and queue.
type harness struct {
	t        *testing.T
	env      *emutest.Env
	reg      *acremu.Registry
	store    checkpoint.Store
	queue    *memQueue
	base     string
	inflight sync.WaitGroup
	maxDeliv int

	// delivered counts deliveries per MessageID; deadLetters lists
	// messages that exhausted their deliveries.
	delivered   map[string]int
	deadLetters []*message
}

type harnessOpts struct {
	settings map[string]string // overrides
	identity *acremu.Identity
}

// abacIdentity may list the catalog and has the Repository Contributor
// role under an ABAC condition for team-a/ and team-b/ only.
func abacIdentity() *acremu.Identity {
	return &acremu.Identity{Name: "acrpurge-mi", CatalogLister: true, Grants: []acremu.Grant{
		{RepositoryPrefix: "team-a/"}, {RepositoryPrefix: "team-b/"},
	}}
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	if o.identity == nil {
		o.identity = abacIdentity()
	}
	env := emutest.Start(t, emutest.Options{Registry: acremu.Options{ABAC: true}, Identity: o.identity})
	settings := map[string]string{
		config.LoginServer:     env.Registry.URL(),
		config.Policy:          e2ePolicy,
		config.BatchSize:       "10",
		config.Concurrency:     "4",
		config.MaxDeliveries:   "3",
		config.MessageDeadline: "30s",
		config.PushDebounce:    "10m",
		// The delete budget of a real registry would make the suite slow.
		config.DeletesPerMinute: "100000",
	}
	for k, v := range o.settings {
		settings[k] = v
	}
	cfg, err := config.Load(func(k string) string { return settings[k] }, config.Requirement{})
	require.NoError(t, err)
	pol, err := app.LoadPolicy(cfg, func(string) string { return "" })
	require.NoError(t, err)
	h := &harness{
		t: t, env: env, reg: env.Registry, store: checkpointtest.NewTable(t),
		queue: &memQueue{Sender: fanouttest.NewSender()}, maxDeliv: cfg.MaxDeliveries, delivered: map[string]int{},
	}
	a, err := app.New(cfg, pol, app.Deps{
		Credential: env.Cred, Sender: h.queue, Store: h.store, Now: env.Registry.Now,
		Retry: acr.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond},
	})
	require.NoError(t, err)
	handler := a.HTTPHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.inflight.Add(1)
		defer h.inflight.Done()
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	h.base = srv.URL
	require.NoError(t, funchost.WaitReady(t.Context(), nil, h.base))
	return h
}

// fireTimer invokes the Scheduler as the host does at at.
func (h *harness) fireTimer(at time.Time, pastDue bool) (*funchost.Response, int) {
	h.t.Helper()
	req := funchost.TimerRequest(app.BindingTimer, at, pastDue, nil)
	req.Metadata["sys"] = mustJSON(h.t, map[string]string{
		"MethodName": app.FunctionScheduler, "UtcNow": at.UTC().Format(time.RFC3339Nano), "RandGuid": "5f0b1c1e-0000-4000-8000-000000000001",
	})
	resp, status, err := funchost.Invoke(h.t.Context(), nil, h.base, app.FunctionScheduler, req)
	require.NoError(h.t, err)
	return resp, status
}

// deliver invokes the Worker once for m, as the host does: the body as a
// string JSON-encoded twice, DeliveryCount as a string.
func (h *harness) deliver(ctx context.Context, m *message, enc funchost.Encoding) (*funchost.Response, int, error) {
	m.Deliveries++
	h.delivered[m.ID]++
	req := funchost.ServiceBusRequest(app.BindingMessage, m.Body, enc, funchost.ServiceBusMeta{
		MessageID: m.ID, DeliveryCount: m.Deliveries, EnqueuedTime: m.EnqueuedAt,
		SequenceNumber: int64(len(h.delivered)), DeliveryCountAsString: true,
	})
	return funchost.Invoke(ctx, nil, h.base, app.FunctionWorker, req)
}

// drain delivers every queued message until the queue is empty: a non-2xx
// answer makes the message be delivered again with DeliveryCount+1, up to
// MaxDeliveries, after which it is dead-lettered.
func (h *harness) drain(enc funchost.Encoding) {
	h.t.Helper()
	for range 1000 {
		m := h.queue.pop()
		if m == nil {
			return
		}
		_, status, err := h.deliver(h.t.Context(), m, enc)
		require.NoError(h.t, err)
		if status >= 200 && status < 300 {
			continue
		}
		if m.Deliveries >= h.maxDeliv {
			h.deadLetters = append(h.deadLetters, m)
			continue
		}
		h.queue.pushFront(m)
	}
	h.t.Fatal("the queue never drained")
}

// runReport asks the Runs function for a run's report ("" = latest).
func (h *harness) runReport(runID string) (*report.Report, int) {
	h.t.Helper()
	params := map[string]string{}
	if runID != "" {
		params["runId"] = runID
	}
	resp, status, err := funchost.Invoke(h.t.Context(), nil, h.base, app.FunctionRuns,
		funchost.HTTPTriggerRequest(app.BindingRequest, "GET", h.base+"/api/runs/"+runID, params, nil))
	require.NoError(h.t, err)
	require.Equal(h.t, http.StatusOK, status)
	var res funchost.HTTPResponse
	require.NoError(h.t, json.Unmarshal(mustJSON(h.t, resp.Outputs[app.BindingResponse]), &res))
	if res.StatusCode != http.StatusOK {
		return nil, res.StatusCode
	}
	var r report.Report
	require.NoError(h.t, json.Unmarshal([]byte(res.Body), &r))
	return &r, res.StatusCode
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// ciRepo is a seeded repository and what the policy must leave of it.
type ciRepo struct {
	name string
	// keepTags and keepManifests survive; goneTags and goneManifests are
	// deleted (by the policy: see seedCI).
	keepTags, goneTags           []string
	keepManifests, goneManifests []string
}

// seedCI fills a repository with n old ci-N tags (ci-1 newest, one image
// each), a fresh ci tag, an old protected ci-stable, an old latest (not
// matched by the filter) and two old untagged leftovers. The policy keeps
// ci-1 and ci-2 (keep 2), ci-fresh (too new), ci-stable (protected) and
// latest (no match); it deletes ci-3..ci-n, then the untagged manifests
// except the 2 newest (the images of ci-3 and ci-4).
func seedCI(reg *acremu.Registry, name string, n int) ciRepo {
	now := reg.Now()
	r := ciRepo{name: name}
	put := func(tag string, age time.Duration) string {
		var tags []string
		if tag != "" {
			tags = []string{tag}
		}
		return reg.Put(name, acremu.Artifact{Tags: tags, Created: now.Add(-age), Seed: name + "/" + tag + fmt.Sprint(age)})
	}
	for i := 1; i <= n; i++ {
		tag := fmt.Sprintf("ci-%d", i)
		d := put(tag, 40*day+time.Duration(i)*time.Hour)
		switch {
		case i <= 2:
			r.keepTags, r.keepManifests = append(r.keepTags, tag), append(r.keepManifests, d)
		case i <= 4:
			r.goneTags, r.keepManifests = append(r.goneTags, tag), append(r.keepManifests, d)
		default:
			r.goneTags, r.goneManifests = append(r.goneTags, tag), append(r.goneManifests, d)
		}
	}
	for _, k := range []struct {
		tag string
		age time.Duration
	}{{"ci-fresh", time.Hour}, {"ci-stable", 200 * day}, {"latest", 300 * day}} {
		r.keepTags, r.keepManifests = append(r.keepTags, k.tag), append(r.keepManifests, put(k.tag, k.age))
	}
	for i := range 2 {
		r.goneManifests = append(r.goneManifests, put("", 60*day+time.Duration(i)*time.Minute))
	}
	return r
}

// assertPurged checks the registry holds exactly what the policy keeps.
func (h *harness) assertPurged(r ciRepo) {
	h.t.Helper()
	var tags []string
	for _, tg := range h.reg.Tags(r.name) {
		tags = append(tags, tg.Name)
	}
	require.ElementsMatch(h.t, r.keepTags, tags, "%s: tags", r.name)
	for _, d := range r.keepManifests {
		require.True(h.t, h.reg.HasManifest(r.name, d), "%s: kept manifest %s is gone", r.name, d)
	}
	for _, d := range r.goneManifests {
		require.False(h.t, h.reg.HasManifest(r.name, d), "%s: manifest %s should be deleted", r.name, d)
	}
}

// assertUntouched checks nothing of the repository was deleted.
func (h *harness) assertUntouched(r ciRepo) {
	h.t.Helper()
	require.Len(h.t, h.reg.Tags(r.name), len(r.keepTags)+len(r.goneTags), "%s: tags", r.name)
	require.Len(h.t, h.reg.Manifests(r.name), len(r.keepManifests)+len(r.goneManifests), "%s: manifests", r.name)
	for _, d := range h.reg.Deletes() {
		require.NotEqual(h.t, r.name, d.Repo, "nothing may be deleted in %s", r.name)
	}
}

// assertDeletesSafe checks that nothing was deleted twice, no delete found
// its item already gone, and nothing the policy keeps was deleted.
func (h *harness) assertDeletesSafe(repos ...ciRepo) {
	h.t.Helper()
	keep := map[string]bool{}
	for _, r := range repos {
		for _, x := range append(slices.Clone(r.keepTags), r.keepManifests...) {
			keep[r.name+"@"+x] = true
		}
	}
	seen := map[string]bool{}
	for _, d := range h.reg.Deletes() {
		k := d.Repo + "@" + d.Ref
		require.False(h.t, seen[k+"#"+d.Kind], "deleted twice: %s", k)
		seen[k+"#"+d.Kind] = true
		require.False(h.t, keep[k], "deleted something the policy keeps: %s (%s)", k, d.Kind)
	}
	require.Zero(h.t, h.reg.Stats().DeleteNotFound, "a delete found its item already gone: work was redone")
}

// expectedTotals are the report totals the policy implies for repos.
func expectedDeleted(repos ...ciRepo) (tags, manifests int64) {
	for _, r := range repos {
		tags += int64(len(r.goneTags))
		manifests += int64(len(r.goneManifests))
	}
	return
}

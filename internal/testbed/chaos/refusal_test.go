package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/app"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
	"github.com/acrpurge/acrpurge/internal/testbed/e2e/e2etest"
)

// evilServer is another "registry" that counts every request it gets.
func evilServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"refresh_token":"x","access_token":"x","repositories":["team-a/svc-00"]}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// countingTransport counts the requests the app sends to the registry.
func countingTransport(n *atomic.Int64) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			n.Add(1)
			return next.RoundTrip(r)
		})
	}
}

// TestMessageNamingAnotherRegistryIsRefused: a portal or own message with
// a field naming another registry, login server, host, endpoint or URL is
// rejected: recorded with its reason and completed on its first delivery,
// without contacting anything (neither the other server nor the configured
// registry, not even for a token). A repository name that merely looks
// like a registry-qualified reference names a repository of the
// configured registry: outside the policy, it is skipped.
func TestMessageNamingAnotherRegistryIsRefused(t *testing.T) {
	evil, evilHits := evilServer(t)
	evilHost := strings.TrimPrefix(evil.URL, "http://")
	var sent atomic.Int64
	w := newWorld(t, worldOpts{hooks: e2etest.Hooks{Transport: countingTransport(&sent)}})
	w.populate(rand.New(rand.NewPCG(3, 3)), params{teamA: 1, tags: func(*rand.Rand) int { return 6 }})
	own := func(extra string) string {
		return `{"version":1,"runId":"s-20250304T020000Z","batch":1,"batches":1,"trigger":"schedule","repositories":["team-a/svc-00"],` + extra + `}`
	}
	rejected := []struct {
		id, body, reason string
	}{
		{"registry", `{"repositories":["team-a/svc-00"],"registry":"` + evilHost + `"}`, `field "registry" is not allowed`},
		{"loginServer", `{"repository":"team-a/svc-00","loginServer":"` + evil.URL + `"}`, `field "loginServer" is not allowed`},
		{"login_server dry run", `{"repository":"team-a/svc-00","dryRun":true,"login_server":"` + evilHost + `"}`, `field "login_server" is not allowed`},
		{"ACR_LOGIN_SERVER", `{"repositories":["team-a/svc-00"],"ACR_LOGIN_SERVER":"` + evil.URL + `"}`, `field "ACR_LOGIN_SERVER" is not allowed`},
		{"endpoint", `{"repositories":["team-a/svc-00"],"endpoint":"` + evil.URL + `"}`, `field "endpoint" is not allowed`},
		{"url", `{"repositories":["team-a/svc-00"],"url":"` + evil.URL + `/acr/v1/_catalog"}`, `field "url" is not allowed`},
		{"host", `{"repositories":["team-a/svc-00"],"host":"` + evilHost + `"}`, `field "host" is not allowed`},
		{"realm", `{"repositories":["team-a/svc-00"],"realm":"` + evil.URL + `/oauth2/token"}`, `field "realm" is not allowed`},
		{"nested", `{"repositories":["team-a/svc-00"],"options":{"registry":"` + evilHost + `"}}`, `unknown field "options"`},
		{"own registry", own(`"registry":"` + evilHost + `"`), `field "registry" is not allowed`},
		{"own registryUrl", own(`"registryUrl":"` + evil.URL + `"`), `field "registryUrl" is not allowed`},
		{"repository as a URL", `{"repository":"` + evil.URL + `/team-a/svc-00"}`, "repository"},
		{"repository with a port", `{"repository":"` + evilHost + `/team-a/svc-00"}`, "repository"},
	}
	for _, m := range rejected {
		require.True(t, json.Valid([]byte(m.body)), "%s: refused for what it says, not for its syntax", m.id)
		w.h.Queue.Put(m.id, []byte(m.body))
	}
	w.h.Queue.Put("qualified", []byte(`{"repository":"evil.example.com/team-a/svc-00"}`))
	w.h.Drain(funchost.BodyDoubleString)

	assert.Zero(t, evilHits.Load(), "the other server was contacted")
	assert.Zero(t, sent.Load(), "the app sent requests to the registry")
	assert.Zero(t, total(w.h.Reg.Stats().Requests), "the registry was contacted")
	assert.Empty(t, w.h.Reg.Deletes())
	rejs, err := w.h.Store.ListRejections(t.Context(), 100)
	require.NoError(t, err)
	reasons := map[string]string{}
	for _, r := range rejs {
		reasons[r.MessageID] = r.Reason
	}
	for _, m := range rejected {
		assert.Equal(t, 1, w.h.Delivered(m.id), "%s: completed on its first delivery", m.id)
		assert.Contains(t, reasons[m.id], m.reason, "%s: recorded with its reason", m.id)
	}
	assert.Len(t, rejs, len(rejected))
	runs, err := w.h.Store.LatestRuns(t.Context(), 10)
	require.NoError(t, err)
	require.Len(t, runs, 1, "only the registry-qualified name made a run")
	rows, err := w.h.Store.ListRepos(t.Context(), runs[0].ID)
	require.NoError(t, err)
	require.Len(t, rows, 1)
	assert.Equal(t, checkpoint.StatusSkipped, rows[0].Status)
	assert.Contains(t, rows[0].Reason, "not in policy")
	w.check(checks{noRedo: true})
}

// TestEventFromAnotherRegistryIsIgnored: an ImagePushed event whose
// data.request.host is not the configured registry (another name, another
// port, the other server itself) is completed as ignored; nothing is
// purged and nothing is contacted. The same event from the configured
// registry purges the repository.
func TestEventFromAnotherRegistryIsIgnored(t *testing.T) {
	evil, evilHits := evilServer(t)
	evilHost := strings.TrimPrefix(evil.URL, "http://")
	var sent atomic.Int64
	w := newWorld(t, worldOpts{hooks: e2etest.Hooks{Transport: countingTransport(&sent)}})
	w.populate(rand.New(rand.NewPCG(4, 4)), params{teamA: 1, tags: func(*rand.Rand) int { return 6 }})
	own := w.h.Env.Endpoint.Service
	_, port, err := net.SplitHostPort(own)
	require.NoError(t, err)
	others := []string{
		"contoso.azurecr.io", evilHost, "127.0.0.1:1", "localhost:" + port, "127.0.0.1:" + port + ".evil.example.com",
		own + "@evil.example.com", " " + own,
	}
	for i, host := range others {
		for _, schema := range []string{queue.SchemaEventGrid, queue.SchemaCloudEvents} {
			id := fmt.Sprintf("other-%d-%s", i, schema)
			w.h.Queue.Put(id, e2etest.EventBody(t, schema, fmt.Sprintf("7e57%04d-%s", i, schema), "team-a/svc-00", host))
		}
	}
	w.h.Drain(funchost.BodyString)
	assert.Zero(t, evilHits.Load())
	assert.Zero(t, sent.Load())
	assert.Zero(t, total(w.h.Reg.Stats().Requests))
	assert.Empty(t, w.h.Reg.Deletes())
	runs, err := w.h.Store.LatestRuns(t.Context(), 10)
	require.NoError(t, err)
	assert.Empty(t, runs, "an ignored event makes no run")
	rejs, err := w.h.Store.ListRejections(t.Context(), 100)
	require.NoError(t, err)
	for _, r := range rejs {
		t.Logf("rejected rather than ignored: %s: %s", r.MessageID, r.Reason) // refused either way
	}
	assert.Equal(t, 2*len(others), w.h.Deliveries(), "each event completed on its first delivery")

	w.h.Queue.Put("ours", e2etest.EventBody(t, queue.SchemaEventGrid, "7e57ffff", "team-a/svc-00", own))
	w.h.Drain(funchost.BodyString)
	assert.Zero(t, evilHits.Load())
	assert.NotEmpty(t, w.h.Reg.Deletes(), "the event from the configured registry purges")
	w.check(checks{complete: true, noRedo: true})
}

// TestLoginServerIsRefusedAtStartUp: ACR_LOGIN_SERVER may be plain http
// only for a loopback address; anything else stops start-up with a message
// naming the setting, before anything is contacted.
func TestLoginServerIsRefusedAtStartUp(t *testing.T) {
	refused := []string{
		"http://10.0.0.5:5000", "http://example.com", "http://example.com:80", "http://contoso.azurecr.io",
		"http://192.168.1.10", "http://[2001:db8::1]:5000", "http://127.0.0.1.nip.io:5000", "http://localhost.example.com",
		"ftp://127.0.0.1", "https://contoso.azurecr.io/v2/", "https://user:secret-password@contoso.azurecr.io",
	}
	// A server on a non-loopback address of this machine, if it has one:
	// named over plain http it must be refused without being contacted.
	var lanHits atomic.Int64
	if ip := nonLoopbackIP(); ip != nil {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		if err == nil {
			srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { lanHits.Add(1) }), ReadHeaderTimeout: time.Second}
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(func() { _ = srv.Close() })
			refused = append(refused, "http://"+ln.Addr().String())
		}
	}
	base := map[string]string{
		config.Policy:               `{"rules":[{"filters":["team-.*:^ci-"],"ago":"30d"}]}`,
		config.ServiceBusConnString: "Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0LWtleQ==",
		config.CheckpointConnString: azurite.ConnString("http://127.0.0.1:1/devstoreaccount1"),
		config.HandlerPort:          "1",
	}
	for _, v := range refused {
		t.Run(v, func(t *testing.T) {
			env := func(k string) string {
				if k == config.LoginServer {
					return v
				}
				return base[k]
			}
			_, err := config.Load(env, config.Requirement{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), config.LoginServer)
			assert.NotContains(t, err.Error(), "secret-password")

			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err = app.Serve(ctx, env, nil)
			require.Error(t, err, "start-up must fail")
			assert.Contains(t, err.Error(), config.LoginServer)
			assert.NotContains(t, err.Error(), "secret-password")
		})
	}
	assert.Zero(t, lanHits.Load(), "the refused server was contacted")

	for _, v := range []string{"http://127.0.0.1:5000", "http://127.0.0.2:8080", "http://localhost:5000", "http://[::1]:5000",
		"contoso.azurecr.io", "https://contoso.azurecr.io", "https://Contoso.AzureCR.io/"} {
		t.Run("allowed "+v, func(t *testing.T) {
			cfg, err := config.Load(func(k string) string {
				if k == config.LoginServer {
					return v
				}
				return base[k]
			}, config.Requirement{})
			require.NoError(t, err)
			assert.NotEmpty(t, cfg.Registry.Service)
		})
	}
}

// nonLoopbackIP returns an IPv4 address of this machine that is not a
// loopback address, or nil.
func nonLoopbackIP() net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP
		}
	}
	return nil
}

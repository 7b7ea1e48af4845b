package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/e2e/e2etest"
)

// lockedBuffer is an io.Writer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tokenRecorder collects every credential that crosses the wire: AAD
// tokens handed out by the credential, and whatever the app's HTTP client
// sends or receives as a bearer token, an access_token or a refresh_token.
type tokenRecorder struct {
	mu     sync.Mutex
	tokens map[string]string // value -> kind
	// bogus: the first AAD token is one the registry does not know, so
	// the failure paths of the exchange are logged too.
	bogus bool
}

func newTokenRecorder() *tokenRecorder { return &tokenRecorder{tokens: map[string]string{}} }

func (r *tokenRecorder) add(kind, v string) {
	if v == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.tokens[v]; !ok { // keep the first kind: an access token is later a bearer token
		r.tokens[v] = kind
	}
}

// secrets returns the recorded tokens, and for every JWT also its
// signature segment, each with its kind.
func (r *tokenRecorder) secrets() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for v, kind := range r.tokens {
		out[v] = kind
		if parts := strings.Split(v, "."); len(parts) == 3 && len(parts[2]) >= 16 {
			out[parts[2]] = kind + " signature"
		}
	}
	return out
}

func (r *tokenRecorder) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, k := range r.tokens {
		if k == kind {
			n++
		}
	}
	return n
}

// credential wraps the AAD credential.
func (r *tokenRecorder) credential(c azcore.TokenCredential) azcore.TokenCredential {
	return credentialFunc(func(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
		r.mu.Lock()
		bogus := !r.bogus
		r.bogus = true
		r.mu.Unlock()
		if bogus {
			v := fmt.Sprintf("bogus-aad-%016x%016x", rand.Uint64(), rand.Uint64())
			r.add("aad", v)
			return azcore.AccessToken{Token: v, ExpiresOn: time.Now().Add(time.Hour)}, nil
		}
		at, err := c.GetToken(ctx, o)
		r.add("aad", at.Token)
		return at, err
	})
}

type credentialFunc func(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error)

func (f credentialFunc) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return f(ctx, o)
}

// transport wraps the app's registry transport.
func (r *tokenRecorder) transport(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if v, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
			r.add("bearer", v)
		}
		if req.Body != nil {
			body, err := io.ReadAll(req.Body)
			if err != nil {
				return nil, err
			}
			_ = req.Body.Close()
			req.Body = io.NopCloser(bytes.NewReader(body))
			if form, err := url.ParseQuery(string(body)); err == nil {
				r.add("aad", form.Get("access_token"))
				r.add("refresh", form.Get("refresh_token"))
			}
		}
		resp, err := next.RoundTrip(req)
		if err != nil || resp.Body == nil {
			return resp, err
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil {
			return resp, nil // the client sees the short body and fails as it would
		}
		var tok struct {
			Refresh string `json:"refresh_token"`
			Access  string `json:"access_token"`
		}
		if json.Unmarshal(body, &tok) == nil {
			r.add("refresh", tok.Refresh)
			r.add("access", tok.Access)
		}
		return resp, nil
	})
}

// leaks returns a description of every secret found in text.
func leaks(secrets map[string]string, where, text string) []string {
	var out []string
	for v, kind := range secrets {
		if strings.Contains(text, v) {
			out = append(out, fmt.Sprintf("%s: a %s (%d bytes)", where, kind, len(v)))
		}
	}
	return out
}

// TestNoTokenInLogs runs a full scheduled run, worker deliveries, a push
// event and the failure paths (an AAD token the registry refuses, 5xx
// answers, dropped connections, tokens expiring at the registry, a
// forbidden repository, a rejected message) with every logger (app, token
// broker and registry client, worker, custom-handler server, and the
// emulator) writing into one buffer at debug level, records every AAD,
// refresh and access token that crossed the wire, and finds none of them,
// nor any JWT signature, in the logs, the invocation logs, the Runs
// reports, the checkpoints or the messages sent.
func TestNoTokenInLogs(t *testing.T) {
	var logs lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec := newTokenRecorder()
	var w *world
	var at []int64
	w = newWorld(t, worldOpts{
		logger:   logger,
		settings: map[string]string{config.PushDebounce: "0s"},
		registry: &acremu.Options{ABAC: true, Logger: logger},
		now:      time.Now, // the registry's clock jumps alone: expired tokens are refused with 401
		retry:    &acr.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond},
		hooks: e2etest.Hooks{
			Transport:  chain(rec.transport, advanceAt(func() *acremu.Registry { return w.h.Reg }, 76*time.Minute, &at)),
			Credential: rec.credential,
		},
	})
	rng := rand.New(rand.NewPCG(7, 7))
	w.populate(rng, params{teamA: 2, teamB: 1, teamC: 1, teamD: 1, tags: func(*rand.Rand) int { return 8 }})
	at = []int64{10}
	w.h.Reg.SetFaults(acremu.Faults{ErrorRate: 0.05, DropRate: 0.02, LostResponseRate: 0.05, Seed: 3})

	_, status := w.h.FireTimer(nightly, false)
	require.NotEqual(t, http.StatusOK, status, "the registry refuses the first AAD token")
	_, status = w.h.FireTimer(nightly.Add(time.Minute), false)
	require.Equal(t, http.StatusOK, status)
	w.h.Queue.Put("poison", []byte(`{"repositories":["team-a/svc-00"],"loginServer":"evil.example.com"}`))
	w.h.Queue.Put("push", e2etest.EventBody(t, queue.SchemaCloudEvents, "5a1e0000-0001", "team-b/svc-00", w.h.Env.Endpoint.Service))
	w.h.Drain(funchost.BodyDoubleString)
	w.check(checks{complete: true})

	require.Positive(t, rec.count("aad"), "AAD tokens recorded")
	require.Positive(t, rec.count("refresh"), "refresh tokens recorded")
	require.GreaterOrEqual(t, rec.count("access"), 3, "access tokens recorded (catalog, batch, renewals)")
	require.Positive(t, w.h.Reg.Stats().Unauthorized, "an expired token was refused")
	secrets := rec.secrets()

	haystacks := map[string]string{"logs": logs.String()}
	for _, want := range []string{"acr access token minted", "acr refresh token exchanged", `"level":"ERROR"`, "forbidden"} {
		require.Contains(t, haystacks["logs"], want, "the debug logs of the failure paths were captured")
	}
	haystacks["invocation logs"] = strings.Join(w.h.InvocationLogs(), "\n")
	for _, o := range w.h.Queue.Sent() {
		haystacks["sent messages"] += o.ID + " " + string(o.Body) + "\n"
	}
	require.NotEmpty(t, haystacks["sent messages"])
	ctx := t.Context()
	runs, err := w.h.Store.LatestRuns(ctx, 100)
	require.NoError(t, err)
	require.Len(t, runs, 2, "the nightly run and the push")
	var cp strings.Builder
	for _, run := range append(runs, runs[0]) {
		batches, err := w.h.Store.ListBatches(ctx, run.ID)
		require.NoError(t, err)
		repos, err := w.h.Store.ListRepos(ctx, run.ID)
		require.NoError(t, err)
		fmt.Fprintf(&cp, "%+v\n%+v\n%+v\n", run, batches, repos)
		js, _ := w.h.RunReportRaw(run.ID, false)
		text, _ := w.h.RunReportRaw(run.ID, true)
		haystacks["reports"] += js + "\n" + text + "\n"
	}
	rejs, err := w.h.Store.ListRejections(ctx, 0)
	require.NoError(t, err)
	require.Len(t, rejs, 1)
	fmt.Fprintf(&cp, "%+v\n", rejs)
	haystacks["checkpoints"] = cp.String()
	latest, _ := w.h.RunReportRaw("", false)
	haystacks["reports"] += latest

	var found []string
	for where, text := range haystacks {
		found = append(found, leaks(secrets, where, text)...)
	}
	assert.Empty(t, found, "tokens leaked")

	// The check itself can fail: a line carrying one of the recorded
	// tokens is caught, and so is a bare signature.
	for v, kind := range secrets {
		if kind == "access" {
			require.NotEmpty(t, leaks(secrets, "control", `{"msg":"oops","token":"`+v+`"}`))
			sig := v[strings.LastIndex(v, ".")+1:]
			require.NotEmpty(t, leaks(secrets, "control", "signature "+sig))
			break
		}
	}
	t.Logf("%d secrets checked against %d bytes of logs; %s", len(secrets), len(haystacks["logs"]), describe(w.h.Reg))
}

package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/e2e/e2etest"
	"github.com/acrpurge/acrpurge/internal/testbed/fakebus"
)

// Environment variables of the suite.
const (
	// envLong=1 runs the long version (make chaos).
	envLong = "ACRPURGE_CHAOS_LONG"
	// envSeed fixes the seed of every scenario, to reproduce a failure
	// (the subtests are named by seed).
	envSeed = "ACRPURGE_CHAOS_SEED"
)

// nightly is a firing of the default schedule (0 0 2 * * *), 3 s late.
var nightly = time.Date(2025, 3, 4, 2, 0, 3, 0, time.UTC)

// params size one run of a scenario.
type params struct {
	long bool
	// repositories per team: a and b are granted, c is not, d may only
	// read; ops is outside the policy.
	teamA, teamB, teamC, teamD, ops int
	// tags is the number of ci tags of a repository.
	tags func(*rand.Rand) int
	// parallel deliveries while draining.
	parallel int
}

func suiteParams() params {
	if os.Getenv(envLong) == "1" {
		return params{long: true, teamA: 12, teamB: 10, teamC: 3, teamD: 3, ops: 2,
			tags: func(r *rand.Rand) int { return 20 + r.IntN(40) }, parallel: 4}
	}
	return params{teamA: 2, teamB: 2, teamC: 1, teamD: 1, ops: 1, tags: func(*rand.Rand) int { return 8 }, parallel: 2}
}

// seeds returns the seeds to run a scenario with: ACRPURGE_CHAOS_SEED, or
// a fixed one in the short version, or three random ones in the long.
func seeds(t *testing.T, p params) []uint64 {
	if s := os.Getenv(envSeed); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, envSeed)
		return []uint64{v}
	}
	if !p.long {
		return []uint64{1}
	}
	return []uint64{rand.Uint64() % 1e9, rand.Uint64() % 1e9, rand.Uint64() % 1e9}
}

// populate seeds every team's repositories.
func (w *world) populate(rng *rand.Rand, p params) {
	w.t.Helper()
	for _, team := range []struct {
		prefix string
		n      int
	}{{"team-a/svc", p.teamA}, {"team-b/svc", p.teamB}, {"team-c/secret", p.teamC}, {"team-d/ro", p.teamD}, {"ops/tools", p.ops}} {
		for i := range team.n {
			w.seed(rng, p.tags(rng), fmt.Sprintf("%s-%02d", team.prefix, i))
		}
	}
}

// encoding picks how the host hands the message body over.
func encoding(rng *rand.Rand) funchost.Encoding {
	return []funchost.Encoding{funchost.BodyDoubleString, funchost.BodyString, funchost.BodyBase64, funchost.BodyObject}[rng.IntN(4)]
}

// fireNightly runs the Scheduler and returns the number of batches.
func (w *world) fireNightly() int {
	w.t.Helper()
	resp, status := w.h.FireTimer(nightly, false)
	require.Equal(w.t, http.StatusOK, status, resp)
	return w.h.Queue.Len()
}

// scenario is one kind of fault.
type scenario struct {
	name string
	run  func(t *testing.T, p params, rng *rand.Rand)
}

// TestChaos runs every fault-injection scenario; see the package docs.
func TestChaos(t *testing.T) {
	p := suiteParams()
	for _, sc := range []scenario{
		{"worker process killed mid-batch then redelivered", killedMidBatch},
		{"invocation cancelled mid-batch then redelivered", cancelledMidBatch},
		{"access token expires mid-repository", accessTokenExpires},
		{"access token expires at the registry first", registryClockAhead},
		{"refresh token rolls over at 3h", refreshTokenRollsOver},
		{"ABAC partial grant", abacPartialGrant},
		{"429 storm", throttleStorm},
		{"5xx, dropped connections and lost responses", flakyRegistry},
		{"registry restarted mid-run", registryRestarted},
		{"everything at once", everythingAtOnce},
		{"lock lost: one message handled twice at once", lockLost},
		{"forged own message naming a future nightly run", forgedFutureRun},
		{"every delivery of a message killed: dead-lettered", everyDeliveryDies},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			for _, seed := range seeds(t, p) {
				t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
					start := time.Now()
					sc.run(t, p, rand.New(rand.NewPCG(seed, 0x5eed)))
					t.Logf("%s seed=%d took %s", sc.name, seed, time.Since(start).Round(time.Millisecond))
				})
			}
		})
	}
}

// firstBatch pops the first message of the nightly run and returns it with
// the purgeable repositories it names.
func (w *world) firstBatch() (*fakebus.Message, []string) {
	w.t.Helper()
	m := w.h.Receive()
	require.NotNil(w.t, m)
	dec, err := queue.Decode(m.Body)
	require.NoError(w.t, err)
	require.Equal(w.t, queue.KindOwn, dec.Kind)
	var repos []string
	for _, r := range dec.Repositories {
		if slices.Contains(w.purgeable(), r) {
			repos = append(repos, r)
		}
	}
	require.NotEmpty(w.t, repos)
	return m, repos
}

// deletedIn counts the registry's deletions in the named repositories.
func (w *world) deletedIn(names []string) int {
	n := 0
	for _, d := range w.h.Reg.Deletes() {
		if slices.Contains(names, d.Repo) {
			n++
		}
	}
	return n
}

// killedMidBatch: the Worker process dies (its registry traffic and
// checkpoint writes stop at once) in the middle of its first batch, one or
// more times: first just before one of its deletes, then (in the long
// version at random) just before one of its checkpoint writes, which is
// lost. A new process gets the message again each time and finishes it
// without redoing anything.
func killedMidBatch(t *testing.T, p params, rng *rand.Rand) {
	var ks atomic.Pointer[killSwitch]
	var killAtDelete, killAtSave atomic.Int64
	hooks := func() e2etest.Hooks {
		k := newKillSwitch()
		ks.Store(k)
		var saves atomic.Int64
		return e2etest.Hooks{
			Transport: chain(k.transport, onDelete(func(n int64) {
				if n == killAtDelete.Load() {
					k.kill()
				}
			})),
			Store: func(s checkpoint.Store) checkpoint.Store {
				return onSave(k.store(s), func() {
					if saves.Add(1) == killAtSave.Load() {
						k.kill()
					}
				})
			},
		}
	}
	w := newWorld(t, worldOpts{hooks: hooks()})
	w.populate(rng, p)
	w.h.Reg.SetFaults(acremu.Faults{Latency: time.Millisecond})
	w.fireNightly()
	m, batchRepos := w.firstBatch()
	want := w.gone(batchRepos...)

	triggers := []string{"delete", "checkpoint"}
	if p.long {
		triggers = []string{"delete"}
		for range rng.IntN(4) {
			triggers = append(triggers, []string{"delete", "checkpoint"}[rng.IntN(2)])
		}
	}
	killed, completed := 0, false
	for i, trigger := range triggers {
		remaining := want - w.deletedIn(batchRepos)
		if remaining < 4 {
			break
		}
		killAtDelete.Store(-1)
		killAtSave.Store(-1)
		if trigger == "delete" {
			killAtDelete.Store(1 + int64(rng.IntN(remaining/2)))
		} else {
			killAtSave.Store(2 + int64(rng.IntN(2*len(batchRepos))))
		}
		k := ks.Load()
		type result struct {
			status int
			err    error
		}
		done := make(chan result, 1)
		enc := encoding(rng)
		go func() {
			_, status, err := w.h.Deliver(t.Context(), m, enc)
			done <- result{status, err}
		}()
		select {
		case <-k.killed:
			w.h.StopApp()
			r := <-done
			require.True(t, r.err != nil || r.status != http.StatusOK, "a killed invocation cannot succeed")
			killed++
		case r := <-done:
			require.Equal(t, "checkpoint", trigger, "the batch ended (%d, %v) before the kill at delete %d", r.status, r.err, killAtDelete.Load())
			require.NoError(t, r.err)
			completed = r.status == http.StatusOK
		case <-t.Context().Done():
			t.Fatal("timed out waiting for the kill")
		}
		w.h.Settle()
		w.h.StartApp(hooks()) // a new process
		if i == 0 {
			partial := w.deletedIn(batchRepos)
			require.Positive(t, partial, "the first process deleted something")
			require.Less(t, partial, want, "killed in the middle of the batch")
		}
		if completed {
			break
		}
	}
	require.Positive(t, killed)

	killAtDelete.Store(-1)
	killAtSave.Store(-1)
	if !completed {
		w.h.Requeue(m)
	}
	w.h.DrainParallel(encoding(rng), p.parallel)
	assert.Equal(t, killed+1, w.h.Delivered(m.ID))
	w.check(checks{complete: true, noRedo: true})
	attempts := 0
	rep := w.report(m)
	for _, r := range rep.Repositories {
		attempts = max(attempts, r.Attempts)
	}
	assert.GreaterOrEqual(t, attempts, 2, "a repository cut off was resumed by a later delivery")
	t.Logf("%d kills (%v); %s", killed, triggers, describe(w.h.Reg))
}

// report returns the report of the run a message belongs to.
func (w *world) report(m *fakebus.Message) *runs.Report {
	w.t.Helper()
	rep, code := w.h.RunReport(strings.SplitN(m.ID, "/", 2)[0])
	require.Equal(w.t, http.StatusOK, code)
	return rep
}

// cancelledMidBatch: the host drops the invocation in the middle of its
// deletes (the app stays up and checkpoints what it did); the message is
// delivered again.
func cancelledMidBatch(t *testing.T, p params, rng *rand.Rand) {
	var cancelAt atomic.Int64
	var cancel atomic.Pointer[context.CancelFunc]
	w := newWorld(t, worldOpts{hooks: e2etest.Hooks{Transport: onDelete(func(n int64) {
		if n == cancelAt.Load() {
			(*cancel.Load())()
		}
	})}})
	w.populate(rng, p)
	w.h.Reg.SetFaults(acremu.Faults{Latency: time.Millisecond})
	w.fireNightly()
	m, batchRepos := w.firstBatch()
	want := w.gone(batchRepos...)
	cancelAt.Store(int64(want/4 + rng.IntN(want/2)))
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	cancel.Store(&stop)
	_, _, err := w.h.Deliver(ctx, m, encoding(rng))
	require.Error(t, err, "the host dropped the invocation")
	w.h.Wait()
	w.h.Settle()
	partial := w.deletedIn(batchRepos)
	require.Positive(t, partial)
	require.Less(t, partial, want)

	w.h.Requeue(m)
	w.h.DrainParallel(encoding(rng), p.parallel)
	w.check(checks{complete: true, noRedo: true})
	t.Log(describe(w.h.Reg))
}

// advanceAt returns a delete hook that moves the registry clock by d before
// the deletes numbered in at.
func advanceAt(reg func() *acremu.Registry, d time.Duration, at *[]int64) func(http.RoundTripper) http.RoundTripper {
	return onDelete(func(n int64) {
		if slices.Contains(*at, n) {
			reg().Advance(d)
		}
	})
}

// accessTokenExpires: the shared clock jumps past the access token's 75
// minutes while deletes run, and so past the message deadline (at most 10
// minutes): the repository stops mid-way and carries on in a continuation,
// for which the broker renews the cached token (and only the access token);
// the run completes. (A 401 within one invocation is registryClockAhead.)
func accessTokenExpires(t *testing.T, p params, rng *rand.Rand) {
	var w *world
	var at []int64
	w = newWorld(t, worldOpts{
		settings: map[string]string{config.MessageDeadline: "10m"},
		hooks:    e2etest.Hooks{Transport: advanceAt(func() *acremu.Registry { return w.h.Reg }, 76*time.Minute, &at)},
	})
	w.populate(rng, p)
	at = []int64{int64(1 + rng.IntN(w.gone(w.purgeable()...)/2))}
	batches := w.fireNightly()
	w.h.DrainParallel(encoding(rng), p.parallel)
	w.check(checks{complete: true, noRedo: true})
	s := w.h.Reg.Stats()
	assert.GreaterOrEqual(t, s.AccessTokens, batches+2, "catalog, one per batch, and at least one renewal")
	assert.Equal(t, 1, s.RefreshTokens, "the refresh token (3 h) outlives the jump")
	t.Log(describe(w.h.Reg))
}

// registryClockAhead: the registry's clock jumps while the app's does not,
// so the app only learns of the expiry from a 401 (invalid_token); it
// mints once more and carries on.
func registryClockAhead(t *testing.T, p params, rng *rand.Rand) {
	var w *world
	var at []int64
	w = newWorld(t, worldOpts{
		now:   time.Now,
		hooks: e2etest.Hooks{Transport: advanceAt(func() *acremu.Registry { return w.h.Reg }, 76*time.Minute, &at)},
	})
	w.populate(rng, p)
	at = []int64{int64(1 + rng.IntN(w.gone(w.purgeable()...)/2))}
	batches := w.fireNightly()
	w.h.DrainParallel(encoding(rng), p.parallel)
	w.check(checks{complete: true, noRedo: true})
	s := w.h.Reg.Stats()
	assert.Positive(t, s.Unauthorized, "the registry refused the expired token")
	assert.GreaterOrEqual(t, s.AccessTokens, batches+2)
	t.Log(describe(w.h.Reg))
}

// refreshTokenRollsOver: three jumps of 76 minutes take the clock past the
// refresh token's 3 hours (and the AAD token's hour) in the middle of the
// run; the broker exchanges a new one and the run completes.
func refreshTokenRollsOver(t *testing.T, p params, rng *rand.Rand) {
	var w *world
	var at []int64
	w = newWorld(t, worldOpts{
		settings: map[string]string{config.MessageDeadline: "10m", config.BatchSize: "2"},
		hooks:    e2etest.Hooks{Transport: advanceAt(func() *acremu.Registry { return w.h.Reg }, 76*time.Minute, &at)},
	})
	w.populate(rng, p)
	total := w.gone(w.purgeable()...)
	at = []int64{int64(total / 4), int64(total / 2), int64(total * 3 / 4)}
	w.fireNightly()
	w.h.DrainParallel(encoding(rng), p.parallel)
	w.check(checks{complete: true, noRedo: true})
	s := w.h.Reg.Stats()
	assert.GreaterOrEqual(t, s.RefreshTokens, 2, "a new refresh token after 3 h")
	assert.GreaterOrEqual(t, s.AADTokens, 2, "a new AAD token for the exchange")
	t.Log(describe(w.h.Reg))
}

// abacPartialGrant: the identity may purge team-a and team-b, only read
// team-d, and not touch team-c; its team-b assignment is removed while the
// nightly run is under way. The repositories it may not delete in are
// recorded as forbidden with the missing actions, the others done; a dry
// run of team-d (reading is enough) reports what would go and deletes
// nothing.
func abacPartialGrant(t *testing.T, p params, rng *rand.Rand) {
	w := newWorld(t, worldOpts{settings: map[string]string{config.BatchSize: "2"}})
	w.populate(rng, p)
	w.fireNightly()
	revoked := false
	for m := w.h.Receive(); m != nil; m = w.h.Receive() {
		if !revoked && strings.Contains(string(m.Body), `"team-b/`) {
			w.h.Reg.SetGrants(identityName, slices.DeleteFunc(fullGrants(), func(g acremu.Grant) bool { return g.RepositoryPrefix == "team-b/" }))
			revoked = true
		}
		_, status, err := w.h.Deliver(t.Context(), m, encoding(rng))
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status)
	}
	require.True(t, revoked)

	var dry []string
	for _, n := range w.names {
		if strings.HasPrefix(n, "team-d/") || strings.HasPrefix(n, "ops/") {
			dry = append(dry, n)
		}
	}
	body, err := json.Marshal(map[string]any{"repositories": dry, "dryRun": true})
	require.NoError(t, err)
	w.h.Queue.Put("portal-dry-run", body)
	w.h.Drain(encoding(rng))
	w.check(checks{complete: true, noRedo: true})

	runs, err := w.h.Store.LatestRuns(t.Context(), 10)
	require.NoError(t, err)
	require.Len(t, runs, 2)
	for _, run := range runs {
		rows, err := w.h.Store.ListRepos(t.Context(), run.ID)
		require.NoError(t, err)
		for _, r := range rows {
			switch {
			case run.Trigger == queue.TriggerPortal && strings.HasPrefix(r.Name, "ops/"):
				assert.Equal(t, checkpoint.StatusSkipped, r.Status, r.Name)
				assert.Contains(t, r.Reason, "not in policy")
			case run.Trigger == queue.TriggerPortal:
				assert.Equal(t, checkpoint.StatusDone, r.Status, "%s: %s", r.Name, r.Reason)
				e := w.exp[r.Name]
				assert.Equal(t, int64(len(e.GoneTags)), r.TagsDeleted, "%s: tags a dry run would delete", r.Name)
				assert.Equal(t, int64(len(e.GoneManifests)), r.ManifestsDeleted, "%s: manifests a dry run would delete", r.Name)
			case strings.HasPrefix(r.Name, "team-a/"):
				assert.Equal(t, checkpoint.StatusDone, r.Status, "%s: %s %s", r.Name, r.Reason, r.Error)
			case strings.HasPrefix(r.Name, "team-b/"), strings.HasPrefix(r.Name, "team-c/"):
				assert.Equal(t, checkpoint.StatusForbidden, r.Status, r.Name)
				assert.Contains(t, r.Reason, "metadata_read, pull, delete", r.Name)
			case strings.HasPrefix(r.Name, "team-d/"):
				assert.Equal(t, checkpoint.StatusForbidden, r.Status, r.Name)
				assert.Contains(t, r.Reason, "grant delete on", r.Name)
				assert.NotContains(t, r.Reason, "metadata_read", r.Name)
			default:
				t.Errorf("unexpected repository %s in run %s", r.Name, run.ID)
			}
		}
	}
	for _, d := range w.h.Reg.Deletes() {
		require.True(t, strings.HasPrefix(d.Repo, "team-a/"), "deleted in %s", d.Repo)
	}
	t.Log(describe(w.h.Reg))
}

// throttleStorm: the registry allows few requests per one-second window
// and answers the rest 429 with Retry-After; the app waits, slows down and
// completes without giving up.
func throttleStorm(t *testing.T, p params, rng *rand.Rand) {
	w := newWorld(t, worldOpts{})
	w.populate(rng, p)
	lim := acremu.Limits{Window: time.Second, Read: 60, Write: 10, Delete: 15}
	if p.long {
		lim = acremu.Limits{Window: time.Second, Read: 100 + rng.IntN(200), Write: 20, Delete: 20 + rng.IntN(60)}
	}
	w.h.Reg.SetLimits(lim)
	w.fireNightly()
	w.h.DrainParallel(encoding(rng), p.parallel)
	w.check(checks{complete: true, noRedo: true})
	assert.Positive(t, w.h.Reg.Stats().Throttled, "the storm happened")
	t.Log(describe(w.h.Reg))
}

// flakyRegistry: a share of data-plane requests is answered 500/503,
// dropped before being handled, or (deletes) handled with the answer lost;
// the client retries, messages are redelivered, and everything completes.
func flakyRegistry(t *testing.T, p params, rng *rand.Rand) {
	w := newWorld(t, worldOpts{retry: &acr.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}})
	w.populate(rng, p)
	f := acremu.Faults{ErrorRate: 0.05, DropRate: 0.03, LostResponseRate: 0.05, Seed: rng.Int64()}
	if p.long {
		f = acremu.Faults{ErrorRate: 0.02 + 0.08*rng.Float64(), DropRate: 0.01 + 0.04*rng.Float64(),
			LostResponseRate: 0.02 + 0.08*rng.Float64(), Seed: rng.Int64()}
	}
	t.Logf("faults %+v", f)
	w.h.Reg.SetFaults(f)
	w.fireNightly()
	w.h.DrainParallel(encoding(rng), p.parallel)
	w.check(checks{complete: true})
	assert.Positive(t, w.h.Reg.Stats().Faults)
	t.Log(describe(w.h.Reg))
}

// registryRestarted: the registry goes away (every connection cut) and
// comes back on the same port a moment later, once or several times, in
// the middle of the run.
func registryRestarted(t *testing.T, p params, rng *rand.Rand) {
	var w *world
	var at []int64
	var downs []time.Duration
	restarts := make(chan struct{}, 8)
	w = newWorld(t, worldOpts{hooks: e2etest.Hooks{Transport: onDelete(func(n int64) {
		i := slices.Index(at, n)
		if i < 0 {
			return
		}
		assert.NoError(t, w.h.Reg.Stop())
		down := downs[i]
		go func() {
			defer func() { restarts <- struct{}{} }()
			time.Sleep(down)
			assert.NoError(t, w.h.Reg.Start())
		}()
	})}})
	w.h.RedeliveryDelay = 100 * time.Millisecond
	w.populate(rng, p)
	total := w.gone(w.purgeable()...)
	at = []int64{int64(total / 3)}
	if p.long {
		at = []int64{int64(total / 5), int64(total / 2), int64(total * 4 / 5)}
	}
	for range at {
		downs = append(downs, time.Duration(100+rng.IntN(300))*time.Millisecond)
	}
	batches := w.fireNightly()
	w.h.DrainParallel(encoding(rng), p.parallel)
	assert.Greater(t, w.h.Deliveries(), batches, "the outage failed a delivery, which was redelivered")
	for range at {
		select {
		case <-restarts:
		case <-t.Context().Done():
			t.Fatal("the registry never came back")
		}
	}
	w.check(checks{complete: true})
	t.Log(describe(w.h.Reg))
}

// everythingAtOnce: 5xx answers, dropped connections and lost responses,
// a throttling registry, failing checkpoint writes, the clock jumping past
// the access token's life (and the message's deadline, so its batch is
// continued unless a transient failure has it redelivered instead), and a
// registry restart, all in one run with messages delivered in parallel.
func everythingAtOnce(t *testing.T, p params, rng *rand.Rand) {
	var w *world
	var flaky *flakyStore
	storeRate, storeSeed := 0.05, rng.Uint64()
	f := acremu.Faults{ErrorRate: 0.03, DropRate: 0.02, LostResponseRate: 0.03, Seed: rng.Int64()}
	lim := acremu.Limits{Window: time.Second, Read: 150, Write: 20, Delete: 40}
	if p.long {
		storeRate = 0.01 + 0.03*rng.Float64()
		f = acremu.Faults{ErrorRate: 0.01 + 0.04*rng.Float64(), DropRate: 0.01 + 0.02*rng.Float64(),
			LostResponseRate: 0.01 + 0.04*rng.Float64(), Seed: rng.Int64()}
		lim = acremu.Limits{Window: time.Second, Read: 200 + rng.IntN(200), Write: 20, Delete: 60 + rng.IntN(60)}
	}
	var advance, restart []int64
	var down time.Duration
	restarted := make(chan struct{}, 1)
	w = newWorld(t, worldOpts{
		settings: map[string]string{config.MessageDeadline: "2s", config.BatchSize: "3"},
		retry:    &acr.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond},
		hooks: e2etest.Hooks{
			Transport: onDelete(func(n int64) {
				if slices.Contains(advance, n) {
					w.h.Reg.Advance(76 * time.Minute)
				}
				if slices.Contains(restart, n) {
					assert.NoError(t, w.h.Reg.Stop())
					go func() {
						defer close(restarted)
						time.Sleep(down)
						assert.NoError(t, w.h.Reg.Start())
					}()
				}
			}),
			Store: func(s checkpoint.Store) checkpoint.Store {
				flaky = newFlakyStore(s, storeRate, storeSeed)
				return flaky
			},
		},
	})
	w.h.RedeliveryDelay = 50 * time.Millisecond
	w.populate(rng, p)
	total := w.gone(w.purgeable()...)
	advance = []int64{int64(total/4 + rng.IntN(total/4))}
	restart = []int64{int64(total/2 + rng.IntN(total/4))}
	down = time.Duration(100+rng.IntN(300)) * time.Millisecond
	t.Logf("faults %+v, limits %+v, checkpoint failure rate %.3f, clock jump at delete %d, restart at delete %d for %s",
		f, lim, storeRate, advance[0], restart[0], down)
	w.h.Reg.SetFaults(f)
	w.h.Reg.SetLimits(lim)

	for try := 0; ; try++ {
		if _, status := w.h.FireTimer(nightly, false); status == http.StatusOK {
			break
		}
		require.Less(t, try, 10, "the Scheduler never succeeded")
	}
	w.h.DrainParallel(encoding(rng), p.parallel)
	select {
	case <-restarted:
	case <-t.Context().Done():
		t.Fatal("the registry never came back")
	}
	flaky.heal() // the Runs reports read through the app's store
	w.check(checks{complete: true})
	continued := 0
	for _, o := range w.h.Queue.Sent() {
		if strings.Contains(o.ID, "/resume-") {
			continued++
		}
	}
	assert.Positive(t, flaky.failures.Load(), "checkpoint writes failed")
	t.Logf("%d continuations, %d checkpoint failures, %d deliveries; %s", continued, flaky.failures.Load(), w.h.Deliveries(), describe(w.h.Reg))
}

// lockLost: a message's lock expires while it is being handled, so Service
// Bus delivers it again while the first delivery is still being worked on:
// the same batch is processed twice at once. Deletes may then find their
// item already gone (the other delivery took it), which must be harmless.
func lockLost(t *testing.T, p params, rng *rand.Rand) {
	w := newWorld(t, worldOpts{})
	w.populate(rng, p)
	w.h.Reg.SetFaults(acremu.Faults{Latency: time.Millisecond})
	w.fireNightly()
	for m := w.h.Receive(); m != nil; m = w.h.Receive() {
		type result struct {
			status int
			err    error
		}
		done := make(chan result, 2)
		enc := encoding(rng)
		for range 2 {
			go func() {
				_, status, err := w.h.Deliver(t.Context(), m, enc)
				done <- result{status, err}
			}()
		}
		for range 2 {
			r := <-done
			require.NoError(t, r.err)
			if r.status != http.StatusOK {
				w.h.Requeue(m)
			}
		}
	}
	w.h.DrainParallel(encoding(rng), p.parallel)
	w.check(checks{complete: true})
	t.Log(describe(w.h.Reg))
}

package chaos_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
)

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// onDelete wraps a transport so that before the n-th DELETE request
// (1-based, counted across every goroutine) is sent, fn(n) runs.
func onDelete(fn func(n int64)) func(http.RoundTripper) http.RoundTripper {
	var count atomic.Int64
	return func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodDelete {
				fn(count.Add(1))
			}
			return next.RoundTrip(r)
		})
	}
}

// saveHook runs fn before every SaveProgress of the store it wraps.
type saveHook struct {
	checkpoint.Store
	fn func()
}

func (s *saveHook) SaveProgress(ctx context.Context, runID string, repos []checkpoint.Repo, batch *checkpoint.Batch) error {
	s.fn()
	return s.Store.SaveProgress(ctx, runID, repos, batch)
}

// onSave wraps a store so that fn runs before every SaveProgress.
func onSave(s checkpoint.Store, fn func()) checkpoint.Store { return &saveHook{Store: s, fn: fn} }

// chain applies transport wrappers, the first one outermost.
func chain(wraps ...func(http.RoundTripper) http.RoundTripper) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		for i := len(wraps) - 1; i >= 0; i-- {
			if wraps[i] != nil {
				next = wraps[i](next)
			}
		}
		return next
	}
}

// errKilled is what a killed process's registry calls and checkpoint
// writes fail with.
var errKilled = errors.New("chaos: the worker process was killed")

// killSwitch stands for a Worker process that can be killed at once: after
// kill its registry traffic and checkpoint store fail (nothing more of it
// reaches the registry or the table, and answers already on their way are
// lost), as if the process had vanished.
type killSwitch struct {
	dead   atomic.Bool
	killed chan struct{}
}

func newKillSwitch() *killSwitch { return &killSwitch{killed: make(chan struct{})} }

func (k *killSwitch) kill() {
	if k.dead.CompareAndSwap(false, true) {
		close(k.killed)
	}
}

func (k *killSwitch) transport(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if k.dead.Load() {
			return nil, errKilled
		}
		resp, err := next.RoundTrip(r)
		if err == nil && k.dead.Load() {
			_ = resp.Body.Close()
			return nil, errKilled
		}
		return resp, err
	})
}

func (k *killSwitch) store(s checkpoint.Store) checkpoint.Store { return &deadStore{k: k, s: s} }

// deadStore fails every call once its process is killed. It implements
// every method of checkpoint.Store explicitly, so none slips through.
type deadStore struct {
	k *killSwitch
	s checkpoint.Store
	// fail, if set, may fail a call that the kill switch lets through.
	fail func() error
}

func (d *deadStore) err() error {
	if d.k.dead.Load() {
		return errKilled
	}
	if d.fail != nil {
		return d.fail()
	}
	return nil
}

func (d *deadStore) CreateRun(ctx context.Context, run checkpoint.Run, batches []checkpoint.Batch) (checkpoint.Run, bool, error) {
	if err := d.err(); err != nil {
		return checkpoint.Run{}, false, err
	}
	return d.s.CreateRun(ctx, run, batches)
}

func (d *deadStore) MarkEnqueued(ctx context.Context, runID string) error {
	if err := d.err(); err != nil {
		return err
	}
	return d.s.MarkEnqueued(ctx, runID)
}

func (d *deadStore) GetRun(ctx context.Context, runID string) (checkpoint.Run, error) {
	if err := d.err(); err != nil {
		return checkpoint.Run{}, err
	}
	return d.s.GetRun(ctx, runID)
}

func (d *deadStore) LatestRuns(ctx context.Context, limit int) ([]checkpoint.Run, error) {
	if err := d.err(); err != nil {
		return nil, err
	}
	return d.s.LatestRuns(ctx, limit)
}

func (d *deadStore) GetBatch(ctx context.Context, runID string, n int) (checkpoint.Batch, error) {
	if err := d.err(); err != nil {
		return checkpoint.Batch{}, err
	}
	return d.s.GetBatch(ctx, runID, n)
}

func (d *deadStore) ListBatches(ctx context.Context, runID string) ([]checkpoint.Batch, error) {
	if err := d.err(); err != nil {
		return nil, err
	}
	return d.s.ListBatches(ctx, runID)
}

func (d *deadStore) SaveProgress(ctx context.Context, runID string, repos []checkpoint.Repo, batch *checkpoint.Batch) error {
	if err := d.err(); err != nil {
		return err
	}
	return d.s.SaveProgress(ctx, runID, repos, batch)
}

func (d *deadStore) GetRepos(ctx context.Context, runID string, names []string) (map[string]checkpoint.Repo, error) {
	if err := d.err(); err != nil {
		return nil, err
	}
	return d.s.GetRepos(ctx, runID, names)
}

func (d *deadStore) ListRepos(ctx context.Context, runID string) ([]checkpoint.Repo, error) {
	if err := d.err(); err != nil {
		return nil, err
	}
	return d.s.ListRepos(ctx, runID)
}

func (d *deadStore) LastPurge(ctx context.Context, repo string) (time.Time, string, error) {
	if err := d.err(); err != nil {
		return time.Time{}, "", err
	}
	return d.s.LastPurge(ctx, repo)
}

func (d *deadStore) SetLastPurge(ctx context.Context, repo string, at time.Time, runID string) error {
	if err := d.err(); err != nil {
		return err
	}
	return d.s.SetLastPurge(ctx, repo, at, runID)
}

func (d *deadStore) RecordRejection(ctx context.Context, r checkpoint.Rejection) error {
	if err := d.err(); err != nil {
		return err
	}
	return d.s.RecordRejection(ctx, r)
}

func (d *deadStore) ListRejections(ctx context.Context, limit int) ([]checkpoint.Rejection, error) {
	if err := d.err(); err != nil {
		return nil, err
	}
	return d.s.ListRejections(ctx, limit)
}

func (d *deadStore) UpdateRepo(ctx context.Context, runID, name string, fn func(*checkpoint.Repo) error) (checkpoint.Repo, error) {
	if err := d.err(); err != nil {
		return checkpoint.Repo{}, err
	}
	return d.s.UpdateRepo(ctx, runID, name, fn)
}

var _ checkpoint.Store = (*deadStore)(nil)

// errFlaky is the transient failure a flaky store injects.
var errFlaky = errors.New("chaos: injected checkpoint storage failure (503 Server Busy)")

// flakyStore fails a share of checkpoint calls before they reach the
// table, as a busy storage account does. The choice is deterministic for a
// given sequence of calls.
type flakyStore struct {
	deadStore // reuses the explicit forwarding of every method
	rate      float64
	mu        sync.Mutex
	rng       *rand.Rand
	failures  atomic.Int64
}

func newFlakyStore(s checkpoint.Store, rate float64, seed uint64) *flakyStore {
	f := &flakyStore{rate: rate, rng: rand.New(rand.NewPCG(seed, 0xf1a))}
	f.deadStore = deadStore{k: newKillSwitch(), s: s, fail: f.fail}
	return f
}

// heal ends the failures.
func (f *flakyStore) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rate = 0
}

func (f *flakyStore) fail() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rng.Float64() < f.rate {
		f.failures.Add(1)
		return errFlaky
	}
	return nil
}

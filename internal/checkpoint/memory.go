package checkpoint

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Memory is an in-process Store for `handler local` and tests. It follows the
// same rules as Table (normalisation, ordering, limits), but keeps nothing
// across restarts. The zero value is not usable; call NewMemory.
type Memory struct {
	now clock

	mu         sync.Mutex
	runs       map[string]*memRun
	last       map[string]memLast
	rejections map[string]Rejection // by timedRow key
}

type memRun struct {
	run     Run
	exists  bool // false while only progress rows were saved
	batches map[int]Batch
	repos   map[string]Repo
}

type memLast struct {
	at    time.Time
	runID string
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{
		now:        nowFunc,
		runs:       map[string]*memRun{},
		last:       map[string]memLast{},
		rejections: map[string]Rejection{},
	}
}

// partition returns the run's entry, creating an empty one if asked.
func (m *Memory) partition(runID string, create bool) *memRun {
	p := m.runs[runID]
	if p == nil && create {
		p = &memRun{batches: map[int]Batch{}, repos: map[string]Repo{}}
		m.runs[runID] = p
	}
	return p
}

// CreateRun implements Store.
func (m *Memory) CreateRun(ctx context.Context, run Run, batches []Batch) (Run, bool, error) {
	if err := ctx.Err(); err != nil {
		return Run{}, false, fmt.Errorf("checkpoint: create run: %w", err)
	}
	run, norm, err := prepareCreate(run, batches, m.now)
	if err != nil {
		return Run{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.partition(run.ID, true)
	if p.exists {
		return p.run, false, nil
	}
	p.run, p.exists = run, true
	for _, b := range norm {
		p.batches[b.N] = cloneBatch(b)
	}
	return run, true, nil
}

// MarkEnqueued implements Store.
func (m *Memory) MarkEnqueued(ctx context.Context, runID string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checkpoint: mark run %q enqueued: %w", runID, err)
	}
	if err := checkRunArg("mark run enqueued", runID); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.partition(runID, false)
	if p == nil || !p.exists {
		return fmt.Errorf("checkpoint: mark run %q enqueued: %w", runID, ErrNotFound)
	}
	p.run.Enqueued = true
	return nil
}

// GetRun implements Store.
func (m *Memory) GetRun(ctx context.Context, runID string) (Run, error) {
	if err := ctx.Err(); err != nil {
		return Run{}, fmt.Errorf("checkpoint: get run %q: %w", runID, err)
	}
	if err := checkRunArg("get run", runID); err != nil {
		return Run{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.partition(runID, false)
	if p == nil || !p.exists {
		return Run{}, fmt.Errorf("checkpoint: get run %q: %w", runID, ErrNotFound)
	}
	return p.run, nil
}

// LatestRuns implements Store.
func (m *Memory) LatestRuns(ctx context.Context, limit int) ([]Run, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint: latest runs: %w", err)
	}
	limit = limitOrDefault(limit)
	m.mu.Lock()
	type keyed struct {
		key string
		run Run
	}
	var all []keyed
	for _, p := range m.runs {
		if p.exists {
			all = append(all, keyed{timedRow(p.run.Started, p.run.ID), p.run})
		}
	}
	m.mu.Unlock()
	slices.SortFunc(all, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
	out := make([]Run, 0, min(limit, len(all)))
	for _, k := range all[:min(limit, len(all))] {
		out = append(out, k.run)
	}
	return out, nil
}

// GetBatch implements Store.
func (m *Memory) GetBatch(ctx context.Context, runID string, n int) (Batch, error) {
	if err := ctx.Err(); err != nil {
		return Batch{}, fmt.Errorf("checkpoint: get batch %d of run %q: %w", n, runID, err)
	}
	if err := checkRunArg("get batch", runID); err != nil {
		return Batch{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.partition(runID, false); p != nil {
		if b, ok := p.batches[n]; ok {
			return cloneBatch(b), nil
		}
	}
	return Batch{}, fmt.Errorf("checkpoint: get batch %d of run %q: %w", n, runID, ErrNotFound)
}

// ListBatches implements Store.
func (m *Memory) ListBatches(ctx context.Context, runID string) ([]Batch, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint: list batches of run %q: %w", runID, err)
	}
	if err := checkRunArg("list batches", runID); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.partition(runID, false)
	if p == nil {
		return nil, nil
	}
	out := make([]Batch, 0, len(p.batches))
	for _, b := range p.batches {
		out = append(out, cloneBatch(b))
	}
	slices.SortFunc(out, func(a, b Batch) int { return a.N - b.N })
	return out, nil
}

// SaveProgress implements Store.
func (m *Memory) SaveProgress(ctx context.Context, runID string, repos []Repo, batch *Batch) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checkpoint: save progress of run %q: %w", runID, err)
	}
	norm, b, err := prepareProgress(runID, repos, batch, m.now)
	if err != nil {
		return err
	}
	if len(norm) == 0 && b == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.partition(runID, true)
	for _, r := range norm {
		p.repos[r.Name] = cloneRepo(r)
	}
	if b != nil {
		p.batches[b.N] = cloneBatch(*b)
	}
	return nil
}

// GetRepos implements Store.
func (m *Memory) GetRepos(ctx context.Context, runID string, names []string) (map[string]Repo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint: get repositories of run %q: %w", runID, err)
	}
	if err := checkRunArg("get repositories", runID); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Repo, len(names))
	p := m.partition(runID, false)
	if p == nil {
		return out, nil
	}
	for _, n := range names {
		if r, ok := p.repos[n]; ok {
			out[n] = cloneRepo(r)
		}
	}
	return out, nil
}

// ListRepos implements Store.
func (m *Memory) ListRepos(ctx context.Context, runID string) ([]Repo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint: list repositories of run %q: %w", runID, err)
	}
	if err := checkRunArg("list repositories", runID); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.partition(runID, false)
	if p == nil {
		return nil, nil
	}
	out := make([]Repo, 0, len(p.repos))
	for _, r := range p.repos {
		out = append(out, cloneRepo(r))
	}
	slices.SortFunc(out, func(a, b Repo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// LastPurge implements Store.
func (m *Memory) LastPurge(ctx context.Context, repo string) (time.Time, string, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, "", fmt.Errorf("checkpoint: last purge of %q: %w", repo, err)
	}
	if err := checkName("repository name", repo); err != nil {
		return time.Time{}, "", fmt.Errorf("checkpoint: last purge: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.last[repo]
	return l.at, l.runID, nil
}

// SetLastPurge implements Store.
func (m *Memory) SetLastPurge(ctx context.Context, repo string, at time.Time, runID string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checkpoint: set last purge of %q: %w", repo, err)
	}
	at, runID, err := prepareLast(repo, at, runID, m.now)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last[repo] = memLast{at: at, runID: runID}
	return nil
}

// RecordRejection implements Store.
func (m *Memory) RecordRejection(ctx context.Context, r Rejection) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checkpoint: record rejection: %w", err)
	}
	r, err := normalizeRejection(r, m.now)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rejections[timedRow(r.At, r.MessageID)] = r
	return nil
}

// ListRejections implements Store.
func (m *Memory) ListRejections(ctx context.Context, limit int) ([]Rejection, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint: list rejections: %w", err)
	}
	limit = limitOrDefault(limit)
	m.mu.Lock()
	keys := make([]string, 0, len(m.rejections))
	for k := range m.rejections {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	keys = keys[:min(limit, len(keys))]
	out := make([]Rejection, 0, len(keys))
	for _, k := range keys {
		out = append(out, m.rejections[k])
	}
	m.mu.Unlock()
	return out, nil
}

// UpdateRepo implements Store. The memory store serialises updates, so fn
// runs once.
func (m *Memory) UpdateRepo(ctx context.Context, runID, name string, fn func(r *Repo) error) (Repo, error) {
	op := fmt.Sprintf("update repository %q of run %q", name, runID)
	if err := ctx.Err(); err != nil {
		return Repo{}, fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	if err := checkRunArg("update repository", runID); err != nil {
		return Repo{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.partition(runID, true)
	r, ok := p.repos[name]
	if ok {
		r = cloneRepo(r)
	} else {
		r = Repo{RunID: runID, Name: name}
	}
	prev := r.Updated
	if err := fn(&r); err != nil {
		return Repo{}, err
	}
	if r.Updated.Equal(prev) {
		r.Updated = time.Time{} // fn did not set it: stamped now
	}
	nr, err := normalizeRepo(r, runID, m.now)
	if err != nil {
		return Repo{}, fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	p.repos[nr.Name] = cloneRepo(nr)
	return nr, nil
}

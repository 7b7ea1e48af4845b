package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"golang.org/x/sync/errgroup"
)

// readConcurrency bounds parallel point reads (GetRepos, LatestRuns).
const readConcurrency = 8

// CreateRun implements Store.
//
// Rows are written so that the run row is the commit marker: first the
// runs-index row, then batch rows beyond the first transaction (insert or
// replace), and last one transaction holding the run row with "add"
// semantics and the first batch rows. If that transaction fails because the
// run row exists, a concurrent or earlier create won and its run is returned
// with created=false. Hence if the run row exists, all its batch rows do, and
// a create that failed half-way can simply be retried.
func (t *Table) CreateRun(ctx context.Context, run Run, batches []Batch) (Run, bool, error) {
	if err := ctx.Err(); err != nil {
		return Run{}, false, fmt.Errorf("checkpoint: create run: %w", err)
	}
	run, norm, err := prepareCreate(run, batches, t.now)
	if err != nil {
		return Run{}, false, err
	}
	op := fmt.Sprintf("create run %q", run.ID)
	if existing, err := t.GetRun(ctx, run.ID); err == nil {
		return existing, false, nil
	} else if !errors.Is(err, ErrNotFound) {
		return Run{}, false, err
	}
	if err := t.upsert(ctx, op+": index row", indexEntity(run)); err != nil {
		return Run{}, false, err
	}
	slices.SortFunc(norm, func(a, b Batch) int { return a.N - b.N })
	ops := make([]txOp, 0, len(norm)+1)
	ops = append(ops, txOp{aztables.TransactionTypeAdd, runEntity(run)})
	for _, b := range norm {
		ops = append(ops, txOp{aztables.TransactionTypeInsertReplace, batchEntity(b)})
	}
	txs, err := chunk(ops)
	if err != nil {
		return Run{}, false, fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	for i := len(txs) - 1; i >= 1; i-- {
		if err := t.submit(ctx, fmt.Sprintf("%s: batch rows (transaction %d of %d)", op, i+1, len(txs)), txs[i]); err != nil {
			return Run{}, false, err
		}
	}
	if err := t.submit(ctx, op+": run row", txs[0]); err != nil {
		existing, gerr := t.GetRun(ctx, run.ID)
		if gerr == nil {
			t.log.Info("checkpoint: run already created by another invocation",
				slog.String("run", run.ID), slog.String("code", errorCode(err)))
			return existing, false, nil
		}
		return Run{}, false, err
	}
	return run, true, nil
}

// MarkEnqueued implements Store.
func (t *Table) MarkEnqueued(ctx context.Context, runID string) error {
	op := fmt.Sprintf("mark run %q enqueued", runID)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	if err := checkRunArg("mark run enqueued", runID); err != nil {
		return err
	}
	e := entity(runPartition(runID), runRowKey, kindRun, map[string]any{"Enqueued": true})
	b, err := e.MarshalJSON()
	if err != nil {
		return fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	// Merge with If-Match "*": fails with 404 when the run does not exist.
	_, err = t.client.UpdateEntity(ctx, b, &aztables.UpdateEntityOptions{UpdateMode: aztables.UpdateModeMerge})
	if isNotFound(err) {
		return fmt.Errorf("checkpoint: %s: %w", op, ErrNotFound)
	}
	return t.wrap(op, err)
}

// GetRun implements Store.
func (t *Table) GetRun(ctx context.Context, runID string) (Run, error) {
	op := fmt.Sprintf("get run %q", runID)
	if err := ctx.Err(); err != nil {
		return Run{}, fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	if err := checkRunArg("get run", runID); err != nil {
		return Run{}, err
	}
	e, err := t.get(ctx, op, runPartition(runID), runRowKey)
	if err != nil {
		return Run{}, err
	}
	r, err := decodeRun(e)
	if err != nil {
		return Run{}, fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	return r, nil
}

// LatestRuns implements Store. It walks the runs index newest first and
// reads each run row; index rows without a matching run (left by a create
// that failed before its run row) are skipped.
func (t *Table) LatestRuns(ctx context.Context, limit int) ([]Run, error) {
	const op = "latest runs"
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	limit = limitOrDefault(limit)
	var out []Run
	var page []aztables.EDMEntity
	flush := func() error {
		runs, err := t.resolveIndex(ctx, page)
		page = page[:0]
		if err != nil {
			return err
		}
		out = append(out, runs...)
		return nil
	}
	err := t.query(ctx, op, "PartitionKey eq "+odataString(runsPartition), limit, func(e aztables.EDMEntity) (bool, error) {
		page = append(page, e)
		if len(page) < limit-len(out) {
			return true, nil
		}
		if err := flush(); err != nil {
			return false, err
		}
		return len(out) < limit, nil
	})
	if err == nil && len(page) > 0 {
		err = flush()
	}
	if err != nil {
		return nil, err
	}
	return out[:min(limit, len(out))], nil
}

// resolveIndex reads the runs that index rows point at, in index order.
func (t *Table) resolveIndex(ctx context.Context, index []aztables.EDMEntity) ([]Run, error) {
	runs := make([]Run, len(index))
	ok := make([]bool, len(index))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(readConcurrency)
	for i, e := range index {
		runID, _ := e.Properties["RunID"].(string)
		if runID == "" {
			continue
		}
		g.Go(func() error {
			r, err := t.GetRun(gctx, runID)
			switch {
			case errors.Is(err, ErrNotFound):
				t.log.Debug("checkpoint: skipping index row without run", slog.String("run", runID))
				return nil
			case err != nil:
				return err
			case timedRow(r.Started, r.ID) != e.RowKey:
				t.log.Debug("checkpoint: skipping stale index row", slog.String("run", runID))
				return nil
			}
			runs[i], ok[i] = r, true
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make([]Run, 0, len(index))
	for i := range runs {
		if ok[i] {
			out = append(out, runs[i])
		}
	}
	return out, nil
}

// GetBatch implements Store.
func (t *Table) GetBatch(ctx context.Context, runID string, n int) (Batch, error) {
	op := fmt.Sprintf("get batch %d of run %q", n, runID)
	if err := ctx.Err(); err != nil {
		return Batch{}, fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	if err := checkRunArg("get batch", runID); err != nil {
		return Batch{}, err
	}
	e, err := t.get(ctx, op, runPartition(runID), batchRow(n))
	if err != nil {
		return Batch{}, err
	}
	b, err := decodeBatch(e)
	if err != nil {
		return Batch{}, fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	return b, nil
}

// ListBatches implements Store.
func (t *Table) ListBatches(ctx context.Context, runID string) ([]Batch, error) {
	op := fmt.Sprintf("list batches of run %q", runID)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	if err := checkRunArg("list batches", runID); err != nil {
		return nil, err
	}
	var out []Batch
	err := t.query(ctx, op, prefixFilter(runPartition(runID), batchPrefix), 0, func(e aztables.EDMEntity) (bool, error) {
		b, err := decodeBatch(e)
		if err != nil {
			return false, err
		}
		out = append(out, b)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Batch) int { return a.N - b.N })
	return out, nil
}

// SaveProgress implements Store.
func (t *Table) SaveProgress(ctx context.Context, runID string, repos []Repo, batch *Batch) error {
	op := fmt.Sprintf("save progress of run %q", runID)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	norm, b, err := prepareProgress(runID, repos, batch, t.now)
	if err != nil {
		return err
	}
	ops := make([]txOp, 0, len(norm)+1)
	for _, r := range norm {
		ops = append(ops, txOp{aztables.TransactionTypeInsertReplace, repoEntity(r)})
	}
	if b != nil {
		ops = append(ops, txOp{aztables.TransactionTypeInsertReplace, batchEntity(*b)})
	}
	txs, err := chunk(ops)
	if err != nil {
		return fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	for i, tx := range txs {
		if err := t.submit(ctx, fmt.Sprintf("%s (transaction %d of %d)", op, i+1, len(txs)), tx); err != nil {
			return err
		}
	}
	return nil
}

// GetRepos implements Store.
func (t *Table) GetRepos(ctx context.Context, runID string, names []string) (map[string]Repo, error) {
	op := fmt.Sprintf("get repositories of run %q", runID)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	if err := checkRunArg("get repositories", runID); err != nil {
		return nil, err
	}
	pk := runPartition(runID)
	out := make(map[string]Repo, len(names))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(readConcurrency)
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		g.Go(func() error {
			e, err := t.get(gctx, op, pk, repoRow(name))
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			r, err := decodeRepo(e)
			if err != nil {
				return fmt.Errorf("checkpoint: %s: %w", op, err)
			}
			mu.Lock()
			out[name] = r
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// ListRepos implements Store.
func (t *Table) ListRepos(ctx context.Context, runID string) ([]Repo, error) {
	op := fmt.Sprintf("list repositories of run %q", runID)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	if err := checkRunArg("list repositories", runID); err != nil {
		return nil, err
	}
	var out []Repo
	err := t.query(ctx, op, prefixFilter(runPartition(runID), repoPrefix), 0, func(e aztables.EDMEntity) (bool, error) {
		r, err := decodeRepo(e)
		if err != nil {
			return false, err
		}
		out = append(out, r)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Repo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// LastPurge implements Store.
func (t *Table) LastPurge(ctx context.Context, repo string) (time.Time, string, error) {
	op := fmt.Sprintf("last purge of %q", repo)
	if err := ctx.Err(); err != nil {
		return time.Time{}, "", fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	if err := checkName("repository name", repo); err != nil {
		return time.Time{}, "", fmt.Errorf("checkpoint: last purge: %w", err)
	}
	e, err := t.get(ctx, op, lastPartition(repo), lastRowKey)
	if errors.Is(err, ErrNotFound) {
		return time.Time{}, "", nil
	}
	if err != nil {
		return time.Time{}, "", err
	}
	d := decoder{e: e}
	at, runID := d.time("At"), d.str("RunID")
	if d.err != nil {
		return time.Time{}, "", fmt.Errorf("checkpoint: %s: %w", op, d.err)
	}
	return at, runID, nil
}

// SetLastPurge implements Store.
func (t *Table) SetLastPurge(ctx context.Context, repo string, at time.Time, runID string) error {
	op := fmt.Sprintf("set last purge of %q", repo)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	at, runID, err := prepareLast(repo, at, runID, t.now)
	if err != nil {
		return err
	}
	return t.upsert(ctx, op, lastEntity(repo, at, runID))
}

// RecordRejection implements Store.
func (t *Table) RecordRejection(ctx context.Context, r Rejection) error {
	const op = "record rejection"
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	r, err := normalizeRejection(r, t.now)
	if err != nil {
		return fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	return t.upsert(ctx, op, rejectionEntity(r))
}

// ListRejections implements Store.
func (t *Table) ListRejections(ctx context.Context, limit int) ([]Rejection, error) {
	const op = "list rejections"
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	limit = limitOrDefault(limit)
	var out []Rejection
	err := t.query(ctx, op, "PartitionKey eq "+odataString(rejPartition), limit, func(e aztables.EDMEntity) (bool, error) {
		r, err := decodeRejection(e)
		if err != nil {
			return false, err
		}
		out = append(out, r)
		return len(out) < limit, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// maxUpdateTries bounds UpdateRepo's read-change-write rounds under
// contention.
const maxUpdateTries = 20

// UpdateRepo implements Store: read with the row's ETag, change, then
// replace with If-Match (or insert, which fails if the row appeared
// meanwhile); a 412 or 409 means another writer won, so read again.
func (t *Table) UpdateRepo(ctx context.Context, runID, name string, fn func(r *Repo) error) (Repo, error) {
	op := fmt.Sprintf("update repository %q of run %q", name, runID)
	if err := checkRunArg("update repository", runID); err != nil {
		return Repo{}, err
	}
	if err := checkName("repository name", name); err != nil {
		return Repo{}, fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	pk, rk := runPartition(runID), repoRow(name)
	for try := 0; try < maxUpdateTries; try++ {
		if err := ctx.Err(); err != nil {
			return Repo{}, fmt.Errorf("checkpoint: %s: %w", op, err)
		}
		r := Repo{RunID: runID, Name: name}
		var etag *azcore.ETag
		resp, err := t.client.GetEntity(ctx, pk, rk, nil)
		switch {
		case isNotFound(err):
		case err != nil:
			return Repo{}, t.wrap(op, err)
		default:
			var e aztables.EDMEntity
			if err := json.Unmarshal(resp.Value, &e); err != nil {
				return Repo{}, fmt.Errorf("checkpoint: %s: decode row: %w", op, err)
			}
			if r, err = decodeRepo(e); err != nil {
				return Repo{}, fmt.Errorf("checkpoint: %s: %w", op, err)
			}
			tag := resp.ETag
			etag = &tag
		}
		prev := r.Updated
		if err := fn(&r); err != nil {
			return Repo{}, err
		}
		if r.Updated.Equal(prev) {
			r.Updated = time.Time{} // fn did not set it: stamped now
		}
		nr, err := normalizeRepo(r, runID, t.now)
		if err != nil {
			return Repo{}, fmt.Errorf("checkpoint: %s: %w", op, err)
		}
		b, err := json.Marshal(repoEntity(nr))
		if err != nil {
			return Repo{}, fmt.Errorf("checkpoint: %s: encode row: %w", op, err)
		}
		if etag == nil {
			_, err = t.client.AddEntity(ctx, b, nil)
		} else {
			_, err = t.client.UpdateEntity(ctx, b, &aztables.UpdateEntityOptions{IfMatch: etag, UpdateMode: aztables.UpdateModeReplace})
		}
		if err == nil {
			return nr, nil
		}
		if !isLostRace(err) {
			return Repo{}, t.wrap(op, err)
		}
		// Lost to another writer: back off a little, with jitter, so that
		// writers racing for one row do not keep colliding.
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(rand.Int64N(int64(time.Duration(try+1) * 5 * time.Millisecond)))):
		}
	}
	return Repo{}, fmt.Errorf("checkpoint: %s: %w", op, ErrContention)
}

// isLostRace reports whether a conditional write lost to another writer:
// 412 (ETag changed) or 409 (the row was inserted meanwhile).
func isLostRace(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && (re.StatusCode == http.StatusPreconditionFailed || re.StatusCode == http.StatusConflict)
}

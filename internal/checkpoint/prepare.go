package checkpoint

import (
	"fmt"
	"time"
)

// prepareCreate validates and normalises the arguments of CreateRun.
func prepareCreate(run Run, batches []Batch, now clock) (Run, []Batch, error) {
	run, err := normalizeRun(run, now)
	if err != nil {
		return Run{}, nil, fmt.Errorf("checkpoint: create run: %w", err)
	}
	seen := make(map[int]bool, len(batches))
	out := make([]Batch, 0, len(batches))
	for _, b := range batches {
		if seen[b.N] {
			return Run{}, nil, fmt.Errorf("checkpoint: create run %q: %w: batch %d given twice", run.ID, ErrInvalid, b.N)
		}
		seen[b.N] = true
		if b.Status == "" {
			b.Status = StatusQueued
		}
		nb, err := normalizeBatch(b, run.ID, now)
		if err != nil {
			return Run{}, nil, fmt.Errorf("checkpoint: create run %q: %w", run.ID, err)
		}
		out = append(out, nb)
	}
	return run, out, nil
}

// prepareProgress validates and normalises the arguments of SaveProgress;
// repositories named twice keep their last entry.
func prepareProgress(runID string, repos []Repo, batch *Batch, now clock) ([]Repo, *Batch, error) {
	if err := checkName("run ID", runID); err != nil {
		return nil, nil, fmt.Errorf("checkpoint: save progress: %w", err)
	}
	out := make([]Repo, 0, len(repos))
	for _, r := range repos {
		nr, err := normalizeRepo(r, runID, now)
		if err != nil {
			return nil, nil, fmt.Errorf("checkpoint: save progress of run %q: %w", runID, err)
		}
		out = append(out, nr)
	}
	out = dedupeRepos(out)
	if batch == nil {
		return out, nil, nil
	}
	nb, err := normalizeBatch(*batch, runID, now)
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint: save progress of run %q: %w", runID, err)
	}
	return out, &nb, nil
}

// prepareLast validates and normalises the arguments of SetLastPurge.
func prepareLast(repo string, at time.Time, runID string, now clock) (time.Time, string, error) {
	if err := checkName("repository name", repo); err != nil {
		return time.Time{}, "", fmt.Errorf("checkpoint: set last purge: %w", err)
	}
	at, err := normTime(at, now, "purge time")
	if err != nil {
		return time.Time{}, "", fmt.Errorf("checkpoint: set last purge of %q: %w", repo, err)
	}
	return at, truncText(runID, MaxTextLen), nil
}

// checkRunArg validates a run ID argument of a read or update.
func checkRunArg(op, runID string) error {
	if err := checkName("run ID", runID); err != nil {
		return fmt.Errorf("checkpoint: %s: %w", op, err)
	}
	return nil
}

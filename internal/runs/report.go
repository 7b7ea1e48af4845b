// Package runs builds run reports from checkpoints, for the Runs HTTP
// function (GET /api/runs/{runId}), `handler local` and the CLI.
//
// # JSON
//
// A Report marshals to JSON with these stable, lowerCamel field names:
//
//	{
//	  "run": {"id", "trigger", "dryRun", "policyHash", "started", "status",
//	          "batches", "repositories", "enqueued", "note"},
//	  "batches": {"total", "queued", "running", "continued", "done", "failed", "rejected", "stalled"},
//	  "totals": {"repositories", "pending", "partial", "done", "skipped", "forbidden", "failed",
//	             "tagsDeleted", "manifestsDeleted", "bytesFreed", "kept": {reason: n}, "countsAtLeast"},
//	  "repositories": [{"name", "batch", "status", "reason", "error", "tagsDeleted",
//	                    "manifestsDeleted", "bytesFreed", "kept": {reason: n}, "attempts",
//	                    "updated", "countsAtLeast"}],
//	  "failedBatches": [{"batch", "status", "error", "deliveries", "continuations"}],
//	  "rejections": [{"messageId", "reason", "excerpt", "at"}]
//	}
//
// run.status is derived from the batches: "queued" (no batch started),
// "running", "done" (every batch done), "failed" (some batch failed or was
// rejected, none still open) or "stalled" (every started, unfinished batch
// has made no progress for longer than Options.StallAfter; such batches are
// listed under failedBatches with status "stalled"). A repository's
// countsAtLeast (and the totals') says its deleted counts are a lower
// bound: an attempt at it died with deletes it may not have counted. Repositories of batches that have not started
// appear as "pending". In a dry run the deleted counts are what would have
// been deleted. Deleted counts add up over the attempts of a repository;
// kept counts (by reason: "keep", "too-new", "protected", "locked", …) are
// those of its latest full plan. Rejections (poison messages, not tied to a
// run) are listed only in the report of the latest run. Empty optional lists
// and texts are omitted.
package runs

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
)

// Run statuses derived from the batches.
const (
	RunQueued  = "queued"
	RunRunning = "running"
	RunDone    = "done"
	RunFailed  = "failed"
	// RunStalled: some batch has made no progress for longer than
	// Options.StallAfter and none is still moving.
	RunStalled = "stalled"
)

// BatchStalled is the report status of a running or continued batch with no
// progress for longer than Options.StallAfter: its message was probably lost
// to a crash loop and nothing recorded the end (see the DeadLetters
// function). It is never a checkpoint status.
const BatchStalled = "stalled"

// Options tune BuildWith. Zero values take the defaults.
type Options struct {
	// Now is the clock the ages are measured with; default time.Now.
	Now func() time.Time
	// StallAfter: a running batch without progress for longer is reported
	// stalled; default DefaultStallAfter. The app sets the queue's lock
	// renewal × PURGE_MAX_DELIVERIES: no delivery can be silent that long.
	StallAfter time.Duration
	// StaleAttempt: an attempt in a repository's Live set without a
	// heartbeat for longer has died; default checkpoint.StaleAttempt.
	StaleAttempt time.Duration
}

// DefaultStallAfter is host.json's maxAutoLockRenewalDuration (15 min) ×
// the default PURGE_MAX_DELIVERIES (5).
const DefaultStallAfter = 75 * time.Minute

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.StallAfter <= 0 {
		o.StallAfter = DefaultStallAfter
	}
	if o.StaleAttempt <= 0 {
		o.StaleAttempt = checkpoint.StaleAttempt
	}
	return o
}

// Report is one run's report.
type Report struct {
	Run          RunInfo      `json:"run"`
	Batches      BatchCounts  `json:"batches"`
	Totals       Totals       `json:"totals"`
	Repositories []RepoReport `json:"repositories"`
	// FailedBatches lists the batches that failed or were rejected.
	FailedBatches []BatchReport `json:"failedBatches,omitempty"`
	// Rejections lists recent rejected messages (latest-run reports only).
	Rejections []Rejection `json:"rejections,omitempty"`
}

// RunInfo describes the run.
type RunInfo struct {
	ID           string    `json:"id"`
	Trigger      string    `json:"trigger"`
	DryRun       bool      `json:"dryRun"`
	PolicyHash   string    `json:"policyHash,omitempty"`
	Started      time.Time `json:"started"`
	Status       string    `json:"status"`
	Batches      int       `json:"batches"`
	Repositories int       `json:"repositories"`
	Enqueued     bool      `json:"enqueued"`
	Note         string    `json:"note,omitempty"`
}

// BatchCounts counts the run's batches by status.
type BatchCounts struct {
	Total     int `json:"total"`
	Queued    int `json:"queued"`
	Running   int `json:"running"`
	Continued int `json:"continued"`
	Done      int `json:"done"`
	Failed    int `json:"failed"`
	Rejected  int `json:"rejected"`
	// Stalled counts the running or continued batches without progress
	// for longer than Options.StallAfter (also counted as running or
	// continued).
	Stalled int `json:"stalled"`
}

// Totals add up the repositories.
type Totals struct {
	Repositories     int              `json:"repositories"`
	Pending          int              `json:"pending"`
	Partial          int              `json:"partial"`
	Done             int              `json:"done"`
	Skipped          int              `json:"skipped"`
	Forbidden        int              `json:"forbidden"`
	Failed           int              `json:"failed"`
	TagsDeleted      int64            `json:"tagsDeleted"`
	ManifestsDeleted int64            `json:"manifestsDeleted"`
	BytesFreed       int64            `json:"bytesFreed"`
	Kept             map[string]int64 `json:"kept,omitempty"`
	// CountsAtLeast: some repository's deleted counts are a lower bound.
	CountsAtLeast bool `json:"countsAtLeast,omitempty"`
}

// RepoReport is one repository's line.
type RepoReport struct {
	Name             string           `json:"name"`
	Batch            int              `json:"batch"`
	Status           string           `json:"status"`
	Reason           string           `json:"reason,omitempty"`
	Error            string           `json:"error,omitempty"`
	TagsDeleted      int64            `json:"tagsDeleted"`
	ManifestsDeleted int64            `json:"manifestsDeleted"`
	BytesFreed       int64            `json:"bytesFreed"`
	Kept             map[string]int64 `json:"kept,omitempty"`
	Attempts         int              `json:"attempts"`
	Updated          *time.Time       `json:"updated,omitempty"`
	// CountsAtLeast: an attempt at this repository died (a killed process)
	// with deletes it may not have counted; the deleted counts are a lower
	// bound, never an overcount.
	CountsAtLeast bool `json:"countsAtLeast,omitempty"`
}

// BatchReport is a batch that needs attention.
type BatchReport struct {
	Batch         int    `json:"batch"`
	Status        string `json:"status"`
	Error         string `json:"error,omitempty"`
	Deliveries    int    `json:"deliveries"`
	Continuations int    `json:"continuations"`
}

// Rejection is a message refused as malformed.
type Rejection struct {
	MessageID string    `json:"messageId"`
	Reason    string    `json:"reason"`
	Excerpt   string    `json:"excerpt,omitempty"`
	At        time.Time `json:"at"`
}

// ErrNotFound is wrapped when the run (or, for the latest, any run) does not
// exist; it is checkpoint.ErrNotFound.
var ErrNotFound = checkpoint.ErrNotFound

// Build reads the run's checkpoints and builds its report. An empty runID
// means the latest run (by start time), whose report also lists recent
// rejections.
func Build(ctx context.Context, store checkpoint.Store, runID string) (*Report, error) {
	return BuildWith(ctx, store, runID, Options{})
}

// BuildWith is Build with options.
func BuildWith(ctx context.Context, store checkpoint.Store, runID string, o Options) (*Report, error) {
	o = o.withDefaults()
	latest := runID == ""
	var run checkpoint.Run
	if latest {
		runs, err := store.LatestRuns(ctx, 1)
		if err != nil {
			return nil, fmt.Errorf("report: latest run: %w", err)
		}
		if len(runs) == 0 {
			return nil, fmt.Errorf("report: no run recorded yet: %w", ErrNotFound)
		}
		run = runs[0]
	} else {
		var err error
		if run, err = store.GetRun(ctx, runID); err != nil {
			return nil, fmt.Errorf("report: run %q: %w", runID, err)
		}
	}
	batches, err := store.ListBatches(ctx, run.ID)
	if err != nil {
		return nil, fmt.Errorf("report: run %q: %w", run.ID, err)
	}
	repos, err := store.ListRepos(ctx, run.ID)
	if err != nil {
		return nil, fmt.Errorf("report: run %q: %w", run.ID, err)
	}
	r := assemble(run, batches, repos, o)
	if latest {
		rejs, err := store.ListRejections(ctx, 0)
		if err != nil {
			return nil, fmt.Errorf("report: rejections: %w", err)
		}
		for _, j := range rejs {
			r.Rejections = append(r.Rejections, Rejection{MessageID: j.MessageID, Reason: j.Reason, Excerpt: j.Excerpt, At: j.At})
		}
	}
	return r, nil
}

// assemble builds the report from the rows.
func assemble(run checkpoint.Run, batches []checkpoint.Batch, repos []checkpoint.Repo, o Options) *Report {
	now := o.Now()
	r := &Report{Run: RunInfo{
		ID: run.ID, Trigger: run.Trigger, DryRun: run.DryRun, PolicyHash: run.PolicyHash, Started: run.Started,
		Batches: run.Batches, Repositories: run.Repositories, Enqueued: run.Enqueued, Note: run.Note,
	}}
	seen := make(map[string]bool, len(repos))
	r.Repositories = make([]RepoReport, 0, len(repos))
	for _, x := range repos {
		seen[x.Name] = true
		rr := RepoReport{
			Name: x.Name, Batch: x.Batch, Status: string(x.Status), Reason: x.Reason, Error: x.Error,
			TagsDeleted: x.TagsDeleted, ManifestsDeleted: x.ManifestsDeleted, BytesFreed: x.BytesFreed,
			Kept: x.Kept, Attempts: x.Attempts, CountsAtLeast: x.CountsAtLeast(now, o.StaleAttempt),
		}
		if !x.Updated.IsZero() {
			u := x.Updated
			rr.Updated = &u
		}
		r.Repositories = append(r.Repositories, rr)
	}
	pendingAdded := false
	for _, b := range batches {
		r.Batches.Total++
		switch b.Status {
		case checkpoint.StatusQueued, "":
			r.Batches.Queued++
		case checkpoint.StatusRunning:
			r.Batches.Running++
		case checkpoint.StatusContinued:
			r.Batches.Continued++
		case checkpoint.StatusDone:
			r.Batches.Done++
		case checkpoint.StatusFailed:
			r.Batches.Failed++
		case checkpoint.StatusRejected:
			r.Batches.Rejected++
		}
		stalled := (b.Status == checkpoint.StatusRunning || b.Status == checkpoint.StatusContinued) &&
			!b.Updated.IsZero() && now.Sub(b.Updated) > o.StallAfter
		if stalled {
			r.Batches.Stalled++
		}
		if stalled || b.Status == checkpoint.StatusFailed || b.Status == checkpoint.StatusRejected {
			br := BatchReport{
				Batch: b.N, Status: string(b.Status), Error: b.Error, Deliveries: b.Deliveries, Continuations: b.Continuations,
			}
			if stalled {
				br.Status = BatchStalled
				br.Error = strings.TrimPrefix(fmt.Sprintf("%s; no progress since %s (over %s)", b.Error,
					b.Updated.UTC().Format(time.RFC3339), o.StallAfter), "; ")
			}
			r.FailedBatches = append(r.FailedBatches, br)
		}
		for _, name := range b.Repositories {
			if !seen[name] {
				seen[name] = true
				pendingAdded = true
				r.Repositories = append(r.Repositories, RepoReport{Name: name, Batch: b.N, Status: string(checkpoint.StatusPending)})
			}
		}
	}
	if pendingAdded {
		slices.SortFunc(r.Repositories, func(a, b RepoReport) int { return strings.Compare(a.Name, b.Name) })
	}
	r.Run.Status = runStatus(r.Batches)

	t := &r.Totals
	for _, x := range r.Repositories {
		t.Repositories++
		switch checkpoint.Status(x.Status) {
		case checkpoint.StatusPending:
			t.Pending++
		case checkpoint.StatusPartial:
			t.Partial++
		case checkpoint.StatusDone:
			t.Done++
		case checkpoint.StatusSkipped:
			t.Skipped++
		case checkpoint.StatusForbidden:
			t.Forbidden++
		case checkpoint.StatusFailed:
			t.Failed++
		}
		t.CountsAtLeast = t.CountsAtLeast || x.CountsAtLeast
		t.TagsDeleted += x.TagsDeleted
		t.ManifestsDeleted += x.ManifestsDeleted
		t.BytesFreed += x.BytesFreed
		for k, v := range x.Kept {
			if t.Kept == nil {
				t.Kept = map[string]int64{}
			}
			t.Kept[k] += v
		}
	}
	return r
}

func runStatus(b BatchCounts) string {
	open := b.Queued + b.Running + b.Continued
	switch {
	case b.Total == 0 || b.Done == b.Total:
		return RunDone
	case open == 0:
		return RunFailed
	case b.Queued == b.Total:
		return RunQueued
	case b.Stalled > 0 && b.Stalled == b.Running+b.Continued:
		return RunStalled
	default:
		return RunRunning
	}
}

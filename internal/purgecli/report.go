package purgecli

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/purge"
)

// Repository statuses of the CLI beyond purge's own.
const (
	statusNotStarted  = "not-started" // the timeout or an interrupt came first
	statusInterrupted = "interrupted" // stopped by Ctrl-C while running
)

// report is the JSON document (and the source of the table). Field names
// are a stable, documented interface (see the package doc).
type report struct {
	Registry        string       `json:"registry"`
	DryRun          bool         `json:"dryRun"`
	Interrupted     bool         `json:"interrupted"`
	PolicyHash      string       `json:"policyHash"`
	StartedAt       time.Time    `json:"startedAt"`
	FinishedAt      time.Time    `json:"finishedAt"`
	DurationSeconds float64      `json:"durationSeconds"`
	ExitCode        int          `json:"exitCode"`
	Repositories    []repoReport `json:"repositories"`
	Totals          totals       `json:"totals"`
}

// repoReport is one repository's outcome.
type repoReport struct {
	Repository       string  `json:"repository"`
	Status           string  `json:"status"`
	Reason           string  `json:"reason"`
	TagsDeleted      int64   `json:"tagsDeleted"`
	ManifestsDeleted int64   `json:"manifestsDeleted"`
	BytesFreed       int64   `json:"bytesFreed"`
	DeleteErrors     int64   `json:"deleteErrors"`
	DurationSeconds  float64 `json:"durationSeconds"`
	Kept             kept    `json:"kept"`
	Items            []item  `json:"items"`
}

// kept counts the kept items of a repository by kind and reason.
type kept struct {
	Tags      map[string]int64 `json:"tags"`
	Manifests map[string]int64 `json:"manifests"`
}

// item is one decision worth listing: a deletion (done, planned, failed,
// refused as locked, not started) or, with --verbose, a kept item.
type item struct {
	Kind    string    `json:"kind"`
	Tag     string    `json:"tag"`
	Digest  string    `json:"digest"`
	Action  string    `json:"action"`
	Reason  string    `json:"reason"`
	Rule    string    `json:"rule"`
	Size    int64     `json:"size"`
	Updated time.Time `json:"updated,omitzero"`
	Error   string    `json:"error,omitempty"`
}

// totals sums the repositories.
type totals struct {
	Repositories     int   `json:"repositories"`
	Done             int   `json:"done"`
	Skipped          int   `json:"skipped"`
	Partial          int   `json:"partial"`
	Forbidden        int   `json:"forbidden"`
	Failed           int   `json:"failed"`
	NotStarted       int   `json:"notStarted"`
	Interrupted      int   `json:"interrupted"`
	TagsDeleted      int64 `json:"tagsDeleted"`
	ManifestsDeleted int64 `json:"manifestsDeleted"`
	BytesFreed       int64 `json:"bytesFreed"`
	DeleteErrors     int64 `json:"deleteErrors"`
	KeptTags         int64 `json:"keptTags"`
	KeptManifests    int64 `json:"keptManifests"`
}

// collector gathers decisions (from several goroutines) and results into
// a report. Memory grows with the number of listed items (deletions, plus
// kept items with --verbose), not with the size of the registry.
type collector struct {
	verbose bool

	// Progress counters, read without the lock.
	deletes  atomic.Int64 // deleted, or would-be deleted in a dry run
	reposEnd atomic.Int64

	mu    sync.Mutex
	repos map[string]*repoReport
}

func newCollector(repos []string, verbose bool) *collector {
	c := &collector{verbose: verbose, repos: make(map[string]*repoReport, len(repos))}
	for _, r := range repos {
		c.repos[r] = &repoReport{
			Repository: r, Status: statusNotStarted,
			Kept:  kept{Tags: map[string]int64{}, Manifests: map[string]int64{}},
			Items: []item{},
		}
	}
	return c
}

// onDecision is the executor's OnDecision hook.
func (c *collector) onDecision(d policy.Decision, o purge.Outcome, err error) {
	if o == purge.OutcomeDeleted || o == purge.OutcomeWouldDelete {
		c.deletes.Add(1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rr := c.repos[d.Repo]
	if rr == nil {
		return
	}
	switch o {
	case purge.OutcomeKept, purge.OutcomeLocked:
		reason := string(d.Reason)
		if o == purge.OutcomeLocked {
			reason = string(policy.ReasonLocked)
		}
		if d.Kind == policy.KindTag {
			rr.Kept.Tags[reason]++
		} else {
			rr.Kept.Manifests[reason]++
		}
		if o == purge.OutcomeKept && !c.verbose {
			return
		}
	}
	it := item{
		Kind: string(d.Kind), Tag: d.Tag, Digest: d.Digest, Action: string(o),
		Reason: string(d.Reason), Rule: d.Rule, Size: d.Size, Updated: d.Updated,
	}
	if err != nil {
		it.Error = err.Error()
	}
	rr.Items = append(rr.Items, it)
}

// finish records a repository's result.
func (c *collector) finish(res purge.Result, status, reason string) {
	c.reposEnd.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	rr := c.repos[res.Repository]
	if rr == nil {
		return
	}
	rr.Status, rr.Reason = status, reason
	rr.TagsDeleted, rr.ManifestsDeleted = res.TagsDeleted, res.ManifestsDeleted
	rr.BytesFreed, rr.DeleteErrors = res.BytesFreed, res.DeleteErrors
	rr.DurationSeconds = res.Duration.Seconds()
}

// report assembles the document; repositories sorted by name, items of a
// repository tags first, newest first.
func (c *collector) report() *report {
	c.mu.Lock()
	defer c.mu.Unlock()
	rep := &report{Repositories: make([]repoReport, 0, len(c.repos))}
	for _, rr := range c.repos {
		r := *rr
		r.Items = slices.Clone(rr.Items)
		slices.SortStableFunc(r.Items, compareItems)
		rep.Repositories = append(rep.Repositories, r)
	}
	slices.SortFunc(rep.Repositories, func(a, b repoReport) int { return cmp.Compare(a.Repository, b.Repository) })
	t := &rep.Totals
	for _, r := range rep.Repositories {
		t.Repositories++
		switch r.Status {
		case string(purge.StatusDone):
			t.Done++
		case string(purge.StatusSkipped):
			t.Skipped++
		case string(purge.StatusPartial):
			t.Partial++
		case string(purge.StatusForbidden):
			t.Forbidden++
		case string(purge.StatusFailed):
			t.Failed++
		case statusInterrupted:
			t.Interrupted++
		default:
			t.NotStarted++
		}
		t.TagsDeleted += r.TagsDeleted
		t.ManifestsDeleted += r.ManifestsDeleted
		t.BytesFreed += r.BytesFreed
		t.DeleteErrors += r.DeleteErrors
		for _, n := range r.Kept.Tags {
			t.KeptTags += n
		}
		for _, n := range r.Kept.Manifests {
			t.KeptManifests += n
		}
	}
	return rep
}

func compareItems(a, b item) int {
	if a.Kind != b.Kind {
		if a.Kind == string(policy.KindTag) {
			return -1
		}
		return 1
	}
	if c := b.Updated.Compare(a.Updated); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Tag, b.Tag), cmp.Compare(a.Digest, b.Digest))
}

// statusOf turns a purge result into the CLI's status and reason:
// cancellation by an interrupt and the hard end of --timeout get names of
// their own instead of "failed: context canceled".
func statusOf(res purge.Result, interrupted, timedOut bool) (string, string) {
	if res.Status == purge.StatusFailed {
		switch {
		case interrupted && errors.Is(res.Err, context.Canceled):
			return statusInterrupted, "interrupted before the repository was finished"
		case timedOut && errors.Is(res.Err, context.DeadlineExceeded):
			return string(purge.StatusPartial), "--timeout reached before the repository was finished"
		}
	}
	return string(res.Status), res.Reason
}

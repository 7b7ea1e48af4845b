package checkpoint

import (
	"context"
	"errors"
	"time"
)

// Status is the state of a repository or a batch.
type Status string

// Repository statuses.
const (
	StatusPending   Status = "pending"   // not started yet
	StatusDone      Status = "done"      // purged completely
	StatusPartial   Status = "partial"   // started; Cursor says where to resume
	StatusSkipped   Status = "skipped"   // deliberately not purged (see Reason)
	StatusForbidden Status = "forbidden" // the identity may not touch it (see Reason)
	StatusFailed    Status = "failed"    // gave up (see Error)
)

// Batch statuses (StatusDone and StatusFailed apply to batches too).
const (
	StatusQueued    Status = "queued"    // message handed to (or about to be handed to) the queue
	StatusRunning   Status = "running"   // a worker is processing it
	StatusContinued Status = "continued" // deadline reached; a continuation message carries on
	StatusRejected  Status = "rejected"  // permanently refused (malformed, not allowed)
)

// Run is one purge run: a timer fan-out, a portal request or a push event.
type Run struct {
	ID           string
	Trigger      string // "schedule", "manual", "portal", "push"
	DryRun       bool
	PolicyHash   string
	Started      time.Time
	Batches      int
	Repositories int
	Enqueued     bool // every batch message of the run was handed to Service Bus
	Note         string
}

// Batch is one queue message of a run: the repositories of one token.
type Batch struct {
	RunID         string
	N             int
	Repositories  []string
	Status        Status
	Deliveries    int // highest DeliveryCount seen
	Continuations int
	Error         string
	Updated       time.Time
}

// Repo is the checkpoint of one repository within a run.
type Repo struct {
	RunID            string
	Name             string
	Batch            int
	Status           Status
	Reason           string // why skipped/forbidden/failed, human readable
	Error            string // last error text (never a token)
	Cursor           string // opaque JSON resume cursor ("" = none)
	TagsDeleted      int64
	ManifestsDeleted int64
	BytesFreed       int64
	Kept             map[string]int64 // kept counts by reason ("keep", "locked", "protected", ...)
	Attempts         int
	Updated          time.Time
	// Live holds the attempts purging the repository now: attempt id →
	// its last heartbeat. An attempt adds itself when it starts and removes
	// itself when it ends; one that died (a killed process) stays until a
	// later writer finds it stale (see Prune).
	Live map[string]time.Time
	// AtLeast: an attempt died with deletes it may not have counted, so
	// the deleted counts are a lower bound.
	AtLeast bool
}

// StaleAttempt: an attempt listed in a row's Live set without a heartbeat
// for this long has died (a live one beats at least every quarter of it).
const StaleAttempt = 2 * time.Minute

// Prune removes the attempts of Live whose heartbeat is older than
// staleAfter at now and, if it removed any, marks the counts a lower bound
// (AtLeast). It reports whether it removed any.
func (r *Repo) Prune(now time.Time, staleAfter time.Duration) bool {
	pruned := false
	for id, at := range r.Live {
		if now.Sub(at) > staleAfter {
			delete(r.Live, id)
			pruned = true
		}
	}
	if pruned {
		r.AtLeast = true
	}
	if len(r.Live) == 0 {
		r.Live = nil
	}
	return pruned
}

// CountsAtLeast reports whether the deleted counts may be low: an attempt
// died uncounted (AtLeast), or one is still listed as live in a row whose
// purge has ended or whose heartbeat is older than staleAfter at now.
func (r Repo) CountsAtLeast(now time.Time, staleAfter time.Duration) bool {
	if r.AtLeast {
		return true
	}
	for _, at := range r.Live {
		if r.Status.Terminal() || now.Sub(at) > staleAfter {
			return true
		}
	}
	return false
}

// Rejection records a message that was refused permanently (a poison message).
type Rejection struct {
	MessageID string
	Reason    string
	Excerpt   string // the start of the message body, for diagnosis
	At        time.Time
}

// Store persists run, batch and repository checkpoints. Implementations are
// safe for concurrent use. Times are stored in UTC with 100 ns precision; zero
// Started/Updated/At values are replaced by the current time. Free texts (Note,
// Error, Reason, Excerpt) are truncated to MaxTextLen bytes; a Cursor longer
// than MaxValueLen UTF-16 units is refused with ErrTooLarge.
type Store interface {
	// CreateRun writes the run row and its batch rows. If the run already
	// exists nothing is written and the existing run is returned with
	// created=false, so a retried or concurrent create is harmless. Batch
	// RunIDs may be empty; batches with an empty Status get StatusQueued.
	CreateRun(ctx context.Context, run Run, batches []Batch) (existing Run, created bool, err error)
	// MarkEnqueued sets Enqueued on the run (ErrNotFound if there is no run).
	MarkEnqueued(ctx context.Context, runID string) error
	// GetRun returns the run or ErrNotFound.
	GetRun(ctx context.Context, runID string) (Run, error)
	// LatestRuns returns up to limit runs, newest Started first (ties by
	// ID). limit <= 0 means DefaultListLimit.
	LatestRuns(ctx context.Context, limit int) ([]Run, error)
	// GetBatch returns batch n of the run or ErrNotFound.
	GetBatch(ctx context.Context, runID string, n int) (Batch, error)
	// ListBatches returns the batches of a run ordered by N.
	ListBatches(ctx context.Context, runID string) ([]Batch, error)
	// SaveProgress replaces the rows of repos and, if batch is not nil, the
	// batch row, in transactions of at most 100 rows; the batch row goes in
	// the last one. A repository named twice keeps the last entry.
	SaveProgress(ctx context.Context, runID string, repos []Repo, batch *Batch) error
	// UpdateRepo reads the repository's row (a new one with RunID and Name
	// set when there is none), lets fn change it and writes it back only if
	// nobody wrote it meanwhile (an ETag check), calling fn again on the
	// fresh row until the write wins. Concurrent updates therefore merge:
	// counts added in fn are never lost. It returns the row written.
	UpdateRepo(ctx context.Context, runID, name string, fn func(r *Repo) error) (Repo, error)
	// GetRepos returns the checkpoints of the named repositories; names
	// without a checkpoint are absent from the map.
	GetRepos(ctx context.Context, runID string, names []string) (map[string]Repo, error)
	// ListRepos returns every repository checkpoint of the run, sorted by name.
	ListRepos(ctx context.Context, runID string) ([]Repo, error)
	// LastPurge returns when the repository was last purged and by which run;
	// the zero time if never.
	LastPurge(ctx context.Context, repo string) (at time.Time, runID string, err error)
	// SetLastPurge records a purge of the repository (last writer wins).
	SetLastPurge(ctx context.Context, repo string, at time.Time, runID string) error
	// RecordRejection stores a refused message.
	RecordRejection(ctx context.Context, r Rejection) error
	// ListRejections returns up to limit rejections, newest first.
	// limit <= 0 means DefaultListLimit.
	ListRejections(ctx context.Context, limit int) ([]Rejection, error)
}

// DefaultListLimit is the number of runs or rejections listed when the
// caller passes a limit <= 0.
const DefaultListLimit = 20

// Errors returned by every Store (test with errors.Is).
var (
	// ErrNotFound: the run or batch does not exist.
	ErrNotFound = errors.New("checkpoint: not found")
	// ErrInvalid: an argument cannot be stored (empty or non-UTF-8 name,
	// mismatching RunID, negative batch number, time out of range).
	ErrInvalid = errors.New("checkpoint: invalid argument")
	// ErrTooLarge: a value exceeds what a table property can hold.
	ErrTooLarge = errors.New("checkpoint: value too large")
	// ErrContention: UpdateRepo lost the race for the row too many times.
	ErrContention = errors.New("checkpoint: too many concurrent updates")
)

// Terminal reports whether a repository in this status needs no more work
// in its run: done, skipped, forbidden or failed.
func (s Status) Terminal() bool {
	switch s {
	case StatusDone, StatusSkipped, StatusForbidden, StatusFailed:
		return true
	}
	return false
}

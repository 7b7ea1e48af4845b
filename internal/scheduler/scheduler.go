package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/ncrontab"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/queue"
)

// Catalog lists the registry's repositories page by page: an *acr.Client
// bound to a registry:catalog:* token.
type Catalog interface {
	Catalog(ctx context.Context, fn func(repos []string) error) error
}

// Options configure a Scheduler.
type Options struct {
	Policy    *policy.Policy     // required
	Schedule  *ncrontab.Schedule // PURGE_SCHEDULE; nil makes every run manual
	BatchSize int                // ABAC_BATCH_SIZE, required
	DryRun    bool               // PURGE_DRY_RUN: recorded in the run and every message
	// Repositories (PURGE_REPOSITORIES) is used instead of the catalog when
	// not empty.
	Repositories []string
	Catalog      Catalog          // required when Repositories is empty
	Store        checkpoint.Store // required
	Sender       queue.Sender     // required
	Logger       *slog.Logger     // nil discards
	Now          func() time.Time // default time.Now
}

// Scheduler fans a timer firing out to the queue.
type Scheduler struct {
	o   Options
	log *slog.Logger
}

// New validates o and returns a Scheduler.
func New(o Options) (*Scheduler, error) {
	var errs []error
	if o.Policy == nil {
		errs = append(errs, errors.New("no policy"))
	}
	if o.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("batch size %d is less than 1", o.BatchSize))
	}
	if o.Catalog == nil && len(o.Repositories) == 0 {
		errs = append(errs, errors.New("neither a catalog client nor a repository list"))
	}
	if o.Store == nil {
		errs = append(errs, errors.New("no checkpoint store"))
	}
	if o.Sender == nil {
		errs = append(errs, errors.New("no sender"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{o: o, log: log}, nil
}

// ErrCatalogNotPermitted wraps a catalog listing the identity may not do.
var ErrCatalogNotPermitted = errors.New("the identity may not list the registry catalog: " +
	"assign it the Container Registry Repository Catalog Lister role, " +
	"or set PURGE_REPOSITORIES to the repositories to purge")

// Run lists the repositories, creates the run for the firing (see RunID) and
// enqueues its batches. Running it again for the same firing sends nothing
// twice.
func (s *Scheduler) Run(ctx context.Context, f Firing) (queue.Summary, error) {
	if f.At.IsZero() {
		f.At = s.o.Now()
	}
	id, trigger := RunID(s.o.Schedule, f)
	log := s.log.With("run", id)
	ctx, cancel := context.WithTimeout(ctx, RunTimeout)
	defer cancel()
	sum := queue.Summary{RunID: id, Trigger: trigger, DryRun: s.o.DryRun}

	// A retried firing of an enqueued run need not list the catalog again.
	if run, err := s.o.Store.GetRun(ctx, id); err == nil && run.Enqueued {
		log.Info("run already enqueued: nothing to send", "batches", run.Batches)
		sum.Trigger, sum.DryRun, sum.Repositories, sum.Batches = run.Trigger, run.DryRun, run.Repositories, run.Batches
		sum.AlreadyEnqueued = true
		return sum, nil
	} else if err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
		return sum, fmt.Errorf("fan out run %s: %w", id, err)
	}

	repos, listed, invalid, err := s.repositories(ctx, log)
	sum.Listed, sum.Invalid = listed, invalid
	if err != nil {
		return sum, fmt.Errorf("fan out run %s: %w", id, err)
	}
	run := checkpoint.Run{
		ID:         id,
		Trigger:    trigger,
		DryRun:     s.o.DryRun,
		PolicyHash: s.o.Policy.Hash(),
		Started:    s.o.Now(),
	}
	if len(repos) == 0 {
		run.Note = fmt.Sprintf("no repository matched the policy (%d listed)", listed)
	}
	out, err := queue.Enqueue(ctx, s.o.Store, s.o.Sender, run, repos, s.o.BatchSize, s.log)
	out.Listed, out.Invalid = listed, invalid
	return out, err
}

// repositories returns the sorted, de-duplicated, valid repository names the
// policy applies to, with how many names were listed and how many of those
// were invalid.
func (s *Scheduler) repositories(ctx context.Context, log *slog.Logger) (repos []string, listed, invalid int, err error) {
	take := func(page []string) error {
		listed += len(page)
		valid := page[:0:0]
		for _, name := range page {
			if verr := queue.ValidateRepositoryName(name); verr != nil {
				invalid++
				log.Warn("skipping invalid repository name", "repository", fmt.Sprintf("%.300q", name), "reason", verr.Error())
				continue
			}
			valid = append(valid, name)
		}
		matched, ferr := s.o.Policy.Filter(valid)
		if ferr != nil {
			return fmt.Errorf("policy repository filter: %w", ferr)
		}
		repos = append(repos, matched...)
		return nil
	}
	source := "catalog"
	if len(s.o.Repositories) > 0 {
		source = "PURGE_REPOSITORIES"
		err = take(s.o.Repositories)
	} else {
		err = s.o.Catalog.Catalog(ctx, take)
		var ae *acr.Error
		if acr.IsNotPermitted(err) || (errors.As(err, &ae) && (ae.StatusCode == 401 || ae.StatusCode == 403)) {
			err = fmt.Errorf("%w (%w)", ErrCatalogNotPermitted, err)
		} else if err != nil {
			err = fmt.Errorf("list the catalog: %w", err)
		}
	}
	if err != nil {
		return nil, listed, invalid, err
	}
	slices.Sort(repos)
	repos = slices.Compact(repos)
	log.Info("repositories to purge", "source", source, "listed", listed, "invalid", invalid, "matched", len(repos))
	return repos, listed, invalid, nil
}

// Package app wires the Functions app together: configuration, credential,
// token broker, delete budget and rate limiter, registry client, checkpoint
// store and Service Bus sender, and routes the custom handler's requests to the three
// functions, one package each (one-to-one with functions/):
//
//   - Scheduler (timer trigger): internal/scheduler.
//   - Worker (Service Bus trigger): internal/worker.
//   - Runs (HTTP trigger GET /api/runs/{runId?}): internal/runs.
//   - DeadLetters (Service Bus trigger on the queue's dead-letter
//     sub-queue): internal/deadletters.
//
// Serve runs the whole thing for `handler serve`; New lets `handler local`
// and the end-to-end tests inject the parts that differ (credential, sender,
// store, clock, HTTP client).
package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/budget"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/deadletters"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/scheduler"
	"github.com/acrpurge/acrpurge/internal/worker"
)

// Function names (folders under functions/) and their binding names.
const (
	FunctionScheduler = scheduler.Name
	FunctionWorker    = worker.Name
	FunctionRuns      = runs.Name
	// FunctionDeadLetters records dead-lettered Worker messages.
	FunctionDeadLetters = deadletters.Name

	BindingTimer    = scheduler.BindingTimer
	BindingMessage  = worker.BindingMessage
	BindingRequest  = runs.BindingRequest
	BindingResponse = runs.BindingResponse
)

// LockRenewal is host.json's serviceBus.maxAutoLockRenewalDuration: the
// longest one Worker delivery can hold its message. A running batch
// without progress for LockRenewal × PURGE_MAX_DELIVERIES is reported
// stalled by the Runs function.
const LockRenewal = 15 * time.Minute

// Deps are the parts of the app that differ between production, `handler
// local` and tests.
type Deps struct {
	// Credential is the AAD identity used for the registry (required).
	Credential azcore.TokenCredential
	// Sender sends Scheduler batches, re-fan-outs and continuations (required).
	Sender queue.Sender
	// Store keeps the checkpoints (required).
	Store checkpoint.Store
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives JSON-able structured logs; nil discards.
	Logger *slog.Logger
	// HTTPClient talks to the registry; default acr.NewHTTPClient().
	HTTPClient *http.Client
	// Retry tunes the registry client's retries; zero fields take defaults.
	Retry acr.RetryPolicy
	// Deletes is the delete budget (PURGE_DELETES_PER_MINUTE): Serve passes
	// the registry-wide one shared through the checkpoint table (see
	// NewSharedBudget); nil means a budget of this process alone.
	Deletes acr.Gate
}

// App is the wired Functions app.
type App struct {
	scheduler *scheduler.Scheduler
	worker    *worker.Worker
	runs      *runs.Function
	dead      *deadletters.Function
	log       *slog.Logger
	// ready, when set, holds invocations back until the start-up check
	// (Serve: the checkpoint table) has passed.
	ready *readiness
}

// New wires the app from a validated configuration and policy.
func New(cfg *config.Config, pol *policy.Policy, deps Deps) (*App, error) {
	var errs []error
	if cfg == nil {
		errs = append(errs, errors.New("no configuration"))
	}
	if pol == nil {
		errs = append(errs, errors.New("no policy"))
	}
	if deps.Credential == nil {
		errs = append(errs, errors.New("no credential"))
	}
	if deps.Sender == nil {
		errs = append(errs, errors.New("no sender"))
	}
	if deps.Store == nil {
		errs = append(errs, errors.New("no checkpoint store"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	if deps.Deletes == nil {
		local, err := budget.NewLocal(budget.Options{
			PerMinute: cfg.DeletesPerMinute, Scope: cfg.Registry.Service, Logger: log.With("component", "budget"),
		})
		if err != nil {
			return nil, fmt.Errorf("app: delete budget (%s): %w", config.DeletesPerMinute, err)
		}
		deps.Deletes = local
	}
	broker, client, err := acr.Connect(acr.ConnectOptions{
		Endpoint: cfg.Registry, Credential: deps.Credential, HTTPClient: deps.HTTPClient, Retry: deps.Retry,
		Limiter: acr.NewLimiter(acr.LimiterOptions{Deletes: deps.Deletes, Now: deps.Now}), Now: deps.Now, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}

	sched, err := scheduler.New(scheduler.Options{
		Policy: pol, Schedule: cfg.Schedule, BatchSize: cfg.BatchSize, DryRun: cfg.DryRun,
		Repositories: cfg.Repositories, Catalog: client.WithTokens(broker.Source(acr.CatalogScope())),
		Store: deps.Store, Sender: deps.Sender, Logger: log.With("function", FunctionScheduler), Now: deps.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	wk, err := worker.New(worker.Options{
		Registry: cfg.Registry, Policy: pol, Store: deps.Store, Sender: deps.Sender, Tokens: broker, Client: client,
		BatchSize: cfg.BatchSize, Concurrency: cfg.Concurrency, RepoParallelism: cfg.RepoParallelism,
		MaxDeliveries: cfg.MaxDeliveries, DryRun: cfg.DryRun,
		PushDebounce: cfg.PushDebounce, Deadline: cfg.MessageDeadline, Now: deps.Now,
		Logger: log.With("function", FunctionWorker),
	})
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	return &App{
		scheduler: sched, worker: wk, log: log,
		runs: &runs.Function{Store: deps.Store, Logger: log.With("function", FunctionRuns), Report: runs.Options{
			Now: deps.Now, StallAfter: LockRenewal * time.Duration(cfg.MaxDeliveries),
		}},
		dead: &deadletters.Function{Store: deps.Store, Now: deps.Now, Logger: log.With("function", FunctionDeadLetters)},
	}, nil
}

// NewSharedBudget returns the registry-wide delete budget of cfg
// (PURGE_DELETES_PER_MINUTE, PURGE_MAX_INSTANCES), shared by every instance
// through the checkpoint table tbl names, for the registry cfg names.
func NewSharedBudget(cfg *config.Config, tbl checkpoint.TableOptions, logger *slog.Logger) (*budget.Budget, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b, err := budget.NewShared(tbl, budget.Options{
		PerMinute: cfg.DeletesPerMinute, MaxInstances: cfg.MaxInstances, Scope: cfg.Registry.Service,
		Logger: logger.With("component", "budget"),
	})
	if err != nil {
		return nil, fmt.Errorf("delete budget (%s, %s): %w", config.DeletesPerMinute, config.MaxInstances, err)
	}
	return b, nil
}

// Handlers returns the functions by name.
func (a *App) Handlers() map[string]funchost.Handler {
	hs := map[string]funchost.Handler{
		FunctionScheduler:   a.scheduler.Invoke,
		FunctionWorker:      a.worker.Invoke,
		FunctionRuns:        a.runs.Invoke,
		FunctionDeadLetters: a.dead.Invoke,
	}
	if a.ready != nil {
		for name, h := range hs {
			hs[name] = a.ready.gate(h)
		}
	}
	return hs
}

// HTTPHandler serves the custom-handler protocol for every function.
func (a *App) HTTPHandler() http.Handler {
	return funchost.NewServer(a.Handlers(), a.log)
}

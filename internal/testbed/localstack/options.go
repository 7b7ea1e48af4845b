package localstack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/acrpurge/acrpurge/internal/app"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
)

// Defaults of Options.
const (
	// DefaultBatchSize is small so that the default demo fans out into
	// several messages (the app's own default is config.DefaultBatchSize).
	DefaultBatchSize = 3
	// DefaultDeletesPerMinute is far above ACR's limits: the emulator has
	// none, and the demo should not wait on the delete budget.
	DefaultDeletesPerMinute = 100000
	// DefaultMaxConcurrentCalls is host.json's serviceBus.maxConcurrentCalls.
	DefaultMaxConcurrentCalls = 4
	// DefaultRedeliveryBackoff is the wait before a redelivery, times the
	// delivery count (Service Bus redelivers once the lock is abandoned).
	DefaultRedeliveryBackoff = 100 * time.Millisecond
)

// timerLateness is how late after its occurrence the timer fires, as the
// host's timer does by a few seconds.
const timerLateness = 3 * time.Second

// TriggerKind says what starts work.
type TriggerKind string

// Triggers.
const (
	TriggerTimer TriggerKind = "timer" // the Scheduler's timer fires
	TriggerPush  TriggerKind = "push"  // an image is pushed; its ImagePushed event reaches the queue
	TriggerSend  TriggerKind = "send"  // an operator sends a message from the portal
)

// Trigger is one thing that starts work, delivered in order; the queue is
// drained after each.
type Trigger struct {
	Kind TriggerKind
	// Ref is "repository:tag" for TriggerPush.
	Ref string
	// Body is the message body for TriggerSend, sent as given.
	Body string
}

// Options configure RunStack. Zero fields take defaults.
type Options struct {
	// Repositories is the size of the demo registry (see Seed);
	// DefaultRepositories when < 1.
	Repositories int
	// Policy is PURGE_POLICY, inline JSON or @file relative to PolicyDir
	// (default the working directory); DemoPolicy when empty.
	Policy, PolicyDir string
	// BatchSize is ABAC_BATCH_SIZE (default DefaultBatchSize).
	BatchSize int
	// Concurrency is PURGE_CONCURRENCY (default the app's).
	Concurrency int
	// DeletesPerMinute is PURGE_DELETES_PER_MINUTE (default
	// DefaultDeletesPerMinute).
	DeletesPerMinute int
	// MaxDeliveries is PURGE_MAX_DELIVERIES and the queue's max delivery
	// count (default config.DefaultMaxDeliveries).
	MaxDeliveries int
	// MaxConcurrentCalls bounds the Worker invocations in flight (default
	// DefaultMaxConcurrentCalls).
	MaxConcurrentCalls int
	// RedeliveryBackoff is the wait before a redelivery, times the delivery
	// count (default DefaultRedeliveryBackoff).
	RedeliveryBackoff time.Duration
	// DryRun sets PURGE_DRY_RUN: nothing is deleted.
	DryRun bool
	// Triggers in order; the timer alone when empty.
	Triggers []Trigger
	// CloudEvents delivers push events as CloudEvents 1.0 instead of in the
	// Event Grid schema.
	CloudEvents bool
	// CheckpointStorage is a Table Storage connection string (Azurite's, or
	// "UseDevelopmentStorage=true"); empty keeps checkpoints in memory.
	CheckpointStorage string
	// CheckpointTable names the table; empty creates a new one per run
	// ("acrpurgelocal" + a timestamp) so that earlier runs do not interfere.
	CheckpointTable string
	// ErrorRate is the fraction of registry data-plane requests answered
	// with a 5xx, to watch retries and redeliveries.
	ErrorRate float64
	// HTMLDir, if set, receives the HTML page of each run created (as the
	// Runs function serves it with ?format=html), as run-{id}.html.
	HTMLDir string
	// Browse, if set, is called once the result is complete, while the app
	// still runs, with the host's HTTP front for the Runs function (see
	// HostFront; GET /api/runs/…); RunStack fails with its error.
	Browse func(ctx context.Context, front http.Handler, res *Result) error
	// Progress receives a line per trigger and per invocation; nil: none.
	Progress io.Writer
	// Logger receives the app's and the emulator's logs; nil discards.
	Logger *slog.Logger
}

// Inventory counts a registry's content.
type Inventory struct {
	Repositories, Tags, Manifests int
	// Bytes is the sum of the manifests' imageSize.
	Bytes int64
}

// Timings says where the time went.
type Timings struct {
	// Setup: start the emulator, seed it, wire and serve the app.
	Setup time.Duration
	// Triggers: every trigger delivered and its messages drained.
	Triggers time.Duration
	// Report: build the run reports and count the registry.
	Report time.Duration
	Total  time.Duration
}

// Result is what RunStack did.
type Result struct {
	Demo *Demo
	// Emulator is the registry, stopped: its content, statistics and
	// deletion records stay readable.
	Emulator *acremu.Registry
	Policy   *policy.Policy
	// PolicyJSON is the PURGE_POLICY setting used.
	PolicyJSON string
	DryRun     bool
	BatchSize  int
	// Store describes where the checkpoints went ("memory", or "table
	// NAME").
	Store string
	// Before and After count the registry around the triggers.
	Before, After Inventory
	// Runs are the reports of the runs created, oldest first.
	Runs []*runs.Report
	// Pages are the HTML pages written to Options.HTMLDir, one per run, in
	// the order of Runs.
	Pages       []string
	Invocations []Invocation
	DeadLetters []DeadLetter
	// Rejections are the messages the Worker refused as malformed.
	Rejections []checkpoint.Rejection
	// Resumed are the runs an earlier, interrupted `handler local` left
	// unfinished, whose batches this one sent again (Table checkpoints).
	Resumed []string
	// Duplicates is how many sends duplicate detection dropped.
	Duplicates int
	Timings    Timings
}

// Incomplete lists what did not end well: dead-lettered messages and timer
// firings that failed on every attempt. Forbidden repositories and rejected
// messages are outcomes, not failures, and are not listed.
func (r *Result) Incomplete() []string {
	var out []string
	for _, v := range r.Invocations {
		if v.Function == app.FunctionScheduler && !v.OK() && !v.Redelivered {
			out = append(out, fmt.Sprintf("the timer failed %d times: %s", v.DeliveryCount, oneLine(v.Summary, 200)))
		}
	}
	for _, d := range r.DeadLetters {
		out = append(out, fmt.Sprintf("message %s was dead-lettered after %d deliveries", d.ID, d.DeliveryCount))
	}
	return out
}

// validate checks what can be checked before anything starts.
func (o *Options) validate() error {
	if o.ErrorRate < 0 || o.ErrorRate > 1 {
		return fmt.Errorf("error rate %v is not between 0 and 1", o.ErrorRate)
	}
	for _, t := range o.Triggers {
		switch t.Kind {
		case TriggerTimer, TriggerSend:
		case TriggerPush:
			repo, _, ok := splitRef(t.Ref)
			if !ok {
				return fmt.Errorf("push %q: want repository:tag", t.Ref)
			}
			if err := queue.ValidateRepositoryName(repo); err != nil {
				return fmt.Errorf("push %q: repository: %w", t.Ref, err)
			}
		default:
			return fmt.Errorf("unknown trigger %q", t.Kind)
		}
	}
	return nil
}

func (o *Options) defaults() {
	if o.Repositories < 1 {
		o.Repositories = DefaultRepositories
	}
	if o.Policy == "" {
		o.Policy = DemoPolicy
	}
	if o.BatchSize < 1 {
		o.BatchSize = DefaultBatchSize
	}
	if o.DeletesPerMinute < 1 {
		o.DeletesPerMinute = DefaultDeletesPerMinute
	}
	if o.MaxDeliveries < 1 {
		o.MaxDeliveries = config.DefaultMaxDeliveries
	}
	if o.MaxConcurrentCalls < 1 {
		o.MaxConcurrentCalls = DefaultMaxConcurrentCalls
	}
	if o.RedeliveryBackoff <= 0 {
		o.RedeliveryBackoff = DefaultRedeliveryBackoff
	}
	if len(o.Triggers) == 0 {
		o.Triggers = []Trigger{{Kind: TriggerTimer}}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/queue"
)

// Tuning constants.
const (
	// Grace is how long the invocation may run past its deadline, for
	// in-flight deletes and the final checkpoints.
	Grace = 2 * time.Minute
	// MaxContinuations bounds how often one batch is continued.
	MaxContinuations = 50
	// RepoParallelism is the default of Options.RepoParallelism
	// (PURGE_REPOSITORY_PARALLELISM).
	RepoParallelism = 4
	// FlushDeletes and FlushEvery: a repository's progress is checkpointed
	// once this many of its deletes are not, or when one has waited this
	// long (checked every FlushCheck). A process killed mid-repository
	// loses at most that much from the counts, which then say "at least".
	FlushDeletes = 50
	FlushEvery   = 5 * time.Second
	FlushCheck   = 250 * time.Millisecond
	// StaleAttempt: an attempt listed in a row's Live set without a
	// heartbeat for this long has died; its uncounted deletes make the
	// counts a lower bound.
	StaleAttempt = checkpoint.StaleAttempt
	// MaxClockSkew is how far in the future a resume cursor's plan time may
	// be (clocks of different instances differ a little).
	MaxClockSkew = 5 * time.Minute
	// SetupTimeout is the time one invocation may spend beyond Deadline and
	// Grace: reading and creating run rows, a re-fan-out, the debounce
	// lookup. With the largest PURGE_MESSAGE_DEADLINE the invocation ends
	// within the 15 minutes the host renews the message lock for.
	SetupTimeout = 2 * time.Minute
	// saveTimeout bounds a checkpoint write made after the invocation's
	// context ended, so progress is kept when the host cancels.
	saveTimeout = 15 * time.Second
)

// Tokens mints access tokens: *acr.Broker.
type Tokens interface {
	Source(scopes ...acr.Scope) acr.TokenSource
}

// Options configure a Worker.
type Options struct {
	// Registry is the configured login server (ACR_LOGIN_SERVER); events
	// naming another host are ignored.
	Registry acr.Endpoint
	Policy   *policy.Policy   // required
	Store    checkpoint.Store // required
	Sender   queue.Sender     // continuations and portal re-fan-outs
	Tokens   Tokens           // required
	// Client is bound to each message's token source with WithTokens.
	Client *acr.Client // required
	// BatchSize (ABAC_BATCH_SIZE) is the most repositories a portal
	// message may name before it is re-fanned out.
	BatchSize int
	// Concurrency (PURGE_CONCURRENCY) bounds the deletes in flight per message.
	Concurrency int
	// RepoParallelism (PURGE_REPOSITORY_PARALLELISM) bounds the
	// repositories of one message purged at once (their deletes share the
	// executor's Concurrency); RepoParallelism when < 1.
	RepoParallelism int
	// MaxDeliveries (PURGE_MAX_DELIVERIES) is the queue's max delivery count.
	MaxDeliveries int
	// DryRun (PURGE_DRY_RUN) forces every purge to delete nothing.
	DryRun bool
	// PushDebounce (PUSH_DEBOUNCE) skips push-triggered purges of a
	// repository purged more recently than this.
	PushDebounce time.Duration
	// Deadline (PURGE_MESSAGE_DEADLINE) bounds one message's work.
	Deadline time.Duration
	Now      func() time.Time // default time.Now
	Logger   *slog.Logger     // nil discards
}

// Worker handles queue messages. It is safe for concurrent use.
type Worker struct {
	o   Options
	log *slog.Logger
}

// New validates o and returns a Worker.
func New(o Options) (*Worker, error) {
	var errs []error
	if o.Policy == nil {
		errs = append(errs, errors.New("no policy"))
	}
	if o.Store == nil {
		errs = append(errs, errors.New("no checkpoint store"))
	}
	if o.Tokens == nil {
		errs = append(errs, errors.New("no token source"))
	}
	if o.Client == nil {
		errs = append(errs, errors.New("no registry client"))
	}
	if o.Registry.Service == "" {
		errs = append(errs, errors.New("no registry endpoint"))
	}
	if o.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("batch size %d is less than 1", o.BatchSize))
	}
	if o.Deadline <= 0 {
		errs = append(errs, fmt.Errorf("deadline %s is not positive", o.Deadline))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if o.MaxDeliveries < 1 {
		o.MaxDeliveries = 1
	}
	if o.RepoParallelism < 1 {
		o.RepoParallelism = RepoParallelism
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Worker{o: o, log: log}, nil
}

// Delivery is one delivered Service Bus message.
type Delivery struct {
	Body      []byte
	MessageID string
	// DeliveryCount is 1 on the first delivery; values below 1 count as 1.
	DeliveryCount int
	EnqueuedAt    time.Time
}

// Kinds of Outcome.
const (
	KindOwn      = "own"
	KindPortal   = "portal"
	KindEvent    = "event"
	KindIgnored  = "ignored"
	KindRejected = "rejected"
)

// Outcome says what handling one message did.
type Outcome struct {
	Kind  string // KindOwn, KindPortal, KindEvent, KindIgnored, KindRejected
	RunID string
	Batch int
	// Summary is one line for people (the invocation log).
	Summary string
	// Reason says why a message was ignored or rejected.
	Reason string
	Repos  []RepoOutcome
	// Continued: a continuation message was sent.
	Continued bool
	// Fanout is set when a portal message was re-fanned out.
	Fanout *queue.Summary
}

// RepoOutcome is where one repository of the message ended.
type RepoOutcome struct {
	Name   string
	Status checkpoint.Status
	Reason string
	// Deleted counts of this attempt (would-be deleted in a dry run).
	TagsDeleted, ManifestsDeleted, BytesFreed int64
	// Already: the repository was finished by an earlier delivery.
	Already bool
}

// Handle processes one delivery. A nil error completes the message; an
// error means Service Bus should deliver it again (the caller answers the
// host with a non-2xx status).
func (w *Worker) Handle(ctx context.Context, d Delivery) (Outcome, error) {
	if d.DeliveryCount < 1 {
		d.DeliveryCount = 1
	}
	ctx, cancel := context.WithTimeout(ctx, w.o.Deadline+Grace+SetupTimeout)
	defer cancel()
	log := w.log.With("messageId", d.MessageID, "deliveryCount", d.DeliveryCount)
	dec, err := queue.Decode(d.Body)
	if err != nil {
		return w.reject(ctx, log, d, err)
	}
	var out Outcome
	switch dec.Kind {
	case queue.KindOwn:
		out, err = w.own(ctx, log, d, dec.Own)
	case queue.KindPortal:
		out, err = w.portal(ctx, log, d, dec)
	case queue.KindEvent:
		out, err = w.event(ctx, log, d, dec.Event)
	default:
		out = Outcome{Kind: KindIgnored, Reason: dec.Ignored, Summary: "ignored: " + dec.Ignored}
	}
	if out.Summary == "" {
		out.Summary = out.summarize()
	}
	attrs := []any{"kind", out.Kind, "run", out.RunID, "batch", out.Batch, "summary", out.Summary}
	switch {
	case err != nil:
		log.Error("message failed; it will be delivered again unless this was the last delivery", append(attrs, "err", err)...)
	case out.Kind == KindIgnored:
		log.Info("message ignored", append(attrs, "reason", out.Reason)...)
	default:
		log.Info("message handled", attrs...)
	}
	return out, err
}

// summarize renders a batch outcome as one line.
func (o Outcome) summarize() string {
	counts := map[checkpoint.Status]int{}
	var tags, manifests, bytes int64
	for _, r := range o.Repos {
		counts[r.Status]++
		tags += r.TagsDeleted
		manifests += r.ManifestsDeleted
		bytes += r.BytesFreed
	}
	var parts []string
	for _, s := range []checkpoint.Status{checkpoint.StatusDone, checkpoint.StatusPartial, checkpoint.StatusPending,
		checkpoint.StatusSkipped, checkpoint.StatusForbidden, checkpoint.StatusFailed} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	s := fmt.Sprintf("run %s batch %d: %d repositories (%s); deleted %d tags, %d manifests, %d bytes",
		o.RunID, o.Batch, len(o.Repos), strings.Join(parts, ", "), tags, manifests, bytes)
	if o.Continued {
		s += "; continued"
	}
	return s
}

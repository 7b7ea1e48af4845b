// Package deadletters is the DeadLetters function: a Service Bus trigger on
// the queue's dead-letter sub-queue (PURGE_QUEUE/$DeadLetterQueue). Service
// Bus moves a message there when every delivery of it failed (the Worker
// process killed each time, or a transient failure that never cleared),
// and then nothing else would ever record it: its run would stay "running"
// and its repositories "partial" forever, indistinguishable from an active
// run.
//
// For each dead-lettered message the function finds the run and batch the
// message belonged to (an own message names them; a portal message's and an
// event's run are derived as the Worker derives them), marks the batch and
// each of its unfinished repositories failed with the dead-letter reason
// and description, and completes the message. A dead letter whose run or
// batch cannot be found, or whose body cannot be read, is recorded as a
// rejection instead, so that it is still visible in the latest run report.
// Only storage failures fail the invocation (and so are retried).
package deadletters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/queue"
)

// Name is the function's name (its folder under functions/); BindingMessage
// its Service Bus trigger binding.
const (
	Name           = "DeadLetters"
	BindingMessage = "msg"
)

// Function records dead-lettered messages in their runs.
type Function struct {
	Store checkpoint.Store
	// Now defaults to time.Now; Logger discards when nil.
	Now    func() time.Time
	Logger *slog.Logger
}

// Letter is one dead-lettered message as the trigger delivers it.
type Letter struct {
	MessageID  string
	Body       []byte
	EnqueuedAt time.Time
	// Deliveries is the message's delivery count when it was dead-lettered.
	Deliveries int
	// Reason and Description are Service Bus's DeadLetterReason (e.g.
	// MaxDeliveryCountExceeded) and DeadLetterErrorDescription.
	Reason, Description string
}

// cause renders the dead-letter reason for the checkpoints.
func (l Letter) cause() string {
	reason := l.Reason
	if reason == "" {
		reason = "no reason given"
	}
	s := "dead-lettered (" + reason + ")"
	if l.Deliveries > 0 {
		s += fmt.Sprintf(" after %d deliveries", l.Deliveries)
	}
	if l.Description != "" {
		s += ": " + l.Description
	}
	return s
}

// Invoke serves one dead-lettered message sent by the Functions host.
func (f *Function) Invoke(ctx context.Context, req *funchost.Request) (*funchost.Response, error) {
	l := Letter{
		MessageID:   req.MetaString("MessageId"),
		Reason:      metaProperty(req, "DeadLetterReason"),
		Description: metaProperty(req, "DeadLetterErrorDescription"),
	}
	if n, ok := req.MetaInt("DeliveryCount"); ok {
		l.Deliveries = n
	}
	if t, ok := req.MetaTime("EnqueuedTimeUtc"); ok {
		l.EnqueuedAt = t
	}
	l.Body, _ = req.Payload(BindingMessage) // an unreadable body is recorded below
	summary, err := f.Record(ctx, l)
	if err != nil {
		return nil, err
	}
	return &funchost.Response{Logs: []string{summary}}, nil
}

// metaProperty reads a dead-letter property: a metadata key of its own, or
// an entry of ApplicationProperties (UserProperties in older extensions),
// where Service Bus keeps DeadLetterReason and DeadLetterErrorDescription.
func metaProperty(req *funchost.Request, key string) string {
	if v := req.MetaString(key); v != "" {
		return v
	}
	for _, bag := range []string{"ApplicationProperties", "UserProperties"} {
		raw := req.MetaString(bag)
		if raw == "" {
			continue
		}
		var props map[string]any
		if json.Unmarshal([]byte(raw), &props) != nil {
			continue
		}
		if v, ok := props[key].(string); ok && v != "" {
			return v
		}
	}
	return ""
}

func (f *Function) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *Function) log() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Record marks the run and batch of l failed, or records l as a rejection
// when they cannot be found. It returns a one-line summary; an error only
// for storage failures.
func (f *Function) Record(ctx context.Context, l Letter) (string, error) {
	log := f.log().With("messageId", l.MessageID, "deadLetterReason", l.Reason)
	dec, err := queue.Decode(l.Body)
	if err != nil {
		return f.reject(ctx, log, l, "dead-lettered message with an unreadable body: "+err.Error())
	}
	var runID string
	batch := 1
	switch dec.Kind {
	case queue.KindOwn:
		runID, batch = dec.Own.RunID, dec.Own.Batch
	case queue.KindPortal:
		runID = queue.PortalRunID(l.MessageID, l.Body, l.EnqueuedAt)
	case queue.KindEvent:
		runID = queue.EventRunID(dec.Event.ID, l.MessageID, l.Body, dec.Event.Repository)
	default:
		log.Info("dead-lettered message of a kind the Worker ignores; completed", "kind", dec.Kind)
		return "dead letter " + l.MessageID + " ignored: " + dec.Ignored, nil
	}
	b, err := f.Store.GetBatch(ctx, runID, batch)
	switch {
	case errors.Is(err, checkpoint.ErrNotFound) || errors.Is(err, checkpoint.ErrInvalid):
		return f.reject(ctx, log, l, fmt.Sprintf("%s; no batch %d of run %.80q was recorded", l.cause(), batch, runID))
	case err != nil:
		return "", fmt.Errorf("dead letter %s: run %s batch %d: %w", l.MessageID, runID, batch, err)
	}
	repos, err := f.Store.GetRepos(ctx, runID, b.Repositories)
	if err != nil {
		return "", fmt.Errorf("dead letter %s: run %s batch %d: %w", l.MessageID, runID, batch, err)
	}
	cause := l.cause()
	var failed []checkpoint.Repo
	for _, name := range b.Repositories {
		row, ok := repos[name]
		if !ok {
			row = checkpoint.Repo{RunID: runID, Name: name, Batch: batch}
		}
		if row.Status.Terminal() {
			continue
		}
		row.Status, row.Reason = checkpoint.StatusFailed, "not finished: the batch's message was "+cause
		row.Updated = f.now()
		failed = append(failed, row)
	}
	if b.Status != checkpoint.StatusDone {
		// Keep the Worker's own account of the last failure, if it wrote one.
		if b.Status != checkpoint.StatusFailed || b.Error == "" {
			b.Error = cause
		}
		b.Status, b.Updated = checkpoint.StatusFailed, f.now()
		b.Deliveries = max(b.Deliveries, l.Deliveries)
	}
	if err := f.Store.SaveProgress(ctx, runID, failed, &b); err != nil {
		return "", fmt.Errorf("dead letter %s: run %s batch %d: save: %w", l.MessageID, runID, batch, err)
	}
	log.Warn("dead-lettered batch recorded as failed", "run", runID, "batch", batch, "repositories", len(failed), "cause", cause)
	return fmt.Sprintf("run %s batch %d %s: %d unfinished repositories marked failed", runID, batch, cause, len(failed)), nil
}

// reject records a dead letter that belongs to no recorded batch.
func (f *Function) reject(ctx context.Context, log *slog.Logger, l Letter, reason string) (string, error) {
	rej := checkpoint.Rejection{MessageID: l.MessageID, Reason: reason, Excerpt: checkpoint.Excerpt(l.Body), At: f.now()}
	if err := f.Store.RecordRejection(ctx, rej); err != nil {
		return "", fmt.Errorf("dead letter %s: record: %w", l.MessageID, err)
	}
	log.Warn("dead letter recorded as a rejection", "reason", reason)
	return "dead letter " + l.MessageID + " recorded: " + reason, nil
}

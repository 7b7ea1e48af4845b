package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
)

// Sender hands messages to the  *ServiceBusSender satisfies it;
// so does the in-process queue of `handler local` and the tests' capturing
// sender.
type Sender interface {
	Send(ctx context.Context, msgs []Outgoing) error
}

// SendChunk is how many messages one Sender.Send call carries, so that
// memory stays flat however many batches a run has.
const SendChunk = 500

// Summary says what a fan-out did.
type Summary struct {
	RunID   string
	Trigger string
	DryRun  bool
	// Listed is how many names the catalog or PURGE_REPOSITORIES gave
	// (Scheduler only), Invalid how many of them were skipped as invalid.
	Listed, Invalid int
	// Repositories and Batches are the run's.
	Repositories, Batches int
	// Sent is how many messages this call handed to the sender.
	Sent int
	// AlreadyEnqueued: the run existed and was enqueued; nothing was sent.
	AlreadyEnqueued bool
	// Resent: the run existed but was not marked enqueued (a crash
	// mid-send); every message was sent again.
	Resent bool
}

// String renders the summary as one log-friendly line.
func (s Summary) String() string {
	switch {
	case s.AlreadyEnqueued:
		return fmt.Sprintf("run %s already enqueued (%d repositories in %d batches): nothing sent", s.RunID, s.Repositories, s.Batches)
	case s.Resent:
		return fmt.Sprintf("run %s re-sent: %d repositories in %d batches (%d messages)", s.RunID, s.Repositories, s.Batches, s.Sent)
	default:
		return fmt.Sprintf("run %s (%s, dryRun=%t): %d repositories in %d batches enqueued", s.RunID, s.Trigger, s.DryRun, s.Repositories, s.Batches)
	}
}

// Enqueue creates the run and its batch rows (idempotently), sends one
// message per batch and marks the run enqueued. repos are split, in the
// order given, into batches of batchSize; run.Trigger and run.DryRun go into
// every message; run.Batches and run.Repositories are filled in.
//
// If the run exists already nothing is written: when it is enqueued nothing
// is sent either (AlreadyEnqueued); otherwise the messages are rebuilt from
// the stored batch rows, sent again (duplicate detection drops those already
// sent) and the run is marked enqueued (Resent).
func Enqueue(ctx context.Context, store checkpoint.Store, sender Sender, run checkpoint.Run, repos []string, batchSize int, log *slog.Logger) (Summary, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if batchSize < 1 {
		return Summary{}, fmt.Errorf("fan out run %s: batch size %d is less than 1", run.ID, batchSize)
	}
	batches := split(repos, batchSize)
	run.Batches, run.Repositories = len(batches), len(repos)
	sum := Summary{RunID: run.ID, Trigger: run.Trigger, DryRun: run.DryRun, Repositories: len(repos), Batches: len(batches)}
	log = log.With("run", run.ID)

	existing, created, err := store.CreateRun(ctx, run, batches)
	if err != nil {
		return sum, fmt.Errorf("fan out run %s: create run: %w", run.ID, err)
	}
	if !created {
		sum.Trigger, sum.DryRun = existing.Trigger, existing.DryRun
		sum.Repositories, sum.Batches = existing.Repositories, existing.Batches
		if existing.Enqueued {
			sum.AlreadyEnqueued = true
			log.Info("run already enqueued: nothing to send", "batches", existing.Batches)
			return sum, nil
		}
		log.Warn("run exists but was not fully enqueued: sending every batch again", "batches", existing.Batches)
		if batches, err = store.ListBatches(ctx, run.ID); err != nil {
			return sum, fmt.Errorf("fan out run %s: list batches: %w", run.ID, err)
		}
		if len(batches) != existing.Batches {
			return sum, fmt.Errorf("fan out run %s: the run has %d batches but %d batch rows", run.ID, existing.Batches, len(batches))
		}
		run, sum.Resent = existing, true
	}

	if sum.Sent, err = send(ctx, sender, run, batches); err != nil {
		return sum, fmt.Errorf("fan out run %s: %w", run.ID, err)
	}
	if err := store.MarkEnqueued(ctx, run.ID); err != nil {
		return sum, fmt.Errorf("fan out run %s: mark enqueued: %w", run.ID, err)
	}
	log.Info("run enqueued", "trigger", run.Trigger, "dryRun", run.DryRun,
		"repositories", sum.Repositories, "batches", sum.Batches, "sent", sum.Sent, "resent", sum.Resent)
	return sum, nil
}

// BatchMessage is the message of a run's batch, as the Scheduler (or a
// re-fan-out) sends it: the run's trigger and dry run, the batch's
// repositories.
func BatchMessage(run checkpoint.Run, b checkpoint.Batch) Message {
	return Message{
		Version: Version, RunID: run.ID, Batch: b.N, Batches: run.Batches, Trigger: run.Trigger,
		Repositories: b.Repositories, DryRun: run.DryRun,
	}
}

// split cuts repos into batch rows of at most size repositories, numbered
// from 1. The rows share repos' backing array.
func split(repos []string, size int) []checkpoint.Batch {
	out := make([]checkpoint.Batch, 0, (len(repos)+size-1)/size)
	for i := 0; i < len(repos); i += size {
		out = append(out, checkpoint.Batch{N: len(out) + 1, Repositories: repos[i:min(i+size, len(repos))]})
	}
	return out
}

// send sends one message per batch, SendChunk messages per Send call.
func send(ctx context.Context, sender Sender, run checkpoint.Run, batches []checkpoint.Batch) (int, error) {
	if len(batches) > 0 && sender == nil {
		return 0, errors.New("no sender configured")
	}
	sent := 0
	chunk := make([]Outgoing, 0, min(SendChunk, len(batches)))
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		if err := sender.Send(ctx, chunk); err != nil {
			return fmt.Errorf("send batches %s to %s: %w", chunk[0].ID, chunk[len(chunk)-1].ID, err)
		}
		sent += len(chunk)
		chunk = chunk[:0]
		return nil
	}
	for _, b := range batches {
		out, err := NewOutgoing(BatchMessage(run, b))
		if err != nil {
			return sent, err
		}
		if chunk = append(chunk, out); len(chunk) == SendChunk {
			if err := flush(); err != nil {
				return sent, err
			}
		}
	}
	return sent, flush()
}

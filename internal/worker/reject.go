package worker

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
)

// reject records a message that can never be processed and completes it.
// Only a failure to record it is retried.
func (w *Worker) reject(ctx context.Context, log *slog.Logger, d Delivery, cause error) (Outcome, error) {
	reason := cause.Error()
	out := Outcome{Kind: KindRejected, Reason: reason, Summary: "rejected: " + reason}
	rej := checkpoint.Rejection{MessageID: d.MessageID, Reason: reason, Excerpt: checkpoint.Excerpt(d.Body), At: w.o.Now()}
	if err := w.o.Store.RecordRejection(ctx, rej); err != nil {
		log.Error("could not record a rejected message", "reason", reason, "err", err)
		return out, fmt.Errorf("record rejected message %q: %w", d.MessageID, err)
	}
	log.Warn("message rejected: recorded and completed", "reason", reason)
	return out, nil
}

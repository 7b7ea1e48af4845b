package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
)

// ExcerptBytes is how much of a rejected body is kept for diagnosis.
const ExcerptBytes = 512

// reject records a message that can never be processed and completes it.
// Only a failure to record it is retried.
func (w *Worker) reject(ctx context.Context, log *slog.Logger, d Delivery, cause error) (Outcome, error) {
	reason := cause.Error()
	out := Outcome{Kind: KindRejected, Reason: reason, Summary: "rejected: " + reason}
	rej := checkpoint.Rejection{MessageID: d.MessageID, Reason: reason, Excerpt: Excerpt(d.Body), At: w.o.Now()}
	if err := w.o.Store.RecordRejection(ctx, rej); err != nil {
		log.Error("could not record a rejected message", "reason", reason, "err", err)
		return out, fmt.Errorf("record rejected message %q: %w", d.MessageID, err)
	}
	log.Warn("message rejected: recorded and completed", "reason", reason)
	return out, nil
}

// Excerpt returns the start of body for a rejection record: at most
// ExcerptBytes bytes, invalid UTF-8 replaced, and control and format
// characters escaped (\n, \t, \u0000, …) so that it cannot forge log lines or
// hide text.
func Excerpt(body []byte) string {
	cut := body
	if len(cut) > ExcerptBytes {
		cut = cut[:ExcerptBytes]
		// Cut at a rune boundary of body.
		for len(cut) > ExcerptBytes-utf8.UTFMax && !utf8.RuneStart(body[len(cut)]) {
			cut = cut[:len(cut)-1]
		}
	}
	var b strings.Builder
	s := strings.ToValidUTF8(string(cut), "\uFFFD")
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	if len(body) > len(cut) {
		b.WriteString("…")
	}
	return b.String()
}

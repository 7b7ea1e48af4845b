package queue

import (
	"errors"
	"fmt"
)

// RejectError reports a message that can never be processed: malformed JSON,
// an unknown shape, a forbidden or unknown field, an invalid repository name,
// or a value out of range. Retrying it cannot help.
type RejectError struct {
	// Reason says what is wrong, naming the offending field or entry.
	Reason string
}

// Error implements error.
func (e *RejectError) Error() string { return "queue: message rejected: " + e.Reason }

// IsReject reports whether err is, or wraps, a *RejectError.
func IsReject(err error) bool {
	var re *RejectError
	return errors.As(err, &re)
}

func rejectf(format string, args ...any) *RejectError {
	return &RejectError{Reason: fmt.Sprintf(format, args...)}
}

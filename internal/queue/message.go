package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Version is the only version of the own message shape.
const Version = 1

// Limits of the own message shape.
const (
	// MaxRunIDLength bounds RunID so that MessageID stays within the 128
	// characters Service Bus allows.
	MaxRunIDLength = 64
	// MaxBatches bounds Message.Batches.
	MaxBatches = 100000
	// MaxResume bounds Resume.N, the number of continuations of one batch.
	MaxResume = 100000
	// MaxRepositories bounds the repositories of one portal message (it is
	// re-fanned out in batches).
	MaxRepositories = 1000
	// MaxBatchRepositories bounds the repositories of one own message: the
	// largest ABAC_BATCH_SIZE, whose checkpoint rows fit one Table Storage
	// transaction.
	MaxBatchRepositories = 50
	// MaxCursorBytes bounds one opaque resume cursor.
	MaxCursorBytes = 8 << 10
	// MaxMessageIDLength is the Service Bus limit on MessageID.
	MaxMessageIDLength = 128
)

// Triggers recorded in Message.Trigger.
const (
	TriggerSchedule = "schedule"
	TriggerManual   = "manual"
	TriggerPortal   = "portal"
	TriggerPush     = "push"
)

// Message is the own message shape, written by the Scheduler, by a Worker
// re-fanning a large portal message, and by continuations.
type Message struct {
	Version      int      `json:"version"`
	RunID        string   `json:"runId"`
	Batch        int      `json:"batch"`   // 1-based index of this batch in the run
	Batches      int      `json:"batches"` // number of batches in the run
	Trigger      string   `json:"trigger"` // schedule|manual|portal|push
	Repositories []string `json:"repositories"`
	DryRun       bool     `json:"dryRun"`
	Resume       *Resume  `json:"resume,omitempty"`
}

// Resume marks a continuation: the Worker ran out of time and carries on
// where it stopped.
type Resume struct {
	N       int                        `json:"n"`                 // continuation number, 1..
	Cursors map[string]json.RawMessage `json:"cursors,omitempty"` // opaque per-repository cursor
}

// Number is the continuation number: 0 for a message that is not one.
func (r *Resume) Number() int {
	if r == nil {
		return 0
	}
	return r.N
}

// MessageID is the Service Bus MessageID of m: "runId/batch", or
// "runId/batch/resume-N" for a continuation, so that duplicate detection drops
// re-sends. For a valid message it is at most MaxMessageIDLength characters.
func (m Message) MessageID() string {
	id := m.RunID + "/" + strconv.Itoa(m.Batch)
	if m.Resume != nil {
		id += "/resume-" + strconv.Itoa(m.Resume.N)
	}
	return id
}

// Validate checks m as Decode would; the error is a *RejectError.
func (m Message) Validate() error {
	if m.Version != Version {
		return rejectf("version %d is not supported (want %d)", m.Version, Version)
	}
	if err := validateRunID(m.RunID); err != nil {
		return err
	}
	if m.Batches < 1 || m.Batches > MaxBatches {
		return rejectf("batches %d is out of range 1..%d", m.Batches, MaxBatches)
	}
	if m.Batch < 1 || m.Batch > m.Batches {
		return rejectf("batch %d is out of range 1..%d (batches)", m.Batch, m.Batches)
	}
	switch m.Trigger {
	case TriggerSchedule, TriggerManual, TriggerPortal, TriggerPush:
	default:
		return rejectf("trigger %q is not one of schedule, manual, portal, push", m.Trigger)
	}
	if len(m.Repositories) == 0 {
		return rejectf("repositories is empty")
	}
	if len(m.Repositories) > MaxBatchRepositories {
		return rejectf("%d repositories, more than the %d of the largest batch", len(m.Repositories), MaxBatchRepositories)
	}
	seen := make(map[string]int, len(m.Repositories))
	for i, r := range m.Repositories {
		if err := ValidateRepositoryName(r); err != nil {
			return rejectf("repositories[%d] %q: %v", i, r, err)
		}
		if j, dup := seen[r]; dup {
			return rejectf("repositories[%d] %q repeats repositories[%d]", i, r, j)
		}
		seen[r] = i
	}
	if m.Resume != nil {
		if m.Resume.N < 1 || m.Resume.N > MaxResume {
			return rejectf("resume.n %d is out of range 1..%d", m.Resume.N, MaxResume)
		}
		for repo, c := range m.Resume.Cursors {
			if _, ok := seen[repo]; !ok {
				return rejectf("resume.cursors has a cursor for %q, which is not in repositories", repo)
			}
			if err := validateCursor(repo, c); err != nil {
				return err
			}
		}
	}
	if n := len(m.MessageID()); n > MaxMessageIDLength {
		return rejectf("message id is %d characters, longer than %d", n, MaxMessageIDLength)
	}
	return nil
}

// Encode validates m and returns its JSON body.
func (m Message) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encode message %s: %w", m.MessageID(), err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode message %s: %w", m.MessageID(), err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func validateRunID(id string) error {
	if id == "" {
		return rejectf("runId is empty")
	}
	if len(id) > MaxRunIDLength {
		return rejectf("runId is %d characters, longer than %d", len(id), MaxRunIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(isAlnum(c) || (c >= 'A' && c <= 'Z') || c == '-' || c == '_' || c == '.' || c == ':') {
			return rejectf("runId %q: character %q at offset %d is not allowed (use letters, digits, '-', '_', '.', ':')", id, c, i)
		}
	}
	return nil
}

// validateCursor keeps a resume cursor opaque but harmless: bounded, and
// unable to carry a registry, host or absolute URL.
func validateCursor(repo string, c json.RawMessage) error {
	if len(c) > MaxCursorBytes {
		return rejectf("resume cursor for %q is %d bytes, more than %d", repo, len(c), MaxCursorBytes)
	}
	if !json.Valid(c) {
		return rejectf("resume cursor for %q is not valid JSON", repo)
	}
	var v any
	if err := json.Unmarshal(c, &v); err != nil {
		return rejectf("resume cursor for %q: %v", repo, err)
	}
	return scanCursor(repo, v)
}

func scanCursor(repo string, v any) error {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if forbiddenField(k) {
				return rejectf("resume cursor for %q has field %q: a message must never name the registry, a host or a URL", repo, k)
			}
			if err := scanCursor(repo, e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range v {
			if err := scanCursor(repo, e); err != nil {
				return err
			}
		}
	case string:
		if strings.Contains(v, "://") || strings.HasPrefix(v, "//") || strings.HasPrefix(v, `\\`) {
			return rejectf("resume cursor for %q holds an absolute URL: a message must never name the registry or a host", repo)
		}
	}
	return nil
}

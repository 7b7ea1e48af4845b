package checkpoint

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Size limits shared by both stores so that Memory behaves like Table.
const (
	// MaxTextLen is the longest free text (Note, Reason, Error) kept, in
	// bytes; longer texts are cut and marked as truncated.
	MaxTextLen = 8 << 10
	// MaxExcerptLen is the longest Rejection.Excerpt kept, in bytes.
	MaxExcerptLen = 2 << 10
	// MaxValueLen is the longest Cursor (and JSON-encoded Repositories or
	// Kept) accepted, in UTF-16 code units: a table string property holds
	// 64 KiB.
	MaxValueLen = 32 << 10
)

const truncatedMark = " …[truncated]"

// Edm.DateTime cannot hold times before 1601 or after 9999.
var (
	minTime = time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999900, time.UTC)
)

// clock returns the current time; stores hold one so tests can pin it.
type clock func() time.Time

// normTime maps zero to now, converts to UTC and keeps 100 ns precision, the
// resolution of Edm.DateTime.
func normTime(t time.Time, now clock, what string) (time.Time, error) {
	if t.IsZero() {
		t = now()
	}
	t = t.UTC().Truncate(100 * time.Nanosecond)
	if t.Before(minTime) || t.After(maxTime) {
		return time.Time{}, fmt.Errorf("%w: %s %s is outside the storable range", ErrInvalid, what, t.Format(time.RFC3339))
	}
	return t, nil
}

// truncText makes s valid UTF-8 and at most limit bytes long.
func truncText(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= limit {
		return s
	}
	cut := limit - len(truncatedMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedMark
}

// checkName validates a run ID or repository name.
func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalid, what, s)
	}
	return nil
}

// checkValue refuses strings that do not fit a table property.
func checkValue(what, s string) error {
	if n := utf16Len(s); n > MaxValueLen {
		return fmt.Errorf("%w: %s is %d UTF-16 units, limit %d", ErrTooLarge, what, n, MaxValueLen)
	}
	return nil
}

// checkRunID validates that the row's run ID is empty or matches runID.
func checkRunID(what, got, runID string) error {
	if got != "" && got != runID {
		return fmt.Errorf("%w: %s belongs to run %q, not %q", ErrInvalid, what, got, runID)
	}
	return nil
}

func normalizeRun(r Run, now clock) (Run, error) {
	if err := checkName("run ID", r.ID); err != nil {
		return Run{}, err
	}
	var err error
	if r.Started, err = normTime(r.Started, now, "run start"); err != nil {
		return Run{}, err
	}
	r.Trigger = truncText(r.Trigger, MaxTextLen)
	r.PolicyHash = truncText(r.PolicyHash, MaxTextLen)
	r.Note = truncText(r.Note, MaxTextLen)
	return r, nil
}

func normalizeBatch(b Batch, runID string, now clock) (Batch, error) {
	what := fmt.Sprintf("batch %d", b.N)
	if err := checkRunID(what, b.RunID, runID); err != nil {
		return Batch{}, err
	}
	if b.N < 0 {
		return Batch{}, fmt.Errorf("%w: negative batch number %d", ErrInvalid, b.N)
	}
	b.RunID = runID
	if len(b.Repositories) == 0 {
		b.Repositories = nil
	} else {
		b.Repositories = slices.Clone(b.Repositories)
		for _, name := range b.Repositories {
			if err := checkName("repository name in "+what, name); err != nil {
				return Batch{}, err
			}
		}
		if err := checkValue(what+" repository list", mustJSON(b.Repositories)); err != nil {
			return Batch{}, err
		}
	}
	b.Status = Status(truncText(string(b.Status), MaxTextLen))
	b.Error = truncText(b.Error, MaxTextLen)
	var err error
	if b.Updated, err = normTime(b.Updated, now, what+" update"); err != nil {
		return Batch{}, err
	}
	return b, nil
}

func normalizeRepo(r Repo, runID string, now clock) (Repo, error) {
	if err := checkName("repository name", r.Name); err != nil {
		return Repo{}, err
	}
	what := fmt.Sprintf("repository %q", r.Name)
	if err := checkRunID(what, r.RunID, runID); err != nil {
		return Repo{}, err
	}
	if r.Batch < 0 {
		return Repo{}, fmt.Errorf("%w: %s: negative batch number %d", ErrInvalid, what, r.Batch)
	}
	r.RunID = runID
	if !utf8.ValidString(r.Cursor) {
		return Repo{}, fmt.Errorf("%w: %s: cursor is not valid UTF-8", ErrInvalid, what)
	}
	if err := checkValue(what+" cursor", r.Cursor); err != nil {
		return Repo{}, err
	}
	r.Status = Status(truncText(string(r.Status), MaxTextLen))
	r.Reason = truncText(r.Reason, MaxTextLen)
	r.Error = truncText(r.Error, MaxTextLen)
	if len(r.Kept) == 0 {
		r.Kept = nil
	} else {
		kept := make(map[string]int64, len(r.Kept))
		for k, v := range r.Kept {
			kept[strings.ToValidUTF8(k, "\uFFFD")] += v
		}
		r.Kept = kept
		if err := checkValue(what+" kept counts", mustJSON(r.Kept)); err != nil {
			return Repo{}, err
		}
	}
	if len(r.Live) == 0 {
		r.Live = nil
	} else {
		live := make(map[string]time.Time, len(r.Live))
		for id, at := range r.Live {
			live[truncText(id, 64)] = at.UTC()
		}
		r.Live = live
		if err := checkValue(what+" live attempts", mustJSON(r.Live)); err != nil {
			return Repo{}, err
		}
	}
	var err error
	if r.Updated, err = normTime(r.Updated, now, what+" update"); err != nil {
		return Repo{}, err
	}
	return r, nil
}

func normalizeRejection(r Rejection, now clock) (Rejection, error) {
	r.MessageID = truncText(r.MessageID, MaxTextLen)
	r.Reason = truncText(r.Reason, MaxTextLen)
	r.Excerpt = truncText(r.Excerpt, MaxExcerptLen)
	var err error
	if r.At, err = normTime(r.At, now, "rejection time"); err != nil {
		return Rejection{}, err
	}
	return r, nil
}

// dedupeRepos keeps the last entry of each name, in first-seen order.
func dedupeRepos(repos []Repo) []Repo {
	idx := make(map[string]int, len(repos))
	out := make([]Repo, 0, len(repos))
	for _, r := range repos {
		if i, ok := idx[r.Name]; ok {
			out[i] = r
			continue
		}
		idx[r.Name] = len(out)
		out = append(out, r)
	}
	return out
}

// cloneBatch and cloneRepo copy the reference fields so callers and stores
// never share them.
func cloneBatch(b Batch) Batch {
	b.Repositories = slices.Clone(b.Repositories)
	return b
}

func cloneRepo(r Repo) Repo {
	r.Kept = maps.Clone(r.Kept)
	r.Live = maps.Clone(r.Live)
	return r
}

// mustJSON encodes values that cannot fail to encode (string slices and maps).
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// limitOrDefault maps limit <= 0 to DefaultListLimit.
func limitOrDefault(limit int) int {
	if limit <= 0 {
		return DefaultListLimit
	}
	return limit
}

// invertedTicks orders rows newest first: 100 ns ticks since 0001-01-01
// subtracted from the largest .NET DateTime, printed as 19 digits.
func invertedTicks(t time.Time) string {
	const maxTicks = 3155378975999999999
	const unixToTicksSeconds = 62135596800
	t = t.UTC()
	ticks := (t.Unix()+unixToTicksSeconds)*10_000_000 + int64(t.Nanosecond()/100)
	return fmt.Sprintf("%019d", maxTicks-ticks)
}

// nowFunc is the default clock.
func nowFunc() time.Time { return time.Now() }

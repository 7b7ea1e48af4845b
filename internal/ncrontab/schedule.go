// Package ncrontab parses NCRONTAB expressions, the six-field cron syntax of
// Azure Functions timer triggers ("{second} {minute} {hour} {day} {month}
// {day-of-week}"), and computes occurrences in UTC. WEBSITE_TIME_ZONE is not
// supported (it is not available on Linux Flex Consumption either).
//
// Semantics follow NCrontab as used by the Functions host: a time matches
// when every field matches (day and day-of-week are both required, not
// either), "a/n" means from a to the field's maximum in steps of n.
package ncrontab

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a parsed NCRONTAB expression.
type Schedule struct {
	expr   string
	fields [numFields]uint64 // bit v set: value v matches
}

const (
	fSecond = iota
	fMinute
	fHour
	fDay
	fMonth
	fWeekday
	numFields
)

// maxExprLength bounds an expression.
const maxExprLength = 1024

// searchYears bounds Next and Prev: a valid day/month/weekday combination
// recurs within 28 years (the Gregorian weekday cycle of leap days).
const searchYears = 30

type fieldSpec struct {
	name     string
	min, max int
	names    []string // names[i] is value min+i
}

var specs = [numFields]fieldSpec{
	{name: "second", min: 0, max: 59},
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"}},
	{name: "day-of-week", min: 0, max: 7, names: []string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}},
}

// Parse accepts "{second} {minute} {hour} {day} {month} {day-of-week}" with
// "*", lists ("1,5"), ranges ("1-5"), steps ("*/5", "1-10/2", "5/15"), month
// and day names or their prefixes of three or more letters ("Jan", "Mon",
// case-insensitive), and 0 or 7 for Sunday. Errors name the field and the
// bad value.
func Parse(expr string) (*Schedule, error) {
	if len(expr) > maxExprLength {
		return nil, fmt.Errorf("schedule: expression is %d characters, longer than %d", len(expr), maxExprLength)
	}
	parts := strings.Fields(expr)
	if len(parts) != numFields {
		hint := ""
		if len(parts) == 5 {
			hint = " (NCRONTAB starts with a seconds field: \"0 " + strings.Join(parts, " ") + "\")"
		}
		return nil, fmt.Errorf("schedule: %q has %d fields, want 6: {second} {minute} {hour} {day} {month} {day-of-week}%s", expr, len(parts), hint)
	}
	s := &Schedule{expr: strings.Join(parts, " ")}
	for i, p := range parts {
		bits, err := parseField(specs[i], p)
		if err != nil {
			return nil, fmt.Errorf("schedule: %s field %q: %w", specs[i].name, p, err)
		}
		s.fields[i] = bits
	}
	if s.fields[fWeekday]&(1<<7) != 0 { // 7 is Sunday too
		s.fields[fWeekday] = s.fields[fWeekday]&^(1<<7) | 1
	}
	if !s.possible() {
		return nil, fmt.Errorf("schedule: %q never occurs (no month has such a day)", s.expr)
	}
	return s, nil
}

// possible reports whether some selected month has some selected day.
func (s *Schedule) possible() bool {
	days := [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	for m := 1; m <= 12; m++ {
		if s.fields[fMonth]&(1<<m) == 0 {
			continue
		}
		for d := 1; d <= days[m]; d++ {
			if s.fields[fDay]&(1<<d) != 0 {
				return true
			}
		}
	}
	return false
}

func parseField(spec fieldSpec, field string) (uint64, error) {
	var bits uint64
	for _, item := range strings.Split(field, ",") {
		b, err := parseItem(spec, item)
		if err != nil {
			return 0, err
		}
		bits |= b
	}
	return bits, nil
}

func parseItem(spec fieldSpec, item string) (uint64, error) {
	if item == "" {
		return 0, fmt.Errorf("empty list item")
	}
	rng, stepStr, hasStep := strings.Cut(item, "/")
	step := 1
	if hasStep {
		n, err := strconv.Atoi(stepStr)
		if err != nil || n < 1 || n > spec.max {
			return 0, fmt.Errorf("bad step %q: want a number 1..%d", stepStr, spec.max)
		}
		step = n
	}
	lo, hi := spec.min, spec.max
	switch {
	case rng == "*":
	case strings.Contains(rng, "-"):
		a, b, _ := strings.Cut(rng, "-")
		var err error
		if lo, err = parseValue(spec, a); err != nil {
			return 0, err
		}
		if hi, err = parseValue(spec, b); err != nil {
			return 0, err
		}
		if lo > hi {
			return 0, fmt.Errorf("range %q runs backwards", rng)
		}
	default:
		v, err := parseValue(spec, rng)
		if err != nil {
			return 0, err
		}
		lo = v
		if !hasStep {
			hi = v
		}
	}
	var bits uint64
	for v := lo; v <= hi; v += step {
		bits |= 1 << v
	}
	return bits, nil
}

func parseValue(spec fieldSpec, s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("empty value")
	}
	if s[0] >= '0' && s[0] <= '9' {
		v, err := strconv.Atoi(s)
		if err != nil || v < spec.min || v > spec.max {
			return 0, fmt.Errorf("bad value %q: want %d..%d", s, spec.min, spec.max)
		}
		return v, nil
	}
	if spec.names != nil && len(s) >= 3 {
		l := strings.ToLower(s)
		for i, n := range spec.names {
			if strings.HasPrefix(n, l) {
				return spec.min + i, nil
			}
		}
	}
	if spec.names != nil {
		return 0, fmt.Errorf("bad value %q: want %d..%d or a name such as %q", s, spec.min, spec.max, spec.names[1][:3])
	}
	return 0, fmt.Errorf("bad value %q: want %d..%d", s, spec.min, spec.max)
}

// String returns the expression, its fields separated by single spaces.
func (s *Schedule) String() string { return s.expr }

func (s *Schedule) has(f, v int) bool { return s.fields[f]&(1<<v) != 0 }

// Next returns the first occurrence strictly after after, in UTC, or the
// zero time when there is none within 30 years.
func (s *Schedule) Next(after time.Time) time.Time {
	t := after.UTC().Truncate(time.Second).Add(time.Second)
	limit := t.AddDate(searchYears, 0, 0)
	for !t.After(limit) {
		y, mo, d := t.Date()
		h, mi, _ := t.Clock()
		switch {
		case !s.has(fMonth, int(mo)):
			t = time.Date(y, mo+1, 1, 0, 0, 0, 0, time.UTC)
		case !s.has(fDay, d) || !s.has(fWeekday, int(t.Weekday())):
			t = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
		case !s.has(fHour, h):
			t = time.Date(y, mo, d, h+1, 0, 0, 0, time.UTC)
		case !s.has(fMinute, mi):
			t = time.Date(y, mo, d, h, mi+1, 0, 0, time.UTC)
		case !s.has(fSecond, t.Second()):
			t = t.Add(time.Second)
		default:
			return t
		}
	}
	return time.Time{}
}

// Prev returns the last occurrence at or before at, in UTC, or the zero time
// when there is none within 30 years.
func (s *Schedule) Prev(at time.Time) time.Time {
	t := at.UTC().Truncate(time.Second)
	limit := t.AddDate(-searchYears, 0, 0)
	for !t.Before(limit) {
		y, mo, d := t.Date()
		h, mi, _ := t.Clock()
		switch {
		case !s.has(fMonth, int(mo)):
			t = time.Date(y, mo, 1, 0, 0, 0, 0, time.UTC).Add(-time.Second)
		case !s.has(fDay, d) || !s.has(fWeekday, int(t.Weekday())):
			t = time.Date(y, mo, d, 0, 0, 0, 0, time.UTC).Add(-time.Second)
		case !s.has(fHour, h):
			t = time.Date(y, mo, d, h, 0, 0, 0, time.UTC).Add(-time.Second)
		case !s.has(fMinute, mi):
			t = time.Date(y, mo, d, h, mi, 0, 0, time.UTC).Add(-time.Second)
		case !s.has(fSecond, t.Second()):
			t = t.Add(-time.Second)
		default:
			return t
		}
	}
	return time.Time{}
}

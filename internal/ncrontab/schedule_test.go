package ncrontab

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestNext(t *testing.T) {
	tests := []struct {
		expr, after, want string
	}{
		{"0 0 2 * * *", "2024-03-10T01:59:59Z", "2024-03-10T02:00:00Z"},
		{"0 0 2 * * *", "2024-03-10T02:00:00Z", "2024-03-11T02:00:00Z"}, // strictly after
		{"0 0 2 * * *", "2024-12-31T03:00:00Z", "2025-01-01T02:00:00Z"}, // year end
		{"0 0 2 * * *", "2024-02-28T02:00:00Z", "2024-02-29T02:00:00Z"}, // leap day
		{"0 */5 * * * *", "2024-01-01T00:00:00Z", "2024-01-01T00:05:00Z"},
		{"0 */5 * * * *", "2024-01-01T00:04:59.9Z", "2024-01-01T00:05:00Z"},
		{"0 */5 * * * *", "2024-01-31T23:59:00Z", "2024-02-01T00:00:00Z"},  // month end
		{"0 30 9 * * 1-5", "2024-06-07T09:30:00Z", "2024-06-10T09:30:00Z"}, // Friday -> Monday
		{"0 30 9 * * 1-5", "2024-06-10T09:29:59Z", "2024-06-10T09:30:00Z"},
		{"0 30 9 * * Mon-Fri", "2024-06-08T00:00:00Z", "2024-06-10T09:30:00Z"},
		{"0 0 0 * * 7", "2024-06-10T00:00:00Z", "2024-06-16T00:00:00Z"}, // 7 = Sunday
		{"0 0 0 * * 0", "2024-06-10T00:00:00Z", "2024-06-16T00:00:00Z"},
		{"0 0 0 * * sun", "2024-06-10T00:00:00Z", "2024-06-16T00:00:00Z"},
		{"0 0 0 31 * *", "2024-04-01T00:00:00Z", "2024-05-31T00:00:00Z"}, // April has no 31st
		{"0 0 0 29 Feb *", "2024-03-01T00:00:00Z", "2028-02-29T00:00:00Z"},
		{"0 0 0 13 * 5", "2024-01-01T00:00:00Z", "2024-09-13T00:00:00Z"}, // Friday 13th: both must match
		{"0 0 12 1 jan,jul *", "2024-02-01T00:00:00Z", "2024-07-01T12:00:00Z"},
		{"15,45 * * * * *", "2024-01-01T00:00:15Z", "2024-01-01T00:00:45Z"},
		{"5/20 * * * * *", "2024-01-01T00:00:26Z", "2024-01-01T00:00:45Z"}, // 5,25,45
		{"0 1-10/3 * * * *", "2024-01-01T00:04:00Z", "2024-01-01T00:07:00Z"},
		{"0 0 0 * * *", "2024-01-01T05:00:00+05:00", "2024-01-02T00:00:00Z"}, // input zone ignored: UTC
		{"*  0   0 * * *", "2023-12-31T23:59:59Z", "2024-01-01T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.expr+"@"+tt.after, func(t *testing.T) {
			s, err := Parse(tt.expr)
			require.NoError(t, err)
			after, err := time.Parse(time.RFC3339Nano, tt.after)
			require.NoError(t, err)
			got := s.Next(after)
			assert.WithinDuration(t, utc(tt.want), got, 0, "Next(%s)", tt.after)
			assert.Equal(t, time.UTC, got.Location())
		})
	}
}

func TestPrev(t *testing.T) {
	tests := []struct {
		expr, at, want string
	}{
		{"0 0 2 * * *", "2024-03-10T02:00:00Z", "2024-03-10T02:00:00Z"}, // at or before
		{"0 0 2 * * *", "2024-03-10T01:59:59Z", "2024-03-09T02:00:00Z"},
		{"0 0 2 * * *", "2025-01-01T01:00:00Z", "2024-12-31T02:00:00Z"}, // year start
		{"0 0 2 * * *", "2024-03-01T00:00:00Z", "2024-02-29T02:00:00Z"}, // leap day
		{"0 */5 * * * *", "2024-03-01T00:04:59Z", "2024-03-01T00:00:00Z"},
		{"0 */5 * * * *", "2024-03-01T00:00:00.5Z", "2024-03-01T00:00:00Z"},
		{"0 30 9 * * 1-5", "2024-06-10T09:29:59Z", "2024-06-07T09:30:00Z"}, // Monday -> Friday
		{"0 0 0 31 * *", "2024-07-30T00:00:00Z", "2024-05-31T00:00:00Z"},
		{"0 0 0 29 2 *", "2028-02-28T00:00:00Z", "2024-02-29T00:00:00Z"},
		{"59 59 23 31 12 *", "2024-06-01T00:00:00Z", "2023-12-31T23:59:59Z"},
	}
	for _, tt := range tests {
		t.Run(tt.expr+"@"+tt.at, func(t *testing.T) {
			s, err := Parse(tt.expr)
			require.NoError(t, err)
			at, err := time.Parse(time.RFC3339Nano, tt.at)
			require.NoError(t, err)
			assert.WithinDuration(t, utc(tt.want), s.Prev(at), 0, "Prev(%s)", tt.at)
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		expr string
		want []string // substrings of the error
	}{
		{"", []string{"0 fields"}},
		{"0 2 * * *", []string{"5 fields", "seconds"}},
		{"0 0 2 * * * *", []string{"7 fields"}},
		{"0 0 25 * * *", []string{"hour", `"25"`, "0..23"}},
		{"60 0 0 * * *", []string{"second", `"60"`}},
		{"0 60 0 * * *", []string{"minute", `"60"`}},
		{"0 0 0 0 * *", []string{"day", `"0"`, "1..31"}},
		{"0 0 0 32 * *", []string{"day", `"32"`}},
		{"0 0 0 * 13 *", []string{"month", `"13"`}},
		{"0 0 0 * * 8", []string{"day-of-week", `"8"`}},
		{"0 0 0 * Foo *", []string{"month", `"Foo"`}},
		{"0 0 0 * * Mo", []string{"day-of-week", `"Mo"`}},
		{"0 */0 * * * *", []string{"minute", "step"}},
		{"0 */x * * * *", []string{"minute", "step"}},
		{"0 5-1 * * * *", []string{"minute", "backwards"}},
		{"0 1,,2 * * * *", []string{"minute", "empty"}},
		{"0 1, * * * *", []string{"minute", "empty"}},
		{"0 -1 * * * *", []string{"minute", "empty value"}},
		{"0 0 0 30 2 *", []string{"never occurs"}},
		{"0 0 0 31 4,6,9,11 *", []string{"never occurs"}},
		{"0 0 ? * * *", []string{"hour", `"?"`}},
		{"0 0 0 L * *", []string{"day", `"L"`}},
		{"0 0 1.5 * * *", []string{"hour"}},
		{strings.Repeat("1,", 600) + "1 * * * * *", []string{"longer than"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			s, err := Parse(tt.expr)
			require.Error(t, err, "Parse(%q) = %v", tt.expr, s)
			for _, w := range tt.want {
				assert.ErrorContains(t, err, w)
			}
		})
	}
}

func TestString(t *testing.T) {
	s, err := Parse("  0  0   2 * *  * ")
	require.NoError(t, err)
	assert.Equal(t, "0 0 2 * * *", s.String())
}

// TestMatchesBruteForce compares Next with a second-by-second scan.
func TestMatchesBruteForce(t *testing.T) {
	exprs := []string{"*/7 */13 * * * *", "0 0 */5 * * 2,4", "30 15 10 1-7 * mon"}
	for _, e := range exprs {
		s, err := Parse(e)
		require.NoError(t, err)
		start := utc("2024-02-27T22:00:00Z")
		want := start
		for i := 0; i < 40; i++ {
			got := s.Next(want)
			b, ok := bruteNext(s, want, 62*24*time.Hour)
			require.True(t, ok, "%s: no brute-force match after %s", e, want)
			require.WithinDuration(t, b, got, 0, "%s: Next(%s) against brute force", e, want)
			require.WithinDuration(t, got, s.Prev(got.Add(999*time.Millisecond)), 0, "%s: Prev(%s)", e, got)
			want = got
		}
	}
}

// bruteNext scans minute by minute (and second by second inside a matching
// minute) for the first match strictly after t.
func bruteNext(s *Schedule, t time.Time, within time.Duration) (time.Time, bool) {
	b := t.Add(time.Second)
	for b.Sub(t) <= within {
		if matches(s, b) {
			return b, true
		}
		if b.Second() == 59 || !matchesMinute(s, b) {
			b = b.Truncate(time.Minute).Add(time.Minute)
		} else {
			b = b.Add(time.Second)
		}
	}
	return time.Time{}, false
}

func matchesMinute(s *Schedule, t time.Time) bool {
	return s.has(fMinute, t.Minute()) && s.has(fHour, t.Hour()) &&
		s.has(fDay, t.Day()) && s.has(fMonth, int(t.Month())) && s.has(fWeekday, int(t.Weekday()))
}

func matches(s *Schedule, t time.Time) bool {
	return s.has(fSecond, t.Second()) && s.has(fMinute, t.Minute()) && s.has(fHour, t.Hour()) &&
		s.has(fDay, t.Day()) && s.has(fMonth, int(t.Month())) && s.has(fWeekday, int(t.Weekday()))
}

func FuzzSchedule(f *testing.F) {
	for _, seed := range []string{"0 0 2 * * *", "0 */5 * * * *", "0 30 9 * * 1-5", "0 0 0 29 2 *", "*/3 1-10/4 2,3 * jan-mar sun", "0 0 0 31 * 7"} {
		f.Add(seed, int64(1718000000))
	}
	f.Fuzz(func(t *testing.T, expr string, unix int64) {
		s, err := Parse(expr)
		if err != nil {
			return
		}
		_, err = Parse(s.String())
		require.NoError(t, err, "String() %q does not parse", s.String())
		at := time.Unix(unix%(1<<34), 0).UTC() // years ~1425..2514
		p := s.Prev(at)
		if !p.IsZero() {
			require.True(t, !p.After(at) && matches(s, p), "Prev(%s) = %s", at, p)
			n := s.Next(p)
			require.True(t, n.After(at) && matches(s, n), "Next(Prev(%s)) = Next(%s) = %s, want a match after %s", at, p, n, at)
		}
		n := s.Next(at)
		if !n.IsZero() {
			require.True(t, n.After(at) && matches(s, n), "Next(%s) = %s", at, n)
			require.WithinDuration(t, n, s.Prev(n), 0, "Prev(Next(%s))", at)
		}
	})
}

package localstack

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/acrpurge/acrpurge/internal/runs"
)

// printer writes progress lines; safe for concurrent use, and a no-op
// without a writer.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func newPrinter(w io.Writer) *printer { return &printer{w: w} }

func (p *printer) printf(format string, args ...any) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// section announces a trigger.
func (p *printer) section(format string, args ...any) {
	p.printf("\n"+format+"\n", args...)
}

// invocation prints one line per invocation.
func (p *printer) invocation(v Invocation) {
	p.printf("%s\n", FormatInvocation(v))
}

// FormatInvocation renders an invocation as one aligned progress line:
// function, message id, delivery count, outcome, duration and what the
// handler said.
func FormatInvocation(v Invocation) string {
	id, delivery := "timer", ""
	switch {
	case v.MessageID != "":
		id, delivery = shorten(v.MessageID, 22), fmt.Sprintf("delivery %d", v.DeliveryCount)
	case v.DeliveryCount > 1:
		delivery = fmt.Sprintf("retry %d", v.DeliveryCount-1)
	}
	outcome := "ok"
	if !v.OK() {
		outcome = "failed"
	}
	what := tidySummary(v.Summary)
	switch {
	case v.DeadLettered:
		what += fmt.Sprintf(" -> dead-lettered after %d deliveries", v.DeliveryCount)
	case v.Redelivered && v.MessageID == "":
		what += " -> retried"
	case v.Redelivered:
		what += " -> will be delivered again"
	}
	return strings.TrimRight(fmt.Sprintf("  %-9s  %-22s  %-10s  %-6s  %6s  %s",
		v.Function, id, delivery, outcome, formatDuration(v.Duration), what), " ")
}

var (
	// batchPrefix is how the Worker's summary starts ("run ID batch N: ");
	// the progress line shows the message id instead.
	batchPrefix = regexp.MustCompile(`^run \S+ batch \d+: `)
	// byteCount ends the Worker's summary ("…, 123456 bytes").
	byteCount = regexp.MustCompile(`(\d+) bytes\b`)
	// oneRepositories is the Worker's plural for one.
	oneRepositories = regexp.MustCompile(`\b1 repositories\b`)
)

// tidySummary shortens a handler log line for a progress line: no run and
// batch prefix, byte counts with units, one line.
func tidySummary(s string) string {
	s = batchPrefix.ReplaceAllString(oneLine(s, 300), "")
	s = oneRepositories.ReplaceAllString(s, "1 repository")
	return byteCount.ReplaceAllStringFunc(s, func(m string) string {
		n, err := strconv.ParseInt(byteCount.FindStringSubmatch(m)[1], 10, 64)
		if err != nil {
			return m
		}
		return runs.Bytes(n)
	})
}

// formatDuration renders a duration for people: "12ms", "1.4s", "2m3s".
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return "<1ms"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// shorten cuts s to at most n bytes (n > 3), marking the cut with "...",
// never inside a UTF-8 sequence.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// oneLine collapses whitespace and cuts s to at most n bytes.
func oneLine(s string, n int) string {
	return shorten(strings.Join(strings.Fields(s), " "), n)
}

// shortDigest renders a digest as its algorithm and first 12 hex digits.
func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

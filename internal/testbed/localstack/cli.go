package localstack

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/acrpurge/acrpurge/internal/config"
)

// Exit codes of `handler local`.
const (
	exitOK         = 0   // the stack ran; every message was handled
	exitRuntime    = 1   // the stack could not run
	exitUsage      = 2   // bad flags, settings or policy
	exitIncomplete = 3   // the stack ran, but a message was dead-lettered or the timer failed
	exitInterrupt  = 130 // interrupted (Ctrl-C): invocations in flight were cancelled
)

const usageText = `Usage: handler local [flags]

Runs acrpurge on this machine, with no Azure account: an ACR emulator seeded
with a demo registry, an in-process queue standing in for Service Bus, and a
stand-in for the Functions host that calls this same handler over the real
custom-handler protocol. By default the timer fires once (the nightly purge);
the queue is drained, and a report says what was deleted, what was kept and why.

Flags:
`

const usageTail = `
Triggers are delivered in the order given; --push and --send replace the
default timer unless --timer is given too.

Environment:
  CheckpointStorage  a Table Storage connection string (Azurite's, or
                     UseDevelopmentStorage=true): checkpoints go there instead
                     of memory, in a new table per run unless CHECKPOINT_TABLE
                     names one

Exit codes: 0 done (forbidden repositories and rejected messages included),
1 the stack could not run, 2 bad flags, 3 a message was dead-lettered or the
timer failed on every attempt, 130 interrupted.

Examples:
  make run                                   # the nightly purge of the demo registry
  make run ARGS=--dry-run                    # the same, deleting nothing
  make run ARGS='--push team-a/api:ci-1501'  # a push triggers a purge of one repository
  go run ./handler local --send '{"repositories":["team-b/worker"],"dryRun":true}'
  go run ./handler local --policy @my-policy.json --dry-run
`

// triggerFlag appends a trigger per occurrence of its flag.
type triggerFlag struct {
	kind TriggerKind
	list *[]Trigger
}

func (f triggerFlag) String() string { return "" }

func (f triggerFlag) Set(v string) error {
	t := Trigger{Kind: f.kind}
	switch f.kind {
	case TriggerPush:
		repo, tag, ok := splitRef(v)
		if !ok {
			return fmt.Errorf("want repository:tag, e.g. team-a/api:ci-1501")
		}
		t.Ref = repo + ":" + tag
	case TriggerSend:
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("want a message body, e.g. '{\"repositories\":[\"team-a/api\"]}'")
		}
		t.Body = v
	case TriggerTimer:
		if v != "true" {
			return nil // --timer=false: nothing to add
		}
	}
	*f.list = append(*f.list, t)
	return nil
}

// IsBoolFlag makes --timer a flag without a value.
func (f triggerFlag) IsBoolFlag() bool { return f.kind == TriggerTimer }

// parseFlags parses the command line into Options, plus --verbose.
func parseFlags(args []string, stderr io.Writer) (Options, bool, error) {
	var o Options
	fs := flag.NewFlagSet("handler local", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.DryRun, "dry-run", false, "report what would be deleted; delete nothing (PURGE_DRY_RUN)")
	fs.Var(triggerFlag{TriggerPush, &o.Triggers}, "push",
		"push an image as `repository:tag` and deliver its ImagePushed event (repeatable)")
	fs.BoolVar(&o.CloudEvents, "cloudevents", false, "deliver push events as CloudEvents 1.0 instead of in the Event Grid schema")
	fs.Var(triggerFlag{TriggerSend, &o.Triggers}, "send",
		"send a message `body` as from the portal's Service Bus Explorer (repeatable),\ne.g. '{\"repositories\":[\"team-a/api\"],\"dryRun\":true}'")
	fs.Var(triggerFlag{TriggerTimer, &o.Triggers}, "timer", "fire the timer (the default when there is no --push or --send)")
	fs.StringVar(&o.Policy, "policy", "", "purge policy: inline `JSON` or @file (default: the demo policy, shown at start)")
	fs.IntVar(&o.Repositories, "repositories", DefaultRepositories,
		"size of the demo registry; repositories beyond the first 7 repeat them (team-a/api-2, …)")
	fs.IntVar(&o.BatchSize, "batch-size", DefaultBatchSize, "repositories per message and per access token (ABAC_BATCH_SIZE)")
	fs.IntVar(&o.MaxDeliveries, "max-deliveries", config.DefaultMaxDeliveries,
		"deliveries of a failing message before it is dead-lettered (PURGE_MAX_DELIVERIES)")
	fs.Float64Var(&o.ErrorRate, "error-rate", 0,
		"`fraction` of registry requests answered with a 5xx, to watch retries and redeliveries")
	fs.StringVar(&o.HTMLDir, "html-dir", "",
		"write each run's HTML page (the Runs function's ?format=html) to this `directory` (default: a new temporary one)")
	verbose := fs.Bool("verbose", false, "log the app at info level (default: warnings and errors only)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), usageTail)
	}
	if err := fs.Parse(args); err != nil {
		return Options{}, false, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q (a --send body with spaces needs quotes)", fs.Arg(0)))
	}
	if o.Repositories < 1 {
		errs = append(errs, fmt.Errorf("--repositories must be at least 1, got %d", o.Repositories))
	}
	if o.BatchSize < 1 || o.BatchSize > config.MaxBatchSize {
		errs = append(errs, fmt.Errorf("--batch-size must be from 1 to %d, got %d", config.MaxBatchSize, o.BatchSize))
	}
	if o.MaxDeliveries < 1 {
		errs = append(errs, fmt.Errorf("--max-deliveries must be at least 1, got %d", o.MaxDeliveries))
	}
	if o.ErrorRate < 0 || o.ErrorRate > 1 {
		errs = append(errs, fmt.Errorf("--error-rate must be from 0 to 1, got %v", o.ErrorRate))
	}
	return o, *verbose, errors.Join(errs...)
}

// Run is `handler local`: it parses args, runs the stack (see RunStack) and
// writes the story to stdout: what is being run, a line per invocation,
// the run reports and the registry before and after. The app's logs go to
// stderr (warnings and errors; everything with --verbose). getenv reads
// CheckpointStorage and CHECKPOINT_TABLE.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	o, verbose, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "handler local: %v\nRun \"handler local -h\" for the flags.\n", err)
		return exitUsage
	}
	o.CheckpointStorage = strings.TrimSpace(getenv(config.CheckpointConnString))
	o.CheckpointTable = strings.TrimSpace(getenv(config.CheckpointTable))
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	// One lock for everything written to the terminal, so that log lines
	// and progress lines never interleave mid-line.
	var mu sync.Mutex
	out := &lockedWriter{mu: &mu, w: stdout}
	o.Logger = slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: stderr, prefix: logPrefix}, &slog.HandlerOptions{
		Level: level, ReplaceAttr: dropTime,
	}))
	o.Progress = out
	tempPages := o.HTMLDir == ""
	if tempPages {
		if o.HTMLDir, err = os.MkdirTemp("", "acrpurge-local-"); err != nil {
			fmt.Fprintf(stderr, "handler local: a directory for the HTML pages: %v\n", err)
			return exitRuntime
		}
	}

	res, err := RunStack(ctx, o)
	if tempPages && (res == nil || len(res.Pages) == 0) {
		_ = os.Remove(o.HTMLDir) // empty: nothing to keep
	}
	var usage *UsageError
	switch {
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "handler local: %v\nRun \"handler local -h\" for the flags.\n", err)
		return exitUsage
	case err != nil && ctx.Err() != nil:
		fmt.Fprintln(stderr, "handler local: interrupted")
		return exitInterrupt
	case err != nil:
		fmt.Fprintf(stderr, "handler local: %v\n", err)
		return exitRuntime
	}
	if err := writeResult(out, res); err != nil {
		fmt.Fprintf(stderr, "handler local: %v\n", err)
		return exitRuntime
	}
	if len(res.Incomplete()) > 0 {
		return exitIncomplete
	}
	return exitOK
}

// dropTime leaves the time out of log lines: the terminal shows them as
// they happen.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// logPrefix marks the app's log lines among the progress lines.
const logPrefix = "  app log: "

// lockedWriter serialises writes to w under a shared lock, and puts prefix
// before each write (slog writes one record per call).
type lockedWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.prefix == "" {
		return l.w.Write(p)
	}
	if _, err := io.WriteString(l.w, l.prefix); err != nil {
		return 0, err
	}
	return l.w.Write(p)
}

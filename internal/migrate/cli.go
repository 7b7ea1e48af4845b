package migrate

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/acrpurge/acrpurge/internal/policy"
)

// Exit codes of `handler policy`.
const (
	exitOK          = 0
	exitRuntime     = 1   // reading the input failed
	exitUsage       = 2   // bad flags, input that does not convert, an invalid policy
	exitInterrupted = 130 // interrupted while reading stdin
)

const usageText = `Usage:
  handler policy convert [-f task.yaml] [--schedule CRON] [COMMAND ...]
  handler policy check POLICY

convert turns acr purge commands into an acrpurge policy. The policy JSON goes
to stdout (set PURGE_POLICY to it, inline or as @file); on stderr, lines
"# setting: NAME=value" give the app settings that go with it (PURGE_SCHEDULE,
PURGE_DRY_RUN, PURGE_CONCURRENCY, ACR_LOGIN_SERVER, ABAC_BATCH_SIZE) and other
"# " lines say where the policy behaves differently from acr purge.

Each acr purge command becomes one rule. A COMMAND argument is one command
line, quoted as for a shell:
  handler policy convert "acr purge --filter 'hello-world:.*' --ago 1d --untagged"
or, unquoted, the words of one command:
  handler policy convert -- acr purge --filter 'hello-world:.*' --ago 1d
Without COMMAND (or with "-"), commands are read from stdin, one per line, as
a shell reads them: quotes, backslash-newline, '#' comments, and also
  az acr run|task create ... --cmd "acr purge ..." [--schedule "0 1 * * Sun"]
  az acr task timer add ... --schedule "..."
  PURGE_CMD="acr purge ..."    (then --cmd "$PURGE_CMD" on a later line)
-f reads the acr purge steps of an ACR Task YAML file (other steps are
skipped with a note). {{.Run.Registry}} and $Registry are accepted where the
registry goes; the registry comes from ACR_LOGIN_SERVER.

check reads a policy (@file, inline JSON, or - for stdin), validates it and
describes it in words. Exit codes: 0 valid or converted, 1 the input could
not be read, 2 usage error, input that does not convert, or an invalid policy.

Flags of convert:
`

// Run runs `handler policy` with args (after "policy") and returns the
// exit code. stdin is read by convert without commands and by check -.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "handler policy: want a subcommand, convert or check\n\n%s", usageText)
		return exitUsage
	}
	switch args[0] {
	case "convert":
		return runConvert(ctx, args[1:], stdin, stdout, stderr)
	case "check":
		return runCheck(ctx, args[1:], stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText)
		printConvertFlags(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "handler policy: unknown subcommand %q: want convert or check\nRun 'handler policy -h' for usage.\n", args[0])
		return exitUsage
	}
}

func convertFlags(out io.Writer) (*flag.FlagSet, *string, *string) {
	fs := flag.NewFlagSet("handler policy convert", flag.ContinueOnError)
	fs.SetOutput(out)
	file := fs.String("f", "", "an ACR Task YAML `file` whose cmd steps run acr purge")
	fs.StringVar(file, "file", "", "same as -f `file`")
	sched := fs.String("schedule", "", "the task's timer, 5-field `cron` as ACR Tasks uses (\"0 1 * * Sun\"); it becomes PURGE_SCHEDULE")
	return fs, file, sched
}

func printConvertFlags(w io.Writer) {
	fs, _, _ := convertFlags(w)
	fs.PrintDefaults()
}

func runConvert(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, file, sched := convertFlags(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "handler policy convert: %v\n", err)
		return code
	}

	in := &Input{}
	if *file != "" {
		data, err := readFile(*file)
		if err != nil {
			return fail(exitRuntime, err)
		}
		t, err := ParseTaskFile(data, *file)
		if err != nil {
			return fail(exitUsage, err)
		}
		in = t
	}

	rest := fs.Args()
	r := NewScriptReader()
	switch {
	case len(rest) > 1 && (isAcrProgram(rest[0]) || rest[0] == "az"):
		// The words of one command, already split by the shell.
		if err := r.Read(shellJoin(rest), "the command"); err != nil {
			return fail(exitUsage, err)
		}
	case len(rest) == 0 && *file == "", len(rest) == 1 && rest[0] == "-":
		if isTerminal(stdin) {
			fmt.Fprintln(stderr, "# reading acr purge commands from stdin, one per line; end with Ctrl-D")
		}
		data, err := readAll(ctx, stdin, MaxInputBytes)
		if err != nil {
			if ctx.Err() != nil {
				return fail(exitInterrupted, err)
			}
			return fail(exitRuntime, err)
		}
		if err := r.Read(string(data), "stdin"); err != nil {
			return fail(exitUsage, err)
		}
	default:
		for i, a := range rest {
			if a == "-" {
				return fail(exitUsage, errors.New(`"-" (stdin) must be the only command argument`))
			}
			if name := strings.TrimLeft(a, "-"); strings.HasPrefix(a, "-") && fs.Lookup(strings.SplitN(name, "=", 2)[0]) != nil {
				return fail(exitUsage, fmt.Errorf("the flag %s comes after a command: put the flags of convert first", a))
			}
			if err := r.Read(a, fmt.Sprintf("argument %d", i+1)); err != nil {
				return fail(exitUsage, err)
			}
		}
	}
	script := r.Input()
	in.Commands = append(in.Commands, script.Commands...)
	in.Timers = append(in.Timers, script.Timers...)
	in.Notes = append(in.Notes, script.Notes...)
	if len(in.Commands) == 0 {
		return fail(exitUsage, errors.New("no acr purge command in the input"))
	}

	res, err := Convert(in, Options{Schedule: *sched})
	if err != nil {
		return fail(exitUsage, err)
	}
	if _, err := stdout.Write(res.Policy); err != nil {
		return fail(exitRuntime, err)
	}
	for _, s := range res.Settings {
		fmt.Fprintf(stderr, "# setting: %s=%s\n", s.Name, s.Value)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(stderr, "# %s\n", n)
	}
	return exitOK
}

const checkUsage = `Usage: handler policy check POLICY

Validates a purge policy and describes it in words (as "make run" prints it).
POLICY is @file, inline JSON, or - to read stdin. Exit codes: 0 valid,
1 the policy could not be read, 2 invalid (the error says which rule and field).
`

func runCheck(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, checkUsage)
		return exitOK
	}
	if len(args) != 1 {
		fmt.Fprintf(stderr, "handler policy check: want one policy (@file, inline JSON or -), got %d arguments\n\n%s", len(args), checkUsage)
		return exitUsage
	}
	arg := args[0]
	var p *policy.Policy
	var err error
	if arg == "-" {
		data, rerr := readAll(ctx, stdin, policy.MaxPolicyBytes)
		if rerr != nil {
			fmt.Fprintf(stderr, "handler policy check: stdin: %v\n", rerr)
			if ctx.Err() != nil {
				return exitInterrupted
			}
			return exitRuntime
		}
		p, err = policy.Parse(data)
	} else {
		wd, werr := os.Getwd()
		if werr != nil {
			fmt.Fprintf(stderr, "handler policy check: current directory: %v\n", werr)
			return exitRuntime
		}
		p, err = policy.Load(arg, wd)
		trimmed := strings.TrimSpace(arg)
		if err != nil && !strings.HasPrefix(trimmed, "@") && !strings.HasPrefix(trimmed, "{") {
			if _, serr := os.Stat(trimmed); serr == nil {
				err = fmt.Errorf("%w (to read the file %s, write @%s)", err, trimmed, trimmed)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "handler policy check: invalid policy: %v\n", err)
		return exitUsage
	}
	fmt.Fprintln(stdout, p.Describe())
	return exitOK
}

// readFile reads a task file, bounded by MaxInputBytes.
func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxInputBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return data, nil
}

// readAll reads r to the end, at most limit bytes (one more is an error),
// and gives up when ctx ends (stdin may never end).
func readAll(ctx context.Context, r io.Reader, limit int64) ([]byte, error) {
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		data, err := io.ReadAll(io.LimitReader(r, limit+1))
		done <- result{data, err}
	}()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case res := <-done:
		if res.err != nil {
			return nil, res.err
		}
		if int64(len(res.data)) > limit {
			return nil, fmt.Errorf("more than %d bytes", limit)
		}
		return res.data, nil
	}
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// shellJoin quotes words so that the splitter gives them back unchanged.
func shellJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

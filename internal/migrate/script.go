package migrate

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Input is what was read from the user: the acr purge commands, timers not
// tied to a command (az acr task timer add), and notes about what was read
// but not converted.
type Input struct {
	Commands []*Command
	Timers   []Timer
	Notes    []string
}

// Timer is an ACR Task timer given on its own line.
type Timer struct {
	Source   string
	Task     string // the task's --name, if given
	Schedule string // 5-field cron
}

// ScriptReader reads commands as a shell would read them typed or pasted:
// one command per line (backslash-newline continues a line, quotes may span
// lines), '#' comments, and assignments such as PURGE_CMD="acr purge ..."
// whose value a later line may use as $PURGE_CMD. Each line must be an acr
// purge command, an az acr run / az acr task create|update|run line whose
// --cmd runs acr purge, an az acr task timer add|update line, or an
// assignment. Read several texts with one reader to share assignments.
type ScriptReader struct {
	env   map[string]string
	items []scriptItem
	// candidate maps an assigned name to the item its acr purge value made.
	candidate map[string]int
	timers    []Timer
	notes     []string
}

type scriptItem struct {
	cmd *Command
	// consumed is set on a command that is the value of an assignment when
	// an az line's --cmd used it: the az line's command then stands for it.
	consumed bool
}

// NewScriptReader returns an empty reader.
func NewScriptReader() *ScriptReader {
	return &ScriptReader{env: map[string]string{}, candidate: map[string]int{}}
}

// Read reads one text; source names it in messages ("stdin", "argument 1")
// and is followed by the line number when the text has several lines.
func (r *ScriptReader) Read(text, source string) error {
	text = strings.TrimPrefix(text, "\ufeff") // a byte order mark from an editor
	multiline := strings.Contains(strings.TrimRight(text, "\n"), "\n")
	where := func(line int) string {
		if multiline {
			return fmt.Sprintf("%s line %d", source, line)
		}
		return source
	}
	sp := newSplitter(text, shellMode, r.env)
	for {
		c, ok, err := sp.next()
		if err != nil {
			var se *SyntaxError
			if errors.As(err, &se) {
				return &InputError{Source: fmt.Sprintf("%s, column %d", where(se.Line), se.Column), Err: errors.New(se.Msg)}
			}
			return &InputError{Source: source, Err: err}
		}
		if !ok {
			return nil
		}
		if err := r.command(c, where(c.line)); err != nil {
			return err
		}
	}
}

// Input returns everything read so far.
func (r *ScriptReader) Input() *Input {
	in := &Input{Timers: r.timers, Notes: r.notes}
	for _, it := range r.items {
		if !it.consumed {
			in.Commands = append(in.Commands, it.cmd)
		}
	}
	return in
}

func (r *ScriptReader) command(c cmdLine, source string) error {
	ws := c.words
	if ws[0].text == "export" && len(ws) > 1 {
		ws = ws[1:]
	}
	if len(ws) == 1 && isAssignment(ws[0].text) {
		return r.assign(ws[0].text, source)
	}
	// Assignments before a command set its environment only.
	var prefix []string
	for len(ws) > 1 && isAssignment(ws[0].text) {
		prefix = append(prefix, ws[0].text)
		ws = ws[1:]
	}
	first := ws[0].text
	switch {
	case isAcrProgram(first):
		if err := checkUnresolved(ws, source); err != nil {
			return err
		}
		cmd, err := ParsePurge(texts(ws), source)
		if err != nil {
			return err
		}
		if err := applyEnv(cmd, prefix); err != nil {
			return &InputError{Source: source, Err: err}
		}
		r.items = append(r.items, scriptItem{cmd: cmd})
		return nil
	case first == "az":
		if len(prefix) > 0 {
			return &InputError{Source: source, Err: fmt.Errorf("%s before az: set the variable in the task (a step's env) instead", prefix[0])}
		}
		return r.az(ws, source)
	default:
		return &InputError{Source: source, Err: fmt.Errorf("%q does not start an acr purge command: want acr purge ..., az acr run|task create ... --cmd \"acr purge ...\", or NAME=\"acr purge ...\"", first)}
	}
}

func texts(ws []word) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.text
	}
	return out
}

// isAssignment reports whether w is NAME=value.
func isAssignment(w string) bool {
	name, _, ok := strings.Cut(w, "=")
	return ok && isName(name)
}

// checkUnresolved rejects words that use a shell variable this input never
// set: a shell would replace it (with nothing, if it is unset). $Registry
// and $RegistryName are let through: they are ACR Task aliases for the
// registry, accepted where a registry goes.
func checkUnresolved(ws []word, source string) error {
	for _, w := range ws {
		for _, name := range w.unresolved {
			if name == "Registry" || name == "RegistryName" {
				continue
			}
			return &InputError{Source: source, Err: fmt.Errorf("$%s in %q is not set in this input, and a shell would replace it (with nothing if unset): write its value, or set %s=... on an earlier line", name, w.text, name)}
		}
	}
	return nil
}

// applyEnv applies environment variables acr purge reads; the others are
// not acr purge's and are refused rather than dropped.
func applyEnv(c *Command, env []string) error {
	for _, kv := range env {
		name, val, _ := strings.Cut(kv, "=")
		switch name {
		case "ABAC_BATCH_SIZE":
			n, err := strconv.Atoi(strings.TrimSpace(val))
			if err != nil {
				return fmt.Errorf("ABAC_BATCH_SIZE=%s: not a whole number", val)
			}
			c.AbacBatchSize = &n
		case "ACR_DEFAULT_REGISTRY":
			if c.Registry == "" {
				reg, err := registryOf(name, val)
				if err != nil {
					return err
				}
				c.Registry = reg
			}
		default:
			c.note("the environment variable %s has no acrpurge equivalent; ignored", name)
		}
	}
	return nil
}

func (r *ScriptReader) assign(w, source string) error {
	name, val, _ := strings.Cut(w, "=")
	r.env[name] = val
	delete(r.candidate, name)
	words, err := splitWords(val)
	if err != nil {
		return &InputError{Source: source, Err: fmt.Errorf("%s: %w", name, err)}
	}
	if len(words) == 0 || !isAcrProgram(words[0]) {
		return nil // a plain variable, for later lines
	}
	cmd, err := ParsePurge(words, source)
	if err != nil {
		return err
	}
	r.candidate[name] = len(r.items)
	r.items = append(r.items, scriptItem{cmd: cmd})
	return nil
}

// azFlagAliases maps az's short flags to their long names.
var azFlagAliases = map[string]string{
	"-n": "--name", "-r": "--registry", "-f": "--file", "-c": "--context",
	"-g": "--resource-group", "-t": "--image",
}

// az reads an az acr line. Only the flags that matter here are read; the
// others (resource group, context, platform, ...) need no conversion.
func (r *ScriptReader) az(ws []word, source string) error {
	fail := func(format string, args ...any) error {
		return &InputError{Source: source, Err: fmt.Errorf(format, args...)}
	}
	if len(ws) < 2 || ws[1].text != "acr" {
		return fail("only az acr run and az acr task lines can run acr purge")
	}
	i := 2
	var sub []string
	for i < len(ws) && !strings.HasPrefix(ws[i].text, "-") {
		sub = append(sub, ws[i].text)
		i++
	}
	subcmd := strings.Join(sub, " ")
	flags := map[string]word{}
	for i < len(ws) {
		a := ws[i].text
		if !strings.HasPrefix(a, "-") {
			i++ // a positional argument, such as the /dev/null context of az acr run
			continue
		}
		name, val, eq := strings.Cut(a, "=")
		if long, ok := azFlagAliases[name]; ok {
			name = long
		}
		switch {
		case eq:
			flags[name] = word{text: val, unresolved: ws[i].unresolved, expanded: ws[i].expanded}
			i++
		case i+1 < len(ws) && !strings.HasPrefix(ws[i+1].text, "-"):
			flags[name] = ws[i+1]
			i += 2
		default:
			flags[name] = word{text: "true"}
			i++
		}
	}
	for _, name := range []string{"--name", "--schedule", "--registry", "--timeout"} {
		w := flags[name]
		for _, v := range w.unresolved {
			if name == "--registry" && (v == "Registry" || v == "RegistryName") {
				continue
			}
			return fail("%s %q: $%s is not set in this input: write its value, or set %s=... on an earlier line", name, w.text, v, v)
		}
	}
	task := flags["--name"].text

	switch subcmd {
	case "task timer add", "task timer update":
		sched, ok := flags["--schedule"]
		if !ok {
			return fail("az acr %s without --schedule: nothing to convert", subcmd)
		}
		if strings.EqualFold(flags["--status"].text, "Disabled") {
			r.notes = append(r.notes, fmt.Sprintf("%s: the timer is disabled (--status Disabled); its schedule %q is not used", source, sched.text))
			return nil
		}
		r.timers = append(r.timers, Timer{Source: source, Task: task, Schedule: sched.text})
		return nil
	case "run", "task create", "task update", "task run":
	default:
		return fail("az acr %s does not run acr purge: want az acr run, az acr task create|update|run (with --cmd) or az acr task timer add|update", subcmd)
	}

	cmdWord, ok := flags["--cmd"]
	if !ok {
		if f, ok := flags["--file"]; ok {
			return fail("az acr %s runs the task file %s: convert that file with handler policy convert -f %s", subcmd, f.text, f.text)
		}
		if sched, ok := flags["--schedule"]; ok && subcmd == "task update" {
			r.timers = append(r.timers, Timer{Source: source, Task: task, Schedule: sched.text})
			return nil
		}
		return fail("az acr %s without --cmd: nothing to convert (give the acr purge command itself)", subcmd)
	}
	for _, name := range cmdWord.unresolved {
		if name == "Registry" || name == "RegistryName" {
			continue
		}
		return fail("--cmd %q: $%s is not set in this input; put its assignment (%s=\"acr purge ...\") on an earlier line, or paste the command itself", cmdWord.text, name, name)
	}
	for _, name := range cmdWord.expanded {
		if idx, ok := r.candidate[name]; ok {
			r.items[idx].consumed = true
		}
	}
	inner := source + " (--cmd)"
	words, err := splitWords(cmdWord.text)
	if err != nil {
		return &InputError{Source: inner, Err: err}
	}
	if len(words) == 0 || !isAcrProgram(words[0]) {
		return fail("--cmd %q does not run acr purge", firstWord(words))
	}
	cmd, err := ParsePurge(words, inner)
	if err != nil {
		return err
	}
	cmd.Name = task
	if sched, ok := flags["--schedule"]; ok {
		cmd.Schedule = sched.text
	}
	if reg, ok := flags["--registry"]; ok {
		login, err := registryOf("--registry", reg.text)
		if err != nil {
			return &InputError{Source: source, Err: err}
		}
		switch {
		case cmd.Registry == "":
			cmd.Registry = login
		case login != "" && login != cmd.Registry:
			return fail("az --registry %s and acr purge --registry %s name different registries", login, cmd.Registry)
		}
	}
	if t, ok := flags["--timeout"]; ok {
		cmd.note("the task --timeout %s is not needed: a message that reaches PURGE_MESSAGE_DEADLINE checkpoints and continues in a new one", t.text)
	}
	r.items = append(r.items, scriptItem{cmd: cmd})
	return nil
}

func firstWord(ws []string) string {
	if len(ws) == 0 {
		return ""
	}
	return ws[0]
}

package migrate

import (
	"errors"
	"fmt"
	"math"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/policy"
)

// Command is one acr purge invocation, read as acr purge reads its flags.
type Command struct {
	// Source says where the command came from, for messages: "argument 1",
	// "stdin line 3", "task.yaml line 7".
	Source string
	// Name suggests the rule's name: the ACR task's name or the step's id;
	// empty when there is neither.
	Name string

	Filters       []string
	Ago           string
	Keep          int
	Untagged      bool
	UntaggedOnly  bool
	IncludeLocked bool
	DryRun        bool
	// Concurrency is --concurrency; nil when not given.
	Concurrency *int
	// FilterTimeoutSeconds is --filter-timeout-seconds; nil when not given.
	FilterTimeoutSeconds *int64
	// Registry is the login server --registry names ("contoso" becomes
	// "contoso.azurecr.io", as acr purge reads it); empty when not given or
	// when it is an ACR Task placeholder such as {{.Run.Registry}}.
	Registry string
	// Schedule is the 5-field cron expression of the task's timer, when
	// the input says it (az acr task create --schedule).
	Schedule string
	// AbacBatchSize is ABAC_BATCH_SIZE from the task step's environment;
	// nil when not set.
	AbacBatchSize *int

	// notes are remarks about this command (ignored flags, repeated flags),
	// without the source.
	notes []string
}

func (c *Command) note(format string, args ...any) {
	c.notes = append(c.notes, fmt.Sprintf(format, args...))
}

type flagKind int

const (
	boolFlag flagKind = iota
	stringFlag
	intFlag
)

// flagSpec is one acr purge flag: its own (cmd/acr/purge.go) and the
// persistent flags of the acr root command (cmd/acr/root.go).
type flagSpec struct {
	long  string
	short byte
	kind  flagKind
	root  bool // a flag of the acr root command, allowed before "purge" too
}

var purgeFlags = []flagSpec{
	{long: "filter", short: 'f', kind: stringFlag},
	{long: "ago", kind: stringFlag},
	{long: "keep", kind: intFlag},
	{long: "untagged", kind: boolFlag},
	{long: "untagged-only", kind: boolFlag},
	{long: "dry-run", kind: boolFlag},
	{long: "include-locked", kind: boolFlag},
	{long: "concurrency", kind: intFlag},
	{long: "filter-timeout-seconds", kind: intFlag},
	{long: "repository-page-size", kind: intFlag},
	{long: "verbose", kind: boolFlag},
	{long: "help", short: 'h', kind: boolFlag},
	{long: "config", short: 'c', kind: stringFlag, root: true},
	{long: "registry", short: 'r', kind: stringFlag, root: true},
	{long: "username", short: 'u', kind: stringFlag, root: true},
	{long: "password", short: 'p', kind: stringFlag, root: true},
}

func lookupFlag(long string, short byte) (flagSpec, bool) {
	for _, f := range purgeFlags {
		if long != "" && f.long == long || short != 0 && f.short == short {
			return f, true
		}
	}
	return flagSpec{}, false
}

func flagNames() string {
	names := make([]string, 0, len(purgeFlags))
	for _, f := range purgeFlags {
		names = append(names, "--"+f.long)
	}
	return strings.Join(names, " ")
}

// flagValue is one flag as given on the command line.
type flagValue struct {
	spec flagSpec
	as   string // as written, for messages: "--ago", "-f"
	val  string // "true" for a bool flag given without a value
}

// isAcrProgram reports whether w runs acr-cli: the ACR Task alias "acr",
// a local binary named acr, or an acr-cli image reference such as
// mcr.microsoft.com/acr/acr-cli:0.5.
func isAcrProgram(w string) bool {
	ref, _, _ := strings.Cut(w, "@") // digest
	base := path.Base(ref)
	if i := strings.LastIndexByte(base, ':'); i >= 0 {
		base = base[:i] // tag
	}
	return base == "acr" || base == "acr-cli"
}

// ParsePurge reads one acr purge command from its words, starting with the
// program ("acr", or an acr-cli image) and then "purge". Every flag acr
// purge knows is accepted; anything else is an error naming it.
func ParsePurge(words []string, source string) (*Command, error) {
	c := &Command{Source: source}
	fail := func(format string, args ...any) (*Command, error) {
		return nil, &InputError{Source: source, Err: fmt.Errorf(format, args...)}
	}
	if len(words) == 0 || !isAcrProgram(words[0]) {
		return fail("not an acr purge command")
	}
	// The root command's flags (--registry, ...) may come before "purge".
	rest := words[1:]
	var pre []string
	for len(rest) > 0 && len(rest[0]) > 1 && rest[0][0] == '-' && rest[0] != "--" {
		n := 1
		f, err := parseFlag(rest, &n)
		if err != nil {
			return fail("%v", err)
		}
		if !f.spec.root {
			return fail("%s must come after \"purge\"", f.as)
		}
		pre = append(pre, rest[:n]...)
		rest = rest[n:]
	}
	if len(rest) == 0 {
		return fail("%q without a subcommand: want %s purge ...", words[0], words[0])
	}
	if rest[0] != "purge" {
		return fail("%s %s is not acr purge", words[0], rest[0])
	}
	args := append(pre, rest[1:]...)

	var flags []flagValue
	for i := 0; i < len(args); {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) {
				return fail("unexpected argument %q after --: acr purge takes no arguments", args[i+1])
			}
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			return fail("unexpected argument %q: acr purge takes only flags (quote a filter that contains spaces)", a)
		}
		n := 1
		f, err := parseFlag(args[i:], &n)
		if err != nil {
			return fail("%v", err)
		}
		flags = append(flags, f)
		i += n
	}
	seen := map[string]string{}
	for _, f := range flags {
		if err := c.apply(f, seen); err != nil {
			return fail("%v", err)
		}
	}
	if err := c.validate(); err != nil {
		return fail("%v", err)
	}
	return c, nil
}

// parseFlag reads the flag at args[0] as pflag (acr purge's flag package)
// does: --name, --name=value, --name value, -x, -xvalue, -x=value,
// -x value. *n is set to how many words it used.
func parseFlag(args []string, n *int) (flagValue, error) {
	a := args[0]
	var f flagValue
	var val string
	hasVal := false
	if strings.HasPrefix(a, "--") {
		name, v, eq := strings.Cut(a[2:], "=")
		spec, ok := lookupFlag(name, 0)
		if !ok || name == "" {
			return f, fmt.Errorf("unknown flag --%s: acr purge's flags are %s", name, flagNames())
		}
		f.spec, f.as, val, hasVal = spec, "--"+name, v, eq
	} else {
		spec, ok := lookupFlag("", a[1])
		if !ok {
			return f, fmt.Errorf("unknown flag -%c (in %q): acr purge's flags are %s, shorthands -f -r -c -u -p -h", a[1], a, flagNames())
		}
		f.spec, f.as = spec, "-"+a[1:2]
		if rest := a[2:]; rest != "" {
			val, hasVal = strings.TrimPrefix(rest, "="), true
			if spec.kind == boolFlag && !strings.HasPrefix(rest, "=") {
				return f, fmt.Errorf("%q: -%c takes no value", a, a[1])
			}
		}
	}
	*n = 1
	if !hasVal {
		if f.spec.kind == boolFlag {
			val = "true"
		} else {
			if len(args) < 2 {
				return f, fmt.Errorf("%s needs a value", f.as)
			}
			val = args[1]
			if strings.HasPrefix(val, "--") {
				if _, known := lookupFlag(strings.SplitN(val[2:], "=", 2)[0], 0); known {
					return f, fmt.Errorf("%s needs a value (it is followed by the flag %s)", f.as, val)
				}
			}
			*n = 2
		}
	}
	f.val = val
	return f, nil
}

// apply records one flag. Flags that acr purge reads once take the last
// value, as acr purge does, with a note.
func (c *Command) apply(f flagValue, seen map[string]string) error {
	name := f.spec.long
	if prev, ok := seen[name]; ok && name != "filter" && name != "config" && prev != f.val && !isSecret(name) {
		c.note("--%s is given more than once; acr purge uses the last, %q", name, f.val)
	}
	seen[name] = f.val
	switch f.spec.kind {
	case boolFlag:
		b, err := strconv.ParseBool(f.val)
		if err != nil {
			return fmt.Errorf("%s=%s: want true or false", f.as, f.val)
		}
		switch name {
		case "untagged":
			c.Untagged = b
		case "untagged-only":
			c.UntaggedOnly = b
		case "dry-run":
			c.DryRun = b
		case "include-locked":
			c.IncludeLocked = b
		case "verbose":
			if b {
				c.note("--verbose is ignored: acrpurge logs every batch and repository anyway (handler purge --verbose lists every kept item)")
			}
		case "help":
			if b {
				return errors.New("--help asks acr purge for its help text; there is nothing to convert")
			}
		}
	case intFlag:
		// pflag reads integers with strconv.ParseInt(s, 0, ...): 0x10 and
		// 0o17 are accepted too.
		bits := 64
		switch name {
		case "keep", "concurrency":
			bits = strconv.IntSize
		case "repository-page-size":
			bits = 32
		}
		v, err := strconv.ParseInt(f.val, 0, bits)
		if err != nil {
			return fmt.Errorf("%s %q: not a whole number", f.as, f.val)
		}
		switch name {
		case "keep":
			if v < 0 {
				return fmt.Errorf("%s %d: must not be negative", f.as, v)
			}
			c.Keep = int(v)
		case "concurrency":
			n := int(v)
			c.Concurrency = &n
		case "filter-timeout-seconds":
			c.FilterTimeoutSeconds = &v
		case "repository-page-size":
			c.note("--repository-page-size is not needed: the catalog is read in pages of 100 by the Scheduler")
		}
	case stringFlag:
		switch name {
		case "filter":
			if err := checkTemplate(f.as, f.val); err != nil {
				return err
			}
			c.Filters = append(c.Filters, f.val)
		case "ago":
			if err := checkTemplate(f.as, f.val); err != nil {
				return err
			}
			c.Ago = f.val
		case "registry":
			reg, err := registryOf(f.as, f.val)
			if err != nil {
				return err
			}
			c.Registry = reg
		case "config", "username", "password":
			// The values are credentials or point at them: never repeated.
			c.note("--%s is ignored: acrpurge signs in with its managed identity (AZURE_CLIENT_ID), never with registry credentials", name)
		}
	}
	return nil
}

func isSecret(name string) bool { return name == "password" || name == "username" || name == "config" }

// validate applies acr purge's own rules about combinations of flags, and
// checks the values the policy will hold.
func (c *Command) validate() error {
	if c.Untagged && c.UntaggedOnly {
		return errors.New("--untagged and --untagged-only cannot be used together (acr purge refuses them too): --untagged-only already deletes untagged manifests")
	}
	if !c.UntaggedOnly {
		if len(c.Filters) == 0 {
			return errors.New("--filter is required unless --untagged-only (acr purge requires it too)")
		}
		if c.Ago == "" {
			return errors.New("--ago is required unless --untagged-only (acr purge requires it too), e.g. --ago 30d")
		}
	}
	if c.Ago != "" {
		if _, err := policy.ParseAgo(c.Ago); err != nil {
			// ParseAgo's message starts with "ago ...".
			return fmt.Errorf("--%w (acr purge reads malformed values silently; acrpurge refuses them)", err)
		}
	}
	for _, f := range c.Filters {
		if _, _, err := policy.SplitFilter(f); err != nil {
			return fmt.Errorf("--filter: %w", err)
		}
	}
	if c.Keep > math.MaxInt32 {
		return fmt.Errorf("--keep %d: too large", c.Keep)
	}
	return nil
}

// templateRef matches an ACR Task template reference such as {{.Values.x}}.
var templateRef = regexp.MustCompile(`\{\{[^}]*\}\}`)

// registryPlaceholder matches the ACR Task run variables and aliases that
// name the registry the task runs in.
var registryPlaceholder = regexp.MustCompile(`^(\{\{\s*\.Run\.Registry(Name)?\s*\}\}|\$Registry(Name)?|\$\{Registry(Name)?\})$`)

// checkTemplate rejects an ACR Task template in a value the policy would
// hold: it cannot be resolved here.
func checkTemplate(flag, v string) error {
	if m := templateRef.FindString(v); m != "" {
		return fmt.Errorf("%s %q: the ACR Task template %s is resolved only when the task runs; write its value instead", flag, v, m)
	}
	return nil
}

// registryOf reads --registry as acr purge does: a name without a dot is
// a registry name in the public cloud (contoso → contoso.azurecr.io). An
// ACR Task placeholder for the task's own registry gives "".
func registryOf(flag, v string) (string, error) {
	if registryPlaceholder.MatchString(strings.TrimSpace(v)) {
		return "", nil
	}
	if strings.Contains(v, "{{") || strings.Contains(v, "$") {
		return "", fmt.Errorf("%s %q: only {{.Run.Registry}}, {{.Run.RegistryName}}, $Registry or $RegistryName can stand for the registry; otherwise name it", flag, v)
	}
	host := strings.ToLower(strings.TrimSpace(v))
	if !strings.Contains(host, ".") {
		host += ".azurecr.io"
	}
	ep, err := acr.ParseEndpoint(host)
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", flag, v, err)
	}
	return ep.Service, nil
}

// InputError is input that cannot be converted; Source says where it is.
type InputError struct {
	Source string
	Err    error
}

func (e *InputError) Error() string {
	if e.Source == "" {
		return e.Err.Error()
	}
	return e.Source + ": " + e.Err.Error()
}

func (e *InputError) Unwrap() error { return e.Err }

package migrate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/ncrontab"
	"github.com/acrpurge/acrpurge/internal/policy"
)

// acr purge's bounds on --concurrency (cmd/acr/purge.go: maxPoolSize).
const acrPurgeMaxConcurrency = 32

// Bounds of the settings a conversion may produce (internal/config).
const (
	maxAppConcurrency = 64
	maxAbacBatchSize  = config.MaxBatchSize
)

// Options adjusts a conversion.
type Options struct {
	// Schedule is an ACR Task timer's 5-field cron expression; it replaces
	// any schedule found in the input.
	Schedule string
}

// Setting is an app setting the conversion found a value for.
type Setting struct {
	Name, Value string
}

// Result is a converted policy with the settings and notes that go with it.
type Result struct {
	// Policy is the policy JSON, indented, ending in a newline. It has been
	// checked with policy.Parse.
	Policy []byte
	// Settings are app settings to set, in a fixed order.
	Settings []Setting
	// Notes say where the converted policy behaves differently from the
	// acr purge commands, and what was read but not converted.
	Notes []string
}

// Document is the JSON shape of a policy as convert writes it; parsing it
// with policy.Parse and writing it back with DocumentOf gives the same JSON.
type Document struct {
	Rules   []policy.Rule `json:"rules"`
	Protect []string      `json:"protect,omitempty"`
	// FilterTimeout is in whole seconds, like --filter-timeout-seconds;
	// omitted when it is the default.
	FilterTimeout *int64 `json:"filterTimeout,omitempty"`
}

// DocumentOf returns the document that describes p.
func DocumentOf(p *policy.Policy) Document {
	d := Document{Rules: p.Rules, Protect: p.Protect}
	if p.FilterTimeout != policy.DefaultFilterTimeout {
		secs := int64(p.FilterTimeout / time.Second)
		d.FilterTimeout = &secs
	}
	return d
}

// Marshal renders the document as JSON with one rule per line, ending in a
// newline.
func (d Document) Marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("{\n  \"rules\": [")
	for i, r := range d.Rules {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n    ")
		if err := compact(&b, r); err != nil {
			return nil, err
		}
	}
	b.WriteString("\n  ]")
	if len(d.Protect) > 0 {
		b.WriteString(",\n  \"protect\": ")
		if err := compact(&b, d.Protect); err != nil {
			return nil, err
		}
	}
	if d.FilterTimeout != nil {
		fmt.Fprintf(&b, ",\n  \"filterTimeout\": %d", *d.FilterTimeout)
	}
	b.WriteString("\n}\n")
	return b.Bytes(), nil
}

// compact writes v as compact JSON, leaving <, > and & as they are (filters
// hold them more often than HTML does).
func compact(b *bytes.Buffer, v any) error {
	var one bytes.Buffer
	enc := json.NewEncoder(&one)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Write(bytes.TrimSuffix(one.Bytes(), []byte("\n")))
	return nil
}

// Convert turns the commands into one policy, one rule per command in
// order, and works out the settings that go with it.
func Convert(in *Input, opt Options) (*Result, error) {
	if in == nil || len(in.Commands) == 0 {
		return nil, errors.New("no acr purge command to convert")
	}
	res := &Result{}
	var notes noteList
	for _, n := range in.Notes {
		notes.add("%s", n)
	}
	for _, c := range in.Commands {
		for _, n := range c.notes {
			notes.add("%s: %s", c.Source, n)
		}
	}

	timeout, err := filterTimeout(in.Commands, &notes)
	if err != nil {
		return nil, err
	}
	doc := Document{FilterTimeout: timeout}
	names := map[string]bool{}
	for i, c := range in.Commands {
		r := policy.Rule{
			Name:          uniqueName(ruleName(c, i), names),
			Filters:       c.Filters,
			Ago:           c.Ago,
			Keep:          c.Keep,
			Untagged:      c.Untagged,
			UntaggedOnly:  c.UntaggedOnly,
			IncludeLocked: c.IncludeLocked,
		}
		if err := checkRule(r, timeout, c.Source); err != nil {
			return nil, err
		}
		doc.Rules = append(doc.Rules, r)
	}

	out, err := doc.Marshal()
	if err != nil {
		return nil, fmt.Errorf("policy JSON: %w", err)
	}
	p, err := policy.Parse(out)
	if err != nil {
		return nil, fmt.Errorf("the converted policy does not parse (a bug in the converter): %w", err)
	}
	again, err := DocumentOf(p).Marshal()
	if err != nil || !bytes.Equal(again, out) {
		return nil, fmt.Errorf("the converted policy does not read back the same (a bug in the converter):\n%s\n%s", out, again)
	}
	res.Policy = out

	if res.Settings, err = settings(in, opt, &notes); err != nil {
		return nil, err
	}
	differences(doc, in.Commands, &notes)
	res.Notes = notes.list
	return res, nil
}

// checkRule parses the rule on its own so that an error names the command
// it came from rather than an index in the policy.
func checkRule(r policy.Rule, timeout *int64, source string) error {
	doc := Document{Rules: []policy.Rule{r}, FilterTimeout: timeout}
	data, err := doc.Marshal()
	if err != nil {
		return &InputError{Source: source, Err: err}
	}
	if _, err := policy.Parse(data); err != nil {
		msg := err.Error()
		msg = strings.TrimPrefix(msg, "policy: ")
		msg = strings.TrimPrefix(msg, fmt.Sprintf("rules[0] %q: ", r.Name))
		for j, f := range r.Filters {
			if rest, ok := strings.CutPrefix(msg, fmt.Sprintf("filters[%d]: ", j)); ok {
				msg = fmt.Sprintf("--filter %q: %s", f, rest)
				break
			}
		}
		return &InputError{Source: source, Err: errors.New(msg)}
	}
	return nil
}

// filterTimeout is the policy's filterTimeout from --filter-timeout-seconds:
// nil for acr purge's default of 60 s. The policy has one for all rules, so
// with several values the largest wins (a smaller bound would only fail
// more repositories).
func filterTimeout(cmds []*Command, notes *noteList) (*int64, error) {
	var max int64
	var seen []string
	for _, c := range cmds {
		if c.FilterTimeoutSeconds == nil {
			continue
		}
		v := *c.FilterTimeoutSeconds
		if v <= 0 {
			return nil, &InputError{Source: c.Source, Err: fmt.Errorf("--filter-timeout-seconds %d: want at least 1", v)}
		}
		limit := int64(policy.MaxFilterTimeout / time.Second)
		if v > limit {
			notes.add("%s: --filter-timeout-seconds %d is more than acrpurge allows; filterTimeout is %d (a regular expression that takes longer fails its repository)", c.Source, v, limit)
			v = limit
		}
		seen = append(seen, strconv.FormatInt(v, 10))
		if v > max {
			max = v
		}
	}
	if max == 0 {
		return nil, nil
	}
	if distinct(seen) > 1 {
		notes.add("--filter-timeout-seconds differs between commands (%s): the policy's filterTimeout is one value for every rule, the largest, %d", strings.Join(seen, ", "), max)
	}
	if max == int64(policy.DefaultFilterTimeout/time.Second) {
		return nil, nil // the default, as in acr purge
	}
	return &max, nil
}

func distinct(list []string) int {
	m := map[string]bool{}
	for _, s := range list {
		m[s] = true
	}
	return len(m)
}

// settings works out the app settings: the registry, the schedule, dry
// run, concurrency and the ABAC batch size.
func settings(in *Input, opt Options, notes *noteList) ([]Setting, error) {
	var out []Setting
	cmds := in.Commands

	registry, regSource := "", ""
	for _, c := range cmds {
		switch {
		case c.Registry == "":
		case registry == "":
			registry, regSource = c.Registry, c.Source
		case c.Registry != registry:
			return nil, &InputError{Source: c.Source, Err: fmt.Errorf("registry %s differs from %s in %s: one acrpurge deployment purges one registry (ACR_LOGIN_SERVER); convert each registry's commands separately", c.Registry, registry, regSource)}
		}
	}
	if registry != "" {
		out = append(out, Setting{config.LoginServer, registry})
	}

	sched, err := scheduleSetting(in, opt, notes)
	if err != nil {
		return nil, err
	}
	if sched != "" {
		out = append(out, Setting{config.Schedule, sched})
	}

	var dry, wet []string
	for _, c := range cmds {
		if c.DryRun {
			dry = append(dry, c.Source)
		} else {
			wet = append(wet, c.Source)
		}
	}
	switch {
	case len(dry) > 0:
		out = append(out, Setting{config.DryRun, "true"})
		notes.add("--dry-run is the app setting %s=true, not part of the policy: it holds for every rule and every run until it is set to false", config.DryRun)
		if len(wet) > 0 {
			notes.add("only some commands have --dry-run (%s); %s=true makes every rule a dry run", strings.Join(dry, ", "), config.DryRun)
		}
	default:
		notes.add("these commands delete (no --dry-run); the infra deploys with %s=true (parameter dryRun): nothing is deleted until a report has been compared and it is set to false", config.DryRun)
	}

	conc, err := concurrencySetting(cmds, notes)
	if err != nil {
		return nil, err
	}
	if conc > 0 {
		out = append(out, Setting{config.Concurrency, strconv.Itoa(conc)})
	}

	batch := 0
	for _, c := range cmds {
		if c.AbacBatchSize == nil {
			continue
		}
		v := *c.AbacBatchSize
		if v < 1 {
			notes.add("%s: ABAC_BATCH_SIZE=%d is ignored by acr purge (it uses 10); left unset", c.Source, v)
			continue
		}
		if v > maxAbacBatchSize {
			notes.add("%s: ABAC_BATCH_SIZE=%d is more than acrpurge's maximum; %s is %d", c.Source, v, config.BatchSize, maxAbacBatchSize)
			v = maxAbacBatchSize
		}
		if batch != 0 && v != batch {
			notes.add("ABAC_BATCH_SIZE differs between commands; %s is one value, the smallest", config.BatchSize)
		}
		if batch == 0 || v < batch {
			batch = v
		}
	}
	if batch > 0 {
		out = append(out, Setting{config.BatchSize, strconv.Itoa(batch)})
	}
	return out, nil
}

// scheduleSetting converts the task's timer into PURGE_SCHEDULE.
func scheduleSetting(in *Input, opt Options, notes *noteList) (string, error) {
	if opt.Schedule != "" {
		s, err := NCRONTAB(opt.Schedule)
		if err != nil {
			return "", &InputError{Source: "--schedule", Err: err}
		}
		for _, c := range in.Commands {
			if c.Schedule != "" {
				notes.add("--schedule %q replaces the schedule %q of %s", opt.Schedule, c.Schedule, c.Source)
			}
		}
		for _, t := range in.Timers {
			notes.add("--schedule %q replaces the schedule %q of %s", opt.Schedule, t.Schedule, t.Source)
		}
		notes.add("%s is NCRONTAB in UTC like ACR Task timers, with a seconds field first", config.Schedule)
		return s, nil
	}
	type found struct{ expr, source, converted string }
	var all []found
	for _, c := range in.Commands {
		if c.Schedule != "" {
			all = append(all, found{expr: c.Schedule, source: c.Source})
		}
	}
	for _, t := range in.Timers {
		all = append(all, found{expr: t.Schedule, source: t.Source})
	}
	if len(all) == 0 {
		return "", nil
	}
	for i := range all {
		s, err := NCRONTAB(all[i].expr)
		if err != nil {
			return "", &InputError{Source: all[i].source, Err: err}
		}
		all[i].converted = s
	}
	for _, f := range all[1:] {
		if f.converted != all[0].converted {
			return "", fmt.Errorf("the input has several timer schedules (%q in %s, %q in %s) but %s holds one: choose one with --schedule", all[0].expr, all[0].source, f.expr, f.source, config.Schedule)
		}
	}
	notes.add("%s is NCRONTAB in UTC like ACR Task timers, with a seconds field first", config.Schedule)
	return all[0].converted, nil
}

// NCRONTAB converts an ACR Task timer schedule (five fields, minute hour
// day month day-of-week, UTC, read by NCrontab) into the six-field NCRONTAB
// of PURGE_SCHEDULE by adding a seconds field of 0, and checks the result
// with the parser the app uses.
func NCRONTAB(expr string) (string, error) {
	fields := strings.Fields(expr)
	if len(fields) != 5 {
		hint := ""
		if len(fields) == 6 {
			hint = " (six fields is already NCRONTAB: set " + config.Schedule + " to it as it is)"
		}
		return "", fmt.Errorf("schedule %q has %d fields; an ACR Task timer has 5: minute hour day month day-of-week%s", expr, len(fields), hint)
	}
	s, err := ncrontab.Parse("0 " + strings.Join(fields, " "))
	if err != nil {
		return "", fmt.Errorf("schedule %q: %w", expr, err)
	}
	return s.String(), nil
}

// concurrencySetting is PURGE_CONCURRENCY from --concurrency, read as acr
// purge reads it (below 1: its default; above 32: 32); 0 when not given.
func concurrencySetting(cmds []*Command, notes *noteList) (int, error) {
	best := 0
	var seen []string
	for _, c := range cmds {
		if c.Concurrency == nil {
			continue
		}
		v := *c.Concurrency
		switch {
		case v < 1:
			notes.add("%s: acr purge reads --concurrency %d as its default (the number of CPUs); %s keeps its default, %d", c.Source, v, config.Concurrency, config.DefaultConcurrency)
			continue
		case v > acrPurgeMaxConcurrency:
			notes.add("%s: acr purge caps --concurrency %d at %d", c.Source, v, acrPurgeMaxConcurrency)
			v = acrPurgeMaxConcurrency
		}
		seen = append(seen, strconv.Itoa(v))
		if v > best {
			best = v
		}
	}
	if best == 0 {
		return 0, nil
	}
	if best > maxAppConcurrency {
		best = maxAppConcurrency
	}
	if distinct(seen) > 1 {
		notes.add("--concurrency differs between commands (%s); %s is one value, the largest", strings.Join(seen, ", "), config.Concurrency)
	}
	notes.add("--concurrency is the app setting %s: deletes in flight within one queue message; an instance works on up to 4 messages at once (host.json), under the PURGE_DELETES_PER_MINUTE budget", config.Concurrency)
	return best, nil
}

// differences notes where the policy behaves differently from the acr
// purge commands it came from (the "deliberate differences" of README.md).
func differences(doc Document, cmds []*Command, notes *noteList) {
	untagged := false
	for _, r := range doc.Rules {
		if r.Untagged || r.UntaggedOnly {
			untagged = true
		}
	}
	for i, r := range doc.Rules {
		for _, f := range r.Filters {
			repo, _, err := policy.SplitFilter(f)
			if err == nil && topLevelAlternation(repo) {
				notes.add("%s: --filter %q: the repository expression must match the whole name, ^(?:%s)$; acr purge anchors it as ^%s$, which also matches names that only start with the first alternative or end with the last", cmds[i].Source, f, repo, repo)
			}
		}
	}
	notes.add("no \"protect\" patterns (acr purge has none): add e.g. \"protect\": [\"^latest$\"] to the policy to keep tags that no rule may ever delete")
	notes.add("every tag and manifest is read again just before it is deleted; one that changed meanwhile (re-pushed, re-tagged) is kept, where acr purge deletes it")
	if untagged {
		notes.add("untagged manifests: acrpurge also keeps the children of every surviving index (tagged, locked, protected or kept by keep, not only tagged ones), the subject of every surviving signature or SBOM, and any untagged manifest younger than %s whatever ago says; a signature or SBOM whose subject is deleted goes with it (acr purge never deletes one)", humanDuration(policy.MinUntaggedAge))
	}
	for i, r := range doc.Rules {
		if r.IncludeLocked {
			notes.add("%s: --include-locked: a locked item is unlocked, deleted, and locked again if the delete fails", cmds[i].Source)
		}
	}
	if len(doc.Rules) > 1 {
		keep := false
		for _, r := range doc.Rules {
			keep = keep || r.Keep > 0
		}
		if keep {
			notes.add("the rules are applied together, not one command after another: each rule counts its keep over all tags of a repository, so a tag one rule keeps is still deleted if another rule selects it; acr purge, run command by command, counts a later command's keep only over what the earlier ones left. Where filters overlap, check the keep counts")
		}
	}
}

// topLevelAlternation reports whether expr has a '|' outside any group or
// character class, where acr purge's ^expr$ anchoring does not cover it.
func topLevelAlternation(expr string) bool {
	depth := 0
	inClass := false
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; {
		case c == '\\':
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
			if i+1 < len(expr) && expr[i+1] == '^' {
				i++
			}
			if i+1 < len(expr) && expr[i+1] == ']' {
				i++ // a leading ] is literal
			}
		case c == '(':
			depth++
		case c == ')':
			if depth > 0 {
				depth--
			}
		case c == '|' && depth == 0:
			return true
		}
	}
	return false
}

// ruleName suggests a name: the task's name or step id, else one made from
// the first filter's repository expression, else "untagged" for an
// untagged-only command over every repository.
func ruleName(c *Command, i int) string {
	if n := strings.TrimSpace(c.Name); n != "" && validName(n) {
		return n
	}
	if len(c.Filters) > 0 {
		repo, _, err := policy.SplitFilter(c.Filters[0])
		if err == nil {
			if s := slug(repo); s != "" {
				return s
			}
		}
	}
	if c.UntaggedOnly && len(c.Filters) == 0 {
		return "untagged"
	}
	return "purge-" + strconv.Itoa(i+1)
}

// maxGeneratedName keeps generated names short; policy allows 128.
const maxGeneratedName = 48

func validName(s string) bool {
	if len(s) > maxGeneratedName {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// slug keeps the letters and digits of s, lower-cased, with runs of
// anything else turned into one '-'.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
			continue
		}
		dash = true
	}
	out := b.String()
	if len(out) > maxGeneratedName {
		out = strings.TrimRight(out[:maxGeneratedName], "-")
	}
	return out
}

func uniqueName(name string, used map[string]bool) string {
	n := name
	for k := 2; used[n]; k++ {
		n = fmt.Sprintf("%s-%d", name, k)
	}
	used[n] = true
	return n
}

// noteList collects notes in order, without repeats.
type noteList struct {
	list []string
	seen map[string]bool
}

func (l *noteList) add(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	if !l.seen[s] {
		l.seen[s] = true
		l.list = append(l.list, s)
	}
}

// humanDuration writes whole hours as "1 hour", "2 hours"; anything else as
// a Go duration.
func humanDuration(d time.Duration) string {
	switch {
	case d == time.Hour:
		return "1 hour"
	case d > 0 && d%time.Hour == 0:
		return fmt.Sprintf("%d hours", d/time.Hour)
	}
	return d.String()
}

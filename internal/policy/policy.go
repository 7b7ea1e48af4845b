package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Limits that keep a hostile or mistaken policy from costing unbounded time
// or memory. They are far above anything a real policy needs.
const (
	MaxPolicyBytes       = 1 << 20 // policy JSON size
	MaxRules             = 256
	MaxPatternsPerList   = 256  // filters of a rule, protect lists
	MaxPatternLength     = 2048 // one filter or protect pattern
	MaxRuleNameLength    = 128
	DefaultFilterTimeout = 60 * time.Second // acr purge's --filter-timeout-seconds default
	MaxFilterTimeout     = 5 * time.Minute
)

// Policy is a parsed and validated purge policy. Create it with Parse or
// Load. Its exported fields describe the policy as written (with defaults
// filled in); treat them as read-only: the compiled form used for matching
// and planning is fixed at Parse time.
type Policy struct {
	// Rules in the order written.
	Rules []Rule
	// Protect lists tag patterns no rule may delete, in any repository.
	Protect []string
	// FilterTimeout bounds every single regular-expression evaluation.
	FilterTimeout time.Duration

	rules   []*compiledRule
	protect []*matcher
}

// Rule is one purge rule, the equivalent of one `acr purge` command.
type Rule struct {
	// Name identifies the rule in decisions, logs and errors; "rule-N"
	// (1-based) when not given.
	Name string `json:"name,omitempty"`
	// Filters are acr purge filters "<repoRegex>:<tagRegex>".
	Filters []string `json:"filters,omitempty"`
	// Ago is the acr purge --ago value; see ParseAgo.
	Ago string `json:"ago,omitempty"`
	// Keep is the number of most recent candidates to keep.
	Keep int `json:"keep,omitempty"`
	// Untagged also deletes untagged manifests after the tags (acr purge --untagged).
	Untagged bool `json:"untagged,omitempty"`
	// UntaggedOnly deletes only untagged manifests (acr purge --untagged-only).
	UntaggedOnly bool `json:"untaggedOnly,omitempty"`
	// IncludeLocked unlocks and deletes locked items (acr purge --include-locked).
	IncludeLocked bool `json:"includeLocked,omitempty"`
	// Protect lists tag patterns that are never deleted in the repositories
	// this rule covers, by this or any other rule.
	Protect []string `json:"protect,omitempty"`
}

// compiledRule is a Rule ready for matching.
type compiledRule struct {
	Rule
	index    int
	ago      time.Duration
	allRepos bool // untaggedOnly without filters: every repository
	filters  []compiledFilter
	protect  []*matcher
}

type compiledFilter struct {
	repo *matcher // anchored
	tag  *matcher // unanchored; unused for untaggedOnly rules
}

// deletesTags reports whether the rule deletes tags at all.
func (r *compiledRule) deletesTags() bool { return !r.UntaggedOnly }

// deletesManifests reports whether the rule deletes untagged manifests.
func (r *compiledRule) deletesManifests() bool { return r.Untagged || r.UntaggedOnly }

// policyJSON is the wire shape; rules are decoded one by one so that errors
// can name the rule.
type policyJSON struct {
	Rules         []json.RawMessage `json:"rules"`
	Protect       []string          `json:"protect"`
	FilterTimeout json.RawMessage   `json:"filterTimeout"`
}

// Parse decodes and validates a policy. Unknown fields are errors, and every
// validation error names the rule (by index and name) and the field, e.g.
// `rules[1] "dangling": filters[0]: ...`.
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxPolicyBytes {
		return nil, fmt.Errorf("policy: %d bytes is larger than the %d byte limit", len(data), MaxPolicyBytes)
	}
	var raw policyJSON
	if err := decodeStrict(data, &raw); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p := &Policy{FilterTimeout: DefaultFilterTimeout}
	if len(raw.FilterTimeout) > 0 && string(raw.FilterTimeout) != "null" {
		d, err := parseFilterTimeout(raw.FilterTimeout)
		if err != nil {
			return nil, fmt.Errorf("policy: filterTimeout: %w", err)
		}
		p.FilterTimeout = d
	}
	if len(raw.Rules) == 0 {
		return nil, errors.New("policy: rules: at least one rule is required")
	}
	if len(raw.Rules) > MaxRules {
		return nil, fmt.Errorf("policy: rules: %d rules is more than the limit of %d", len(raw.Rules), MaxRules)
	}
	var err error
	if p.Protect, p.protect, err = compileList(raw.Protect, p.FilterTimeout); err != nil {
		return nil, fmt.Errorf("policy: protect%w", err)
	}
	names := make(map[string]int, len(raw.Rules))
	for i, msg := range raw.Rules {
		var r Rule
		if err := decodeStrict(msg, &r); err != nil {
			return nil, fmt.Errorf("policy: %s: %w", ruleLabel(i, peekName(msg)), err)
		}
		cr, err := compileRule(i, r, p.FilterTimeout)
		if err != nil {
			return nil, fmt.Errorf("policy: %s: %w", ruleLabel(i, r.Name), err)
		}
		if j, dup := names[cr.Name]; dup {
			return nil, fmt.Errorf("policy: %s: name: duplicate of rules[%d]", ruleLabel(i, cr.Name), j)
		}
		names[cr.Name] = i
		p.Rules = append(p.Rules, cr.Rule)
		p.rules = append(p.rules, cr)
	}
	return p, nil
}

// Load reads the policy from the PURGE_POLICY setting: inline JSON, or
// "@path" naming a file (relative paths are relative to appRoot). Errors say
// which of the two it was and where the file was looked for.
func Load(setting, appRoot string) (*Policy, error) {
	s := strings.TrimSpace(setting)
	if s == "" {
		return nil, errors.New("PURGE_POLICY is empty: want inline JSON or @file")
	}
	if !strings.HasPrefix(s, "@") {
		p, err := Parse([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("PURGE_POLICY (inline JSON): %w", err)
		}
		return p, nil
	}
	name := strings.TrimSpace(s[1:])
	if name == "" {
		return nil, errors.New("PURGE_POLICY is \"@\" without a file name")
	}
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(appRoot, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("PURGE_POLICY (file %s): %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("PURGE_POLICY (file %s): read: %w", path, err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("PURGE_POLICY (file %s): %w", path, err)
	}
	return p, nil
}

// decodeStrict decodes exactly one JSON value, rejecting unknown fields and
// trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// peekName extracts a rule's name, if any, for an error message about a rule
// that failed strict decoding.
func peekName(msg json.RawMessage) string {
	var v struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal(msg, &v)
	return v.Name
}

func ruleLabel(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("rules[%d]", i)
	}
	return fmt.Sprintf("rules[%d] %q", i, name)
}

// parseFilterTimeout accepts a Go duration string ("5s") or, like acr purge's
// --filter-timeout-seconds, a whole number of seconds.
func parseFilterTimeout(raw json.RawMessage) (time.Duration, error) {
	var d time.Duration
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, err
		}
		d = v
	} else {
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return 0, errors.New("want a duration string such as \"5s\" or a number of seconds")
		}
		secs, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || secs > int64(MaxFilterTimeout/time.Second) {
			return 0, fmt.Errorf("%s seconds: want a whole number of seconds up to %d", n, int64(MaxFilterTimeout/time.Second))
		}
		d = time.Duration(secs) * time.Second
	}
	if d <= 0 || d > MaxFilterTimeout {
		return 0, fmt.Errorf("%v: want more than 0 and at most %v", d, MaxFilterTimeout)
	}
	return d, nil
}

func compileRule(i int, r Rule, timeout time.Duration) (*compiledRule, error) {
	if r.Name == "" {
		r.Name = "rule-" + strconv.Itoa(i+1)
	}
	if len(r.Name) > MaxRuleNameLength {
		return nil, fmt.Errorf("name: longer than %d characters", MaxRuleNameLength)
	}
	if strings.IndexFunc(r.Name, func(c rune) bool { return !unicode.IsPrint(c) }) >= 0 {
		return nil, errors.New("name: must be printable characters only")
	}
	if r.Untagged && r.UntaggedOnly {
		return nil, errors.New("untagged, untaggedOnly: mutually exclusive (untaggedOnly already deletes untagged manifests)")
	}
	if r.Keep < 0 {
		return nil, fmt.Errorf("keep: %d is negative", r.Keep)
	}
	cr := &compiledRule{Rule: r, index: i}
	if r.Ago == "" {
		if !r.UntaggedOnly {
			return nil, errors.New("ago: required unless untaggedOnly (e.g. \"30d\")")
		}
		// acr purge: --untagged-only without --ago means everything
		// older than now.
	} else {
		d, err := ParseAgo(r.Ago)
		if err != nil {
			return nil, fmt.Errorf("ago: %w", err)
		}
		cr.ago = d
	}
	if len(r.Filters) == 0 {
		if !r.UntaggedOnly {
			return nil, errors.New("filters: at least one \"<repoRegex>:<tagRegex>\" is required unless untaggedOnly")
		}
		// acr purge: --untagged-only without --filter covers every
		// repository.
		cr.allRepos = true
	}
	if len(r.Filters) > MaxPatternsPerList {
		return nil, fmt.Errorf("filters: %d entries is more than the limit of %d", len(r.Filters), MaxPatternsPerList)
	}
	for j, f := range r.Filters {
		cf, err := compileFilter(f, timeout)
		if err != nil {
			return nil, fmt.Errorf("filters[%d]: %w", j, err)
		}
		cr.filters = append(cr.filters, cf)
	}
	var err error
	if cr.Rule.Protect, cr.protect, err = compileList(r.Protect, timeout); err != nil {
		return nil, fmt.Errorf("protect%w", err)
	}
	return cr, nil
}

// compileFilter compiles one acr purge filter.
//
// acr purge: the repository expression is anchored as "^" + expr + "$",
// which lets a top-level alternation escape the anchors ("a|b" becomes
// "^a|b$" and matches any name starting with "a"). Here it is anchored as
// "^(?:" + expr + ")$" so the whole name must match, as documented; for
// filters without a top-level "|" the two are identical, otherwise this is
// narrower (never deletes more).
//
// Wrapping alone is not enough: an expression with unbalanced groups, such
// as "team-a/app)|(.*", closes the wrapper's group early and turns
// "^(?:team-a/app)|(.*)$" into something that matches every name. So the
// expression is first compiled on its own and in acr purge's "^expr$" form
// (where that example does not compile either), and the filter is rejected
// unless all three forms compile. Balanced expressions cannot escape the
// wrapper.
func compileFilter(f string, timeout time.Duration) (compiledFilter, error) {
	if len(f) > MaxPatternLength {
		return compiledFilter{}, fmt.Errorf("longer than %d characters", MaxPatternLength)
	}
	repo, tag, err := SplitFilter(f)
	if err != nil {
		return compiledFilter{}, err
	}
	for _, form := range []string{repo, "^" + repo + "$"} {
		if _, err := compileRegex(form, timeout); err != nil {
			return compiledFilter{}, fmt.Errorf("repository expression %q: %w", repo, err)
		}
	}
	rm, err := compileRegex("^(?:"+repo+")$", timeout)
	if err != nil {
		return compiledFilter{}, fmt.Errorf("repository expression %q: does not compile when anchored as ^(?:%s)$: %w", repo, repo, err)
	}
	rm.src = repo
	// The tag expression is compiled (and so validated) even for
	// untaggedOnly rules, which ignore it: a typo should not pass silently.
	// It is compiled and evaluated on its own, never combined with other
	// expressions, so it cannot leak into anything else.
	tm, err := compileRegex(tag, timeout)
	if err != nil {
		return compiledFilter{}, fmt.Errorf("tag expression %q: %w", tag, err)
	}
	return compiledFilter{repo: rm, tag: tm}, nil
}

// compileList compiles protect patterns; the error text starts with the
// index, e.g. "[2]: ...", to follow the field name.
func compileList(list []string, timeout time.Duration) ([]string, []*matcher, error) {
	if len(list) > MaxPatternsPerList {
		return nil, nil, fmt.Errorf(": %d entries is more than the limit of %d", len(list), MaxPatternsPerList)
	}
	var ms []*matcher
	for j, s := range list {
		if s == "" {
			return nil, nil, fmt.Errorf("[%d]: empty pattern (it would match every tag)", j)
		}
		if len(s) > MaxPatternLength {
			return nil, nil, fmt.Errorf("[%d]: longer than %d characters", j, MaxPatternLength)
		}
		// Compiled and evaluated on its own, never wrapped or combined.
		m, err := compileRegex(s, timeout)
		if err != nil {
			return nil, nil, fmt.Errorf("[%d]: %w", j, err)
		}
		ms = append(ms, m)
	}
	return slices.Clone(list), ms, nil
}

// covers reports whether the rule applies to the repository.
func (r *compiledRule) covers(repo string) (bool, error) {
	if r.allRepos {
		return true, nil
	}
	for _, f := range r.filters {
		ok, err := f.repo.match(repo)
		if err != nil {
			return false, fmt.Errorf("rule %q: repository %w", r.Name, err)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

// MatchRepository reports whether any rule applies to the repository. A
// pattern that times out is an error, never a silent answer.
func (p *Policy) MatchRepository(name string) (bool, error) {
	for _, r := range p.rules {
		ok, err := r.covers(name)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// Filter returns the repositories any rule applies to, sorted and without
// duplicates, for fan-out.
func (p *Policy) Filter(repos []string) ([]string, error) {
	sorted := slices.Clone(repos)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	matched := make([]string, 0, len(sorted))
	for _, name := range sorted {
		ok, err := p.MatchRepository(name)
		if err != nil {
			return nil, err
		}
		if ok {
			matched = append(matched, name)
		}
	}
	return matched, nil
}

// normalised is the policy as hashed: defaults filled in, durations as
// canonical strings.
type normalised struct {
	Rules         []Rule   `json:"rules"`
	Protect       []string `json:"protect"`
	FilterTimeout string   `json:"filterTimeout"`
}

// Hash returns a short, stable hash of the normalised policy (defaults
// applied), for recording which policy a run used.
func (p *Policy) Hash() string {
	n := normalised{Rules: p.Rules, Protect: p.Protect, FilterTimeout: p.FilterTimeout.String()}
	if n.Protect == nil {
		n.Protect = []string{}
	}
	b, err := json.Marshal(n)
	if err != nil { // cannot happen for these types
		return "unhashable"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// Describe renders the policy for logs and the CLI: one line per rule, then
// one line with the global settings.
func (p *Policy) Describe() string {
	var b strings.Builder
	for _, r := range p.rules {
		fmt.Fprintf(&b, "%s:", r.Name)
		switch {
		case r.UntaggedOnly:
			b.WriteString(" untagged manifests only")
		case r.Untagged:
			b.WriteString(" tags, then untagged manifests")
		default:
			b.WriteString(" tags")
		}
		if r.allRepos {
			b.WriteString(" in every repository")
		} else {
			fmt.Fprintf(&b, " matching %s", strings.Join(quoteAll(r.Filters), " "))
		}
		if r.Ago == "" {
			b.WriteString(", any age")
		} else {
			fmt.Fprintf(&b, ", older than %s", r.Ago)
		}
		if r.Keep > 0 {
			fmt.Fprintf(&b, ", keeping the %d most recent", r.Keep)
		}
		if r.IncludeLocked {
			b.WriteString(", including locked (unlocks them)")
		}
		if len(r.Protect) > 0 {
			fmt.Fprintf(&b, ", protecting %s", strings.Join(quoteAll(r.Protect), " "))
		}
		b.WriteByte('\n')
	}
	protect := "none"
	if len(p.Protect) > 0 {
		protect = strings.Join(quoteAll(p.Protect), " ")
	}
	fmt.Fprintf(&b, "protect: %s; filterTimeout: %v; hash: %s", protect, p.FilterTimeout, p.Hash())
	return b.String()
}

func quoteAll(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = strconv.Quote(s)
	}
	return out
}

package contract

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// bicepFile is a Bicep (or .bicepparam) source in three aligned views: the
// same length and line breaks, so an offset in one is the same place in the
// others.
type bicepFile struct {
	path string
	raw  string
	// text is raw with comments blanked: string literals intact.
	text string
	// code is text with the contents of string literals blanked, except
	// interpolations ${...}, which stay as code.
	code string
}

func loadBicep(t *testing.T, path string) *bicepFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := lexBicep(path, string(data))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// lexBicep separates comments, strings and code. Bicep strings are '...'
// with backslash escapes and ${...} interpolation, or triple-quoted and
// verbatim.
func lexBicep(path, src string) (*bicepFile, error) {
	text := []byte(src)
	code := []byte(src)
	blank := func(b []byte, i int) {
		if b[i] != '\n' {
			b[i] = ' '
		}
	}
	type frame struct {
		inString bool
		depth    int // open braces inside an interpolation
	}
	stack := []frame{{}}
	line := 1
	for i := 0; i < len(src); {
		top := &stack[len(stack)-1]
		c := src[i]
		if c == '\n' {
			line++
		}
		if top.inString {
			switch {
			case c == '\\' && i+1 < len(src):
				blank(code, i)
				blank(code, i+1)
				i += 2
			case c == '\'':
				stack = stack[:len(stack)-1]
				i++
			case c == '$' && i+1 < len(src) && src[i+1] == '{':
				stack = append(stack, frame{})
				i += 2
			case c == '\n':
				return nil, fmt.Errorf("%s:%d: string not closed on its line", path, line-1)
			default:
				blank(code, i)
				i++
			}
			continue
		}
		switch {
		case strings.HasPrefix(src[i:], "//"):
			for i < len(src) && src[i] != '\n' {
				blank(text, i)
				blank(code, i)
				i++
			}
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("%s:%d: comment not closed", path, line)
			}
			for j := i; j < i+2+end+2; j++ {
				blank(text, j)
				blank(code, j)
				if src[j] == '\n' {
					line++
				}
			}
			i += 2 + end + 2
		case strings.HasPrefix(src[i:], "'''"):
			end := strings.Index(src[i+3:], "'''")
			if end < 0 {
				return nil, fmt.Errorf("%s:%d: multi-line string not closed", path, line)
			}
			for j := i + 3; j < i+3+end; j++ {
				blank(code, j)
				if src[j] == '\n' {
					line++
				}
			}
			i += 3 + end + 3
		case c == '\'':
			stack = append(stack, frame{inString: true})
			i++
		case c == '{':
			top.depth++
			i++
		case c == '}':
			if len(stack) > 1 && top.depth == 0 {
				stack = stack[:len(stack)-1] // end of an interpolation
			} else {
				top.depth--
			}
			i++
		default:
			i++
		}
	}
	if len(stack) != 1 {
		return nil, fmt.Errorf("%s: unterminated string or interpolation", path)
	}
	return &bicepFile{path: path, raw: src, text: string(text), code: string(code)}, nil
}

// lineAt returns the 1-based line of offset i.
func (f *bicepFile) lineAt(i int) int { return strings.Count(f.raw[:i], "\n") + 1 }

// checkBalanced reports the first unbalanced (), [] or {} in code.
func (f *bicepFile) checkBalanced() error {
	pairs := map[byte]byte{')': '(', ']': '[', '}': '{'}
	var stack []int
	for i := 0; i < len(f.code); i++ {
		switch c := f.code[i]; c {
		case '(', '[', '{':
			stack = append(stack, i)
		case ')', ']', '}':
			if len(stack) == 0 || f.code[stack[len(stack)-1]] != pairs[c] {
				return fmt.Errorf("%s:%d: unbalanced %q", f.path, f.lineAt(i), c)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		i := stack[len(stack)-1]
		return fmt.Errorf("%s:%d: %q never closed", f.path, f.lineAt(i), f.code[i])
	}
	return nil
}

// block returns the offsets of the delimiter opened at code[open] and its
// matching close.
func (f *bicepFile) block(open int) (int, int, error) {
	depth := 0
	for i := open; i < len(f.code); i++ {
		switch f.code[i] {
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
			if depth == 0 {
				return open, i, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("%s:%d: block not closed", f.path, f.lineAt(open))
}

// entry is one property of an object literal.
type entry struct {
	key   string
	value string // the text after the colon on the key's line (strings intact)
	at    int    // offset of the value in the file
}

var keyLine = regexp.MustCompile(`^([ \t]*)([A-Za-z_][A-Za-z0-9_]*|'[^']*')[ \t]*:[ \t]*(.*)$`)

// entries lists the top-level properties of the object whose '{' is at
// code[open].
func (f *bicepFile) entries(open int) ([]entry, error) {
	_, end, err := f.block(open)
	if err != nil {
		return nil, err
	}
	var out []entry
	depth := 0
	lineStart := true
	for i := open; i <= end; i++ {
		c := f.code[i]
		if lineStart && depth == 1 {
			eol := strings.IndexByte(f.text[i:end], '\n')
			if eol < 0 {
				eol = end - i
			}
			if m := keyLine.FindStringSubmatchIndex(f.text[i : i+eol]); m != nil {
				key := strings.Trim(f.text[i+m[4]:i+m[5]], "'")
				out = append(out, entry{key: key, value: strings.TrimSpace(f.text[i+m[6] : i+m[7]]), at: i + m[6]})
			}
		}
		lineStart = c == '\n'
		switch c {
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
		}
	}
	return out, nil
}

// object returns the entries of the object value of key within the object at
// code[open] (the value must start with '{' on the key's line).
func (f *bicepFile) object(open int, key string) ([]entry, int, error) {
	es, err := f.entries(open)
	if err != nil {
		return nil, 0, err
	}
	for _, e := range es {
		if e.key == key && strings.HasPrefix(e.value, "{") {
			inner, err := f.entries(e.at)
			return inner, e.at, err
		}
	}
	return nil, 0, fmt.Errorf("%s:%d: no object %q", f.path, f.lineAt(open), key)
}

// varObject returns the entries of `var name = {` (an object literal).
func (f *bicepFile) varObject(t *testing.T, name string) []entry {
	t.Helper()
	m := regexp.MustCompile(`(?m)^var[ \t]+` + regexp.QuoteMeta(name) + `[ \t]*=[ \t]*\{`).FindStringIndex(f.text)
	if m == nil {
		t.Fatalf("%s: no object var %s", f.path, name)
	}
	es, err := f.entries(m[1] - 1)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func value(es []entry, key string) (string, bool) {
	for _, e := range es {
		if e.key == key {
			return e.value, true
		}
	}
	return "", false
}

// declRE finds resource declarations: symbol, type, API version, the rest of the line.
var declRE = regexp.MustCompile(`(?m)^resource[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]+'([^'@]+)@([^']+)'(.*)$`)

// resourceDecl is one `resource` statement.
type resourceDecl struct {
	symbol, typ, apiVersion string
	existing                bool
	at                      int // offset of the statement
	body                    int // offset of the body's '{'
}

func (f *bicepFile) resources() ([]resourceDecl, error) {
	var out []resourceDecl
	for _, m := range declRE.FindAllStringSubmatchIndex(f.text, -1) {
		rd := resourceDecl{
			symbol: f.text[m[2]:m[3]], typ: f.text[m[4]:m[5]], apiVersion: f.text[m[6]:m[7]],
			existing: strings.Contains(f.text[m[8]:m[9]], " existing"), at: m[0],
		}
		eq := strings.IndexByte(f.code[m[8]:], '=')
		if eq < 0 {
			return nil, fmt.Errorf("%s:%d: resource without '='", f.path, f.lineAt(m[0]))
		}
		brace := strings.IndexByte(f.code[m[8]+eq:], '{')
		if brace < 0 {
			return nil, fmt.Errorf("%s:%d: resource without a body", f.path, f.lineAt(m[0]))
		}
		rd.body = m[8] + eq + brace
		out = append(out, rd)
	}
	return out, nil
}

func (f *bicepFile) resourceBySymbol(t *testing.T, symbol string) resourceDecl {
	t.Helper()
	rs, err := f.resources()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.symbol == symbol {
			return r
		}
	}
	t.Fatalf("%s: no resource %q", f.path, symbol)
	return resourceDecl{}
}

func (f *bicepFile) resourcesOfType(t *testing.T, typ string) []resourceDecl {
	t.Helper()
	rs, err := f.resources()
	if err != nil {
		t.Fatal(err)
	}
	var out []resourceDecl
	for _, r := range rs {
		if strings.EqualFold(r.typ, typ) {
			out = append(out, r)
		}
	}
	return out
}

// param is one `param` statement.
type param struct {
	name, typ  string
	hasDefault bool
	def        string // default value text (strings intact)
	decorators string // the decorator lines above it
	at         int
}

var paramRE = regexp.MustCompile(`(?m)^param[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]+([A-Za-z]+)([ \t]*=[ \t]*(.*))?$`)

func (f *bicepFile) params() []param {
	var out []param
	lines := strings.Split(f.text, "\n")
	for _, m := range paramRE.FindAllStringSubmatchIndex(f.text, -1) {
		p := param{name: f.text[m[2]:m[3]], typ: f.text[m[4]:m[5]], at: m[0], hasDefault: m[6] >= 0}
		if p.hasDefault {
			p.def = strings.TrimSpace(f.text[m[8]:m[9]])
		}
		// Decorators: the lines directly above, up to a blank line or another statement.
		ln := f.lineAt(m[0]) - 1 // 0-based index of the param line
		var deco []string
		for j := ln - 1; j >= 0; j-- {
			s := strings.TrimSpace(lines[j])
			if s == "" || statementStart.MatchString(s) {
				break
			}
			deco = append([]string{s}, deco...)
		}
		p.decorators = strings.Join(deco, "\n")
		out = append(out, p)
	}
	return out
}

var statementStart = regexp.MustCompile(`^(param|var|resource|module|output|targetScope|using|type|func|import|metadata)\b`)

func (f *bicepFile) param(t *testing.T, name string) param {
	t.Helper()
	for _, p := range f.params() {
		if p.name == name {
			return p
		}
	}
	t.Fatalf("%s: no param %q", f.path, name)
	return param{}
}

// uses counts references to identifier name in code, not counting its
// declaration nor object keys of the same name (`name: ...` at a line start).
func (f *bicepFile) uses(name string, declAt int) int {
	re := regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\b`)
	n := 0
	for _, m := range re.FindAllStringIndex(f.code, -1) {
		if f.lineAt(m[0]) == f.lineAt(declAt) {
			continue
		}
		lineStart := strings.LastIndexByte(f.code[:m[0]], '\n') + 1
		if strings.TrimSpace(f.code[lineStart:m[0]]) == "" && strings.HasPrefix(strings.TrimLeft(f.code[m[1]:], " \t"), ":") {
			continue // an object key
		}
		n++
	}
	return n
}

// modules lists module statements: symbol, path, offset of the body.
type moduleDecl struct {
	symbol, path string
	at, body     int
}

var moduleRE = regexp.MustCompile(`(?m)^module[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]+'([^']+)'`)

func (f *bicepFile) modules() ([]moduleDecl, error) {
	var out []moduleDecl
	for _, m := range moduleRE.FindAllStringSubmatchIndex(f.text, -1) {
		md := moduleDecl{symbol: f.text[m[2]:m[3]], path: f.text[m[4]:m[5]], at: m[0]}
		eq := strings.IndexByte(f.code[m[1]:], '=')
		brace := strings.IndexByte(f.code[m[1]+eq:], '{')
		if eq < 0 || brace < 0 {
			return nil, fmt.Errorf("%s:%d: module without a body", f.path, f.lineAt(m[0]))
		}
		md.body = m[1] + eq + brace
		out = append(out, md)
	}
	return out, nil
}

// infraFiles returns every .bicep and .bicepparam file under infra/.
func infraFiles(t *testing.T) []*bicepFile {
	t.Helper()
	var out []*bicepFile
	err := filepath.WalkDir(filepath.Join(root(t), "infra"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".bicep") || strings.HasSuffix(p, ".bicepparam")) {
			out = append(out, loadBicep(t, p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no Bicep files under infra/")
	}
	return out
}

func mainBicep(t *testing.T) *bicepFile {
	t.Helper()
	return loadBicep(t, filepath.Join(root(t), "infra", "main.bicep"))
}

// unquote turns a single-line Bicep string literal into its value.
func unquote(t *testing.T, lit string) string {
	t.Helper()
	lit = strings.TrimSpace(lit)
	if len(lit) < 2 || lit[0] != '\'' || lit[len(lit)-1] != '\'' {
		t.Fatalf("%s is not a string literal", lit)
	}
	r := strings.NewReplacer(`\'`, `'`, `\\`, `\`, `\n`, "\n", `\$`, `$`)
	return r.Replace(lit[1 : len(lit)-1])
}

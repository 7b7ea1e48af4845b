package migrate

import (
	"fmt"
	"strings"
)

// splitMode says whose rules split a command line into words.
type splitMode int

const (
	// shellMode splits as a POSIX shell splits what is typed or pasted into
	// it: a newline or ';' ends a command, '#' at the start of a word starts
	// a comment, backslash-newline continues the line, $NAME expands from an
	// earlier assignment, and unquoted operators (| & < > ( ) `) are errors,
	// since the shell would not pass them on as part of an argument.
	shellMode splitMode = iota
	// taskMode splits an ACR Task cmd string or an az --cmd value, which no
	// shell sees: quotes group and backslashes escape as in a shell, but
	// everything else ('$', '|', '#', ';') is literal and newlines are
	// plain spaces (YAML block scalars put them there).
	taskMode
)

// SyntaxError is text that cannot be split into words, such as an
// unbalanced quote. Line and Column are 1-based within that text.
type SyntaxError struct {
	Line, Column int
	Msg          string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// word is one word after quote removal.
type word struct {
	text string
	// unresolved names the $NAME references (outside single quotes) that no
	// earlier assignment defined; they stay in text as written.
	unresolved []string
	// expanded names the assignments expanded into this word.
	expanded []string
}

// cmdLine is one command: its words and the line it starts on.
type cmdLine struct {
	words []word
	line  int
}

func (c cmdLine) texts() []string {
	out := make([]string, len(c.words))
	for i, w := range c.words {
		out[i] = w.text
	}
	return out
}

// splitter splits text into commands, one at a time so that an assignment
// seen in one command is defined for the next (as in a shell).
type splitter struct {
	src       string
	mode      splitMode
	env       map[string]string // shellMode only; nil: nothing defined
	i         int
	line      int
	lineStart int // index of the first byte of the current line

	cur    cmdLine
	buf    strings.Builder
	inWord bool
	w      word // unresolved/expanded of the word being built
}

func newSplitter(src string, mode splitMode, env map[string]string) *splitter {
	return &splitter{src: src, mode: mode, env: env, line: 1}
}

// splitWords splits text that holds exactly one command in taskMode (an
// ACR Task cmd, an az --cmd value). An empty text gives no words.
func splitWords(src string) ([]string, error) {
	s := newSplitter(src, taskMode, nil)
	c, ok, err := s.next()
	if err != nil || !ok {
		return nil, err
	}
	return c.texts(), nil
}

func (s *splitter) errorf(format string, args ...any) error {
	return &SyntaxError{Line: s.line, Column: s.i - s.lineStart + 1, Msg: fmt.Sprintf(format, args...)}
}

func (s *splitter) newline() {
	s.line++
	s.lineStart = s.i + 1
}

func (s *splitter) startWord() {
	if !s.inWord {
		s.inWord = true
		if len(s.cur.words) == 0 {
			s.cur.line = s.line
		}
	}
}

func (s *splitter) endWord() {
	if !s.inWord {
		return
	}
	s.w.text = s.buf.String()
	s.cur.words = append(s.cur.words, s.w)
	s.buf.Reset()
	s.w = word{}
	s.inWord = false
}

// next returns the next command; ok is false at the end of the text.
func (s *splitter) next() (cmd cmdLine, ok bool, err error) {
	s.cur = cmdLine{}
	for s.i < len(s.src) {
		c := s.src[s.i]
		switch {
		case c == '\n':
			s.endWord()
			s.newline()
			s.i++
			if s.mode == shellMode && len(s.cur.words) > 0 {
				return s.cur, true, nil
			}
		case c == ' ' || c == '\t' || c == '\r':
			s.endWord()
			s.i++
		case c == '#' && !s.inWord && s.mode == shellMode:
			for s.i < len(s.src) && s.src[s.i] != '\n' {
				s.i++
			}
		case c == ';' && s.mode == shellMode:
			s.endWord()
			s.i++
			if len(s.cur.words) > 0 {
				return s.cur, true, nil
			}
		case c == '\\':
			if err := s.backslash(); err != nil {
				return cmdLine{}, false, err
			}
		case c == '\'':
			if err := s.singleQuoted(); err != nil {
				return cmdLine{}, false, err
			}
		case c == '"':
			if err := s.doubleQuoted(); err != nil {
				return cmdLine{}, false, err
			}
		case c == '$' && s.mode == shellMode:
			if err := s.dollar(false); err != nil {
				return cmdLine{}, false, err
			}
		case s.mode == shellMode && strings.IndexByte("|&<>()`", c) >= 0:
			what := "an operator"
			if c == '`' {
				what = "a command substitution"
			}
			return cmdLine{}, false, s.errorf("unquoted %q: a shell would read it as %s, not as part of an argument; quote the argument (e.g. --filter 'repo:^(a|b)$')", string(c), what)
		default:
			s.startWord()
			s.buf.WriteByte(c)
			s.i++
		}
	}
	s.endWord()
	return s.cur, len(s.cur.words) > 0, nil
}

// backslash handles an unquoted backslash: it escapes the next character,
// and before a newline it joins the lines.
func (s *splitter) backslash() error {
	if s.i+1 >= len(s.src) {
		return s.errorf("a backslash at the end escapes nothing")
	}
	n := s.src[s.i+1]
	if n == '\r' && s.i+2 < len(s.src) && s.src[s.i+2] == '\n' {
		s.i += 2
		s.newline()
		s.i++
		return nil
	}
	if n == '\n' {
		s.i++
		s.newline()
		s.i++
		return nil
	}
	s.startWord()
	s.buf.WriteByte(n)
	s.i += 2
	return nil
}

func (s *splitter) singleQuoted() error {
	s.startWord()
	openLine, openCol := s.line, s.i-s.lineStart+1
	start := s.i + 1
	end := strings.IndexByte(s.src[start:], '\'')
	if end < 0 {
		return &SyntaxError{Line: openLine, Column: openCol, Msg: "unbalanced single quote: no closing '"}
	}
	text := s.src[start : start+end]
	for j := 0; j < len(text); j++ {
		if text[j] == '\n' {
			s.line++
			s.lineStart = start + j + 1
		}
	}
	s.buf.WriteString(text)
	s.i = start + end + 1
	return nil
}

func (s *splitter) doubleQuoted() error {
	s.startWord()
	openLine, openCol := s.line, s.i-s.lineStart+1
	s.i++
	for {
		if s.i >= len(s.src) {
			return &SyntaxError{Line: openLine, Column: openCol, Msg: `unbalanced double quote: no closing "`}
		}
		c := s.src[s.i]
		switch {
		case c == '"':
			s.i++
			return nil
		case c == '\\' && s.i+1 < len(s.src):
			// Inside double quotes a backslash escapes only $ ` " \ and
			// newline; before anything else it is itself.
			switch n := s.src[s.i+1]; n {
			case '$', '`', '"', '\\':
				s.buf.WriteByte(n)
				s.i += 2
			case '\n':
				s.i++
				s.newline()
				s.i++
			default:
				s.buf.WriteByte('\\')
				s.i++
			}
		case c == '$' && s.mode == shellMode:
			if err := s.dollar(true); err != nil {
				return err
			}
		case c == '`' && s.mode == shellMode:
			return s.errorf("a command substitution (`...`) is not supported; paste its output instead")
		default:
			if c == '\n' {
				s.newline()
			}
			s.buf.WriteByte(c)
			s.i++
		}
	}
}

// dollar handles '$' in shellMode. $NAME and ${NAME} expand from earlier
// assignments; an undefined one stays as written and is reported by the
// caller if the word is used. Forms a shell would expand in ways that
// cannot be known here ($(...), $1, $?, ${X:-y}) are errors. A '$' that a
// shell leaves alone (before a quote, ')', '|', the end, ...) is literal,
// so filters such as 'repo:^v1$' need no special care.
func (s *splitter) dollar(quoted bool) error {
	rest := s.src[s.i+1:]
	switch {
	case strings.HasPrefix(rest, "("):
		return s.errorf("a command substitution ($(...)) is not supported; paste its output instead")
	case strings.HasPrefix(rest, "{"):
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return s.errorf("unbalanced ${: no closing }")
		}
		name := rest[1:end]
		if !isName(name) {
			return s.errorf("${%s} is a shell parameter expansion that is not supported; write its value instead", name)
		}
		s.expand(name, "${"+name+"}", quoted)
		s.i += 1 + end + 1
		return nil
	case rest != "" && strings.IndexByte("0123456789@*#?$!-", rest[0]) >= 0:
		return s.errorf("$%c would be expanded by the shell; put the argument in single quotes if the $ is meant literally", rest[0])
	}
	n := 0
	for n < len(rest) && (rest[n] == '_' || isAlpha(rest[n]) || n > 0 && rest[n] >= '0' && rest[n] <= '9') {
		n++
	}
	if n == 0 {
		s.startWord()
		s.buf.WriteByte('$')
		s.i++
		return nil
	}
	s.expand(rest[:n], "$"+rest[:n], quoted)
	s.i += 1 + n
	return nil
}

// expand writes the value of an assignment, or the reference as written
// when there is none. Unquoted, the value is split into words at blanks, as
// a shell splits it.
func (s *splitter) expand(name, written string, quoted bool) {
	val, ok := s.env[name]
	switch {
	case !ok:
		s.startWord()
		s.buf.WriteString(written)
		s.w.unresolved = append(s.w.unresolved, name)
		return
	case quoted:
		s.w.expanded = append(s.w.expanded, name)
		s.buf.WriteString(val)
		return
	}
	if val != "" && isBlank(val[0]) {
		s.endWord()
	}
	for k, f := range strings.Fields(val) {
		if k > 0 {
			s.endWord()
		}
		s.startWord()
		s.w.expanded = append(s.w.expanded, name)
		s.buf.WriteString(f)
	}
	if val != "" && isBlank(val[len(val)-1]) {
		s.endWord()
	}
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' }

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// isName reports whether s is a shell variable name.
func isName(s string) bool {
	if s == "" || !(s[0] == '_' || isAlpha(s[0])) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !(s[i] == '_' || isAlpha(s[i]) || s[i] >= '0' && s[i] <= '9') {
			return false
		}
	}
	return true
}

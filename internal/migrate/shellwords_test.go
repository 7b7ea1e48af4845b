package migrate

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// splitAll splits text in shellMode with no assignments and returns the
// words of each command.
func splitAll(t *testing.T, text string, env map[string]string) ([][]string, error) {
	t.Helper()
	if env == nil {
		env = map[string]string{}
	}
	sp := newSplitter(text, shellMode, env)
	var out [][]string
	for {
		c, ok, err := sp.next()
		if err != nil {
			return out, err
		}
		if !ok {
			return out, nil
		}
		out = append(out, c.texts())
	}
}

func TestSplitShell(t *testing.T) {
	tests := []struct {
		name, in string
		env      map[string]string
		want     [][]string
	}{
		{"plain", `acr purge --ago 1d`, nil, [][]string{{"acr", "purge", "--ago", "1d"}}},
		{"single quotes keep everything", `--filter 'samples/.*:^(?!v1).*$'`, nil,
			[][]string{{"--filter", "samples/.*:^(?!v1).*$"}}},
		{"double quotes keep regex backslashes", `--filter "hello-world:\w*test\w*"`, nil,
			[][]string{{"--filter", `hello-world:\w*test\w*`}}},
		{"double quotes: escapes of \" \\ $ `", `"a\"b\\c\$d\` + "`" + `e"`, nil, [][]string{{"a\"b\\c$d`e"}}},
		{"a $ that a shell leaves alone", `--filter "repo:^v1$" --filter repo:x$ "a$|b" '$HOME'`, nil,
			[][]string{{"--filter", "repo:^v1$", "--filter", "repo:x$", "a$|b", "$HOME"}}},
		{"spaces inside quotes", `--filter 'repo:^(?!release candidate).*'`, nil,
			[][]string{{"--filter", "repo:^(?!release candidate).*"}}},
		{"adjacent quoted parts join", `--filter=hello'-'"world":'.*'`, nil, [][]string{{"--filter=hello-world:.*"}}},
		{"unquoted backslash escapes", `a\ b \'c`, nil, [][]string{{"a b", "'c"}}},
		{"empty quotes are a word", `a '' ""`, nil, [][]string{{"a", "", ""}}},
		{"lines are commands", "acr purge --ago 1d\n\n  acr purge --ago 2d  \n", nil,
			[][]string{{"acr", "purge", "--ago", "1d"}, {"acr", "purge", "--ago", "2d"}}},
		{"semicolon ends a command", `a b; c`, nil, [][]string{{"a", "b"}, {"c"}}},
		{"backslash-newline continues", "acr purge \\\n  --ago 1d \\\r\n --untagged", nil,
			[][]string{{"acr", "purge", "--ago", "1d", "--untagged"}}},
		{"quotes span lines", "PURGE_CMD=\"acr purge --filter 'a:.*' \\\n  --ago 1d\"\nnext", nil,
			[][]string{{"PURGE_CMD=acr purge --filter 'a:.*'   --ago 1d"}, {"next"}}},
		{"comments", "# a comment\nacr purge # trailing\nx#y", nil, [][]string{{"acr", "purge"}, {"x#y"}}},
		{"assigned variable, quoted", `--cmd "$CMD" --x "${CMD}!"`, map[string]string{"CMD": "acr purge  --ago 1d"},
			[][]string{{"--cmd", "acr purge  --ago 1d", "--x", "acr purge  --ago 1d!"}}},
		{"assigned variable, unquoted, is split", `x $CMD y`, map[string]string{"CMD": " acr  purge "},
			[][]string{{"x", "acr", "purge", "y"}}},
		{"empty unquoted variable is no word", `x $E y`, map[string]string{"E": ""}, [][]string{{"x", "y"}}},
		{"unset variable stays as written", `-r $Registry --x "{$Other}"`, nil,
			[][]string{{"-r", "$Registry", "--x", "{$Other}"}}},
		{"templates are plain text", `--registry {{.Run.Registry}}`, nil, [][]string{{"--registry", "{{.Run.Registry}}"}}},
		{"only blanks and comments", "  \n# nothing\n\t\n", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := splitAll(t, tc.in, tc.env)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestSplitShellRecordsVariables(t *testing.T) {
	sp := newSplitter(`a "$SET" $UNSET '$QUOTED' ${SET}x`, shellMode, map[string]string{"SET": "v"})
	c, ok, err := sp.next()
	require.NoError(t, err)
	require.True(t, ok)
	require.Len(t, c.words, 5)
	assert.Equal(t, []string{"SET"}, c.words[1].expanded)
	assert.Equal(t, []string{"UNSET"}, c.words[2].unresolved)
	assert.Empty(t, c.words[3].unresolved, "single quotes keep $ literal")
	assert.Equal(t, "vx", c.words[4].text)
}

func TestSplitShellErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
		line, col      int
	}{
		{"unbalanced single quote", `acr purge --filter 'hello:.* --ago 1d`, "unbalanced single quote", 1, 20},
		{"unbalanced double quote", "acr purge\nx --filter \"hello:.*", "unbalanced double quote", 2, 12},
		{"pipe", `acr purge --filter repo:a|b --ago 1d`, `unquoted "|"`, 1, 26},
		{"parenthesis", `acr purge --filter repo:^(?!v1)`, `unquoted "("`, 1, 26},
		{"redirect", `acr purge > out`, `unquoted ">"`, 1, 11},
		{"background", `acr purge &`, `unquoted "&"`, 1, 11},
		{"backquote", "acr `x`", "command substitution", 1, 5},
		{"command substitution", `acr "$(cat cmd)"`, "command substitution", 1, 6},
		{"special parameter", `--filter "repo:$1"`, "$1 would be expanded", 1, 16},
		{"parameter expansion", `--filter "${X:-a}"`, "parameter expansion", 1, 11},
		{"trailing backslash", `acr purge \`, "escapes nothing", 1, 11},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := splitAll(t, tc.in, nil)
			var se *SyntaxError
			require.True(t, errors.As(err, &se), "want a *SyntaxError, got %v", err)
			assert.Contains(t, se.Msg, tc.want)
			assert.Equal(t, tc.line, se.Line, "line")
			assert.Equal(t, tc.col, se.Column, "column")
		})
	}
}

func TestSplitTaskModeIsNoShell(t *testing.T) {
	got, err := splitWords("acr purge --filter repo:a|b --filter 'x:^v1$'\n  --ago $ago # not a comment; nor this")
	require.NoError(t, err)
	assert.Equal(t, []string{"acr", "purge", "--filter", "repo:a|b", "--filter", "x:^v1$", "--ago", "$ago", "#", "not", "a", "comment;", "nor", "this"}, got)

	_, err = splitWords(`acr purge --filter "x:.*`)
	assert.ErrorContains(t, err, "unbalanced double quote")
}

func TestShellJoinRoundTrips(t *testing.T) {
	words := []string{"acr", "purge", "--filter", `it's:^(?!v1).*$ "q" \ $HOME`, "", "a\nb"}
	got, err := splitAll(t, shellJoin(words), nil)
	require.NoError(t, err)
	assert.Equal(t, [][]string{words}, got)
}

func FuzzShellJoinRoundTrips(f *testing.F) {
	f.Add("acr", "samples/.*:^(?!v1).*$", `'"\$`)
	f.Add("", "a b", "\n")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		words := []string{a, b, c}
		sp := newSplitter(shellJoin(words), shellMode, map[string]string{})
		cmd, ok, err := sp.next()
		if err != nil || !ok {
			t.Fatalf("split(join(%q)): ok=%v err=%v", words, ok, err)
		}
		if got := cmd.texts(); !assert.ObjectsAreEqual(words, got) {
			t.Fatalf("split(join(%q)) = %q", words, got)
		}
		if _, more, _ := sp.next(); more {
			t.Fatalf("split(join(%q)) gave a second command", words)
		}
	})
}

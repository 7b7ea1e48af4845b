package migrate

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxInputBytes bounds a task file or the text read from stdin.
const MaxInputBytes = 1 << 20

// taskFile is the part of an ACR Task YAML file (acr-task.yaml) that
// matters here; every other property is ignored.
type taskFile struct {
	Alias struct {
		Values map[string]string `yaml:"values"`
		Src    []string          `yaml:"src"`
	} `yaml:"alias"`
	Env   []string    `yaml:"env"`
	Steps []yaml.Node `yaml:"steps"`
}

type taskStep struct {
	Cmd     *string  `yaml:"cmd"`
	Build   any      `yaml:"build"`
	Push    any      `yaml:"push"`
	ID      string   `yaml:"id"`
	Env     []string `yaml:"env"`
	Timeout *int     `yaml:"timeout"`
}

// ParseTaskFile reads the acr purge steps of an ACR Task YAML file; name
// names the file in messages. Steps that do not run acr purge are skipped
// with a note. The file's custom aliases (alias.values) are expanded in
// the commands as ACR Tasks expands them; {{.Run.Registry}} and $Registry
// are accepted where a registry goes.
//
// YAML is read with go.yaml.in/yaml/v3: task files use block scalars,
// folded and quoted multi-line cmd strings and flow sequences, which a
// hand-written reader would get wrong.
func ParseTaskFile(data []byte, name string) (*Input, error) {
	if len(data) > MaxInputBytes {
		return nil, &InputError{Source: name, Err: fmt.Errorf("%d bytes is larger than the %d byte limit", len(data), MaxInputBytes)}
	}
	hint := ""
	if bytes.Contains(data, []byte("{{")) {
		hint = " (ACR renders a task file as a template before reading it as YAML: replace the {{...}} expressions outside strings with their values)"
	}
	var tf taskFile
	if err := yaml.Unmarshal(data, &tf); err != nil {
		return nil, &InputError{Source: name, Err: fmt.Errorf("not a valid task file: %w%s", err, hint)}
	}
	if len(tf.Steps) == 0 {
		return nil, &InputError{Source: name, Err: fmt.Errorf("no steps: want an ACR Task file with steps such as \"- cmd: acr purge --filter 'repo:.*' --ago 30d\"")}
	}
	in := &Input{}
	if len(tf.Alias.Src) > 0 {
		in.Notes = append(in.Notes, fmt.Sprintf("%s: alias.src files are not read; aliases defined only there are not expanded", name))
	}
	for i := range tf.Steps {
		node := &tf.Steps[i]
		source := fmt.Sprintf("%s line %d", name, node.Line)
		var st taskStep
		if err := node.Decode(&st); err != nil {
			return nil, &InputError{Source: source, Err: fmt.Errorf("not a valid task file: steps[%d]: %w%s", i, err, hint)}
		}
		if st.Cmd == nil {
			kind := "a step without cmd"
			switch {
			case st.Build != nil:
				kind = "a build step"
			case st.Push != nil:
				kind = "a push step"
			}
			in.Notes = append(in.Notes, fmt.Sprintf("%s: steps[%d] is %s, not acr purge; skipped", source, i, kind))
			continue
		}
		if l := keyLine(node, "cmd"); l > 0 {
			source = fmt.Sprintf("%s line %d", name, l)
		}
		text := expandAliases(*st.Cmd, tf.Alias.Values)
		words, err := splitWords(text)
		if err != nil {
			var se *SyntaxError
			if errors.As(err, &se) && !strings.Contains(text, "\n") {
				err = fmt.Errorf("column %d: %s", se.Column, se.Msg)
			}
			return nil, &InputError{Source: source, Err: fmt.Errorf("cmd: %w", err)}
		}
		if !runsPurge(words) {
			in.Notes = append(in.Notes, fmt.Sprintf("%s: steps[%d] runs %q, not acr purge; skipped", source, i, strings.Join(firstWords(words, 2), " ")))
			continue
		}
		cmd, err := ParsePurge(words, source)
		if err != nil {
			return nil, err
		}
		cmd.Name = st.ID
		// A step's env replaces the task's.
		env := tf.Env
		if st.Env != nil {
			env = st.Env
		}
		if err := applyTaskEnv(cmd, env); err != nil {
			return nil, &InputError{Source: source, Err: err}
		}
		if st.Timeout != nil {
			cmd.note("the step timeout %d is not needed: a message that reaches PURGE_MESSAGE_DEADLINE checkpoints and continues in a new one", *st.Timeout)
		}
		in.Commands = append(in.Commands, cmd)
	}
	if len(in.Commands) == 0 {
		return nil, &InputError{Source: name, Err: fmt.Errorf("no step runs acr purge (%d steps read)", len(tf.Steps))}
	}
	return in, nil
}

// keyLine returns the line of key in a mapping node, or 0.
func keyLine(m *yaml.Node, key string) int {
	if m.Kind != yaml.MappingNode {
		return 0
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i].Line
		}
	}
	return 0
}

func firstWords(ws []string, n int) []string {
	if len(ws) > n {
		return ws[:n]
	}
	return ws
}

// runsPurge reports whether words run acr purge: an acr-cli program and,
// after any root flags, the purge subcommand.
func runsPurge(words []string) bool {
	if len(words) == 0 || !isAcrProgram(words[0]) {
		return false
	}
	rest := words[1:]
	for len(rest) > 0 && len(rest[0]) > 1 && rest[0][0] == '-' {
		n := 1
		if _, err := parseFlag(rest, &n); err != nil {
			return false
		}
		rest = rest[n:]
	}
	return len(rest) > 0 && rest[0] == "purge"
}

// expandAliases replaces $name with the task's custom alias values, as ACR
// Tasks does before running a step: the longest name that ends where no
// letter or digit follows.
func expandAliases(s string, values map[string]string) string {
	if len(values) == 0 || !strings.Contains(s, "$") {
		return s
	}
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] == '$' {
			if n := aliasAt(s[i+1:], names); n != "" {
				b.WriteString(values[n])
				i += 1 + len(n)
				continue
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

func aliasAt(s string, names []string) string {
	for _, n := range names {
		if n != "" && strings.HasPrefix(s, n) && (len(s) == len(n) || !isAlnum(s[len(n)])) {
			return n
		}
	}
	return ""
}

func isAlnum(c byte) bool { return isAlpha(c) || c >= '0' && c <= '9' }

// applyTaskEnv reads the KEY=value environment of a step.
func applyTaskEnv(c *Command, env []string) error {
	var read []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "ABAC_BATCH_SIZE", "ACR_DEFAULT_REGISTRY":
			read = append(read, kv)
		}
	}
	if err := applyEnv(c, read); err != nil {
		return fmt.Errorf("env: %w", err)
	}
	return nil
}

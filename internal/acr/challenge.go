package acr

import "strings"

// challenge is one parsed WWW-Authenticate challenge.
type challenge struct {
	scheme string            // as sent, e.g. "Bearer"
	params map[string]string // lower-cased names, unquoted values
}

// parseChallenges parses a WWW-Authenticate header value (RFC 7235):
// comma-separated challenges, each a scheme followed by comma-separated
// name=value parameters whose values are tokens or quoted strings (which may
// contain commas, '=' and backslash escapes). It never fails: malformed
// input yields whatever could be read.
func parseChallenges(h string) []challenge {
	var out []challenge
	i := 0
	for i < len(h) {
		for i < len(h) && (h[i] == ' ' || h[i] == '\t' || h[i] == ',') {
			i++
		}
		if i >= len(h) {
			break
		}
		start := i
		for i < len(h) && isTokenChar(h[i]) {
			i++
		}
		name := h[start:i]
		if name == "" { // stray character (e.g. a lone quote): skip it
			i++
			continue
		}
		j := i
		for j < len(h) && (h[j] == ' ' || h[j] == '\t') {
			j++
		}
		if j < len(h) && h[j] == '=' && len(out) > 0 {
			i = j + 1
			for i < len(h) && (h[i] == ' ' || h[i] == '\t') {
				i++
			}
			var val string
			val, i = readValue(h, i)
			last := &out[len(out)-1]
			key := strings.ToLower(name)
			if _, dup := last.params[key]; !dup {
				last.params[key] = val
			}
			continue
		}
		if j < len(h) && h[j] == '=' {
			// A parameter before any scheme (or token68): skip its value.
			_, i = readValue(h, j+1)
			continue
		}
		out = append(out, challenge{scheme: name, params: map[string]string{}})
		i = j
	}
	return out
}

// readValue reads a quoted string or a token starting at i and returns it
// with the index after it.
func readValue(h string, i int) (string, int) {
	if i < len(h) && h[i] == '"' {
		var b strings.Builder
		i++
		for i < len(h) {
			c := h[i]
			switch {
			case c == '\\' && i+1 < len(h):
				b.WriteByte(h[i+1])
				i += 2
			case c == '"':
				return b.String(), i + 1
			default:
				b.WriteByte(c)
				i++
			}
		}
		return b.String(), i // unterminated: take the rest
	}
	start := i
	for i < len(h) && h[i] != ',' && h[i] != ' ' && h[i] != '\t' {
		i++
	}
	return h[start:i], i
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// bearerChallenge returns the parameters of the first Bearer challenge found
// in the given WWW-Authenticate header values.
func bearerChallenge(values []string) (map[string]string, bool) {
	for _, v := range values {
		for _, c := range parseChallenges(v) {
			if strings.EqualFold(c.scheme, "bearer") {
				return c.params, true
			}
		}
	}
	return nil, false
}

package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// objectFields parses a JSON object into its members, rejecting duplicate
// keys (a second "repositories" must not silently win over the first).
func objectFields(raw []byte) (map[string]json.RawMessage, []string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errors.New("not a JSON object")
	}
	fields := make(map[string]json.RawMessage)
	var order []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, nil, errors.New("object key is not a string")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("field %q: %w", key, err)
		}
		if _, dup := fields[key]; dup {
			return nil, nil, fmt.Errorf("field %q appears more than once", key)
		}
		fields[key] = v
		order = append(order, key)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, err
	}
	return fields, order, nil
}

// normalizeKey lowercases a field name and drops everything but letters and
// digits, so "login_server", "LoginServer" and "login-server" compare equal.
func normalizeKey(k string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(k) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Field names that could point the Worker at another registry or endpoint.
var (
	forbiddenExact = map[string]bool{
		"host": true, "hostname": true, "uri": true, "addr": true, "address": true,
		"domain": true, "service": true, "acr": true, "port": true, "scheme": true,
		"target": true, "origin": true, "proxy": true,
	}
	forbiddenParts = []string{"registry", "loginserver", "server", "endpoint", "hostname", "url", "realm", "authority"}
)

// forbiddenField reports whether an own/portal field name looks like it
// names a registry, login server, host, endpoint or URL.
func forbiddenField(k string) bool {
	n := normalizeKey(k)
	if forbiddenExact[n] {
		return true
	}
	for _, p := range forbiddenParts {
		if strings.Contains(n, p) {
			return true
		}
	}
	return false
}

func forbiddenReason(k string) *RejectError {
	return rejectf("field %q is not allowed: a message must never name the registry, login server, host, endpoint or URL (the registry comes only from ACR_LOGIN_SERVER)", k)
}

// checkFields rejects forbidden field names first (with the specific
// reason), then anything not in allowed.
func checkFields(order []string, allowed map[string]bool, shape string) error {
	for _, k := range order {
		if forbiddenField(k) {
			return forbiddenReason(k)
		}
	}
	for _, k := range order {
		if !allowed[k] {
			return rejectf("unknown field %q in a %s message", k, shape)
		}
	}
	return nil
}

// fieldList renders up to ten field names for an error message.
func fieldList(order []string) string {
	var parts []string
	for i, k := range order {
		if i == 10 {
			parts = append(parts, fmt.Sprintf("and %d more", len(order)-10))
			break
		}
		if len(k) > 40 {
			k = k[:40] + "…"
		}
		parts = append(parts, fmt.Sprintf("%q", k))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

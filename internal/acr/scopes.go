package acr

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// normalizeScopes merges scopes naming the same resource, sorts and
// de-duplicates resources and actions, and returns the canonical key of the
// set. Two requests for the same set in any order share one key.
func normalizeScopes(in []Scope) (string, []Scope, error) {
	if len(in) == 0 {
		return "", nil, errors.New("acr: no token scopes")
	}
	type res struct{ typ, name string }
	merged := map[res][]string{}
	for _, s := range in {
		if err := checkScopePart("type", s.Type, ":"); err != nil {
			return "", nil, err
		}
		if err := checkScopePart("name", s.Name, ":"); err != nil {
			return "", nil, err
		}
		if len(s.Actions) == 0 {
			return "", nil, fmt.Errorf("acr: scope %s:%s has no actions", s.Type, s.Name)
		}
		for _, a := range s.Actions {
			if err := checkScopePart("action", a, ":,"); err != nil {
				return "", nil, err
			}
		}
		k := res{s.Type, s.Name}
		merged[k] = append(merged[k], s.Actions...)
	}
	out := make([]Scope, 0, len(merged))
	for k, acts := range merged {
		slices.Sort(acts)
		out = append(out, Scope{Type: k.typ, Name: k.name, Actions: slices.Compact(acts)})
	}
	slices.SortFunc(out, func(a, b Scope) int {
		if c := strings.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	keys := make([]string, len(out))
	for i, s := range out {
		keys[i] = s.String()
	}
	return strings.Join(keys, " "), out, nil
}

// checkScopePart refuses empty parts and characters that would change how
// the registry splits a scope string.
func checkScopePart(what, v, forbidden string) error {
	if v == "" {
		return fmt.Errorf("acr: empty scope %s", what)
	}
	if strings.ContainsAny(v, forbidden) || strings.ContainsFunc(v, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}) {
		return fmt.Errorf("acr: invalid scope %s %q", what, v)
	}
	return nil
}

// PurgeScopes are the scopes of one purge batch's token: PurgeActions on
// each repository, named one by one (an ABAC registry ignores wildcards).
func PurgeScopes(repos []string) []Scope {
	scopes := make([]Scope, len(repos))
	for i, repo := range repos {
		scopes[i] = RepositoryScope(repo, PurgeActions...)
	}
	return scopes
}

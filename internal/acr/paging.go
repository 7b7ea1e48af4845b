package acr

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// nextLink returns the target of the Link whose rel is "next". ACR sends
// one, `</acr/v1/...?last=x&n=100>; rel="next"`; this reader also finds it
// among several links or headers and in a space-separated rel list, and
// skips anything that is not a <target> followed by parameters. What it
// returns is untrusted: resolveNext decides whether it may be fetched.
func nextLink(h http.Header) (string, bool) {
	for _, v := range h.Values("Link") {
		for _, link := range strings.Split(v, "<")[1:] {
			target, params, ok := strings.Cut(link, ">")
			if ok && relIsNext(params) {
				return strings.TrimSpace(target), true
			}
		}
	}
	return "", false
}

// relIsNext reports whether link parameters such as `; rel="prev next"`
// include the relation "next".
func relIsNext(params string) bool {
	for _, p := range strings.Split(params, ";") {
		name, value, _ := strings.Cut(p, "=")
		if !strings.EqualFold(strings.TrimSpace(name), "rel") {
			continue
		}
		value, _, _ = strings.Cut(strings.TrimSpace(value), ",") // the next link-value
		for _, rel := range strings.Fields(strings.Trim(value, `"`)) {
			if strings.EqualFold(rel, "next") {
				return true
			}
		}
	}
	return false
}

// resolveNext resolves a next link against the URL of the page that sent
// it (for the absolute-path links ACR sends, that is the endpoint) and
// refuses links that leave the registry, so the bearer token cannot be sent
// to another host.
func resolveNext(ep Endpoint, current *url.URL, target string) (*url.URL, error) {
	ref, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("invalid next link: %w", err)
	}
	u := current.ResolveReference(ref)
	if !sameOrigin(u, ep.Base) {
		return nil, errors.New("next link points outside the registry")
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

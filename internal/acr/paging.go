package acr

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// nextLink returns the target of the first Link with rel="next" (RFC 8288;
// rel may be a space-separated list, values quoted or not, several links
// per header and several headers).
func nextLink(h http.Header) (string, bool) {
	for _, v := range h.Values("Link") {
		for _, l := range parseLinks(v) {
			for _, rel := range strings.Fields(l.params["rel"]) {
				if strings.EqualFold(rel, "next") {
					return l.target, true
				}
			}
		}
	}
	return "", false
}

type link struct {
	target string
	params map[string]string
}

// parseLinks parses one Link header value: "<uri>; p=v; p2=\"v\", <uri2>; ...".
// Commas inside <...> or quoted values do not split links.
func parseLinks(v string) []link {
	var out []link
	i := 0
	for i < len(v) {
		for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == ',') {
			i++
		}
		if i >= len(v) || v[i] != '<' {
			// Not a link-value: skip to the next top-level comma.
			i = skipToComma(v, i)
			continue
		}
		end := strings.IndexByte(v[i+1:], '>')
		if end < 0 {
			break
		}
		l := link{target: strings.TrimSpace(v[i+1 : i+1+end]), params: map[string]string{}}
		i += end + 2
		for i < len(v) {
			for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
				i++
			}
			if i >= len(v) || v[i] == ',' {
				break
			}
			if v[i] != ';' {
				i = skipToComma(v, i)
				break
			}
			i++
			for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
				i++
			}
			start := i
			for i < len(v) && isTokenChar(v[i]) {
				i++
			}
			name := strings.ToLower(v[start:i])
			for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
				i++
			}
			val := ""
			if i < len(v) && v[i] == '=' {
				i++
				for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
					i++
				}
				if i < len(v) && v[i] == '"' {
					val, i = readValue(v, i)
				} else {
					start := i
					for i < len(v) && v[i] != ';' && v[i] != ',' {
						i++
					}
					val = strings.TrimSpace(v[start:i])
				}
			}
			if _, dup := l.params[name]; name != "" && !dup {
				l.params[name] = val
			}
		}
		out = append(out, l)
	}
	return out
}

// skipToComma returns the index of the next comma outside quotes and <>.
func skipToComma(v string, i int) int {
	inQuote, inAngle := false, false
	for ; i < len(v); i++ {
		switch c := v[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"' && !inAngle:
			inQuote = !inQuote
		case c == '<' && !inQuote:
			inAngle = true
		case c == '>' && !inQuote:
			inAngle = false
		case c == ',' && !inQuote && !inAngle:
			return i
		}
	}
	return i
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
	if !strings.EqualFold(u.Scheme, ep.Base.Scheme) || !strings.EqualFold(u.Host, ep.Base.Host) || u.User != nil {
		return nil, errors.New("next link points outside the registry")
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

package acr

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Endpoint says where the registry is. It comes only from configuration.
type Endpoint struct {
	// Base is scheme://host[:port] with no path, query or fragment.
	Base *url.URL
	// Service is host[:port], the service name used in token forms.
	Service string
}

// ParseEndpoint accepts "contoso.azurecr.io", "https://contoso.azurecr.io[/]"
// and, for loopback hosts only (127.0.0.0/8, ::1, localhost),
// "http://127.0.0.1:PORT". It rejects plain http to other hosts, paths,
// queries, fragments, userinfo, other schemes and an empty host, and
// lower-cases the host.
func ParseEndpoint(s string) (Endpoint, error) {
	raw := strings.TrimSpace(s)
	if raw == "" {
		return Endpoint{}, errors.New("acr: empty registry endpoint")
	}
	in := raw
	if !strings.Contains(in, "://") {
		in = "https://" + in
	}
	u, err := url.Parse(in)
	if err != nil {
		return Endpoint{}, fmt.Errorf("acr: registry endpoint %q: %w", raw, err)
	}
	bad := func(why string) (Endpoint, error) {
		return Endpoint{}, fmt.Errorf("acr: registry endpoint %q: %s", raw, why)
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "https" && scheme != "http":
		return bad("scheme must be https")
	case u.Opaque != "":
		return bad("not a host name")
	case u.User != nil:
		return bad("user info is not allowed")
	case u.Path != "" && u.Path != "/":
		return bad("a path is not allowed")
	case u.RawQuery != "" || u.ForceQuery:
		return bad("a query is not allowed")
	case u.Fragment != "" || strings.Contains(in, "#"):
		return bad("a fragment is not allowed")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return bad("empty host")
	}
	if err := checkHostName(host); err != nil {
		return bad(err.Error())
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return bad("invalid port")
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return bad("empty port")
	}
	if scheme == "http" && !isLoopback(host) {
		return bad("plain http is allowed only for loopback hosts")
	}
	hostport := host
	if strings.Contains(host, ":") { // IPv6 literal
		hostport = "[" + host + "]"
	}
	if p := u.Port(); p != "" {
		hostport += ":" + p
	}
	return Endpoint{
		Base:    &url.URL{Scheme: scheme, Host: hostport},
		Service: hostport,
	}, nil
}

// String returns the endpoint's base URL.
func (e Endpoint) String() string {
	if e.Base == nil {
		return ""
	}
	return e.Base.String()
}

func (e Endpoint) valid() error {
	if e.Base == nil || e.Base.Host == "" || e.Base.Scheme == "" {
		return errors.New("acr: endpoint has no base URL (use ParseEndpoint)")
	}
	if e.Service == "" {
		return errors.New("acr: endpoint has no service name (use ParseEndpoint)")
	}
	return nil
}

// checkHostName accepts IP literals and DNS names made of letters, digits,
// hyphens and dots.
func checkHostName(host string) error {
	if net.ParseIP(host) != nil {
		return nil
	}
	if len(host) > 253 {
		return errors.New("host name too long")
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 {
			return errors.New("invalid host name")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return errors.New("invalid host name")
			}
		}
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// escapeRepository escapes a repository name for a URL path: '/' stays a
// separator and every segment is escaped on its own, so '%', '?', '#',
// spaces and dot segments cannot change the request's meaning. Empty names
// and empty segments are refused.
func escapeRepository(repo string) (string, error) {
	if repo == "" {
		return "", fmt.Errorf("empty repository name: %w", ErrInvalidReference)
	}
	segs := strings.Split(repo, "/")
	for i, s := range segs {
		if s == "" {
			return "", fmt.Errorf("repository name %q has an empty path segment: %w", repo, ErrInvalidReference)
		}
		segs[i] = escapeSegment(s)
	}
	return strings.Join(segs, "/"), nil
}

// escapeSegment escapes s as exactly one path segment ('/' becomes %2F and
// the dot segments "." and ".." are fully percent-encoded).
func escapeSegment(s string) string {
	if s == "." || s == ".." {
		return strings.Repeat("%2E", len(s))
	}
	return url.PathEscape(s)
}

// escapeRef escapes a tag or digest as one path segment.
func escapeRef(kind, ref string) (string, error) {
	if ref == "" {
		return "", fmt.Errorf("empty %s: %w", kind, ErrInvalidReference)
	}
	return escapeSegment(ref), nil
}

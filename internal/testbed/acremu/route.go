package acremu

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// routeKind is the resource a path names.
type routeKind int

const (
	routeNone routeKind = iota
	routeExchange
	routeToken
	routePing
	routeCatalog
	routeTagList
	routeTag
	routeManifestList
	routeManifestAttrs
	routeManifest
	routeReferrers
)

// route is a parsed request path.
type route struct {
	kind routeKind
	repo string // unescaped, '/' separated
	ref  string // unescaped tag or digest
}

var errBadName = errors.New("invalid repository name")

// parsePath parses an escaped request path. Markers are searched from the
// right so repository names may contain any segment, and each segment is
// unescaped on its own so an escaped '/' stays inside its segment.
func parsePath(p string) (route, error) {
	switch p {
	case "/oauth2/exchange":
		return route{kind: routeExchange}, nil
	case "/oauth2/token":
		return route{kind: routeToken}, nil
	case "/v2", "/v2/":
		return route{kind: routePing}, nil
	case "/acr/v1/_catalog":
		return route{kind: routeCatalog}, nil
	}
	if rest, ok := strings.CutPrefix(p, "/acr/v1/"); ok {
		segs := strings.Split(rest, "/")
		n := len(segs)
		if n >= 2 {
			switch segs[n-1] {
			case "_tags":
				return withRepo(routeTagList, segs[:n-1], "")
			case "_manifests":
				return withRepo(routeManifestList, segs[:n-1], "")
			}
		}
		if n >= 3 {
			switch segs[n-2] {
			case "_tags":
				return withRepo(routeTag, segs[:n-2], segs[n-1])
			case "_manifests":
				return withRepo(routeManifestAttrs, segs[:n-2], segs[n-1])
			}
		}
		return route{}, nil
	}
	if rest, ok := strings.CutPrefix(p, "/v2/"); ok {
		segs := strings.Split(rest, "/")
		n := len(segs)
		if n >= 3 {
			switch segs[n-2] {
			case "manifests":
				return withRepo(routeManifest, segs[:n-2], segs[n-1])
			case "referrers":
				return withRepo(routeReferrers, segs[:n-2], segs[n-1])
			}
		}
	}
	return route{}, nil
}

// withRepo unescapes the repository segments and the reference.
func withRepo(kind routeKind, segs []string, ref string) (route, error) {
	parts := make([]string, len(segs))
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil || u == "" {
			return route{}, errBadName
		}
		parts[i] = u
	}
	rt := route{kind: kind, repo: strings.Join(parts, "/")}
	if ref != "" {
		u, err := url.PathUnescape(ref)
		if err != nil {
			return route{}, errBadName
		}
		rt.ref = u
	}
	return rt, nil
}

// escapeRepo escapes a repository name per '/'-separated segment.
func escapeRepo(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// endpoint is one (route kind, method) pair of the data plane.
type endpoint struct {
	name   string  // Stats.Requests key
	class  opClass // throttling class
	action string  // required repository action; "" for catalog and ping
	handle func(r *Registry, w http.ResponseWriter, req *http.Request, rt route, identity string)
}

// lookupEndpoint returns the endpoint for a route kind and method, and the
// methods the kind allows (for a 405's Allow header) when ok is false.
func lookupEndpoint(kind routeKind, method string) (ep endpoint, allow string, ok bool) {
	type m = map[string]endpoint
	var eps m
	switch kind {
	case routePing:
		eps = m{http.MethodGet: {name: "ping", class: classRead, handle: (*Registry).handlePing}}
	case routeCatalog:
		eps = m{http.MethodGet: {name: "catalog", class: classRead, handle: (*Registry).handleCatalog}}
	case routeTagList:
		eps = m{http.MethodGet: {name: "tags", class: classRead, action: acr.ActionMetadataRead, handle: (*Registry).handleTagList}}
	case routeTag:
		eps = m{
			http.MethodGet:    {name: "get_tag", class: classRead, action: acr.ActionMetadataRead, handle: (*Registry).handleGetTag},
			http.MethodDelete: {name: "delete_tag", class: classDelete, action: acr.ActionDelete, handle: (*Registry).handleDeleteTag},
			http.MethodPatch:  {name: "patch_tag", class: classWrite, action: acr.ActionMetadataWrite, handle: (*Registry).handlePatchTag},
		}
	case routeManifestList:
		eps = m{http.MethodGet: {name: "manifests", class: classRead, action: acr.ActionMetadataRead, handle: (*Registry).handleManifestList}}
	case routeManifestAttrs:
		eps = m{
			http.MethodGet:   {name: "get_manifest_attributes", class: classRead, action: acr.ActionMetadataRead, handle: (*Registry).handleGetManifestAttrs},
			http.MethodPatch: {name: "patch_manifest", class: classWrite, action: acr.ActionMetadataWrite, handle: (*Registry).handlePatchManifest},
		}
	case routeManifest:
		get := endpoint{name: "manifest", class: classRead, action: acr.ActionPull, handle: (*Registry).handleGetManifest}
		eps = m{
			http.MethodGet:    get,
			http.MethodHead:   get,
			http.MethodDelete: {name: "delete_manifest", class: classDelete, action: acr.ActionDelete, handle: (*Registry).handleDeleteManifest},
		}
	case routeReferrers:
		eps = m{http.MethodGet: {name: "referrers", class: classRead, action: acr.ActionPull, handle: (*Registry).handleReferrers}}
	}
	if ep, ok := eps[method]; ok {
		return ep, "", true
	}
	methods := make([]string, 0, len(eps))
	for k := range eps {
		methods = append(methods, k)
	}
	slices.Sort(methods)
	return endpoint{}, strings.Join(methods, ", "), false
}

// requiredScope is the scope a request needs, in challenge form.
func requiredScope(rt route, ep endpoint) acr.Scope {
	switch rt.kind {
	case routePing:
		return acr.Scope{}
	case routeCatalog:
		return acr.CatalogScope()
	default:
		return acr.RepositoryScope(rt.repo, ep.action)
	}
}

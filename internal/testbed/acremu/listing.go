package acremu

import (
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// Orders accepted by the orderby parameter.
const (
	OrderTimeDesc = "timedesc"
	OrderTimeAsc  = "timeasc"
)

// pageParams are the paging parameters of a listing request.
type pageParams struct {
	n       int
	last    string
	orderby string
}

// parsePage reads n, last and orderby; it answers 400 and returns false when
// they are invalid.
func (r *Registry) parsePage(w http.ResponseWriter, q url.Values, ordered bool) (pageParams, bool) {
	p := pageParams{n: min(DefaultPageSize, r.opts.MaxPageSize), last: q.Get("last")}
	if s := q.Get("n"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, CodePaginationInvalid, "n must be a positive integer", nil)
			return p, false
		}
		p.n = min(n, r.opts.MaxPageSize)
	}
	if ordered {
		p.orderby = strings.ToLower(q.Get("orderby"))
		if p.orderby != "" && p.orderby != OrderTimeDesc && p.orderby != OrderTimeAsc {
			writeError(w, http.StatusBadRequest, CodeUnsupported, "orderby must be timedesc or timeasc", nil)
			return p, false
		}
	}
	return p, true
}

// setNext adds the Link header for the next page.
func setNext(w http.ResponseWriter, path string, p pageParams, last string, extra url.Values) {
	v := url.Values{}
	for k, vs := range extra {
		v[k] = vs
	}
	v.Set("last", last)
	v.Set("n", strconv.Itoa(p.n))
	if p.orderby != "" {
		v.Set("orderby", p.orderby)
	}
	w.Header().Set("Link", "<"+path+"?"+v.Encode()+`>; rel="next"`)
}

// handlePing serves GET /v2/.
func (r *Registry) handlePing(w http.ResponseWriter, _ *http.Request, _ route, _ string) {
	writeJSON(w, http.StatusOK, struct{}{})
}

// handleCatalog serves GET /acr/v1/_catalog.
func (r *Registry) handleCatalog(w http.ResponseWriter, req *http.Request, _ route, _ string) {
	p, ok := r.parsePage(w, req.URL.Query(), false)
	if !ok {
		return
	}
	r.mu.Lock()
	names := r.sortedNames()
	i := 0
	if p.last != "" {
		i = sort.Search(len(names), func(k int) bool { return names[k] > p.last })
	}
	end := min(i+p.n, len(names))
	page := slices.Clone(names[i:end])
	more := end < len(names)
	r.mu.Unlock()
	if page == nil {
		page = []string{}
	}
	if more {
		setNext(w, "/acr/v1/_catalog", p, page[len(page)-1], nil)
	}
	writeJSON(w, http.StatusOK, acr.Catalog{Repositories: page})
}

// sortKey is what listings sort on.
type sortKey struct {
	name    string // tag name or digest
	updated int64  // lastUpdateTime in Unix nanoseconds
}

// cacheMin is the size from which a repository keeps its sorted orders
// between requests (until its content changes); smaller ones sort per request.
const cacheMin = 256

// orderCache is one sorted order of a repository's tags or manifests.
type orderCache struct {
	version uint64
	keys    []sortKey
	pos     map[string]int // position by name, for time orders
}

// cacheKey names a cached order.
type cacheKey struct {
	manifests bool
	orderby   string
}

// sortKeys sorts keys in place by the order.
func sortKeys(keys []sortKey, orderby string) {
	switch orderby {
	case OrderTimeDesc:
		slices.SortFunc(keys, func(a, b sortKey) int {
			if a.updated != b.updated {
				if a.updated > b.updated {
					return -1
				}
				return 1
			}
			return strings.Compare(a.name, b.name)
		})
	case OrderTimeAsc:
		slices.SortFunc(keys, func(a, b sortKey) int {
			if a.updated != b.updated {
				if a.updated < b.updated {
					return -1
				}
				return 1
			}
			return strings.Compare(a.name, b.name)
		})
	default:
		slices.SortFunc(keys, func(a, b sortKey) int { return strings.Compare(a.name, b.name) })
	}
}

// ordered returns the repository's tags (or manifests) sorted by orderby,
// and a position index for time orders (nil when not cached). The result is
// shared: callers must not modify it. Caller holds r.mu.
func (rp *repository) ordered(manifests bool, orderby string) ([]sortKey, map[string]int) {
	n := len(rp.tags)
	if manifests {
		n = len(rp.manifests)
	}
	k := cacheKey{manifests, orderby}
	if c := rp.caches[k]; c != nil && c.version == rp.version {
		return c.keys, c.pos
	}
	keys := make([]sortKey, 0, n)
	if manifests {
		for _, m := range rp.manifests {
			keys = append(keys, sortKey{name: m.digest, updated: m.updated.UnixNano()})
		}
	} else {
		for _, t := range rp.tags {
			keys = append(keys, sortKey{name: t.name, updated: t.updated.UnixNano()})
		}
	}
	sortKeys(keys, orderby)
	if n < cacheMin {
		return keys, nil
	}
	c := &orderCache{version: rp.version, keys: keys}
	if orderby != "" {
		c.pos = make(map[string]int, len(keys))
		for i, key := range keys {
			c.pos[key.name] = i
		}
	}
	if rp.caches == nil {
		rp.caches = make(map[cacheKey]*orderCache)
	}
	rp.caches[k] = c
	return keys, c.pos
}

// pageWindow returns the page of sorted keys after p.last. In a time order an
// unknown `last` yields an empty page (as ACR does); in name order `last`
// need not exist.
func pageWindow(keys []sortKey, pos map[string]int, p pageParams) (page []sortKey, more bool) {
	i := 0
	if p.last != "" {
		switch {
		case p.orderby == "":
			i = sort.Search(len(keys), func(k int) bool { return keys[k].name > p.last })
		case pos != nil:
			at, ok := pos[p.last]
			if !ok {
				return nil, false
			}
			i = at + 1
		default:
			at := slices.IndexFunc(keys, func(k sortKey) bool { return k.name == p.last })
			if at < 0 {
				return nil, false
			}
			i = at + 1
		}
	}
	end := min(i+p.n, len(keys))
	return keys[i:end], end < len(keys)
}

// handleTagList serves GET /acr/v1/{repo}/_tags (optionally ?digest=).
func (r *Registry) handleTagList(w http.ResponseWriter, req *http.Request, rt route, _ string) {
	q := req.URL.Query()
	p, ok := r.parsePage(w, q, true)
	if !ok {
		return
	}
	digest := q.Get("digest")
	r.mu.Lock()
	rp := r.repos[rt.repo]
	if rp == nil {
		r.mu.Unlock()
		nameUnknown(w, rt.repo)
		return
	}
	var keys []sortKey
	var pos map[string]int
	if digest == "" {
		keys, pos = rp.ordered(false, p.orderby)
	} else {
		for _, t := range rp.tags {
			if t.digest == digest {
				keys = append(keys, sortKey{name: t.name, updated: t.updated.UnixNano()})
			}
		}
		sortKeys(keys, p.orderby)
	}
	page, more := pageWindow(keys, pos, p)
	out := acr.TagList{Registry: r.Host(), ImageName: rt.repo, Tags: make([]acr.Tag, 0, len(page))}
	for _, k := range page {
		out.Tags = append(out.Tags, wireTag(rp.tags[k.name]))
	}
	r.mu.Unlock()
	if more {
		var extra url.Values
		if digest != "" {
			extra = url.Values{"digest": {digest}}
		}
		setNext(w, "/acr/v1/"+escapeRepo(rt.repo)+"/_tags", p, page[len(page)-1].name, extra)
	}
	writeJSON(w, http.StatusOK, out)
}

// handleManifestList serves GET /acr/v1/{repo}/_manifests.
func (r *Registry) handleManifestList(w http.ResponseWriter, req *http.Request, rt route, _ string) {
	p, ok := r.parsePage(w, req.URL.Query(), true)
	if !ok {
		return
	}
	r.mu.Lock()
	rp := r.repos[rt.repo]
	if rp == nil {
		r.mu.Unlock()
		nameUnknown(w, rt.repo)
		return
	}
	keys, pos := rp.ordered(true, p.orderby)
	page, more := pageWindow(keys, pos, p)
	out := acr.ManifestList{Registry: r.Host(), ImageName: rt.repo, Manifests: make([]acr.Manifest, 0, len(page))}
	for _, k := range page {
		out.Manifests = append(out.Manifests, wireManifest(rp.manifests[k.name]))
	}
	r.mu.Unlock()
	if more {
		setNext(w, "/acr/v1/"+escapeRepo(rt.repo)+"/_manifests", p, page[len(page)-1].name, nil)
	}
	writeJSON(w, http.StatusOK, out)
}

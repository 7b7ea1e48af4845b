package acremu

import (
	"maps"
	"time"
)

// Kinds of DeleteRecord.
const (
	KindTag             = "tag"
	KindManifest        = "manifest"
	KindCascadeTag      = "cascade-tag"
	KindCascadeReferrer = "cascade-referrer"
)

// DeleteRecord is one successful deletion.
type DeleteRecord struct {
	Repo, Ref string // tag name or digest
	Kind      string // "tag", "manifest", "cascade-tag", "cascade-referrer"
	Identity  string
	At        time.Time
}

// Stats counts what the registry did. Requests is keyed by endpoint:
// "catalog", "tags", "manifests", "manifest", "referrers", "delete_tag",
// "delete_manifest", "patch_tag", "patch_manifest", "exchange", "token", and
// also "get_tag", "get_manifest_attributes" and "ping" (GET /v2/).
type Stats struct {
	Requests                               map[string]int
	AADTokens, RefreshTokens, AccessTokens int // issued
	Throttled, Unauthorized, Faults        int
	// ThrottledRegistry are the 429s of the registry-wide write limit
	// (also counted in Throttled).
	ThrottledRegistry      int
	DeleteNotFound, Locked int
}

// Stats returns a deep copy of the counters.
func (r *Registry) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Requests = maps.Clone(r.stats.Requests)
	return s
}

// ResetStats zeroes the counters (deletion records are kept).
func (r *Registry) ResetStats() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats = Stats{Requests: make(map[string]int)}
}

// Deletes returns every successful deletion, in order.
func (r *Registry) Deletes() []DeleteRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]DeleteRecord(nil), r.deletes...)
}

// ResetDeletes forgets the deletion records.
func (r *Registry) ResetDeletes() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deletes = nil
}

// count increments a request counter.
func (r *Registry) count(endpoint string) {
	r.mu.Lock()
	r.stats.Requests[endpoint]++
	r.mu.Unlock()
}

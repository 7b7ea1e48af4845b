package benchmarks

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/policy"
)

// PlanOptions size PlanHuge's synthetic repository.
type PlanOptions struct {
	// Tags and Manifests (defaults 1,000,000 and 200,000). Manifests is
	// rounded down to a multiple of 20 and Tags to a multiple of
	// Manifests/4 (at least one tag per tagged manifest).
	Tags, Manifests int
}

// DefaultPlan is the huge repository of issue 4: 1,000,000 tags and
// 200,000 manifests.
func DefaultPlan() PlanOptions { return PlanOptions{Tags: 1_000_000, Manifests: 200_000} }

func (o *PlanOptions) defaults() {
	d := DefaultPlan()
	if o.Manifests < 20 {
		o.Manifests = d.Manifests
	}
	o.Manifests -= o.Manifests % 20
	if o.Tags < o.Manifests/4 {
		o.Tags = d.Tags
	}
	o.Tags -= o.Tags % (o.Manifests / 4)
}

// hugeRepo is the synthetic repository, generated lazily page by page
// (never held in memory by PlanHuge):
//   - manifests newest first, 10 s apart at the default size; manifest i is
//     an OCI index with children i+1..i+3 when i%10 == 0, an OCI referrer
//     (empty config) of manifest i-5 when i%10 == 5, an OCI image with an
//     image config when i%10 is 1..3, and a Docker image otherwise;
//   - tags newest first, 2 s apart at the default size; tag j points at
//     manifest 4*(j/perTarget), so every fourth manifest carries perTarget
//     consecutive tags, and the oldest lose them all to the plan.
//
// Time steps scale with the size so that a small repository has the same
// shape (the same share of old tags) as the huge one.
type hugeRepo struct {
	tags, manifests, perTarget int
	tagStep, manifestStep      time.Duration
}

// hugeNow is the instant the huge repository is planned against.
var hugeNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// hugePolicy deletes tags older than 7 days beyond the 100 newest, and
// untagged manifests, protecting tags tag-1…7.
const hugePolicy = `{"rules":[{"name":"ci","filters":["huge:.*"],"ago":"7d","keep":100,"untagged":true}],"protect":["^tag-1\\d*7$"]}`

// Page sizes of the huge repository's listings (ACR's defaults and maxima).
const (
	hugeTagPage      = 100
	hugeManifestPage = 1000
)

func newHugeRepo(o PlanOptions) hugeRepo {
	return hugeRepo{
		tags: o.Tags, manifests: o.Manifests, perTarget: o.Tags / (o.Manifests / 4),
		tagStep:      2 * time.Second * time.Duration(DefaultPlan().Tags) / time.Duration(o.Tags),
		manifestStep: 10 * time.Second * time.Duration(DefaultPlan().Manifests) / time.Duration(o.Manifests),
	}
}

func hugeDigest(i int) string { return fmt.Sprintf("sha256:%064x", i) }

func hugeIndex(digest string) int {
	const prefix = "sha256:"
	if len(digest) <= len(prefix) {
		return -1
	}
	n, err := strconv.ParseUint(digest[len(prefix):], 16, 32)
	if err != nil {
		return -1
	}
	return int(n)
}

// Config media types of the huge repository's images and referrers.
const (
	ociImageConfig    = "application/vnd.oci.image.config.v1+json"
	dockerImageConfig = "application/vnd.docker.container.image.v1+json"
	ociEmptyConfig    = "application/vnd.oci.empty.v1+json"
)

// tag returns tag j.
func (h hugeRepo) tag(j int) acr.Tag {
	ts := hugeNow.Add(-time.Duration(j) * h.tagStep)
	return acr.Tag{Name: "tag-" + strconv.Itoa(j), Digest: hugeDigest(4 * (j / h.perTarget)), CreatedTime: ts, LastUpdateTime: ts}
}

// manifest returns manifest i, with its tags listed.
func (h hugeRepo) manifest(i int) acr.Manifest {
	m := acr.Manifest{
		Digest:         hugeDigest(i),
		ImageSize:      int64(1000 + i),
		LastUpdateTime: hugeNow.Add(-time.Duration(i) * h.manifestStep),
		MediaType:      acr.MediaTypeDockerManifest,
	}
	m.CreatedTime = m.LastUpdateTime
	switch i % 10 {
	case 0:
		m.MediaType = acr.MediaTypeOCIIndex
	case 1, 2, 3:
		m.MediaType, m.ConfigMediaType = acr.MediaTypeOCIManifest, ociImageConfig
	case 5:
		m.MediaType, m.ConfigMediaType = acr.MediaTypeOCIManifest, ociEmptyConfig
	default:
		m.ConfigMediaType = dockerImageConfig
	}
	if i%4 == 0 {
		m.Tags = make([]string, 0, h.perTarget)
		for k := range h.perTarget {
			m.Tags = append(m.Tags, "tag-"+strconv.Itoa(i/4*h.perTarget+k))
		}
	}
	return m
}

// hugeSource is the huge repository as a policy.ManifestSource; it samples
// the heap after every page.
type hugeSource struct {
	repo   hugeRepo
	heap   *heapWatch
	bodies atomic.Int64
}

func (s *hugeSource) Manifests(ctx context.Context, fn func([]acr.Manifest) error) error {
	page := make([]acr.Manifest, 0, hugeManifestPage)
	for start := 0; start < s.repo.manifests; start += hugeManifestPage {
		if err := ctx.Err(); err != nil {
			return err
		}
		page = page[:0]
		for i := start; i < min(start+hugeManifestPage, s.repo.manifests); i++ {
			page = append(page, s.repo.manifest(i))
		}
		if err := fn(page); err != nil {
			return err
		}
		s.heap.Sample()
	}
	return nil
}

// notFound is a 404 recognised by policy.IsNotFound.
type notFound struct{ digest string }

func (e notFound) Error() string  { return "manifest " + e.digest + " not found" }
func (e notFound) NotFound() bool { return true }

func (s *hugeSource) ManifestBody(ctx context.Context, digest string) (*acr.ManifestBody, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.bodies.Add(1)
	i := hugeIndex(digest)
	if i < 0 || i >= s.repo.manifests {
		return nil, notFound{digest}
	}
	b := &acr.ManifestBody{SchemaVersion: 2, MediaType: acr.MediaTypeOCIManifest}
	switch i % 10 {
	case 0:
		b.MediaType = acr.MediaTypeOCIIndex
		for c := i + 1; c <= i+3; c++ {
			b.Manifests = append(b.Manifests, acr.Descriptor{MediaType: acr.MediaTypeOCIManifest, Digest: hugeDigest(c), Size: 500})
		}
	case 5:
		b.Subject = &acr.Descriptor{MediaType: acr.MediaTypeOCIIndex, Digest: hugeDigest(i - 5), Size: 500}
	}
	return b, nil
}

// PlanFigures are the results of PlanHuge.
type PlanFigures struct {
	Tags      int `json:"tags"`
	Manifests int `json:"manifests"`
	// Heap peaks of the whole process while planning (run it in a fresh
	// process, or at least after a garbage collection, for a clean figure).
	Heap HeapPeaks `json:"heap"`
	// Elapsed is the whole plan; TagsPerSecond the tag phase's rate.
	Elapsed       time.Duration `json:"elapsedNs"`
	TagsPerSecond float64       `json:"tagsPerSecond"`
	// What the plan decided.
	DeletedTags      int                   `json:"deletedTags"`
	DeletedManifests int                   `json:"deletedManifests"`
	BodiesFetched    int64                 `json:"bodiesFetched"`
	Reasons          map[policy.Reason]int `json:"reasons"`
}

// PlanHuge plans a synthetic repository of o.Tags tags and o.Manifests
// manifests (indexes, images, referrers; see hugeRepo), streamed page by
// page as the registry would list them, and measures the process's peak
// heap (sampled every 2 ms and after every page) and the planning rate. It
// fails when the plan is degenerate (nothing deleted, no index child, no
// referrer or no protected tag kept).
func PlanHuge(ctx context.Context, o PlanOptions) (PlanFigures, error) {
	o.defaults()
	f := PlanFigures{Tags: o.Tags, Manifests: o.Manifests, Reasons: map[policy.Reason]int{}}
	p, err := policy.Parse([]byte(hugePolicy))
	if err != nil {
		return f, fmt.Errorf("plan: policy: %w", err)
	}
	repo := newHugeRepo(o)
	runtime.GC()
	heap := watchHeap(2 * time.Millisecond)
	rp, err := p.Planner("huge", hugeNow)
	if err != nil {
		heap.Stop()
		return f, fmt.Errorf("plan: %w", err)
	}
	emit := func(d policy.Decision) error {
		f.Reasons[d.Reason]++
		if d.Delete {
			if d.Kind == policy.KindTag {
				f.DeletedTags++
			} else {
				f.DeletedManifests++
			}
		}
		return nil
	}
	start := time.Now()
	page := make([]acr.Tag, 0, hugeTagPage)
	for from := 0; from < o.Tags; from += hugeTagPage {
		if err := ctx.Err(); err != nil {
			heap.Stop()
			return f, fmt.Errorf("plan: %w", err)
		}
		page = page[:0]
		for j := from; j < min(from+hugeTagPage, o.Tags); j++ {
			page = append(page, repo.tag(j))
		}
		if err := rp.TagPage(page, emit); err != nil {
			heap.Stop()
			return f, fmt.Errorf("plan: tags: %w", err)
		}
	}
	tagTime := time.Since(start)
	src := &hugeSource{repo: repo, heap: heap}
	err = rp.Manifests(ctx, src, emit)
	f.Elapsed = time.Since(start)
	f.Heap = heap.Stop()
	if err != nil {
		return f, fmt.Errorf("plan: manifests: %w", err)
	}
	f.TagsPerSecond = perSecond(int64(o.Tags), tagTime)
	f.BodiesFetched = src.bodies.Load()
	if f.DeletedTags == 0 || f.DeletedManifests == 0 || f.Reasons[policy.ReasonIndexChild] == 0 ||
		f.Reasons[policy.ReasonReferrer] == 0 || f.Reasons[policy.ReasonProtected] == 0 ||
		f.Reasons[policy.ReasonTagged] == o.Manifests/4 {
		return f, fmt.Errorf("plan: degenerate plan: %v", f.Reasons)
	}
	return f, nil
}

// ListingFigures are the results of PlanListing.
type ListingFigures struct {
	Tags      int `json:"tags"`
	Manifests int `json:"manifests"`
	// Heap is the process's heap with the whole listing held (after a
	// garbage collection, so Live is exactly what the listing holds plus
	// what the process held before).
	Heap HeapPeaks `json:"heap"`
}

// PlanListing is PlanHuge's baseline: the same repository's listings, every
// tag and every manifest, held in memory at once, as a tool that lists
// everything before planning must do. It plans nothing, so its heap is a
// lower bound of such a tool's.
func PlanListing(ctx context.Context, o PlanOptions) (ListingFigures, error) {
	o.defaults()
	f := ListingFigures{Tags: o.Tags, Manifests: o.Manifests}
	repo := newHugeRepo(o)
	runtime.GC()
	heap := watchHeap(2 * time.Millisecond)
	tags := make([]acr.Tag, 0, o.Tags)
	for j := range o.Tags {
		if j%hugeTagPage == 0 && ctx.Err() != nil {
			heap.Stop()
			return f, fmt.Errorf("plan listing: %w", ctx.Err())
		}
		tags = append(tags, repo.tag(j))
	}
	manifests := make([]acr.Manifest, 0, o.Manifests)
	for i := range o.Manifests {
		manifests = append(manifests, repo.manifest(i))
	}
	runtime.GC()
	f.Heap = heap.Stop()
	runtime.KeepAlive(tags)
	runtime.KeepAlive(manifests)
	return f, nil
}

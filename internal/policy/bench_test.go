package policy

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// The synthetic repository of BenchmarkPlanHugeRepository, generated lazily
// page by page (never held in memory):
//   - hugeManifests manifests, newest first, one every 10 s; manifest i is
//     an OCI index with children i+1..i+3 when i%10 == 0, an OCI referrer
//     (empty config) of manifest i-5 when i%10 == 5, an OCI image with an
//     image config when i%10 is 1..3, and a Docker image otherwise;
//   - hugeTags tags, newest first, one every 2 s; tag j points at manifest
//     4*(j/20), so every fourth manifest carries 20 consecutive tags, and
//     the oldest lose them all to the plan.
//
// The manifest listing still shows every tag (a dry run).
const (
	hugeTags          = 1_000_000
	hugeManifests     = 200_000
	hugeTagPage       = 100
	hugeManifestPage  = 1000
	hugeTagsPerTarget = hugeTags / (hugeManifests / 4)
)

func hugeDigest(i int) string { return fmt.Sprintf("sha256:%064x", i) }

func hugeIndex(digest string) int {
	n, err := strconv.ParseUint(digest[len("sha256:"):], 16, 64)
	if err != nil {
		return -1
	}
	return int(n)
}

// heapSampler records the peak HeapInuse.
type heapSampler struct{ peak uint64 }

func (h *heapSampler) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.peak = max(h.peak, ms.HeapInuse)
}

type hugeSource struct {
	heap   *heapSampler
	bodies atomic.Int64
}

func (s *hugeSource) Manifests(ctx context.Context, fn func([]acr.Manifest) error) error {
	page := make([]acr.Manifest, 0, hugeManifestPage)
	for start := 0; start < hugeManifests; start += hugeManifestPage {
		if err := ctx.Err(); err != nil {
			return err
		}
		page = page[:0]
		for i := start; i < start+hugeManifestPage; i++ {
			m := acr.Manifest{
				Digest:         hugeDigest(i),
				ImageSize:      int64(1000 + i),
				LastUpdateTime: now.Add(-time.Duration(i) * 10 * time.Second),
				MediaType:      acr.MediaTypeDockerManifest,
			}
			m.CreatedTime = m.LastUpdateTime
			switch i % 10 {
			case 0:
				m.MediaType = acr.MediaTypeOCIIndex
			case 1, 2, 3:
				m.MediaType, m.ConfigMediaType = acr.MediaTypeOCIManifest, imageConfig
			case 5:
				m.MediaType, m.ConfigMediaType = acr.MediaTypeOCIManifest, emptyConfig
			default:
				m.ConfigMediaType = dockerConfig
			}
			if i%4 == 0 {
				for k := range hugeTagsPerTarget {
					m.Tags = append(m.Tags, "tag-"+strconv.Itoa(i/4*hugeTagsPerTarget+k))
				}
			}
			page = append(page, m)
		}
		if err := fn(page); err != nil {
			return err
		}
		s.heap.sample()
	}
	return nil
}

func (s *hugeSource) ManifestBody(ctx context.Context, digest string) (*acr.ManifestBody, error) {
	s.bodies.Add(1)
	i := hugeIndex(digest)
	if i < 0 || i >= hugeManifests {
		return nil, notFoundError{digest}
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

// BenchmarkPlanHugeRepository plans a repository of 1,000,000 tags and
// 200,000 manifests and reports the peak heap (goal: under 300 MB).
func BenchmarkPlanHugeRepository(b *testing.B) {
	p := mustParse(b, `{"rules":[{"name":"ci","filters":["huge:.*"],"ago":"7d","keep":100,"untagged":true}],"protect":["^tag-1\\d*7$"]}`)
	for range b.N {
		runtime.GC()
		heap := &heapSampler{}
		heap.sample()
		rp := mustPlanner(b, p, "huge")
		counts := map[Reason]int{}
		var deletedTags, deletedManifests int
		emit := func(d Decision) error {
			counts[d.Reason]++
			if d.Delete {
				if d.Kind == KindTag {
					deletedTags++
				} else {
					deletedManifests++
				}
			}
			return nil
		}
		start := time.Now()
		page := make([]acr.Tag, 0, hugeTagPage)
		for p := 0; p < hugeTags/hugeTagPage; p++ {
			page = page[:0]
			for j := p * hugeTagPage; j < (p+1)*hugeTagPage; j++ {
				ts := now.Add(-time.Duration(j) * 2 * time.Second)
				page = append(page, acr.Tag{Name: "tag-" + strconv.Itoa(j), Digest: hugeDigest(4 * (j / hugeTagsPerTarget)), CreatedTime: ts, LastUpdateTime: ts})
			}
			if err := rp.TagPage(page, emit); err != nil {
				b.Fatal(err)
			}
			if p%50 == 0 {
				heap.sample()
			}
		}
		tagTime := time.Since(start)
		src := &hugeSource{heap: heap}
		if err := rp.Manifests(b.Context(), src, emit); err != nil {
			b.Fatal(err)
		}
		heap.sample()
		total := time.Since(start)
		if deletedTags == 0 || deletedManifests == 0 || counts[ReasonIndexChild] == 0 || counts[ReasonReferrer] == 0 || counts[ReasonProtected] == 0 || counts[ReasonTagged] == hugeManifests/4 {
			b.Fatalf("degenerate plan: %v", counts)
		}
		b.ReportMetric(float64(heap.peak)/(1<<20), "peak-heap-MB")
		b.ReportMetric(float64(hugeTags)/tagTime.Seconds(), "tags/s")
		b.ReportMetric(total.Seconds(), "plan-s")
		b.ReportMetric(float64(deletedTags), "deleted-tags")
		b.ReportMetric(float64(deletedManifests), "deleted-manifests")
		b.ReportMetric(float64(src.bodies.Load()), "bodies-fetched")
		b.Logf("decisions by reason: %v", counts)
	}
}

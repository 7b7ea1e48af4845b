package acremu

import (
	"fmt"
	"testing"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// BenchmarkCatalogPaging100k pages a 100,000-repository catalog at n=1000
// over HTTP, as the Scheduler does.
func BenchmarkCatalogPaging100k(b *testing.B) {
	const total = 100_000
	r := start(b, Options{})
	for i := range total {
		r.Put(fmt.Sprintf("team-%03d/app-%06d", i%997, i), Artifact{})
	}
	hc := httpClient(b, true)
	tok := login(b, hc, r, Identity{Name: "lister", CatalogLister: true}, "registry:catalog:*")
	b.ResetTimer()
	for b.Loop() {
		n := 0
		for _, p := range pages(b, hc, r, tok, "/acr/v1/_catalog?n=1000") {
			n += len(decode[acr.Catalog](b, p).Repositories)
		}
		if n != total {
			b.Fatalf("listed %d repositories, want %d", n, total)
		}
	}
}

// BenchmarkTagPaging10k pages a 10,000-tag repository in timedesc order.
func BenchmarkTagPaging10k(b *testing.B) {
	r := start(b, Options{})
	d := r.Put("big", Artifact{})
	for i := range 10_000 {
		if err := r.Tag("big", fmt.Sprintf("t%05d", i), d, r.Now()); err != nil {
			b.Fatal(err)
		}
	}
	hc := httpClient(b, true)
	tok := login(b, hc, r, Identity{Name: "id", Grants: all}, purgeScope("big"))
	b.ResetTimer()
	for b.Loop() {
		if len(pages(b, hc, r, tok, "/acr/v1/big/_tags?n=100&orderby=timedesc")) != 100 {
			b.Fatal("wrong page count")
		}
	}
}

package acremu

import (
	"errors"
	"testing"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
)

func TestContentDeterminism(t *testing.T) {
	t.Parallel()
	created := time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC)
	a := Artifact{Tags: []string{"v1"}, Created: created, Seed: "s"}
	r1, r2 := New(Options{}), New(Options{})
	d1 := r1.Put("x", a)
	if d2 := r2.Put("y", a); d1 != d2 {
		t.Errorf("same inputs, digests %s and %s", d1, d2)
	}
	variants := map[string]Artifact{
		"seed":    {Tags: []string{"v1"}, Created: created, Seed: "t"},
		"tags":    {Tags: []string{"v2"}, Created: created, Seed: "s"},
		"created": {Tags: []string{"v1"}, Created: created.Add(time.Second), Seed: "s"},
		"arch":    {Tags: []string{"v1"}, Created: created, Seed: "s", Architecture: "arm64"},
	}
	seen := map[string]string{d1: "base"}
	for name, v := range variants {
		d := r2.Put("y", v)
		if prev, dup := seen[d]; dup {
			t.Errorf("%s variant collides with %s", name, prev)
		}
		seen[d] = name
	}
	// Putting existing content again changes nothing but non-nil attributes.
	if d := r1.Put("x", Artifact{Tags: []string{"v1"}, Created: created, Seed: "s", Attributes: acr.Attributes{DeleteEnabled: boolp(false)}}); d != d1 {
		t.Fatalf("re-put digest %s", d)
	}
	ms := r1.Manifests("x")
	if len(ms) != 1 || !ms[0].Attributes.Locked() || !ms[0].CreatedTime.Equal(created) {
		t.Errorf("after re-put: %+v", ms)
	}
	if r1.Put("", a) != "" {
		t.Error("Put with an empty repository stored something")
	}
}

func TestPutDefaultsAndTagging(t *testing.T) {
	t.Parallel()
	r := New(Options{})
	created := time.Date(2024, 2, 3, 0, 0, 0, 0, time.UTC)
	updated := created.Add(48 * time.Hour)
	img := r.Put("app", Artifact{Tags: []string{"v1", "latest"}, Created: created, Updated: updated, Size: 12345})
	idx := r.Put("app", Artifact{Children: []string{img}, Created: created})
	art := r.Put("app", Artifact{ArtifactType: "application/spdx+json", Subject: img})

	byDigest := map[string]acr.Manifest{}
	for _, m := range r.Manifests("app") {
		byDigest[m.Digest] = m
	}
	if m := byDigest[img]; m.MediaType != acr.MediaTypeOCIManifest || m.Architecture != "amd64" || m.OS != "linux" ||
		m.ConfigMediaType != MediaTypeImageConfig || m.ImageSize != 12345 || !m.CreatedTime.Equal(created) ||
		!m.LastUpdateTime.Equal(updated) || len(m.Tags) != 2 {
		t.Errorf("image %+v", m)
	}
	if m := byDigest[idx]; m.MediaType != acr.MediaTypeOCIIndex || m.Architecture != "" || m.ConfigMediaType != "" ||
		!m.LastUpdateTime.Equal(created) || m.Tags != nil || m.ImageSize <= 0 {
		t.Errorf("index %+v", m)
	}
	if m := byDigest[art]; m.Architecture != "" || m.ConfigMediaType != MediaTypeEmptyConfig {
		t.Errorf("artifact %+v", m)
	}
	tags := r.Tags("app")
	if len(tags) != 2 || tags[0].Name != "latest" || !tags[0].LastUpdateTime.Equal(updated) || !tags[0].CreatedTime.Equal(updated) {
		t.Errorf("tags %+v", tags)
	}

	// Moving a tag leaves the old manifest without it and keeps createdTime.
	moved := created.Add(72 * time.Hour)
	if err := r.Tag("app", "latest", idx, moved); err != nil {
		t.Fatal(err)
	}
	for _, m := range r.Manifests("app") {
		switch m.Digest {
		case img:
			if len(m.Tags) != 1 || m.Tags[0] != "v1" {
				t.Errorf("image tags after move %v", m.Tags)
			}
		case idx:
			if len(m.Tags) != 1 || m.Tags[0] != "latest" {
				t.Errorf("index tags after move %v", m.Tags)
			}
		}
	}
	if tg := r.Tags("app")[0]; tg.Digest != idx || !tg.LastUpdateTime.Equal(moved) || !tg.CreatedTime.Equal(updated) {
		t.Errorf("moved tag %+v", tg)
	}
	body, mt, ok := r.ManifestBody("app", idx)
	if !ok || mt != acr.MediaTypeOCIIndex || len(body) == 0 {
		t.Errorf("ManifestBody: %v %s", ok, mt)
	}

	errCases := map[string]error{
		"tag unknown repo":     r.Tag("nope", "v1", img, time.Time{}),
		"tag unknown digest":   r.Tag("app", "v1", "sha256:00", time.Time{}),
		"attrs unknown tag":    r.SetTagAttributes("app", "nope", acr.Attributes{}),
		"attrs unknown repo":   r.SetTagAttributes("nope", "v1", acr.Attributes{}),
		"attrs unknown digest": r.SetManifestAttributes("app", "sha256:00", acr.Attributes{}),
		"mattrs unknown repo":  r.SetManifestAttributes("nope", img, acr.Attributes{}),
	}
	for name, err := range errCases {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	if err := r.Tag("app", "", img, time.Time{}); err == nil {
		t.Error("empty tag name accepted")
	}
	// Attributes are merged, never aliased to the caller's values.
	f := false
	if err := r.SetTagAttributes("app", "v1", acr.Attributes{WriteEnabled: &f}); err != nil {
		t.Fatal(err)
	}
	f = true
	for _, tg := range r.Tags("app") {
		if tg.Name == "v1" && !tg.Attributes.Locked() {
			t.Error("stored attributes alias the caller's bool")
		}
	}
}

package e2etest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
)

// CIRepo is a seeded repository and what Policy must leave of it.
type CIRepo struct {
	Name string
	// KeepTags and KeepManifests survive; GoneTags and GoneManifests are
	// deleted (by Policy: see SeedCI).
	KeepTags, GoneTags           []string
	KeepManifests, GoneManifests []string
}

// SeedCI fills a repository with n old ci-N tags (ci-1 newest, one image
// each), a fresh ci tag, an old protected ci-stable, an old latest (not
// matched by the filter) and two old untagged leftovers. Policy keeps ci-1
// and ci-2 (keep 2), ci-fresh (too new), ci-stable (protected) and latest
// (no match); it deletes ci-3..ci-n, then the untagged manifests except the
// 2 newest (the images of ci-3 and ci-4).
func SeedCI(reg *acremu.Registry, name string, n int) CIRepo {
	now := reg.Now()
	r := CIRepo{Name: name}
	put := func(tag string, age time.Duration) string {
		var tags []string
		if tag != "" {
			tags = []string{tag}
		}
		return reg.Put(name, acremu.Artifact{Tags: tags, Created: now.Add(-age), Seed: name + "/" + tag + fmt.Sprint(age)})
	}
	for i := 1; i <= n; i++ {
		tag := fmt.Sprintf("ci-%d", i)
		d := put(tag, 40*Day+time.Duration(i)*time.Hour)
		switch {
		case i <= 2:
			r.KeepTags, r.KeepManifests = append(r.KeepTags, tag), append(r.KeepManifests, d)
		case i <= 4:
			r.GoneTags, r.KeepManifests = append(r.GoneTags, tag), append(r.KeepManifests, d)
		default:
			r.GoneTags, r.GoneManifests = append(r.GoneTags, tag), append(r.GoneManifests, d)
		}
	}
	for _, k := range []struct {
		tag string
		age time.Duration
	}{{"ci-fresh", time.Hour}, {"ci-stable", 200 * Day}, {"latest", 300 * Day}} {
		r.KeepTags, r.KeepManifests = append(r.KeepTags, k.tag), append(r.KeepManifests, put(k.tag, k.age))
	}
	for i := range 2 {
		r.GoneManifests = append(r.GoneManifests, put("", 60*Day+time.Duration(i)*time.Minute))
	}
	return r
}

// ExpectedDeleted are the deletions Policy implies for repos.
func ExpectedDeleted(repos ...CIRepo) (tags, manifests int64) {
	for _, r := range repos {
		tags += int64(len(r.GoneTags))
		manifests += int64(len(r.GoneManifests))
	}
	return
}

// AssertPurged checks the registry holds exactly what the policy keeps.
func (h *Harness) AssertPurged(r CIRepo) {
	h.T.Helper()
	var tags []string
	for _, tg := range h.Reg.Tags(r.Name) {
		tags = append(tags, tg.Name)
	}
	require.ElementsMatch(h.T, r.KeepTags, tags, "%s: tags", r.Name)
	for _, d := range r.KeepManifests {
		require.True(h.T, h.Reg.HasManifest(r.Name, d), "%s: kept manifest %s is gone", r.Name, d)
	}
	for _, d := range r.GoneManifests {
		require.False(h.T, h.Reg.HasManifest(r.Name, d), "%s: manifest %s should be deleted", r.Name, d)
	}
}

// AssertUntouched checks nothing of the repository was deleted.
func (h *Harness) AssertUntouched(r CIRepo) {
	h.T.Helper()
	require.Len(h.T, h.Reg.Tags(r.Name), len(r.KeepTags)+len(r.GoneTags), "%s: tags", r.Name)
	require.Len(h.T, h.Reg.Manifests(r.Name), len(r.KeepManifests)+len(r.GoneManifests), "%s: manifests", r.Name)
	for _, d := range h.Reg.Deletes() {
		require.NotEqual(h.T, r.Name, d.Repo, "nothing may be deleted in %s", r.Name)
	}
}

// AssertDeletesSafe checks that nothing was deleted twice, no delete found
// its item already gone, and nothing the policy keeps was deleted.
func (h *Harness) AssertDeletesSafe(repos ...CIRepo) {
	h.T.Helper()
	keep := map[string]bool{}
	for _, r := range repos {
		for _, x := range append(append([]string(nil), r.KeepTags...), r.KeepManifests...) {
			keep[r.Name+"@"+x] = true
		}
	}
	seen := map[string]bool{}
	for _, d := range h.Reg.Deletes() {
		k := d.Repo + "@" + d.Ref
		require.False(h.T, seen[k+"#"+d.Kind], "deleted twice: %s", k)
		seen[k+"#"+d.Kind] = true
		require.False(h.T, keep[k], "deleted something the policy keeps: %s (%s)", k, d.Kind)
	}
	require.Zero(h.T, h.Reg.Stats().DeleteNotFound, "a delete found its item already gone: work was redone")
}

// EventBody renders an ImagePushed event as Event Grid delivers it to a
// Service Bus queue, in schema queue.SchemaEventGrid or
// queue.SchemaCloudEvents; host is data.request.host.
func EventBody(t testing.TB, schema, id, repo, host string) []byte {
	t.Helper()
	data := map[string]any{
		"id": id + "-data", "timestamp": "2025-03-04T21:39:47.276585742Z", "action": "push", "location": "westeurope",
		"target": map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1609, "length": 1609,
			"digest": "sha256:9f2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809", "repository": repo, "tag": "1.4.2"},
		"request": map[string]any{"id": id + "-req", "host": host, "method": "PUT", "useragent": "buildkit/v0.17"},
	}
	topic := "/subscriptions/5f3c1a2b/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/contoso"
	var ev map[string]any
	if schema == queue.SchemaCloudEvents {
		ev = map[string]any{"specversion": "1.0", "id": id, "source": topic, "subject": repo + ":1.4.2",
			"type": queue.EventTypeImagePushed, "time": "2025-03-04T21:39:47.6549614Z", "datacontenttype": "application/json", "data": data}
	} else {
		ev = map[string]any{"id": id, "topic": topic, "subject": repo + ":1.4.2", "eventType": queue.EventTypeImagePushed,
			"eventTime": "2025-03-04T21:39:47.6549614Z", "data": data, "dataVersion": "1.0", "metadataVersion": "1"}
	}
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	return b
}

package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
)

// Day is 24 hours.
const Day = 24 * time.Hour

// Spec is a one-rule purge policy of the shape the suite uses: a filter
// "<RepoFilter>:<TagFilter>", an ago in whole days, keep, untagged, and
// global protect patterns.
type Spec struct {
	RepoFilter string // repository expression, matched against the whole name
	TagFilter  string // tag expression, unanchored
	AgoDays    int
	Keep       int
	Untagged   bool
	Protect    []string // tag expressions, unanchored
}

// DefaultSpec deletes ci-* tags of team-* repositories older than 30 days
// beyond the 2 newest, then untagged manifests beyond the 2 newest, and
// never deletes latest or ci-stable.
func DefaultSpec() Spec {
	return Spec{RepoFilter: "team-.*", TagFilter: "^ci-", AgoDays: 30, Keep: 2, Untagged: true,
		Protect: []string{"^latest$", "^ci-stable$"}}
}

// Ago is the spec's ago as a duration.
func (s Spec) Ago() time.Duration { return time.Duration(s.AgoDays) * Day }

// JSON renders the spec as a PURGE_POLICY value.
func (s Spec) JSON() string {
	type rule struct {
		Name     string   `json:"name"`
		Filters  []string `json:"filters"`
		Ago      string   `json:"ago"`
		Keep     int      `json:"keep"`
		Untagged bool     `json:"untagged"`
	}
	b, err := json.Marshal(struct {
		Rules   []rule   `json:"rules"`
		Protect []string `json:"protect,omitempty"`
	}{
		Rules:   []rule{{Name: "ci", Filters: []string{s.RepoFilter + ":" + s.TagFilter}, Ago: fmt.Sprintf("%dd", s.AgoDays), Keep: s.Keep, Untagged: s.Untagged}},
		Protect: s.Protect,
	})
	if err != nil { // cannot happen: plain strings, ints and bools
		return ""
	}
	return string(b)
}

// Tag is one tag of a seeded manifest.
type Tag struct {
	Name    string
	Updated time.Time // lastUpdateTime
	Locked  bool      // deleteEnabled false
}

// Manifest is one seeded manifest.
type Manifest struct {
	Key     string // name within its Repo; digests come from Seed
	Digest  string // set by Seed
	Tags    []Tag
	Updated time.Time // lastUpdateTime (and createdTime)
	Locked  bool      // deleteEnabled false on the manifest
	// Children (keys) make the manifest an OCI index.
	Children []string
	// Subject (a key) makes the manifest a signature referring to it.
	Subject string
}

// Repo is one seeded repository. A manifest's children and subject come
// before it in Manifests.
type Repo struct {
	Name      string
	Manifests []*Manifest
}

// Manifest returns the manifest with key k, or nil.
func (r *Repo) Manifest(k string) *Manifest {
	for _, m := range r.Manifests {
		if m.Key == k {
			return m
		}
	}
	return nil
}

// Items counts the repository's tags and manifests.
func (r *Repo) Items() (tags, manifests int) {
	for _, m := range r.Manifests {
		tags += len(m.Tags)
	}
	return tags, len(r.Manifests)
}

// GenRepo builds a repository for DefaultSpec-like policies, planned
// against now: n ci-N tags (ci-1 newest, one image each, mostly older than
// 30 days, some newer, some locked, some with a second release tag), a tag
// pair where one is old and one new on the same image, a protected
// ci-stable, a protected latest on an index with two children and a
// signature, untagged leftovers, a fresh untagged manifest with a
// signature, a locked untagged manifest, an untagged index with two
// children, and a signature on one ci image. Every timestamp is distinct
// and at least a day away from the 30-day cut-off, and the youngest
// untagged item is 10 minutes old, so the plan stays the same when the
// clock moves by a few hours (token expiry scenarios).
func GenRepo(rng *rand.Rand, name string, n int, now time.Time) *Repo {
	r := &Repo{Name: name}
	tick := 0
	at := func(age time.Duration) time.Time {
		tick++
		return now.Add(-age - time.Duration(tick)*time.Second)
	}
	add := func(m *Manifest) *Manifest {
		r.Manifests = append(r.Manifests, m)
		return m
	}
	for i := 1; i <= n; i++ {
		age := 31*Day + time.Duration(i)*time.Hour
		if rng.IntN(8) == 0 {
			age = time.Duration(1+rng.IntN(20)) * Day // too new
		}
		t := at(age)
		tags := []Tag{{Name: fmt.Sprintf("ci-%d", i), Updated: t, Locked: rng.IntN(10) == 0}}
		if rng.IntN(10) == 0 {
			tags = append(tags, Tag{Name: fmt.Sprintf("rel-%d", i), Updated: t}) // not matched: keeps the image
		}
		add(&Manifest{Key: fmt.Sprintf("img-%d", i), Tags: tags, Updated: t})
	}
	old := at(33 * Day)
	add(&Manifest{Key: "multi", Updated: old, Tags: []Tag{
		{Name: "ci-multi-old", Updated: old}, {Name: "ci-multi-new", Updated: at(2 * Day)},
	}})
	t := at(200 * Day)
	add(&Manifest{Key: "stable", Updated: t, Tags: []Tag{{Name: "ci-stable", Updated: t}}})
	add(&Manifest{Key: "latest-amd64", Updated: at(301 * Day)})
	add(&Manifest{Key: "latest-arm64", Updated: at(301 * Day)})
	t = at(300 * Day)
	add(&Manifest{Key: "latest", Updated: t, Tags: []Tag{{Name: "latest", Updated: t}}, Children: []string{"latest-amd64", "latest-arm64"}})
	add(&Manifest{Key: "latest-sig", Updated: at(299 * Day), Subject: "latest"})
	for j := range 2 + rng.IntN(4) {
		add(&Manifest{Key: fmt.Sprintf("leftover-%d", j), Updated: at(45*Day + time.Duration(j)*Day)})
	}
	add(&Manifest{Key: "fresh", Updated: at(10 * time.Minute)})
	add(&Manifest{Key: "fresh-sig", Updated: at(40 * Day), Subject: "fresh"})
	add(&Manifest{Key: "locked", Updated: at(80 * Day), Locked: true})
	add(&Manifest{Key: "old-amd64", Updated: at(52 * Day)})
	add(&Manifest{Key: "old-arm64", Updated: at(52 * Day)})
	add(&Manifest{Key: "old-index", Updated: at(50 * Day), Children: []string{"old-amd64", "old-arm64"}})
	if n > 0 {
		add(&Manifest{Key: "ci-sig", Updated: at(35 * Day), Subject: fmt.Sprintf("img-%d", 1+rng.IntN(n))})
	}
	return r
}

// Seed stores the repository in the registry and sets every manifest's
// Digest.
func Seed(reg *acremu.Registry, r *Repo) error {
	no := false
	for _, m := range r.Manifests {
		a := acremu.Artifact{Created: m.Updated, Updated: m.Updated, Seed: r.Name + "/" + m.Key}
		for _, t := range m.Tags {
			a.Tags = append(a.Tags, t.Name)
		}
		for _, c := range m.Children {
			cm := r.Manifest(c)
			if cm == nil || cm.Digest == "" {
				return fmt.Errorf("seed %s: %s: child %s is not seeded before it", r.Name, m.Key, c)
			}
			a.Children = append(a.Children, cm.Digest)
		}
		if m.Subject != "" {
			sm := r.Manifest(m.Subject)
			if sm == nil || sm.Digest == "" {
				return fmt.Errorf("seed %s: %s: subject %s is not seeded before it", r.Name, m.Key, m.Subject)
			}
			a.Subject, a.ArtifactType = sm.Digest, acremu.ArtifactTypeNotarySig
		}
		if m.Locked {
			a.Attributes = acr.Attributes{DeleteEnabled: &no}
		}
		m.Digest = reg.Put(r.Name, a)
		for _, t := range m.Tags {
			if !t.Updated.Equal(m.Updated) {
				if err := reg.Tag(r.Name, t.Name, m.Digest, t.Updated); err != nil {
					return fmt.Errorf("seed %s: %w", r.Name, err)
				}
			}
			if t.Locked {
				if err := reg.SetTagAttributes(r.Name, t.Name, acr.Attributes{DeleteEnabled: &no}); err != nil {
					return fmt.Errorf("seed %s: %w", r.Name, err)
				}
			}
		}
	}
	return nil
}

package chaos

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var now = time.Date(2025, 3, 4, 2, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return now.Add(-d) }

func tagAt(name string, age time.Duration) Tag { return Tag{Name: name, Updated: ago(age)} }

// repoOf builds a Repo whose digests are "d:" + key.
func repoOf(name string, ms ...*Manifest) *Repo {
	for _, m := range ms {
		m.Digest = "d:" + m.Key
	}
	return &Repo{Name: name, Manifests: ms}
}

func keys(set map[string]bool) []string {
	return slices.Sorted(maps.Keys(set))
}

// TestExpect checks the reference against plans worked out by hand.
func TestExpect(t *testing.T) {
	spec := Spec{RepoFilter: "r", TagFilter: "^ci-", AgoDays: 30, Keep: 1, Untagged: true, Protect: []string{"^latest$"}}
	// One of each reason. Untagged candidates, newest first: s (35.5d,
	// kept by keep 1, which protects its subject u2), b (its ci-2 tag
	// goes), u1, u2 (already protected).
	mixed := func() *Repo {
		return repoOf("r",
			&Manifest{Key: "a", Updated: ago(35 * Day), Tags: []Tag{tagAt("ci-1", 35*Day)}},                                // keep 1 of the tags
			&Manifest{Key: "b", Updated: ago(36 * Day), Tags: []Tag{tagAt("ci-2", 36*Day)}},                                // tag goes
			&Manifest{Key: "c", Updated: ago(37 * Day), Tags: []Tag{{Name: "ci-3", Updated: ago(37 * Day), Locked: true}}}, // locked tag
			&Manifest{Key: "d", Updated: ago(10 * Day), Tags: []Tag{tagAt("ci-4", 10*Day)}},                                // too new
			&Manifest{Key: "e1", Updated: ago(101 * Day)},                                                                  // child of a kept index
			&Manifest{Key: "e", Updated: ago(100 * Day), Tags: []Tag{tagAt("latest", 100*Day)}, Children: []string{"e1"}},
			&Manifest{Key: "f", Updated: ago(100 * Day), Tags: []Tag{tagAt("rel-1", 100*Day)}}, // no match
			&Manifest{Key: "u1", Updated: ago(40 * Day)},
			&Manifest{Key: "u2", Updated: ago(41 * Day)},
			&Manifest{Key: "u3", Updated: ago(20 * time.Minute)},
			&Manifest{Key: "s", Updated: ago(35*Day + 12*time.Hour), Subject: "u2"},
			&Manifest{Key: "L", Updated: ago(50 * Day), Locked: true},
		)
	}
	// Keep 2: the index X (newest) is kept and protects its child y before
	// y is reached, so y does not use up a keep: z is the second kept, w goes.
	closure := func() *Repo {
		return repoOf("r",
			&Manifest{Key: "y", Updated: ago(32 * Day)},
			&Manifest{Key: "X", Updated: ago(31 * Day), Children: []string{"y"}},
			&Manifest{Key: "z", Updated: ago(33 * Day)},
			&Manifest{Key: "w", Updated: ago(34 * Day)},
		)
	}
	// A kept referrer's subject survives; a referrer of a deleted manifest
	// goes with it; the child of a deleted index goes too.
	referrers := func() *Repo {
		return repoOf("r",
			&Manifest{Key: "fresh", Updated: ago(10 * time.Minute)},
			&Manifest{Key: "fresh-sig", Updated: ago(40 * Day), Subject: "fresh"},
			&Manifest{Key: "old", Updated: ago(60 * Day)},
			&Manifest{Key: "old-sig", Updated: ago(61 * Day), Subject: "old"},
			&Manifest{Key: "kid", Updated: ago(63 * Day)},
			&Manifest{Key: "idx", Updated: ago(62 * Day), Children: []string{"kid"}},
			&Manifest{Key: "sig-subject", Updated: ago(70 * Day)},
			&Manifest{Key: "too-new-sig", Updated: ago(30 * time.Minute), Subject: "sig-subject"},
		)
	}
	tests := []struct {
		name             string
		spec             Spec
		repo             *Repo
		goneTags, goneMs []string
	}{
		{"every reason", spec, mixed(), []string{"ci-2"}, []string{"d:b", "d:u1"}},
		{"not in policy", spec, func() *Repo { r := mixed(); r.Name = "rr"; return r }(), nil, nil},
		{"tags only", func() Spec { s := spec; s.Untagged = false; return s }(), mixed(), []string{"ci-2"}, nil},
		{"keep 0", func() Spec { s := spec; s.Keep = 0; return s }(), mixed(), []string{"ci-1", "ci-2"}, []string{"d:a", "d:b", "d:s", "d:u1", "d:u2"}},
		{"kept index protects its child before it is counted", func() Spec { s := spec; s.Keep = 2; return s }(), closure(), nil, []string{"d:w"}},
		{"referrers and subjects", func() Spec { s := spec; s.Keep = 0; return s }(), referrers(), nil, []string{"d:idx", "d:kid", "d:old", "d:old-sig"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Expect(tt.spec, tt.repo, now)
			if err != nil {
				t.Fatal(err)
			}
			if got := keys(e.GoneTags); !slices.Equal(got, slices.Sorted(slices.Values(tt.goneTags))) {
				t.Errorf("gone tags %v, want %v", got, tt.goneTags)
			}
			if got := keys(e.GoneManifests); !slices.Equal(got, slices.Sorted(slices.Values(tt.goneMs))) {
				t.Errorf("gone manifests %v, want %v", got, tt.goneMs)
			}
			tags, manifests := tt.repo.Items()
			if len(e.KeepTags)+len(e.GoneTags) != tags || len(e.KeepManifests)+len(e.GoneManifests) != manifests {
				t.Errorf("every item is kept or gone, once: %d+%d tags of %d, %d+%d manifests of %d",
					len(e.KeepTags), len(e.GoneTags), tags, len(e.KeepManifests), len(e.GoneManifests), manifests)
			}
		})
	}
}

// GenRepo's repositories do not change plan when the clock moves by the
// few hours the token scenarios advance it, and exercise every kind of
// decision.
func TestGenRepoIsStableAndRich(t *testing.T) {
	spec := DefaultSpec()
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 1))
		r := GenRepo(rng, "team-a/app", 5+rng.IntN(40), now)
		for i, m := range r.Manifests {
			m.Digest = "d:" + m.Key
			for _, prev := range r.Manifests[:i] {
				if prev.Key == m.Key {
					t.Fatalf("seed %d: key %s twice", seed, m.Key)
				}
			}
		}
		base, err := Expect(spec, r, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, shift := range []time.Duration{-time.Hour, 5 * time.Hour} {
			e, _ := Expect(spec, r, now.Add(shift))
			if !maps.Equal(e.GoneTags, base.GoneTags) || !maps.Equal(e.GoneManifests, base.GoneManifests) {
				t.Fatalf("seed %d: the plan changes when the clock moves by %s", seed, shift)
			}
		}
		if len(base.GoneTags) == 0 || len(base.GoneManifests) == 0 || len(base.KeepManifests) < 8 {
			t.Fatalf("seed %d: degenerate expectation: %d tags and %d manifests gone, %d manifests kept",
				seed, len(base.GoneTags), len(base.GoneManifests), len(base.KeepManifests))
		}
		for _, k := range []string{"latest", "latest-amd64", "latest-sig", "fresh", "fresh-sig", "locked", "stable", "multi"} {
			if !base.KeepManifests["d:"+k] {
				t.Fatalf("seed %d: %s should survive", seed, k)
			}
		}
	}
}

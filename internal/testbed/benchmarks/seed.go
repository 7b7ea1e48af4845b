package benchmarks

import (
	"fmt"
	"time"

	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
)

const day = 24 * time.Hour

// oldTagsPolicy deletes every tag of the bench/ repositories older than 30
// days.
const oldTagsPolicy = `{"rules":[{"name":"old","filters":["bench/.*:.*"],"ago":"30d"}]}`

// seedOldTags fills repos repositories (bench/rNNNN) with old tags, each on
// its own image and all older than oldTagsPolicy's 30 days, and fresh ones
// it keeps, and returns the repository names. The content depends only on
// the arguments and the registry clock's day.
func seedOldTags(reg *acremu.Registry, repos, old, fresh int) []string {
	return seedOldTagsNamed(reg, "bench/r", repos, old, fresh)
}

// seedOldTagsNamed is seedOldTags with repositories named prefix + NNNN
// (prefix must start with bench/).
func seedOldTagsNamed(reg *acremu.Registry, prefix string, repos, old, fresh int) []string {
	now := reg.Now()
	names := make([]string, repos)
	for r := range repos {
		name := fmt.Sprintf("%s%04d", prefix, r)
		names[r] = name
		for i := range old {
			reg.Put(name, acremu.Artifact{Tags: []string{fmt.Sprintf("old-%02d", i)}, Seed: fmt.Sprint("old", i),
				Created: now.Add(-60*day - time.Duration(i)*time.Hour)})
		}
		for i := range fresh {
			reg.Put(name, acremu.Artifact{Tags: []string{fmt.Sprintf("new-%02d", i)}, Seed: fmt.Sprint("new", i),
				Created: now.Add(-time.Hour - time.Duration(i)*time.Minute)})
		}
	}
	return names
}

// parseOldTagsPolicy parses oldTagsPolicy.
func parseOldTagsPolicy() (*policy.Policy, error) {
	p, err := policy.Parse([]byte(oldTagsPolicy))
	if err != nil {
		return nil, fmt.Errorf("bench policy: %w", err)
	}
	return p, nil
}

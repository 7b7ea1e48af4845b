package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
)

// SequentialOptions configure Sequential.
type SequentialOptions struct {
	// Client speaks to the registry; its token source is replaced per
	// repository. Broker mints those tokens.
	Client *acr.Client
	Broker *acr.Broker
	// Registry, when set, is the emulator behind Client: its counters
	// (reset at the start) give the tokens, 429s and injected faults.
	Registry *acremu.Registry
	// Repositories to purge, in order.
	Repositories []string
	Policy       *policy.Policy
	// Now is the instant ages are counted from (default time.Now()).
	Now time.Time
}

// SequentialFigures are what the sequential baseline did.
type SequentialFigures struct {
	// Repositories it went through; Sample is set by the scenario when
	// that is only part of the registry (its rate then stands for the
	// whole, as a strictly sequential client's rate does not depend on how
	// many repositories it goes through).
	Repositories int  `json:"repositories"`
	Sample       bool `json:"sample"`
	// Deleted counts; Failed counts deletes that failed after the client's
	// retries and were left in place.
	TagsDeleted      int64 `json:"tagsDeleted"`
	ManifestsDeleted int64 `json:"manifestsDeleted"`
	Failed           int64 `json:"failed"`
	// Skipped counts repositories it may not read (forbidden), or that are
	// gone or outside the policy.
	Skipped int           `json:"skipped"`
	Elapsed time.Duration `json:"elapsedNs"`
	// DeletesPerSecond is (TagsDeleted+ManifestsDeleted)/Elapsed.
	DeletesPerSecond float64 `json:"deletesPerSecond"`
	// Tokens, Throttled and Faults are the registry's counts (Registry
	// set): access tokens issued, 429s answered, faults injected.
	Tokens    int `json:"tokens"`
	Throttled int `json:"throttled"`
	Faults    int `json:"faults"`
	// RequestsPerDelete is every request the registry counted (token
	// requests included) per delete (Registry set).
	RequestsPerDelete float64 `json:"requestsPerDelete"`
}

// Deleted is the tags and manifests it deleted.
func (f SequentialFigures) Deleted() int64 { return f.TagsDeleted + f.ManifestsDeleted }

// Sequential is the baseline every throughput figure is compared with: a
// strictly sequential client, one request at a time and one delete at a
// time, with one access token per repository (scoped to it, as a
// least-privilege client without batching needs). Per repository it lists
// the tags and deletes the old ones one by one, then, when the policy
// deletes untagged manifests, lists the manifests (fetching bodies one at a
// time) and deletes those one by one, a referrer or index child only after
// what it depends on. It uses the same planner as acrpurge, so both delete
// exactly the same things; it does not re-read items before deleting them
// (acrpurge does when its last read is too old to trust). Retries
// (5xx, 429 Retry-After) are the client's, the same as acrpurge's.
func Sequential(ctx context.Context, o SequentialOptions) (SequentialFigures, error) {
	if o.Client == nil || o.Broker == nil || o.Policy == nil {
		return SequentialFigures{}, errors.New("sequential baseline: Client, Broker and Policy are required")
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	if o.Registry != nil {
		o.Registry.ResetStats()
	}
	var f SequentialFigures
	start := time.Now()
	for _, repo := range o.Repositories {
		if err := ctx.Err(); err != nil {
			return f, fmt.Errorf("sequential baseline: %w", err)
		}
		f.Repositories++
		if err := sequentialRepo(ctx, o, repo, now, &f); err != nil {
			return f, err
		}
	}
	f.Elapsed = time.Since(start)
	f.DeletesPerSecond = perSecond(f.Deleted(), f.Elapsed)
	if o.Registry != nil {
		st := o.Registry.Stats()
		f.Tokens, f.Throttled, f.Faults = st.AccessTokens, st.Throttled, st.Faults
		requests := 0
		for _, n := range st.Requests {
			requests += n
		}
		if d := f.Deleted(); d > 0 {
			f.RequestsPerDelete = float64(requests) / float64(d)
		}
	}
	return f, nil
}

// sequentialRepo purges one repository for Sequential.
func sequentialRepo(ctx context.Context, o SequentialOptions, repo string, now time.Time, f *SequentialFigures) error {
	c := o.Client.WithTokens(o.Broker.Source(acr.PurgeScopes([]string{repo})...))
	rp, err := o.Policy.Planner(repo, now, policy.WithNotFound(acr.IsNotFound), policy.WithFetchConcurrency(1))
	if err != nil {
		f.Skipped++ // no rule applies
		return nil
	}
	skip := func(err error) (bool, error) {
		switch {
		case err == nil:
			return false, nil
		case acr.IsNotPermitted(err) || acr.IsNotFound(err):
			f.Skipped++
			return true, nil
		}
		return true, fmt.Errorf("sequential baseline: %s: %w", repo, err)
	}
	if rp.PlanTags() {
		var dels []policy.Decision
		err := c.Tags(ctx, repo, func(page []acr.Tag) error {
			return rp.TagPage(page, collectDeletes(&dels))
		})
		if stop, err := skip(err); stop {
			return err
		}
		for _, d := range dels {
			if err := sequentialDelete(ctx, c, repo, d); err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("sequential baseline: %w", ctx.Err())
				}
				f.Failed++
				rp.TagDeleteFailed(d.Digest)
				continue
			}
			f.TagsDeleted++
		}
	}
	if !rp.PlanManifests() {
		return nil
	}
	var dels []policy.Decision
	err = rp.Manifests(ctx, manifestSource{c: c, repo: repo}, collectDeletes(&dels))
	if stop, err := skip(err); stop {
		return err
	}
	// Dependency order: a deletion whose After digests are all gone may go;
	// one whose After digest failed stays, as acrpurge keeps it.
	gone, failed := map[string]bool{}, map[string]bool{}
	for len(dels) > 0 {
		var next []policy.Decision
		progress := false
		for _, d := range dels {
			switch {
			case slices.ContainsFunc(d.After, func(a string) bool { return failed[a] }):
				failed[d.Digest] = true
				progress = true
			case !slices.ContainsFunc(d.After, func(a string) bool { return !gone[a] }):
				progress = true
				if err := sequentialDelete(ctx, c, repo, d); err != nil {
					if ctx.Err() != nil {
						return fmt.Errorf("sequential baseline: %w", ctx.Err())
					}
					f.Failed++
					failed[d.Digest] = true
					continue
				}
				gone[d.Digest] = true
				f.ManifestsDeleted++
			default:
				next = append(next, d)
			}
		}
		if !progress {
			return fmt.Errorf("sequential baseline: %s: %d manifest deletions wait on digests the plan does not delete", repo, len(next))
		}
		dels = next
	}
	return nil
}

// collectDeletes returns a planner emit function that keeps the deletions.
func collectDeletes(dels *[]policy.Decision) func(policy.Decision) error {
	return func(d policy.Decision) error {
		if d.Delete {
			*dels = append(*dels, d)
		}
		return nil
	}
}

// sequentialDelete deletes one planned tag or manifest, unlocking it first
// when the plan says so.
func sequentialDelete(ctx context.Context, c *acr.Client, repo string, d policy.Decision) error {
	yes := true
	unlock := acr.Attributes{DeleteEnabled: &yes, WriteEnabled: &yes}
	if d.Kind == policy.KindTag {
		if d.Unlock {
			if err := c.UpdateTagAttributes(ctx, repo, d.Tag, unlock); err != nil {
				return err
			}
		}
		return c.DeleteTag(ctx, repo, d.Tag)
	}
	if d.Unlock {
		if err := c.UpdateManifestAttributes(ctx, repo, d.Digest, unlock); err != nil {
			return err
		}
	}
	return c.DeleteManifest(ctx, repo, d.Digest)
}

// manifestSource is one repository of a client as a policy.ManifestSource.
type manifestSource struct {
	c    *acr.Client
	repo string
}

func (s manifestSource) Manifests(ctx context.Context, fn func([]acr.Manifest) error) error {
	return s.c.Manifests(ctx, s.repo, fn)
}

func (s manifestSource) ManifestBody(ctx context.Context, digest string) (*acr.ManifestBody, error) {
	return s.c.ManifestBody(ctx, s.repo, digest)
}

// perSecond is n per second of d (0 when d is not positive).
func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

package purge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/policy"
)

// MaxVerifyAge bounds how old the read of an item may be when its delete
// (or the unlock before it) is sent: DELETE removes whatever the name
// points at now, and deleting a manifest deletes any tag given to it since,
// so the executor deletes only what it has seen, as planned, this recently.
// The read is the listing page the plan came from (tags, while the
// listing streams on), a re-read listing page, or a single GET; its age
// counts from when that request was sent.
const MaxVerifyAge = 2 * time.Second

// refreshAge is how long after its read came back the verifier stage reads
// an item again before it waits for a slot, so that the wait for a slot
// rarely makes the read older than MaxVerifyAge. It counts from the answer,
// not from the request as MaxVerifyAge does, so that a registry slower
// than refreshAge cannot make every read look due again the moment it
// arrives.
const refreshAge = MaxVerifyAge / 2

// Bounds on the re-reads.
const (
	// maxTagWindows is how many tag pages one verification reads looking
	// for the items; after them the first item is read alone.
	maxTagWindows = 4
	// maxGuardReads is how many times the guard reads an item that turned
	// stale before its delete went out, when each read itself comes back
	// older than MaxVerifyAge, before giving up on it.
	maxGuardReads = 3
)

// verdict is what the last read says about an item about to be deleted.
type verdict int

const (
	verdictUnread     verdict = iota // not read since planning
	verdictDelete                    // still as planned: delete it
	verdictGone                      // already deleted by someone else
	verdictChanged                   // not what was planned: keep
	verdictLocked                    // locked since planning: keep
	verdictUnverified                // could not be read in time: keep
)

// item is a planned deletion on its way to a delete slot, with what the
// executor last read about it.
type item struct {
	d       policy.Decision
	verdict verdict
	seen    time.Time      // when the read behind verdict was sent
	got     time.Time      // when its answer came back
	attrs   acr.Attributes // the item's attributes in that read
	// anchor (tags) is the nearest tag before this one in the plan's
	// listing that the plan keeps ("" when none): a tag that should still
	// exist, to list from when re-reading.
	anchor string
}

func (it *item) set(v verdict, seen, got time.Time, attrs acr.Attributes) {
	it.verdict, it.seen, it.got, it.attrs = v, seen, got, attrs
}

// verdictError carries a verdict out of a guarded request.
type verdictError struct{ v verdict }

func (e *verdictError) Error() string {
	switch e.v {
	case verdictGone:
		return "the item is gone"
	case verdictLocked:
		return "the item was locked since planning"
	case verdictUnverified:
		return fmt.Sprintf("the item could not be read within %s of its delete", MaxVerifyAge)
	}
	return "the item changed since planning"
}

func verdictOf(err error) (verdict, bool) {
	var ve *verdictError
	if errors.As(err, &ve) {
		return ve.v, true
	}
	return 0, false
}

func (r *repoRun) now() time.Time { return r.e.opts.Now() }

// needsRead reports whether the verifier stage must read it before it
// waits for a slot.
func (r *repoRun) needsRead(it *item) bool {
	return it.verdict == verdictUnread || (it.verdict == verdictDelete && r.now().Sub(it.got) > refreshAge)
}

// tagVerdict compares a fresh read of a tag with its planned deletion.
func tagVerdict(d policy.Decision, cur *acr.Tag) verdict {
	switch {
	case cur.Digest != d.Digest || !cur.LastUpdateTime.Equal(d.Updated):
		return verdictChanged
	case cur.Attributes.Locked() && !d.Unlock:
		return verdictLocked
	}
	return verdictDelete
}

// manifestVerdict compares a fresh read of a manifest with its planned
// deletion: a planned manifest is untagged, so any tag is a change.
func manifestVerdict(d policy.Decision, cur *acr.Manifest) verdict {
	switch {
	case len(cur.Tags) > 0 || (!d.Updated.IsZero() && !cur.LastUpdateTime.Equal(d.Updated)):
		return verdictChanged
	case cur.Attributes.Locked() && !d.Unlock:
		return verdictLocked
	}
	return verdictDelete
}

// guard is the check the client runs right before each attempt of the
// item's unlock and delete goes out (after the limiter and any retry
// wait): a read older than MaxVerifyAge is replaced by a fresh single read
// first, in the slot, and a delete is sent only while the item is as
// planned. Re-queuing a stale item instead could starve it: when the delete
// budget is the bottleneck, every wait is long.
func (r *repoRun) guard(ctx context.Context, it *item) func() error {
	return func() error {
		for reads := 0; r.now().Sub(it.seen) > MaxVerifyAge; reads++ {
			if reads == maxGuardReads {
				return &verdictError{verdictUnverified}
			}
			if err := r.readOne(ctx, it); err != nil {
				return err
			}
			if it.verdict != verdictDelete {
				return &verdictError{it.verdict}
			}
		}
		return nil
	}
}

// readOne reads one item with a GET.
func (r *repoRun) readOne(ctx context.Context, it *item) error {
	reg, repo := r.reg, r.job.Repository
	seen := r.now()
	if it.d.Kind == policy.KindTag {
		cur, err := reg.GetTag(ctx, repo, it.d.Tag)
		switch {
		case acr.IsNotFound(err):
			it.set(verdictGone, seen, r.now(), acr.Attributes{})
		case err != nil:
			return err
		default:
			it.set(tagVerdict(it.d, cur), seen, r.now(), cur.Attributes)
		}
		return nil
	}
	cur, err := reg.GetManifest(ctx, repo, it.d.Digest)
	switch {
	case acr.IsNotFound(err):
		it.set(verdictGone, seen, r.now(), acr.Attributes{})
	case err != nil:
		return err
	default:
		it.set(manifestVerdict(it.d, cur), seen, r.now(), cur.Attributes)
	}
	return nil
}

// verify reads items[0] again, and with it as many of the following items
// as one listing page holds when that is cheaper than reading them one by
// one. Items are the rest of a batch in the order they will be deleted:
// tags in listing order, manifests by digest.
//
// Page re-reads are an optimisation: when the registry refuses one as a
// bad request, or tag pages stop finding the items (a long run of tags
// left before them), the rest of the phase reads items one by one.
func (r *repoRun) verify(ctx context.Context, items []*item) error {
	var err error
	switch {
	case r.pages == nil || r.singleReads || len(items) < 2:
	case items[0].d.Kind == policy.KindTag:
		err = r.verifyTags(ctx, items)
		if err == nil && r.needsRead(items[0]) {
			r.singleReads = true
		}
	default:
		err = r.verifyManifests(ctx, items)
	}
	var ae *acr.Error
	if err != nil && errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest {
		r.log.Warn("re-reading a listing page failed; re-reading items one by one", "error", err)
		r.singleReads, err = true, nil
	}
	if err == nil && r.needsRead(items[0]) {
		err = r.readOne(ctx, items[0])
	}
	return err
}

// verifyTags re-lists the tags around the items, newest first, from their
// first item's anchor: page after page until the first item is found or
// maxTagWindows pages were read. An item missing where it should be listed
// (deleted, or re-pushed and so moved) is read alone, which tells which.
func (r *repoRun) verifyTags(ctx context.Context, items []*item) error {
	var todo []*item
	for _, it := range items {
		if r.needsRead(it) {
			todo = append(todo, it)
		}
	}
	if len(todo) < 2 {
		return nil
	}
	n := r.e.opts.VerifyPageSize
	last, restarted := items[0].anchor, false
	var missing []*item
	for w := 0; w < maxTagWindows && len(todo) > 0 && r.needsRead(items[0]); w++ {
		seen := r.now()
		page, more, err := r.pages.TagsPage(ctx, r.job.Repository, last, n)
		got := r.now()
		if acr.IsNotFound(err) { // the repository is gone, and its tags with it
			for _, it := range todo {
				it.set(verdictGone, seen, got, acr.Attributes{})
			}
			return nil
		}
		if err != nil {
			return err
		}
		if len(page) == 0 {
			if last != "" && !restarted {
				// The anchor is gone or was re-pushed: list from the top.
				last, restarted = "", true
				continue
			}
			missing = append(missing, todo...)
			todo = nil
			break
		}
		listed := make(map[string]*acr.Tag, len(page))
		for i := range page {
			listed[page[i].Name] = &page[i]
		}
		end := page[len(page)-1]
		var rest []*item
		for _, it := range todo {
			if cur, ok := listed[it.d.Tag]; ok {
				it.set(tagVerdict(it.d, cur), seen, got, cur.Attributes)
				continue
			}
			if !more || it.d.Updated.After(end.LastUpdateTime) {
				missing = append(missing, it) // it would have been on this page
				continue
			}
			rest = append(rest, it)
		}
		todo, last = rest, end.Name
	}
	for _, it := range missing {
		if err := r.readOne(ctx, it); err != nil {
			return err
		}
	}
	return nil
}

// verifyManifests re-lists one page of manifests starting at the first
// item's digest, when the page is expected to hold at least two of the
// items (the repository's manifests are spread evenly over the digests, so
// a page spans about VerifyPageSize/listed of them). In digest order a
// manifest missing from the span of the page is gone.
func (r *repoRun) verifyManifests(ctx context.Context, items []*item) error {
	n := r.e.opts.VerifyPageSize
	if r.expectedOnPage(items, n) < 2 {
		return nil
	}
	first := items[0].d.Digest
	if first == "" {
		return nil
	}
	seen := r.now()
	page, more, err := r.pages.ManifestsPage(ctx, r.job.Repository, first[:len(first)-1], n)
	got := r.now()
	if acr.IsNotFound(err) { // the repository is gone
		for _, it := range items {
			it.set(verdictGone, seen, got, acr.Attributes{})
		}
		return nil
	}
	if err != nil {
		return err
	}
	listed := make(map[string]*acr.Manifest, len(page))
	end := ""
	for i := range page {
		listed[page[i].Digest] = &page[i]
		end = max(end, page[i].Digest)
	}
	for _, it := range items {
		cur, ok := listed[it.d.Digest]
		switch {
		case ok:
			it.set(manifestVerdict(it.d, cur), seen, got, cur.Attributes)
		case !more || it.d.Digest <= end:
			it.set(verdictGone, seen, got, acr.Attributes{})
		default:
			return nil // sorted: this one and the rest are past the page
		}
	}
	return nil
}

// expectedOnPage estimates how many of items (sorted by digest) a page of
// n manifests starting at the first one holds.
func (r *repoRun) expectedOnPage(items []*item, n int) int {
	r.mu.Lock()
	listed := r.listed
	r.mu.Unlock()
	if listed <= n {
		return len(items)
	}
	span := float64(n) / float64(listed)
	lo, ok := digestFraction(items[0].d.Digest)
	if !ok {
		return len(items)
	}
	for i, it := range items {
		f, ok := digestFraction(it.d.Digest)
		if ok && f-lo > span {
			return i
		}
	}
	return len(items)
}

// digestFraction places a digest in [0, 1) by its first 16 hex digits.
func digestFraction(digest string) (float64, bool) {
	_, hex, ok := strings.Cut(digest, ":")
	if !ok || len(hex) < 16 {
		return 0, false
	}
	v, err := strconv.ParseUint(hex[:16], 16, 64)
	if err != nil {
		return 0, false
	}
	return float64(v) / (1 << 64), true
}

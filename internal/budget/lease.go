package budget

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"
)

// rateKey is the row of the shared rate.
const rateKey = "rate"

// slotKey is the row window k uses.
func slotKey(k int64) string { return fmt.Sprintf("w%02d", uint64(k)%slots) }

// claimInput is what a lease starts from: a snapshot taken under b.mu.
type claimInput struct {
	k        int64
	now      time.Time
	want     int64
	bit      uint  // this instance's member bit
	prev     int64 // members seen in the two windows before k
	rate     float64
	gen      int64
	refresh  bool
	rateRow  fields
	rateETag string
	cached   *cachedRow
	// recut: this instance cut the rate in window k; what is left of the
	// window is leased again at the new rate.
	recut bool
}

// claimOutput is what a lease found and leased.
type claimOutput struct {
	err      error
	ops      int
	rateRow  fields // non-nil: the rate row as read (and maybe raised)
	rateETag string
	newerGen bool // a window row carries a newer rate generation
	slot     *cachedRow
	// Leased tokens [from, from+n) of a window of capacity cap.
	from, n, cap int64
	observed     int64 // the row's Claimed after this lease
	members      int64 // the row's Members after this lease
	exhausted    bool
	// paced: the tokens are released W/paced apart from now, not at their
	// places in the window (a recut window: its places are the old rate's).
	paced int64
}

// lease refreshes the rate row when due, then leases up to a slice of
// window in.k (see the package documentation, steps 2 and 6). It runs
// without b.mu.
func (b *Budget) lease(in claimInput) (out claimOutput) {
	rate, gen := in.rate, in.gen
	if in.refresh {
		f, tag, err := b.refreshRate(&out, in.now, true)
		if err != nil {
			out.err = err
			return out
		}
		out.rateRow, out.rateETag = f, tag
		rate, gen = b.effective(f), f["Gen"]
	}
	key := slotKey(in.k)
	capK := b.capacity(rate, in.k)
	var cur fields
	var etag string
	found := false
	read := func() error {
		f, tag, err := b.get(&out, key)
		switch {
		case errors.Is(err, errNotFound):
			found = false
			return nil
		case err != nil:
			return err
		}
		cur, etag, found = f, tag, true
		return nil
	}
	if in.cached != nil {
		cur, etag, found = in.cached.f, in.cached.etag, true
	} else if out.err = read(); out.err != nil {
		return out
	}
	me := int64(1) << in.bit
	for range maxAttempts {
		var before, capRow, rowGen, members int64
		fresh := !found || cur["Window"] < in.k
		switch {
		case fresh:
			// This instance opens window k.
			before, capRow, rowGen = 0, capK, gen
		case cur["Window"] > in.k:
			// This instance's clock is behind the others': the slot already
			// serves a later window. Wait for the next one.
			out.slot = &cachedRow{f: cur, etag: etag}
			out.exhausted = true
			return out
		default:
			// The lower capacity wins: a cut applies to the current window.
			before, capRow, rowGen = cur["Claimed"], min(cur["Cap"], capK), max(cur["Gen"], gen)
			members = cur["Members"]
			if in.recut && capK > 0 {
				// The leases made at the old rate fill the row; the rest of
				// the window gets what the new rate allows in it.
				left := b.start(in.k + 1).Sub(in.now)
				more := int64(math.Ceil(float64(capK) * float64(left) / float64(b.o.Window)))
				capRow = max(capRow, min(cur["Cap"], before+more))
				out.paced = capK
			}
		}
		if found && cur["Gen"] > gen {
			out.newerGen = true
		}
		out.observed = max(out.observed, before)
		out.members = members
		if before >= capRow {
			out.slot = &cachedRow{f: cur, etag: etag}
			out.exhausted = true
			return out
		}
		members |= me
		n := b.allowed(in, capRow, before, members)
		if n <= 0 {
			if found {
				out.slot = &cachedRow{f: cur, etag: etag}
			}
			out.exhausted = true // for this instance: no time left to pace more
			return out
		}
		f := fields{"Window": in.k, "Claimed": before + n, "Cap": capRow, "Gen": rowGen, "Members": members}
		var tag string
		var err error
		if found {
			tag, err = b.update(&out, key, f, etag)
		} else {
			tag, err = b.add(&out, key, f)
		}
		if errors.Is(err, errChanged) || errors.Is(err, errExists) {
			if out.err = read(); out.err != nil {
				return out
			}
			continue
		}
		if err != nil {
			out.err = err
			return out
		}
		out.slot = &cachedRow{f: f, etag: tag}
		out.from, out.n, out.cap, out.observed, out.exhausted = before, n, capRow, before+n, before+n >= capRow
		out.members = members
		return out
	}
	// Lost every race: step aside briefly so that the others get through.
	_ = b.o.Sleep(context.Background(), randDuration(b.o.Window/20))
	return out
}

// allowed is how many tokens this instance may lease now from a window of
// capacity c with claimed already leased: what its waiters want, up to a
// slice — the window's capacity shared among the instances seen leasing in
// this window and the two before (at least Slices ways) — and no more than
// is left.
//
// Nor more than fit before the window ends at the window's pace: a lease
// made late in the window (an instance starting, or leasing after others)
// is paced from now, not fired at once to catch up.
func (b *Budget) allowed(in claimInput, c, claimed int64, members int64) int64 {
	ways := max(int64(b.o.Slices), int64(bits.OnesCount64(uint64(members|in.prev))))
	slice := max(1, (c+ways-1)/ways)
	// The first at now, then one every W/c, all before the window ends.
	left := b.start(in.k + 1).Sub(in.now)
	fit := int64(math.Ceil(float64(c) * float64(left) / float64(b.o.Window)))
	return min(max(1, min(in.want, slice)), c-claimed, fit)
}

// refreshRate reads the shared rate row (creating it at the budget), and
// with probe raises the rate a step when it has been quiet for ProbeEvery.
func (b *Budget) refreshRate(out *claimOutput, now time.Time, probe bool) (fields, string, error) {
	f, tag, err := b.get(out, rateKey)
	if errors.Is(err, errNotFound) {
		f = fields{"Rate": int64(b.budget * 1000), "Ceiling": b.budget64(), "Gen": 1, "ChangedAt": now.UnixMilli()}
		tag, err = b.add(out, rateKey, f)
		if errors.Is(err, errExists) {
			f, tag, err = b.get(out, rateKey)
		}
	}
	if err != nil {
		return nil, "", err
	}
	r := b.effective(f)
	if !probe || r >= b.budget {
		return f, tag, nil
	}
	last := time.UnixMilli(max(f["ChangedAt"], f["CutAt"]))
	if now.Sub(last) < b.o.ProbeEvery {
		return f, tag, nil
	}
	q := f["Quiet"] + 1
	next := r * (1 + probeStep*float64(q))
	// Near the rate the registry admitted at the last cut (the knee), the
	// probe slows down: fast up to just below it, then by small steps, so
	// that the rate stays close to what is admitted, and 429s are rare.
	if knee := float64(f["Knee"]) / 1000; knee > 0 && now.Sub(time.UnixMilli(f["CutAt"])) < kneeMemory {
		next = max(min(next, kneeBelow*knee), r*(1+kneeStep))
	}
	g := f.clone()
	g["Rate"] = int64(min(b.budget, next) * 1000)
	g["Ceiling"], g["Quiet"], g["ChangedAt"], g["Gen"] = b.budget64(), q, now.UnixMilli(), f["Gen"]+1
	tag2, err := b.update(out, rateKey, g, tag)
	switch {
	case err == nil:
		return g, tag2, nil
	case errors.Is(err, errChanged):
		return f, tag, nil // someone else changed it; the next refresh sees it
	default:
		return nil, "", err
	}
}

// writeCut writes a cut to the rate row, unless another instance cut within
// interval (then its row is returned, wrote false).
func (b *Budget) writeCut(row fields, etag string, now time.Time, interval time.Duration, rate, knee float64, pause time.Duration) (f fields, tag string, wrote bool, ops int, err error) {
	var out claimOutput
	defer func() { ops = out.ops }()
	for range 4 {
		if row == nil {
			if row, etag, err = b.refreshRate(&out, now, false); err != nil {
				return nil, "", false, 0, err
			}
		}
		if c := row["CutAt"]; c > 0 && now.Sub(time.UnixMilli(c)) < interval {
			return row, etag, false, 0, nil
		}
		g := row.clone()
		g["Rate"] = min(row["Rate"], int64(rate*1000))
		g["Ceiling"], g["CutAt"], g["ChangedAt"], g["Quiet"], g["Gen"] = b.budget64(), now.UnixMilli(), now.UnixMilli(), 0, row["Gen"]+1
		g["Knee"] = int64(knee * 1000)
		if pause > 0 {
			g["PausedUntil"] = max(row["PausedUntil"], now.Add(pause).UnixMilli())
		}
		newTag, uerr := b.update(&out, rateKey, g, etag)
		if errors.Is(uerr, errChanged) {
			row = nil
			continue
		}
		if uerr != nil {
			return nil, "", false, 0, uerr
		}
		return g, newTag, true, 0, nil
	}
	return nil, "", false, 0, nil
}

func (b *Budget) budget64() int64 { return int64(b.budget) }

// get, add and update are the store calls, each with its own deadline,
// counted in out.ops.
func (b *Budget) get(out *claimOutput, key string) (fields, string, error) {
	ctx, cancel := b.ctxOp()
	defer cancel()
	out.ops++
	return b.st.get(ctx, key)
}

func (b *Budget) add(out *claimOutput, key string, f fields) (string, error) {
	ctx, cancel := b.ctxOp()
	defer cancel()
	out.ops++
	return b.st.add(ctx, key, f)
}

func (b *Budget) update(out *claimOutput, key string, f fields, etag string) (string, error) {
	ctx, cancel := b.ctxOp()
	defer cancel()
	out.ops++
	return b.st.update(ctx, key, f, etag)
}

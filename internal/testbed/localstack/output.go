package localstack

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/runs"
)

const dryRunBanner = "DRY RUN: nothing will be deleted; the counts are what a real run would delete."

// writeIntro tells what is about to run: registry, identity, queue,
// checkpoints, handler and policy.
func writeIntro(p *printer, res *Result, o Options, handlerURL string) {
	if p.w == nil {
		return
	}
	var b strings.Builder
	b.WriteString("acrpurge local: the Functions app on this machine, against an emulated registry. No Azure needed.\n")
	if res.DryRun {
		b.WriteString("\n" + dryRunBanner + "\n")
	}
	inv := res.Before
	var granted []string
	for _, g := range DemoIdentity().Grants {
		granted = append(granted, g.RepositoryPrefix)
	}
	store := "in memory (CheckpointStorage=<Azurite connection string> keeps them in Table Storage)"
	if res.Store != "memory" {
		store = "Table Storage, " + res.Store
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\n  Registry\t%s  ACR emulator, ABAC repository permissions\n", res.Emulator.URL())
	fmt.Fprintf(tw, "  \t%s\n", inventoryLine(inv))
	fmt.Fprintf(tw, "  Identity\t%s: Catalog Lister; Repository Contributor on %s\n", DemoIdentityName, strings.Join(granted, ", "))
	fmt.Fprintf(tw, "  \tno role on %s: the app may not purge it\n", ForbiddenPrefix)
	fmt.Fprintf(tw, "  Queue\tin-process stand-in for Service Bus: duplicate detection, max %d deliveries, %d in parallel\n",
		o.MaxDeliveries, o.MaxConcurrentCalls)
	fmt.Fprintf(tw, "  Checkpoints\t%s\n", store)
	budget := "this process's own (in-memory checkpoints)"
	if res.Store != "memory" {
		budget = "the registry's, shared through the checkpoint table as by every deployed instance"
	}
	fmt.Fprintf(tw, "  Delete budget\t%d/min, %s\n", o.DeletesPerMinute, budget)
	fmt.Fprintf(tw, "  Handler\t%s  the code of \"handler serve\", called over the custom-handler protocol\n", handlerURL)
	_ = tw.Flush() // writes to a strings.Builder cannot fail

	which := "the demo's; try yours with --policy"
	if o.Policy != DemoPolicy {
		which = "from --policy"
	}
	fmt.Fprintf(&b, "\nPolicy (PURGE_POLICY, %s):\n%s\n", which, indent(strings.TrimSpace(o.Policy), "  "))
	fmt.Fprintf(&b, "which reads:\n%s\n", indent(res.Policy.Describe(), "  "))
	p.printf("%s", b.String())
}

// writeResult writes the run reports, the registry before and after, and
// how to read them.
func writeResult(w io.Writer, res *Result) error {
	var b strings.Builder
	if len(res.Runs) == 0 {
		b.WriteString("\nNo run was created or resumed: see the lines above.\n")
	}
	for i, rep := range res.Runs {
		fmt.Fprintf(&b, "\nReport (the Runs function serves the same: GET /api/runs/%s):\n\n", rep.Run.ID)
		if err := rep.WriteText(&b); err != nil {
			return err
		}
		if i < len(res.Pages) {
			fmt.Fprintf(&b, "\nHTML page (GET /api/runs/%s?format=html, or from a browser): %s\n", rep.Run.ID, res.Pages[i])
		}
	}
	if len(res.DeadLetters) > 0 {
		b.WriteString("\nDead-lettered messages (every delivery failed; Service Bus keeps them in the dead-letter queue):\n")
		for _, d := range res.DeadLetters {
			fmt.Fprintf(&b, "  %s after %d deliveries: %s\n", d.ID, d.DeliveryCount, oneLine(d.LastError, 200))
		}
	}
	if len(res.Rejections) > 0 {
		b.WriteString("\nRejected messages (malformed or not allowed: recorded and completed, never retried):\n")
		for _, r := range res.Rejections {
			fmt.Fprintf(&b, "  %s: %s\n", r.MessageID, oneLine(r.Reason, 200))
		}
	}
	writeInventory(&b, res)
	writeLegend(&b, res)
	if res.DryRun {
		b.WriteString("\n" + strings.Replace(dryRunBanner, "will be", "was", 1) + "\n")
	}
	fmt.Fprintf(&b, "\nDone in %s (setup %s, purge %s, report %s).\n", formatDuration(res.Timings.Total),
		formatDuration(res.Timings.Setup), formatDuration(res.Timings.Triggers), formatDuration(res.Timings.Report))
	b.WriteString("More: go run ./handler local -h (dry runs, pushes, portal messages, faults, your own policy).\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// writeInventory compares the registry before and after.
func writeInventory(b *strings.Builder, res *Result) {
	x, y := res.Before, res.After
	count := func(n int64) string { return fmt.Sprint(n) }
	rows := [][4]string{
		{"", "before", "after", "change"},
		{"repositories", fmt.Sprint(x.Repositories), fmt.Sprint(y.Repositories), signed(int64(y.Repositories-x.Repositories), count)},
		{"tags", fmt.Sprint(x.Tags), fmt.Sprint(y.Tags), signed(int64(y.Tags-x.Tags), count)},
		{"manifests", fmt.Sprint(x.Manifests), fmt.Sprint(y.Manifests), signed(int64(y.Manifests-x.Manifests), count)},
		{"size", runs.Bytes(x.Bytes), runs.Bytes(y.Bytes), signed(y.Bytes-x.Bytes, runs.Bytes)},
	}
	var w [4]int
	for _, r := range rows {
		for i, c := range r {
			w[i] = max(w[i], len(c))
		}
	}
	b.WriteString("\nThe registry before and after:\n")
	for _, r := range rows {
		fmt.Fprintf(b, "  %-*s  %*s  %*s  %*s\n", w[0], r[0], w[1], r[1], w[2], r[2], w[3], r[3])
	}
	var outside []string
	for _, r := range res.Demo.Repos {
		if !r.InPolicy {
			outside = append(outside, r.Name)
		}
	}
	if len(outside) > 0 {
		fmt.Fprintf(b, "  No rule covers %s: never fanned out, never touched.\n", listSome(outside, 5))
	}
}

// signed renders a change with its sign ("0" for none).
func signed(n int64, f func(int64) string) string {
	switch {
	case n > 0:
		return "+" + f(n)
	case n < 0:
		return "-" + f(-n)
	}
	return "0"
}

// listSome lists up to n names and says how many more there are.
func listSome(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// reasonHelp explains a kept reason of the report.
func reasonHelp(reason string) string {
	switch policy.Reason(reason) {
	case policy.ReasonTooNew:
		return `younger than its rule's "ago"`
	case policy.ReasonKeep:
		return `among its rule's "keep" most recent`
	case policy.ReasonProtected:
		return `matches a "protect" pattern`
	case policy.ReasonLocked:
		return "locked in the registry (delete or write disabled)"
	case policy.ReasonNoMatch:
		return "a tag no rule's filter matches"
	case policy.ReasonTagged:
		return "a manifest that a kept tag points at"
	case policy.ReasonIndexChild:
		return "a platform image of a kept multi-arch index"
	case policy.ReasonReferrer:
		return "a signature, SBOM or other referrer of a kept manifest"
	case policy.ReasonSubject:
		return "the subject of a kept referrer"
	case policy.ReasonMissing:
		return "listed or referenced, but already gone"
	case policy.ReasonNotInPolicy:
		return "no rule deletes this kind of item here"
	case "changed-since-planning":
		return "changed between planning and its delete: left for the next run"
	}
	return "see the policy documentation"
}

// writeLegend explains the report's columns and the kept reasons that
// appear in it.
func writeLegend(b *strings.Builder, res *Result) {
	if len(res.Runs) == 0 {
		return
	}
	seen := map[string]bool{}
	var t runs.Totals
	for _, rep := range res.Runs {
		for k := range rep.Totals.Kept {
			seen[k] = true
		}
		t.Forbidden += rep.Totals.Forbidden
		t.Failed += rep.Totals.Failed
		t.Partial += rep.Totals.Partial
		t.Pending += rep.Totals.Pending
		t.Skipped += rep.Totals.Skipped
	}
	deleted := "deleted"
	if res.DryRun {
		deleted = "that would be deleted"
	}
	// Reasons in the order the report lists them.
	reasons := slices.Sorted(maps.Keys(seen))
	slices.SortStableFunc(reasons, func(a, c string) int { return cmp.Compare(reasonRank(a), reasonRank(c)) })
	width := len("TAGS, MANIFESTS")
	for _, k := range reasons {
		width = max(width, len(k)+2)
	}
	line := func(term, text string) { fmt.Fprintf(b, "  %-*s  %s\n", width, term, text) }
	b.WriteString("\nHow to read the report:\n")
	line("TAGS, MANIFESTS", "tags and manifests "+deleted+"; FREED is the manifests' size")
	line("KEPT", "what stays, and why (tags and manifests together):")
	for _, k := range reasons {
		line("  "+k, reasonHelp(k))
	}
	if t.Forbidden > 0 {
		line("forbidden", "the identity's role (its ABAC condition) does not cover the repository;")
		line("", "the rest of its batch is purged all the same")
	}
	if t.Failed > 0 {
		line("failed", "gave up: the error stayed through every delivery of its message")
	}
	if t.Partial > 0 || t.Pending > 0 {
		line("partial, pending", "started but not finished, or not started: its message was not handled to the end")
	}
	if t.Skipped > 0 {
		line("skipped", "nothing to do: no rule covers it, or it is gone")
	}
}

// reasonRank orders reasons as the report does: the policy's own first,
// then what other manifests need.
func reasonRank(reason string) int {
	order := []policy.Reason{policy.ReasonTooNew, policy.ReasonKeep, policy.ReasonProtected, policy.ReasonLocked,
		policy.ReasonNoMatch, policy.ReasonTagged, policy.ReasonIndexChild, policy.ReasonReferrer, policy.ReasonSubject}
	if i := slices.Index(order, policy.Reason(reason)); i >= 0 {
		return i
	}
	return len(order)
}

func inventoryLine(inv Inventory) string {
	return fmt.Sprintf("%d repositories, %d tags, %d manifests, %s", inv.Repositories, inv.Tags, inv.Manifests, runs.Bytes(inv.Bytes))
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

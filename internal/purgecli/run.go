package purgecli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"golang.org/x/sync/errgroup"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/budget"
	"github.com/acrpurge/acrpurge/internal/purge"
)

// Grace periods: how long deletes already in flight may take to finish
// after an interrupt, and how long after --timeout the run is cut off hard
// (listings that never reach a delete decision do not see the soft
// deadline).
const (
	defaultInterruptGrace = 10 * time.Second
	defaultTimeoutGrace   = 30 * time.Second
)

// Run runs `handler purge` with args (after the subcommand) and returns the
// exit code: 0 every repository done, 1 runtime failure, 2 usage or
// configuration error, 3 some repositories forbidden, failed or partial,
// 130 interrupted (ctx cancelled, e.g. by Ctrl-C through
// signal.NotifyContext). The report goes to stdout; progress, logs and
// errors go to stderr. getenv supplies the defaults of --registry
// (ACR_LOGIN_SERVER) and --policy (PURGE_POLICY).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	return run(ctx, args, stdout, stderr, getenv, deps{})
}

// deps are the parts tests replace. Zero fields take production defaults.
type deps struct {
	credential     func(tenant string) (azcore.TokenCredential, error)
	httpClient     *http.Client
	now            func() time.Time
	retry          acr.RetryPolicy
	getwd          func() (string, error)
	progressEvery  time.Duration
	interruptGrace time.Duration
	timeoutGrace   time.Duration
}

func (d deps) withDefaults() deps {
	if d.credential == nil {
		d.credential = defaultCredential
	}
	if d.httpClient == nil {
		d.httpClient = acr.NewHTTPClient()
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.getwd == nil {
		d.getwd = os.Getwd
	}
	if d.progressEvery <= 0 {
		d.progressEvery = defaultProgressEvery
	}
	if d.interruptGrace <= 0 {
		d.interruptGrace = defaultInterruptGrace
	}
	if d.timeoutGrace <= 0 {
		d.timeoutGrace = defaultTimeoutGrace
	}
	return d
}

// defaultCredential is DefaultAzureCredential; it honours AZURE_CLIENT_ID,
// AZURE_TENANT_ID and the other azidentity environment variables.
func defaultCredential(tenant string) (azcore.TokenCredential, error) {
	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{TenantID: tenant})
	if err != nil {
		return nil, fmt.Errorf("DefaultAzureCredential: %w", err)
	}
	return cred, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, d deps) int {
	d = d.withDefaults()
	errOut := &syncWriter{w: stderr}
	wd, err := d.getwd()
	if err != nil {
		fmt.Fprintf(errOut, "handler purge: current directory: %v\n", err)
		return exitRuntime
	}
	o, err := parseOptions(args, getenv, wd, errOut)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		var ue *usageError
		if !errors.As(err, &ue) || !ue.printed {
			fmt.Fprintf(errOut, "handler purge: %v\nRun 'handler purge -h' for usage.\n", err)
		}
		return exitUsage
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level}))
	cred, err := d.credential(o.tenant)
	if err != nil {
		fmt.Fprintf(errOut, "handler purge: authentication: %v\n", err)
		return exitRuntime
	}
	r := &runner{o: o, d: d, cred: cred, log: log, stdout: stdout, stderr: errOut}
	return r.run(ctx)
}

// runner is one run of the command.
type runner struct {
	o      options
	d      deps
	cred   azcore.TokenCredential
	log    *slog.Logger
	stdout io.Writer
	stderr io.Writer
}

// batch is one ABAC-sized group of repositories sharing one access token.
type batch struct {
	tokens acr.TokenSource
	client *acr.Client
}

func (r *runner) run(ctx context.Context) int {
	start := r.d.now()
	deadline := start.Add(r.o.timeout)
	wctx, cancel := context.WithTimeout(ctx, r.o.timeout+r.d.timeoutGrace)
	defer cancel()

	broker, err := acr.NewBroker(acr.BrokerOptions{
		Endpoint: r.o.registry, Credential: r.cred, Tenant: r.o.tenant, HTTPClient: r.d.httpClient,
		Now: r.d.now, Retry: r.d.retry, Logger: r.log,
	})
	if err != nil {
		return r.fatal(ctx, fmt.Errorf("token broker: %w", err))
	}
	// The delete budget of this process alone: the same algorithm as the
	// app's registry-wide one, on an in-memory store.
	deletes, err := budget.NewLocal(budget.Options{PerMinute: r.o.deletesPerMinute, Scope: r.o.registry.Service, Logger: r.log})
	if err != nil {
		return r.fatal(ctx, fmt.Errorf("delete budget: %w", err))
	}
	client, err := acr.NewClient(acr.ClientOptions{
		Endpoint: r.o.registry, HTTPClient: r.d.httpClient, Retry: r.d.retry, Logger: r.log,
		Limiter: acr.NewLimiter(acr.LimiterOptions{Deletes: deletes}),
	})
	if err != nil {
		return r.fatal(ctx, fmt.Errorf("registry client: %w", err))
	}
	r.log.Info("purge starting", "registry", r.o.registry.String(), "dryRun", r.o.dryRun,
		"policy", r.o.policy.Hash(), "rules", r.o.policy.Describe())

	repos, err := r.repositories(wctx, broker, client)
	if err != nil {
		return r.fatal(ctx, err)
	}
	batches := make(map[string]*batch, len(repos))
	clients := make(map[string]*acr.Client, len(repos))
	for chunk := range slices.Chunk(repos, r.o.batchSize) {
		src := broker.Source(purgeScopes(chunk)...)
		b := &batch{tokens: src, client: client.WithTokens(src)}
		for _, repo := range chunk {
			batches[repo], clients[repo] = b, b.client
		}
	}
	// Fail fast, with exit 1, when the registry cannot be reached or the
	// credential is refused; the token is the first batch's own.
	if len(repos) > 0 {
		if _, err := batches[repos[0]].tokens.Token(wctx); err != nil {
			return r.fatal(ctx, fmt.Errorf("get an access token from %s: %w", r.o.registry, err))
		}
	}

	col := newCollector(repos, r.o.verbose)
	ex := purge.New(&router{clients: clients, grace: r.d.interruptGrace}, purge.Options{
		Concurrency: r.o.concurrency, Now: r.d.now, OnDecision: col.onDecision, Logger: r.log,
	})
	prog := startProgress(wctx, r.stderr, col, len(repos), r.o.dryRun, r.d.progressEvery, r.d.now)
	var g errgroup.Group
	// --repository-parallelism repositories at once (as the Worker does
	// within a message); deletes in flight are bounded by --concurrency
	// across all of them.
	g.SetLimit(min(r.o.repoParallelism, r.o.concurrency))
	for _, repo := range repos {
		if wctx.Err() != nil || !r.d.now().Before(deadline) {
			break // the rest stay not started
		}
		g.Go(func() error {
			r.purgeOne(ctx, wctx, ex, col, batches[repo], repo, deadline)
			return nil
		})
	}
	_ = g.Wait() // purgeOne reports through col and never returns an error
	prog.stop()

	rep := col.report()
	interrupted := ctx.Err() != nil
	timedOut := !interrupted && (wctx.Err() != nil || !r.d.now().Before(deadline))
	for i := range rep.Repositories {
		if rr := &rep.Repositories[i]; rr.Status == statusNotStarted {
			switch {
			case interrupted:
				rr.Reason = "interrupted before the repository was started"
			case timedOut:
				rr.Reason = "--timeout reached before the repository was started"
			}
		}
	}
	rep.Registry, rep.DryRun, rep.Interrupted = r.o.registry.Service, r.o.dryRun, interrupted
	rep.PolicyHash = r.o.policy.Hash()
	rep.StartedAt, rep.FinishedAt = start.UTC(), r.d.now().UTC()
	rep.DurationSeconds = rep.FinishedAt.Sub(rep.StartedAt).Seconds()
	t := rep.Totals
	switch {
	case interrupted:
		rep.ExitCode = exitInterrupted
	case t.Partial+t.Forbidden+t.Failed+t.NotStarted+t.Interrupted > 0:
		rep.ExitCode = exitIncomplete
	default:
		rep.ExitCode = exitOK
	}
	return r.write(rep)
}

// write prints the report and the closing notes on stderr.
func (r *runner) write(rep *report) int {
	var err error
	if r.o.json {
		err = writeJSON(r.stdout, rep)
	} else {
		err = writeTable(r.stdout, rep)
	}
	if err != nil {
		fmt.Fprintf(r.stderr, "handler purge: %v\n", err)
		return exitRuntime
	}
	if rep.DryRun && r.o.json {
		fmt.Fprintln(r.stderr, dryRunFooter)
	}
	switch {
	case rep.Interrupted && rep.DryRun:
		fmt.Fprintln(r.stderr, "handler purge: interrupted (dry run: nothing was deleted)")
	case rep.Interrupted:
		fmt.Fprintf(r.stderr, "handler purge: interrupted: no new deletes were started; %d tags and %d manifests were deleted\n",
			rep.Totals.TagsDeleted, rep.Totals.ManifestsDeleted)
	}
	return rep.ExitCode
}

// fatal reports an error that stops the run before any repository: exit 1,
// or 130 when it came from an interrupt.
func (r *runner) fatal(ctx context.Context, err error) int {
	if ctx.Err() != nil {
		fmt.Fprintln(r.stderr, "handler purge: interrupted before any repository was purged")
		return exitInterrupted
	}
	fmt.Fprintf(r.stderr, "handler purge: %v\n", err)
	return exitRuntime
}

// repositories returns the repositories to purge, sorted: the named ones,
// or the catalog filtered by the policy.
func (r *runner) repositories(ctx context.Context, broker *acr.Broker, client *acr.Client) ([]string, error) {
	if len(r.o.repositories) > 0 {
		repos := slices.Clone(r.o.repositories)
		slices.Sort(repos)
		return repos, nil
	}
	cat := client.WithTokens(broker.Source(acr.CatalogScope()))
	var all []string
	err := cat.Catalog(ctx, func(page []string) error {
		all = append(all, page...)
		return nil
	})
	switch {
	case acr.IsNotPermitted(err):
		return nil, fmt.Errorf("the registry refused to list its catalog: the identity needs the "+
			"Container Registry Catalog Lister role, or name repositories with --repository: %w", err)
	case err != nil:
		return nil, fmt.Errorf("list the catalog of %s: %w", r.o.registry, err)
	}
	repos, err := r.o.policy.Filter(all)
	if err != nil {
		return nil, fmt.Errorf("match the catalog against the policy: %w", err)
	}
	r.log.Info("catalog listed", "repositories", len(all), "matching", len(repos))
	if len(repos) == 0 {
		fmt.Fprintf(r.stderr, "handler purge: none of the %d repositories in the catalog is covered by the policy\n", len(all))
	}
	return repos, nil
}

// purgeOne purges one repository and records its outcome. ctx is the
// caller's (cancelled by an interrupt), wctx the run's (also ended by the
// hard timeout).
func (r *runner) purgeOne(ctx, wctx context.Context, ex *purge.Executor, col *collector, b *batch, repo string, deadline time.Time) {
	if wctx.Err() != nil || !r.d.now().Before(deadline) {
		return // stays not started
	}
	res := purge.Result{Repository: repo}
	pol := r.o.policy
	ok, err := pol.MatchRepository(repo)
	switch {
	case err != nil:
		col.finish(res, string(purge.StatusFailed), "policy: "+err.Error())
		return
	case !ok:
		col.finish(res, string(purge.StatusSkipped), "not in policy: no rule's repository filter matches")
		return
	}
	tok, err := b.tokens.Token(wctx)
	if err != nil {
		if wctx.Err() != nil {
			return // stays not started
		}
		col.finish(res, string(purge.StatusFailed), "get access token: "+err.Error())
		return
	}
	if missing := r.missingActions(tok, repo); len(missing) > 0 {
		col.finish(res, string(purge.StatusForbidden), fmt.Sprintf(
			"the access token does not grant %s on this repository: check the identity's role "+
				"assignment (on ABAC registries, the repository prefix in its condition)", strings.Join(missing, ", ")))
		return
	}
	res = ex.Purge(wctx, purge.Job{Repository: repo, Policy: pol, DryRun: r.o.dryRun, Deadline: deadline})
	timedOut := errors.Is(wctx.Err(), context.DeadlineExceeded)
	status, reason := statusOf(res, ctx.Err() != nil, timedOut)
	col.finish(res, status, reason)
}

// missingActions lists the actions the run needs on repo that tok's access
// claim lacks: metadata_read to list, pull when untagged manifests are
// planned (bodies), delete unless dry-run, metadata_write to unlock.
func (r *runner) missingActions(tok *acr.Token, repo string) []string {
	need := []string{acr.ActionMetadataRead}
	var untagged, unlock bool
	for _, rule := range r.o.policy.Rules {
		untagged = untagged || rule.Untagged || rule.UntaggedOnly
		unlock = unlock || rule.IncludeLocked
	}
	if untagged {
		need = append(need, acr.ActionPull)
	}
	if !r.o.dryRun {
		need = append(need, acr.ActionDelete)
		if unlock {
			need = append(need, acr.ActionMetadataWrite)
		}
	}
	if tok.Granted == nil {
		return nil // the claim is unknown: the registry decides
	}
	var missing []string
	for _, a := range need {
		if !tok.Allows(repo, a) {
			missing = append(missing, a)
		}
	}
	return missing
}

// purgeScopes are the scopes of one batch's token.
func purgeScopes(repos []string) []acr.Scope {
	scopes := make([]acr.Scope, len(repos))
	for i, repo := range repos {
		scopes[i] = acr.RepositoryScope(repo, acr.PurgeActions...)
	}
	return scopes
}
